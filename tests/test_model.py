"""`hmc_lib.Model`: structured and constrained states, and TFP joint distributions, flattened
to ℝⁿ for every kernel; draws come back in the model's structure and constrained space."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import hmc_lib
from hmc_lib import diagnostics, scale

tfd, tfb = tfp.distributions, tfp.bijectors


def test_the_flattening_round_trips_and_adds_the_log_jacobian():
    model = hmc_lib.Model(lambda mu, sigma: -0.5 * mu**2 - sigma,
                          [tf.zeros([]), tf.ones([])], bijectors=[None, tfb.Exp()])
    assert model.dim == 2 and model.names == ["x0", "x1"]
    state = [tf.constant([0.5, -1.0]), tf.constant([2.0, 0.1])]
    z = model.to_flat(state)
    np.testing.assert_allclose(z.numpy(), [[0.5, np.log(2.0)], [-1.0, np.log(0.1)]], rtol=1e-6)
    back = model.from_flat(z)
    np.testing.assert_allclose(back[1].numpy(), [2.0, 0.1], rtol=1e-6)
    # log π(x(z)) + log|dx/dz|, with dx/dz = e^z for the scale
    np.testing.assert_allclose(model.log_prob(z).numpy(),
                               [-0.125 - 2.0 + np.log(2.0), -0.5 - 0.1 + np.log(0.1)],
                               rtol=1e-5)


def test_bad_models_and_states_are_clear_errors():
    with pytest.raises(TypeError, match="log_prob_fn"):
        hmc_lib.Model(3, [tf.zeros([])])
    with pytest.raises(TypeError, match="list, tuple, dict"):
        hmc_lib.Model(lambda x: x, tf.zeros([2]))
    with pytest.raises(ValueError, match="bijectors"):
        hmc_lib.Model(lambda a: a, [tf.zeros([])], bijectors=[None, None])
    model = hmc_lib.Model(lambda a, b: a + tf.reduce_sum(b, -1), [tf.zeros([]), tf.zeros([3])])
    with pytest.raises(ValueError, match="2 variables"):
        model.to_flat([tf.zeros([4])])
    with pytest.raises(ValueError, match="`x1` must have shape"):
        model.to_flat([tf.zeros([4]), tf.zeros([4, 2])])
    with pytest.raises(TypeError, match="JointDistribution"):
        hmc_lib.Model.from_joint_distribution(tfd.Normal(0.0, 1.0))


def _split_model():
    def log_prob(mu, eta):
        return -0.5 * mu**2 - 0.5 * tf.reduce_sum((eta - mu[..., None]) ** 2, -1)
    return hmc_lib.Model(log_prob, {"mu": tf.zeros([]), "eta": tf.zeros([3])})


def test_the_structured_model_gives_the_chain_of_the_hand_flattened_one():
    model = _split_model()
    hand = lambda x: (-0.5 * x[..., 0] ** 2
                      - 0.5 * tf.reduce_sum((x[..., 1:] - x[..., :1]) ** 2, -1))
    x0 = tf.random.stateless_normal([4, 4], [3, 4])
    a, ta = hmc_lib.sample(hmc_lib.NUTS(model, 0.4), 50, {"mu": x0[:, 0], "eta": x0[:, 1:]},
                           seed=5)
    b, tb = hmc_lib.sample(hmc_lib.NUTS(hand, 0.4), 50, x0, seed=5)
    assert set(a) == {"mu", "eta"} and a["eta"].shape == (50, 4, 3)
    np.testing.assert_allclose(a["mu"], b[..., 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a["eta"], b[..., 1:], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ta["is_accepted"], tb["is_accepted"])
    idata = diagnostics.to_inference_data(a, ta)
    assert set(idata.posterior.data_vars) == {"mu", "eta"}


@pytest.mark.statistical
def test_a_constrained_conjugate_posterior_from_a_joint_distribution(mc_check):
    # rate ~ Gamma(2, 1), y_i ~ Poisson(rate), i = 1..20: rate | y ~ Gamma(2 + Σy, 1 + 20).
    # The sampler runs on log(rate) (the default event-space bijector) with the Jacobian.
    y = np.random.default_rng(0).poisson(3.0, size=20).astype(np.float32)
    jd = tfd.JointDistributionNamed(dict(
        rate=tfd.Gamma(2.0, 1.0),
        y=lambda rate: tfd.Sample(tfd.Poisson(rate), 20)))
    model = hmc_lib.Model.from_joint_distribution(jd, y=y)
    assert model.dim == 1 and model.names == ["rate"]
    alpha, beta = 2.0 + y.sum(), 1.0 + 20.0
    chains = 32
    init = model.initial_state(chains, seed=scale.seed(1))
    assert np.all(init["rate"].numpy() > 0)
    warm = hmc_lib.warmup(lambda h, m: hmc_lib.NUTS(model, h, mass=m), init, 200,
                          seed=scale.seed(2))
    assert set(warm.state) == {"rate"}
    draws, trace = hmc_lib.sample(hmc_lib.NUTS(model, warm.step_size, mass=warm.mass), 400,
                                  warm.state, seed=scale.seed(3))
    rate = draws["rate"][..., None]
    assert np.all(rate > 0)
    # 32 chains x 400 draws, between-chain t statistics (family-wise level 1e-4)
    mc_check(rate, [alpha / beta], [alpha / beta**2])


def test_eight_schools_from_tfd_samples_in_its_own_structure():
    y = np.array([28., 8., -3., 7., -1., 1., 18., 12.], np.float32)
    sigma = np.array([15., 10., 16., 11., 9., 11., 10., 18.], np.float32)
    jd = tfd.JointDistributionNamed(dict(
        mu=tfd.Normal(0.0, 5.0), tau=tfd.HalfCauchy(0.0, 5.0),
        eta=tfd.Sample(tfd.Normal(0.0, 1.0), 8),
        y=lambda mu, tau, eta: tfd.Independent(tfd.Normal(mu[..., None] + tau[..., None] * eta,
                                                          sigma), 1)))
    pinned = jd.experimental_pin(y=y)
    kernel = hmc_lib.NUTS(pinned, 0.3)                  # a pinned joint distribution directly
    init = hmc_lib.Model.from_joint_distribution(pinned).initial_state(4, seed=1)
    draws, trace = hmc_lib.sample(kernel, 20, init, seed=2)
    assert set(draws) == {"mu", "tau", "eta"} and draws["eta"].shape == (20, 4, 8)
    assert np.all(draws["tau"] > 0)
