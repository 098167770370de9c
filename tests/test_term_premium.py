"""Tests of the term-premium target (chapter 8): simulator, exact Euler–Maruyama
likelihood against an independent joint-Gaussian computation, gradient, bad input, and
recovery of known parameters."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

import hmc_lib
from hmc_lib import scale, targets
from hmc_lib.targets import term_premium as tp


@pytest.fixture(scope="module")
def small():
    return targets.get("term_premium", num_steps=12, seed=3)


def test_registry_and_attributes(small):
    assert "term_premium" in targets.names()
    assert small.dim == 7
    np.testing.assert_allclose(small.true_theta, tp.TRUE_THETA)
    np.testing.assert_allclose(tp.to_natural(small.true_phi), small.true_theta, rtol=1e-12)
    phi = tf.constant(small.true_phi, tf.float64)
    np.testing.assert_allclose(tp.to_natural(phi).numpy(), small.true_theta, rtol=1e-12)


def test_simulator_shapes():
    one = tp.simulate(tp.TRUE_THETA, 7, seed=1)
    assert one["r"].shape == (8,) and one["w"].shape == (8,) and one["p"].shape == (8, 9)
    batch = tp.simulate(np.tile(tp.TRUE_THETA, (3, 1)), 7, seed=1)
    assert batch["r"].shape == (3, 8) and batch["p"].shape == (3, 8, 9)
    again = tp.simulate(np.tile(tp.TRUE_THETA, (3, 1)), 7, seed=1)
    np.testing.assert_array_equal(batch["p"], again["p"])
    # initial log prices are −τ·y^τ of the model's curve
    np.testing.assert_allclose(
        one["p"][0], -tp.MATURITIES * tp.model_yields(tp.TRUE_THETA, 0.05, 1.0), rtol=1e-12)
    t = targets.get("term_premium", num_steps=5, num_datasets=4, theta="prior", seed=2)
    assert t.true_theta.shape == (4, 7) and t.data["p"].shape == (4, 6, 9)
    assert t.log_prob(tf.zeros([2, 4, 7], tf.float64) + tp.PRIOR_MEAN).shape == (2, 4)


def reference_log_prob(theta, data):
    """Prior + likelihood with scipy: the 11-d joint Gaussian of (Δr, ΔW, Δp) per step."""
    g, ss, kap, sr, om, sw, rb = theta
    tau, dt, se = data["maturities"], data["dt"], data["sigma_e"]
    m = tp.supply_duration()
    sig = ss * tau
    cov = np.zeros((11, 11))
    cov[0, 0], cov[1, 1] = sr**2 * dt, sw**2 * dt
    cov[2:, 0] = cov[0, 2:] = -sig * sr * dt
    cov[2:, 2:] = (np.outer(sig, sig) + se**2 * np.eye(9)) * dt
    total = 0.0
    r, w, p = data["r"], data["w"], data["p"]
    for k in range(len(r) - 1):
        mean = np.concatenate([[kap * (rb - r[k]) * dt, om * dt],
                               (r[k] + g * ss**2 * m * tau / w[k] - 0.5 * sig**2) * dt])
        x = np.concatenate([[r[k + 1] - r[k], w[k + 1] - w[k]], p[k + 1] - p[k]])
        total += stats.multivariate_normal.logpdf(x, mean, cov)
    phi = tp.to_unconstrained(theta)
    return total + np.sum(stats.norm.logpdf(phi, tp.PRIOR_MEAN, tp.PRIOR_SD))


def test_log_prob_matches_independent_computation(small):
    rng = np.random.default_rng(0)
    phis = small.true_phi + 0.1 * rng.standard_normal((3, 7))
    ours = small.log_prob(tf.constant(phis)).numpy()
    ref = [reference_log_prob(tp.to_natural(ph), small.data) for ph in phis]
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-8)


def test_batched_log_prob_matches_single():
    batch = targets.get("term_premium", num_steps=6, num_datasets=3, theta="prior", seed=4)
    phi = batch.true_phi + 0.05
    ours = batch.log_prob(tf.constant(phi[None])).numpy()[0]
    for d in range(3):
        data = {k: (v[d] if k in ("r", "w", "p") else v) for k, v in batch.data.items()}
        np.testing.assert_allclose(ours[d], reference_log_prob(tp.to_natural(phi[d]), data),
                                   rtol=1e-10)


def test_gradient_matches_finite_differences(small):
    phi = small.true_phi + 0.05
    grad = small.grad_log_prob(tf.constant(phi[None])).numpy()[0]
    h = 1e-6
    fd = np.array([(small.log_prob(tf.constant((phi + h * e)[None])).numpy()[0]
                    - small.log_prob(tf.constant((phi - h * e)[None])).numpy()[0]) / (2 * h)
                   for e in np.eye(7)])
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-4 * np.max(np.abs(fd)))


def test_bad_input():
    with pytest.raises(ValueError, match="num_steps"):
        tp.simulate(tp.TRUE_THETA, 0)
    with pytest.raises(ValueError, match="theta"):
        tp.simulate(tp.TRUE_THETA[:5], 10)
    bad = tp.TRUE_THETA.copy()
    bad[2] = -0.1
    with pytest.raises(ValueError, match="kappa"):
        targets.get("term_premium", theta=bad)
    with pytest.raises(ValueError, match="theta"):
        targets.get("term_premium", theta="posterior")
    with pytest.raises(ValueError, match="num_datasets"):
        targets.get("term_premium", num_datasets=0)
    with pytest.raises(ValueError, match="min_wealth"):
        tp.simulate(np.array([1.0, 0.01, 0.3, 0.01, -0.5, 0.01, 0.03]), 60)
    t = targets.get("term_premium", num_steps=5)
    with pytest.raises(ValueError, match="x"):
        t.log_prob(tf.zeros([2, 6], tf.float64))
    tb = targets.get("term_premium", num_steps=5, num_datasets=3)
    with pytest.raises(ValueError, match="x"):
        tb.log_prob(tf.zeros([2, 4, 7], tf.float64))


def test_laplace_on_a_gaussian():
    # exact on a Gaussian: mode = mean, cov = covariance
    cov = np.array([[1.0, 0.9], [0.9, 1.0]]) * 1e-2
    prec = np.linalg.inv(cov)
    mean = np.array([0.3, -2.0])
    lp = lambda x: -0.5 * tf.einsum("bi,ij,bj->b", x - mean, prec, x - mean)
    mode, c, ok = tp.laplace(lp, np.zeros((2, 2)))
    assert ok.all()
    np.testing.assert_allclose(mode, np.tile(mean, (2, 1)), atol=1e-8)
    np.testing.assert_allclose(c, np.tile(cov, (2, 1, 1)), rtol=1e-8)


@pytest.mark.statistical
def test_recovers_known_parameters():
    """The posterior (Laplace-whitened HMC) covers the true θ.

    Under the Bernstein–von Mises approximation the posterior mean minus the truth is
    N(0, posterior variance); with the Monte Carlo error of the mean added, each of the 7
    |z| exceeds Φ⁻¹(1 − 10⁻³/14) = 3.8 with probability 10⁻³/7 (Bonferroni: < 10⁻³ in all).
    """
    t = targets.get("term_premium", num_steps=120, seed=scale.seed(11))
    x0 = tp.to_unconstrained(tp.initial_estimates(t.data))[None]
    mode, cov, ok = tp.laplace(t.log_prob, x0)
    assert ok.all()
    log_prob_z, to_phi = tp.whiten(t.log_prob, mode[0], cov[0])
    chains = 16
    z0 = tf.random.stateless_normal([chains, 7], seed=[scale.seed(12), 0], dtype=tf.float64)
    kernel = hmc_lib.HMC(log_prob_z, step_size=0.15, num_leapfrog_steps=16)
    z, trace = hmc_lib.sample(kernel, 300, z0, num_burnin_steps=200, seed=scale.seed(13))
    phi = to_phi(z).numpy()                                     # [draws, chains, 7]
    assert trace["is_accepted"].mean() > 0.5
    mean, sd = phi.mean((0, 1)), phi.std((0, 1))
    mcse = phi.mean(0).std(0, ddof=1) / np.sqrt(chains)
    z_err = (mean - t.true_phi) / np.sqrt(sd**2 + mcse**2)
    bound = stats.norm.ppf(1 - 1e-3 / 14)
    assert np.all(np.abs(z_err) < bound), dict(zip(tp.NAMES, np.round(z_err, 2)))


# ---------------------------------------------------------------------------------------
# latent wealth (pseudo-marginal)

def wealth_block(phi, data):
    """log p(ΔW | θ) of the observed wealth path (scipy)."""
    th = tp.to_natural(phi)
    dw, dt = np.diff(data["w"]), data["dt"]
    return np.sum(stats.norm.logpdf(dw, th[4] * dt, th[5] * np.sqrt(dt)))


def test_latent_wealth_on_the_observed_path_is_the_observed_likelihood():
    """A proposal path equal to the observed W has weight p(r, p | W_obs, θ) exactly."""
    pm = targets.get("term_premium_latent_wealth", num_steps=8, num_importance=1, seed=5)
    obs = pm.observed
    phi = obs.true_phi + 0.03
    th, dt = tp.to_natural(phi), obs.data["dt"]
    u = (np.diff(obs.data["w"])[:-1] - th[4] * dt) / (th[5] * np.sqrt(dt))
    lhat = pm.log_likelihood_hat(tf.constant(phi[None]), tf.constant(u[None, :, None]))
    full = obs.log_likelihood_fn(tf.constant(phi[None])).numpy()[0]
    np.testing.assert_allclose(lhat.numpy()[0], full - wealth_block(phi, obs.data),
                               rtol=1e-10)


def test_latent_wealth_weights_match_a_loop():
    pm = targets.get("term_premium_latent_wealth", num_steps=6, num_importance=3, seed=6)
    data = pm.data
    phi = pm.true_phi - 0.02
    th, dt = tp.to_natural(phi), data["dt"]
    u = np.random.default_rng(1).standard_normal(pm.u_shape)
    lw = pm.log_weights(tf.constant(phi[None]), tf.constant(u[None])).numpy()[0, 0]
    assert pm.u_shape == (5, 3) and lw.shape == (3,)
    for i in range(3):
        w = data["w"][0] + np.concatenate(
            [[0.0], np.cumsum(th[4] * dt + th[5] * np.sqrt(dt) * u[:, i])])
        path = dict(data, w=np.concatenate([w, [w[-1]]]))      # W_K is not used
        ref = reference_log_prob(th, path) - wealth_block(phi, path)
        ref -= np.sum(stats.norm.logpdf(phi, tp.PRIOR_MEAN, tp.PRIOR_SD))
        np.testing.assert_allclose(lw[i], ref, rtol=1e-10)


def test_latent_wealth_bad_input():
    with pytest.raises(ValueError, match="num_steps"):
        targets.get("term_premium_latent_wealth", num_steps=1)
    with pytest.raises(ValueError, match="num_importance"):
        targets.get("term_premium_latent_wealth", num_importance=0)
