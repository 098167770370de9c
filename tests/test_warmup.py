"""`hmc_lib.warmup` (Stan's windowed warm-up) and the kernels' diagonal mass matrix."""

import numpy as np
import pytest
import tensorflow as tf

import hmc_lib
from hmc_lib import diagnostics
from hmc_lib.kernels.warmup import regularized_variance, window_schedule
from hmc_lib.pm.kernel import PMHMC, PMNUTS
from hmc_lib.scale import seed
from hmc_lib.targets import pseudo_marginal as pmt

CHAINS = 16
SD = np.geomspace(0.1, 10.0, 6)             # scales spanning 100x: variances 1e-2 .. 1e2


@pytest.fixture(scope="module")
def wide():
    return hmc_lib.targets.get("gaussian", variance=SD ** 2)


def _exact_start(target, s):
    return tf.cast(target.sample(CHAINS, seed=s), tf.float32)


@pytest.fixture(scope="module")
def nuts_warm(wide):
    factory = lambda step_size, mass: hmc_lib.NUTS(wide, step_size, max_tree_depth=8, mass=mass)
    return hmc_lib.warmup(factory, _exact_start(wide, seed(1)), 600, seed=seed(2),
                          target_accept=0.8)


def test_window_schedule_is_stans():
    w = window_schedule(1000)
    assert w == [(0, 75, False), (75, 100, True), (100, 150, True), (150, 250, True),
                 (250, 450, True), (450, 950, True), (950, 1000, False)]
    # too short for the buffers: 15% / 75% / 10%
    assert window_schedule(100) == [(0, 15, False), (15, 90, True), (90, 100, False)]
    np.testing.assert_allclose(regularized_variance(np.array([2.0]), 95), 0.95 * 2 + 5e-5)


@pytest.mark.statistical
def test_warmup_learns_the_variances(wide, nuts_warm):
    """1/mass is the regularised variance of the last slow window, pooled over 16 independent
    chains started from exact draws; each chain's own variance estimate is an independent
    replicate, so their spread gives the standard error (t with 15 d.o.f., Bonferroni)."""
    state, step_size, mass, trace = nuts_warm
    inv_mass = 1.0 / mass
    np.testing.assert_allclose(inv_mass, trace["inverse_mass"][-1], rtol=1e-6)
    chain_var = trace["chain_variance"][-1]                       # [chains, dim]
    se = chain_var.std(0, ddof=1) / np.sqrt(CHAINS)
    z = (inv_mass - SD ** 2) / se
    bound = diagnostics.moment_bound(CHAINS, len(SD))
    assert np.all(np.abs(z) < bound), (z, bound)
    assert np.all(se < 0.2 * SD ** 2)                              # the check has power
    assert trace["windows"][-2] == (75 + 25 + 50 + 100, 550, True)


@pytest.mark.statistical
def test_warmup_reaches_target_acceptance_and_is_invariant(wide, nuts_warm):
    state, step_size, mass, trace = nuts_warm
    kernel = hmc_lib.NUTS(wide, step_size, max_tree_depth=8, mass=mass)
    samples, tr = hmc_lib.sample(kernel, 300, state, seed=seed(3))
    accept = np.exp(tr["log_accept_ratio"])                        # Stan's accept_stat
    chain_acc = accept.mean(0)
    se = chain_acc.std(ddof=1) / np.sqrt(CHAINS)
    # dual averaging aims the step size at 0.8; its averaged iterate lands near it, not on it
    # (Hoffman & Gelman 2014): allow 0.08 of bias plus 4.5 standard errors.
    assert abs(chain_acc.mean() - 0.8) < 0.08 + 4.5 * se, (chain_acc.mean(), se)
    assert tr["is_divergent"].sum() == 0
    diagnostics.assert_moments(samples, np.zeros(len(SD)), SD ** 2)
    # with the learned mass NUTS needs short trees; with the unit mass the 100x spread of
    # scales forces a small step and long trees
    assert tr["grad_evals"].mean() < 16


@pytest.mark.statistical
def test_warmup_hmc_step_size_only(wide):
    """`adapt_mass=False` adapts ε alone; the mass stays 1, ε is set by the smallest scale."""
    factory = lambda step_size, mass: hmc_lib.HMC(wide, step_size, 3, mass=mass)
    state, eps, mass, trace = hmc_lib.warmup(factory, _exact_start(wide, seed(4)), 200,
                                             seed=seed(5), adapt_mass=False)
    np.testing.assert_array_equal(mass, np.ones(len(SD)))
    assert trace["inverse_mass"] == []
    assert 0.02 < eps < 0.3, eps          # stability needs ε < 2·0.1; 0.8 acceptance less
    assert trace["step_size"].shape == (200,) and trace["grad_evals"].shape == (200, CHAINS)


@pytest.mark.statistical
def test_mass_hmc_invariant(wide):
    kernel = hmc_lib.HMC(wide, 0.7, 2, mass=1.0 / SD ** 2)
    samples, tr = hmc_lib.sample(kernel, 400, _exact_start(wide, seed(6)), seed=seed(7))
    diagnostics.assert_moments(samples, np.zeros(len(SD)), SD ** 2)
    assert 0.6 < tr["is_accepted"].mean() < 1.0


