"""The library's multinomial NUTS: invariance, agreement with TFP's NUTS, reporting, bad input."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import hmc_lib
from hmc_lib import diagnostics
from hmc_lib.kernels.nuts import NUTS
from hmc_lib.targets import analytic
from hmc_lib.scale import seed

CHAINS = 16      # independent chains from exact draws: between-chain standard errors


def _assert_moments(samples, target):
    """Mean and variance within the between-chain Monte Carlo error (Bonferroni, 1e-4)."""
    return diagnostics.assert_moments(samples, target.mean, target.variance)


@pytest.fixture(scope="module")
def icg():
    return hmc_lib.targets.get("icg50")


@pytest.fixture(scope="module")
def ours_and_tfp(icg):
    x0 = icg.sample(CHAINS, seed=seed(1))
    ours = hmc_lib.sample(NUTS(icg, 0.15, max_tree_depth=8), 300, x0, seed=seed(3))
    theirs = hmc_lib.sample(
        tfp.mcmc.NoUTurnSampler(icg.log_prob, 0.15, max_tree_depth=8), 300, x0,
        seed=seed(3),
        trace_fn=lambda s, r: dict(grad_evals=r.leapfrogs_taken, log_accept_ratio=r.log_accept_ratio))
    return ours, theirs


@pytest.mark.statistical
def test_nuts_invariant_icg50(icg, ours_and_tfp):
    (samples, trace), _ = ours_and_tfp
    _assert_moments(samples, icg)
    assert trace["is_divergent"].sum() == 0
    assert np.all(trace["tree_depth"] <= 8) and np.all(trace["grad_evals"] <= 255)
    # grad_evals counts the leapfrog steps of the tree: between 2^(depth-1) and 2^depth - 1
    d, g = trace["tree_depth"], trace["grad_evals"]
    assert np.all(g <= 2 ** d - 1) and np.all(g >= 2 ** (d - 1))


@pytest.mark.statistical
def test_nuts_agrees_with_tfp(icg, ours_and_tfp):
    (s1, t1), (s2, t2) = ours_and_tfp
    _assert_moments(s2, icg)   # TFP's is right too: both sample the target
    # and the trees are alike: mean steps per transition and mean acceptance statistic
    g1, g2 = t1["grad_evals"].mean(), t2["grad_evals"].mean()
    assert abs(g1 / g2 - 1) < 0.1, (g1, g2)
    a1, a2 = np.exp(t1["log_accept_ratio"]).mean(), np.exp(t2["log_accept_ratio"]).mean()
    assert abs(a1 - a2) < 0.03, (a1, a2)
    # two-sample check of the means, with between-chain standard errors (16 chains each;
    # the t bound with 15 d.o.f. is conservative for the two-sample statistic)
    m1, m2 = s1.mean(0), s2.mean(0)                                     # [chains, 50]
    se = np.sqrt(m1.var(0, ddof=1) / CHAINS + m2.var(0, ddof=1) / CHAINS)
    z = (m1.mean(0) - m2.mean(0)) / se
    assert np.all(np.abs(z) < diagnostics.moment_bound(CHAINS, 50)), z


@pytest.mark.statistical
def test_nuts_correlated_gaussian_float64():
    cov = np.array([[1.0, 0.95], [0.95, 1.0]])
    t = analytic.gaussian(mean=[1.0, -2.0], covariance=cov)
    x0 = t.sample(CHAINS, seed=seed(4), dtype=tf.float64)
    samples, trace = hmc_lib.sample(NUTS(t, 0.25, max_tree_depth=6), 400, x0, seed=seed(5))
    assert samples.dtype == np.float64
    _assert_moments(samples, t)
    # the correlation, per chain: its between-chain standard error bounds the error
    corr = np.array([np.corrcoef(samples[:, c].T)[0, 1] for c in range(CHAINS)])
    z = (corr.mean() - 0.95) / (corr.std(ddof=1) / np.sqrt(CHAINS))
    assert abs(z) < diagnostics.moment_bound(CHAINS, 1), (corr.mean(), z)


@pytest.mark.statistical
def test_nuts_with_tfp_step_size_adaptation():
    t = hmc_lib.targets.get("gaussian", dim=10)
    kernel = tfp.mcmc.DualAveragingStepSizeAdaptation(
        NUTS(t, 1.5, max_tree_depth=6), num_adaptation_steps=300, target_accept_prob=0.8)
    _, trace = hmc_lib.sample(kernel, 400, tf.zeros([4, 10]), num_burnin_steps=300,
                              seed=seed(2))
    # dual averaging lands near its target, not on it: 0.1 either side (the Monte Carlo
    # error of this mean over 1600 transitions is about 0.005)
    accept = np.exp(trace["log_accept_ratio"]).mean()
    assert 0.7 < accept < 0.9, accept
    assert np.all(trace["step_size"] < 1.5)


def test_nuts_divergence_counted_and_rejected():
    t = hmc_lib.targets.get("gaussian", dim=4)
    x0 = tf.ones([3, 4])
    samples, trace = hmc_lib.sample(NUTS(t, 30.0, max_tree_depth=5), 10, x0, seed=1)
    assert trace["is_divergent"].all() and not trace["is_accepted"].any()
    np.testing.assert_array_equal(samples, np.ones([10, 3, 4], np.float32))


def test_nuts_same_seed_same_chain():
    t = hmc_lib.targets.get("gaussian", dim=3)
    k = NUTS(t, 0.5, max_tree_depth=5)
    a = hmc_lib.sample(k, 30, tf.zeros([2, 3]), seed=9)[0]
    b = hmc_lib.sample(k, 30, tf.zeros([2, 3]), seed=9, chunk_size=7)[0]
    np.testing.assert_array_equal(a, b)


def test_nuts_bad_input():
    t = hmc_lib.targets.get("gaussian", dim=3)
    with pytest.raises(ValueError, match="step_size"):
        NUTS(t, 0.0)
    with pytest.raises(ValueError, match="max_tree_depth"):
        NUTS(t, 0.1, max_tree_depth=0)
    with pytest.raises(ValueError, match="max_tree_depth"):
        NUTS(t, 0.1, max_tree_depth=40)
    with pytest.raises(TypeError, match="max_tree_depth"):
        NUTS(t, 0.1, max_tree_depth=2.5)
    with pytest.raises(TypeError, match="target_log_prob_fn"):
        NUTS("not a function", 0.1)
    with pytest.raises(ValueError, match="current_state"):
        NUTS(t, 0.1).bootstrap_results(tf.zeros([2, 4]))
    with pytest.raises(ValueError, match="current_state"):
        NUTS(t, 0.1).bootstrap_results(tf.zeros([3]))


def test_nuts_transition_divergence_start_or_range():
    """On a line where H falls by 100 per unit in both directions from the start, no leaf's
    H(leaf) − H(start) is positive (no "start" divergence: the tree reaches its maximum
    depth), but the spread of H over the trajectory passes 10 once it spans more than 0.1
    (a "range" divergence: the tree stops before its maximum depth)."""
    from hmc_lib.kernels.nuts import Phase, nuts_transition
    x0 = tf.zeros([2, 1], tf.float64)
    start = Phase((x0,), (tf.ones_like(x0),), tf.zeros([2], tf.float64), (tf.zeros_like(x0),))
    step = lambda ph, eps: ph._replace(position=(ph.position[0] + eps[:, None] * ph.momentum[0],))
    energy = lambda ph: -100.0 * tf.abs(ph.position[0][:, 0])
    seed_ = tf.constant([1, 2], tf.int32)
    _, info = nuts_transition(start, seed_, 0.05, step, energy, 4, 10.0)
    assert not info.is_divergent.numpy().any()
    np.testing.assert_array_equal(info.tree_depth, [4, 4])
    _, info = nuts_transition(start, seed_, 0.05, step, energy, 4, 10.0, divergence="range")
    assert info.is_divergent.numpy().all()
    assert np.all(info.tree_depth.numpy() < 4)
    with pytest.raises(ValueError, match="divergence"):
        nuts_transition(start, seed_, 0.05, step, energy, 4, 10.0, divergence="leaf")
