import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from hmc_lib import diagnostics, scale, targets


def _points(target, n=8, seed=0):
    if target.has_sampler:
        return target.sample(n, seed, tf.float64)
    return tf.random.stateless_normal([n, target.dim], [seed, 1], dtype=tf.float64)


def test_registry_knows_the_analytic_targets(target_name):
    t = targets.get(target_name)
    assert t.name == target_name
    assert t.mean.shape == (t.dim,) and t.variance.shape == (t.dim,)


def test_unknown_target_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown target"):
        targets.get("nope")
    with pytest.raises(TypeError):
        targets.get(3)


def test_autodiff_gradient_matches_central_differences(target_name):
    t = targets.get(target_name)
    x = _points(t)
    g = t.autodiff_grad_log_prob(x).numpy()
    h = 1e-6
    fd = np.zeros_like(g)
    for i in range(t.dim):
        e = np.zeros(t.dim)
        e[i] = h
        fd[:, i] = (t.log_prob(x + e).numpy() - t.log_prob(x - e).numpy()) / (2 * h)
    scale = np.maximum(1.0, np.abs(g))
    np.testing.assert_allclose(g / scale, fd / scale, rtol=0, atol=1e-5)


def test_analytic_gradient_matches_autodiff(target_name):
    t = targets.get(target_name)
    assert t.has_analytic_grad
    x = _points(t)
    np.testing.assert_allclose(t.grad_log_prob(x), t.autodiff_grad_log_prob(x), rtol=1e-10, atol=1e-10)


def test_float32_and_float64_agree(target_name):
    t = targets.get(target_name)
    x64 = _points(t)
    lp64 = t.log_prob(x64).numpy()
    lp32 = t.log_prob(tf.cast(x64, tf.float32)).numpy()
    assert t.log_prob(tf.cast(x64, tf.float32)).dtype == tf.float32
    np.testing.assert_allclose(lp32, lp64, rtol=1e-4, atol=1e-3)


@pytest.mark.statistical
@pytest.mark.parametrize("name", ["icg50", "scg", "mog", "rough_well", "banana", "icg30"])
def test_exact_draws_have_the_stated_moments(name):
    t = targets.get(name)
    # 40000 i.i.d. draws as 64 batches of 625: each batch's mean and mean square are
    # nearly normal, so the between-batch t statistics (63 degrees of freedom, Bonferroni
    # over 2·dim of them at level 1e-4) are exact enough, and no ESS is involved
    x = t.sample(40000, scale.seed(11), tf.float64).numpy()
    diagnostics.assert_moments(x.reshape(625, 64, t.dim), t.mean, t.variance)


def test_gaussian_log_prob_is_normalised():
    cov = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]])
    mu = np.array([1.0, -1.0, 0.5])
    t = targets.get("gaussian", mean=mu, covariance=cov)
    x = tf.random.stateless_normal([5, 3], [1, 2], dtype=tf.float64)
    ref = tfp.distributions.MultivariateNormalTriL(mu, np.linalg.cholesky(cov)).log_prob(x)
    np.testing.assert_allclose(t.log_prob(x), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,box", [("banana", ((-45, 45), (-120, 20))), ("mog", ((-5, 5), (-3, 3)))])
def test_two_dimensional_densities_integrate_to_one(name, box):
    t = targets.get(name)
    g1 = np.linspace(*box[0], 1201)
    g2 = np.linspace(*box[1], 1201)
    xx, yy = np.meshgrid(g1, g2, indexing="ij")
    dens = np.exp(t.log_prob(np.stack([xx, yy], -1)).numpy())
    total = np.trapezoid(np.trapezoid(dens, g2, axis=1), g1)
    assert abs(total - 1.0) < 1e-3


def test_wrong_dimension_is_a_clear_error():
    t = targets.get("scg")
    with pytest.raises(ValueError, match=r"`x` must have shape \[\.\.\., 2\]"):
        t.log_prob(tf.zeros([4, 3]))


def test_target_rejects_bad_moments_and_dims():
    with pytest.raises(ValueError, match="dim"):
        targets.Target(lambda x: -tf.reduce_sum(x**2, -1), dim=0)
    with pytest.raises(ValueError, match="mean"):
        targets.Target(lambda x: -tf.reduce_sum(x**2, -1), dim=2, mean=[0.0, 0.0, 0.0])
    with pytest.raises(TypeError, match="log_prob_fn"):
        targets.Target("not callable", dim=2)


def test_a_user_target_with_a_two_argument_sampler():
    t = targets.Target(lambda x: -0.5 * tf.reduce_sum(x**2, -1), dim=3, name="std",
                       mean=np.zeros(3), variance=np.ones(3),
                       sample_fn=lambda n, seed: tf.random.stateless_normal([n, 3], [seed, 0]))
    x = t.sample(5, 1, tf.float64)
    assert x.shape == (5, 3) and x.dtype == tf.float64
    np.testing.assert_allclose(t.grad_log_prob(x), -x)
    bad = targets.Target(lambda x: -tf.reduce_sum(x**2, -1), dim=3,
                         sample_fn=lambda n, seed: tf.zeros([n, 2]))
    with pytest.raises(ValueError, match="sample_fn"):
        bad.sample(4, 0)