@pytest.mark.statistical
def test_mass_nuts_invariant_float64(wide):
    x0 = tf.cast(wide.sample(CHAINS, seed=seed(8)), tf.float64)
    kernel = hmc_lib.NUTS(wide, 0.8, max_tree_depth=6, mass=np.tile(1.0 / SD ** 2, (CHAINS, 1)))
    samples, tr = hmc_lib.sample(kernel, 300, x0, seed=seed(9))
    assert samples.dtype == np.float64
    diagnostics.assert_moments(samples, np.zeros(len(SD)), SD ** 2)


def test_unit_mass_is_the_identity_path(wide):
    """`mass=1` gives the chain of `mass=None` (which is TFP's, see test_hmc) to round-off."""
    x0 = _exact_start(wide, 10)
    a = hmc_lib.sample(hmc_lib.HMC(wide, 0.05, 5), 20, x0, seed=11)[0]
    b = hmc_lib.sample(hmc_lib.HMC(wide, 0.05, 5, mass=np.ones(len(SD))), 20, x0, seed=11)[0]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_pm_warmup_runs_on_theta_only():
    gre = pmt.gaussian_random_effects()
    theta0 = tf.constant(np.tile(gre.posterior_mean, (2, 1)), tf.float32)
    u0 = tf.random.stateless_normal([2, *gre.u_shape], seed=[1, 1])
    factory = lambda step_size, mass: PMHMC(gre, step_size, 3, mass=mass)
    state, eps, mass, trace = hmc_lib.warmup(factory, [theta0, u0], 40, seed=3)
    assert isinstance(state, list) and state[1].shape == u0.shape
    assert mass.shape == (gre.theta_dim,) and np.all(mass > 0) and eps > 0
    factory = lambda step_size, mass: PMNUTS(gre, step_size, max_tree_depth=3, mass=mass)
    state, eps, mass2, trace = hmc_lib.warmup(factory, state, 20, seed=3, initial_mass=mass,
                                              adapt_mass=False)
    np.testing.assert_allclose(mass2, mass, rtol=1e-6)
    assert trace["inverse_mass"] == []


def test_mass_bad_input(wide):
    for bad in (0.0, -1.0, [1.0, 1.0, 1.0, 1.0, 1.0, np.nan]):
        with pytest.raises(ValueError, match="mass"):
            hmc_lib.HMC(wide, 0.1, 3, mass=bad)
        with pytest.raises(ValueError, match="mass"):
            hmc_lib.NUTS(wide, 0.1, mass=bad)
    with pytest.raises(ValueError, match="mass"):
        hmc_lib.HMC(wide, 0.1, 3, mass=np.ones(5))
    with pytest.raises(ValueError, match="mass"):
        hmc_lib.NUTS(wide, 0.1, mass=np.ones((2, 2, 6)))
    with pytest.raises(ValueError, match="mass"):     # per chain, but 3 chains for 16
        hmc_lib.HMC(wide, 0.1, 3, mass=np.ones((3, 6))).bootstrap_results(tf.zeros([16, 6]))
    gre = pmt.gaussian_random_effects()
    with pytest.raises(ValueError, match="mass"):
        PMHMC(gre, 0.1, 3, mass=np.ones(gre.theta_dim + 1))
    with pytest.raises(ValueError, match="mass"):
        PMNUTS(gre, 0.1, mass=-np.ones(gre.theta_dim))


def test_warmup_bad_input(wide):
    factory = lambda step_size, mass: hmc_lib.HMC(wide, step_size, 3, mass=mass)
    x0 = tf.zeros([4, 6])
    with pytest.raises(TypeError, match="kernel_factory"):
        hmc_lib.warmup("not callable", x0, 100, seed=1)
    with pytest.raises(ValueError, match="num_warmup"):
        hmc_lib.warmup(factory, x0, 0, seed=1)
    with pytest.raises(ValueError, match="num_warmup"):
        hmc_lib.warmup(factory, x0, 10, seed=1)
    with pytest.raises(ValueError, match="target_accept"):
        hmc_lib.warmup(factory, x0, 100, seed=1, target_accept=1.2)
    with pytest.raises(ValueError, match="initial_step_size"):
        hmc_lib.warmup(factory, x0, 100, seed=1, initial_step_size=-0.1)
    with pytest.raises(ValueError, match="initial_state"):
        hmc_lib.warmup(factory, tf.zeros([6]), 100, seed=1)
    with pytest.raises(ValueError, match="initial_mass"):
        hmc_lib.warmup(factory, x0, 100, seed=1, initial_mass=np.ones(5))
    with pytest.raises(ValueError, match="initial_mass"):
        hmc_lib.warmup(factory, x0, 100, seed=1, initial_mass=np.zeros(6))
    with pytest.raises(ValueError, match="init_buffer"):
        hmc_lib.warmup(factory, x0, 100, seed=1, init_buffer=-1)
