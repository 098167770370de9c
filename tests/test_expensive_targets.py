"""The NNgHMC paper's expensive-gradient targets: GARCH(2,1) and GP regression (Matérn 3/2).

Log-densities against independent numpy/scipy computations, gradients against central
differences in float64, and bad input (a non-stationary GARCH start, a non-positive length
scale, a trajectory that leaves the stationary region)."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats
from scipy.spatial.distance import cdist

import hmc_lib
from hmc_lib import targets
from hmc_lib.targets.garch import garch_log_likelihood_numpy, simulate_garch, stationary
from hmc_lib.targets.gp import matern32_log_marginal_likelihood

GARCH_POINTS = np.array([[0.1, 0.15, 0.35, 0.3], [0.2, 0.1, 0.5, 0.2], [0.05, 0.3, 0.1, 0.4]])


def _central_differences(fn, x, h=1e-6):
    x = np.asarray(x, np.float64)
    out = np.zeros_like(x)
    for i in range(x.shape[-1]):
        e = np.zeros(x.shape[-1])
        e[i] = h
        out[:, i] = (fn(tf.constant(x + e)).numpy() - fn(tf.constant(x - e)).numpy()) / (2 * h)
    return out


def test_garch_log_prob_matches_a_numpy_loop():
    t = targets.get("garch", num_obs=300, seed=4)
    assert t.dim == 4 and t.data.shape == (300,)
    lp = t.log_prob(tf.constant(GARCH_POINTS)).numpy()
    ref = [garch_log_likelihood_numpy(p, t.data) - 0.5 * np.sum(p ** 2) / 100.0
           for p in GARCH_POINTS]
    np.testing.assert_allclose(lp, ref, rtol=1e-12)
    # float32 agrees to float32 precision
    lp32 = t.log_prob(tf.constant(GARCH_POINTS, tf.float32)).numpy()
    np.testing.assert_allclose(lp32, ref, rtol=1e-5)


def test_garch_gradient_matches_central_differences():
    t = targets.get("garch", num_obs=300, seed=4)
    g = t.grad_log_prob(tf.constant(GARCH_POINTS)).numpy()
    fd = _central_differences(t.log_prob, GARCH_POINTS)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-5)
    assert np.all(np.abs(g) > 1e-3)                     # a non-trivial gradient


def test_garch_off_the_stationary_region():
    t = targets.get("garch", num_obs=200)
    bad = tf.constant([[0.1, 0.5, 0.3, 0.3], [-0.1, 0.1, 0.1, 0.1], [0.1, -0.01, 0.5, 0.2]],
                      tf.float64)
    assert not np.any(stationary(bad.numpy()))
    assert np.all(t.log_prob(bad).numpy() == -np.inf)
    g = t.grad_log_prob(bad).numpy()
    assert np.all(np.isfinite(g))                       # never NaN
    # a chain started off the region is refused with a clear error
    with pytest.raises(ValueError, match="not finite at `current_state`"):
        hmc_lib.sample(hmc_lib.HMC(t, 0.002, 5), 5, bad[:1], seed=0)
    with pytest.raises(ValueError, match="stationary"):
        simulate_garch(100, params=(0.1, 0.5, 0.3, 0.3))
    with pytest.raises(ValueError, match="data"):
        targets.get("garch", data=np.ones((3, 2)))


def test_garch_trajectory_leaving_the_region_is_a_rejected_divergence():
    """From next to the boundary α + β₁ + β₂ = 1 a large step leaves the region: every such
    proposal is rejected and counted as a divergence; no chain ever holds a non-stationary θ."""
    t = targets.get("garch", num_obs=200)
    x0 = tf.constant(np.tile([[0.1, 0.3, 0.349, 0.35]], (8, 1)), tf.float64)
    samples, trace = hmc_lib.sample(hmc_lib.HMC(t, 0.05, 10), 10, x0, seed=3)
    assert np.all(stationary(samples))
    assert np.all(np.isfinite(trace["target_log_prob"]))
    div = trace["is_divergent"]
    assert div.sum() > 0 and not np.any(trace["is_accepted"] & div)


def _gp_reference(x, y, theta, prior_scale, amplitude=True):
    e = np.exp(theta)
    ls, amp, noise = (e[0], e[1], e[2]) if amplitude else (e[0], 1.0, e[1])
    r = np.sqrt(3.0) * cdist(x, x) / ls
    k = amp * (1 + r) * np.exp(-r) + noise * np.eye(len(y))
    return (stats.multivariate_normal(np.zeros(len(y)), k).logpdf(y)
            + stats.norm(0, prior_scale).logpdf(theta).sum())


@pytest.mark.parametrize("amplitude", [True, False])
def test_gp_log_prob_matches_scipy(amplitude):
    t = targets.get("gp_matern", num_data=80, seed=2, learn_amplitude=amplitude)
    x, y = t.data
    assert x.shape == (80, 4) and t.dim == (3 if amplitude else 2)
    th = np.array([[0.3, 0.5, -1.2], [1.0, 0.0, -0.5], [-0.5, 1.5, 0.2]])[:, :t.dim]
    lp = t.log_prob(tf.constant(th)).numpy()
    ref = [_gp_reference(x, y, q, t.prior_scale, amplitude) for q in th]
    np.testing.assert_allclose(lp, ref, rtol=1e-10)
    natural = t.to_natural(th[0])
    ll = matern32_log_marginal_likelihood(x, y, *natural)
    np.testing.assert_allclose(ll, ref[0] - stats.norm(0, t.prior_scale).logpdf(th[0]).sum(),
                               rtol=1e-10)


def test_gp_gradient_matches_central_differences():
    t = targets.get("gp_matern", num_data=80, seed=2)
    th = np.array([[0.3, 0.5, -1.2], [1.0, 0.0, -0.5]])
    g = t.grad_log_prob(tf.constant(th)).numpy()
    fd = _central_differences(t.log_prob, th)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-5)
    assert np.all(np.abs(g) > 1e-3)


@pytest.mark.parametrize("amplitude", [True, False])
def test_gp_analytic_gradient_matches_autodiff_through_the_cholesky(amplitude):
    """The default gradient, ½ tr((ααᵀ − K⁻¹) ∂K/∂θ), is the derivative of the value: it
    agrees with autodiff through the factorisation to rounding, for a batch of chains and
    for a single point, and the value is the same."""
    kw = dict(num_data=60, seed=3, learn_amplitude=amplitude)
    fast, slow = (targets.get("gp_matern", gradient=g, **kw) for g in ("analytic", "autodiff"))
    th = tf.constant(np.array([[0.3, 0.5, -1.2], [1.0, 0.0, -0.5], [-0.5, 1.5, 0.2],
                               [2.0, -1.0, -3.0]])[:, :fast.dim])
    np.testing.assert_allclose(fast.log_prob(th), slow.log_prob(th), rtol=1e-13)
    np.testing.assert_allclose(fast.grad_log_prob(th), slow.grad_log_prob(th), rtol=1e-9,
                               atol=1e-9)
    np.testing.assert_allclose(fast.grad_log_prob(th[0]), slow.grad_log_prob(th[0]),
                               rtol=1e-9, atol=1e-9)
    g32 = fast.grad_log_prob(tf.cast(th, tf.float32))
    assert g32.dtype == tf.float32
    np.testing.assert_allclose(g32, slow.grad_log_prob(th), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="gradient"):
        targets.get("gp_matern", num_data=10, gradient="numeric")


def test_gp_bad_input():
    x, y = np.zeros((5, 4)), np.zeros(5)
    for kw, name in ((dict(length_scale=0.0), "length_scale"),
                     (dict(length_scale=-1.0), "length_scale"),
                     (dict(noise_variance=0.0), "noise_variance"),
                     (dict(amplitude=np.nan), "amplitude")):
        args = {**dict(length_scale=1.0, amplitude=1.0, noise_variance=0.1), **kw}
        with pytest.raises(ValueError, match=name):
            matern32_log_marginal_likelihood(x, y, **args)
    with pytest.raises(ValueError, match="num_features"):
        targets.get("gp_matern", num_features=3)
    with pytest.raises(ValueError, match="data"):
        targets.get("gp_matern", data=(np.zeros((5, 4)), np.zeros(4)))
    # an overflowing point of the log scale: −inf or finite, never NaN accepted by a kernel
    t = targets.get("gp_matern", num_data=30, seed=1)
    x0 = tf.constant([[0.0, 0.0, -1.0]] * 4, tf.float64)
    samples, trace = hmc_lib.sample(hmc_lib.HMC(t, 3.0, 5), 5, x0, seed=1, jit_compile=False)
    assert np.all(np.isfinite(samples)) and np.all(np.isfinite(trace["target_log_prob"]))


def test_gp_off_the_box_is_minus_infinity_with_a_finite_gradient():
    t = targets.get("gp_matern", num_data=30, seed=1)
    far = tf.constant([[13.0, 0.0, 0.0], [0.0, 0.0, -40.0]], tf.float32)
    assert np.all(t.log_prob(far).numpy() == -np.inf)
    assert np.all(np.isfinite(t.grad_log_prob(far).numpy()))


def test_logreg_with_laplace_prior():
    t = targets.get("logreg", num_data=200, num_features=3, seed=1, prior="laplace",
                    prior_variance=2.0)
    b = np.array([[0.3, -0.2, 0.5], [1.0, 0.4, -0.7]])
    x, y = t.data
    z = b @ x.T
    ref = (y * z - np.logaddexp(0, z)).sum(1) - np.abs(b).sum(1) / 1.0
    np.testing.assert_allclose(t.log_prob(tf.constant(b)).numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(t.grad_log_prob(tf.constant(b)), t.autodiff_grad_log_prob(
        tf.constant(b)), rtol=1e-10)
    with pytest.raises(ValueError, match="prior"):
        targets.get("logreg", prior="cauchy")
