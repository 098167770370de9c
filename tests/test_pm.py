"""Pseudo-marginal targets, the Strang splitting, PM-HMC and PM-NUTS (chapter 4)."""

import numpy as np
import pytest
import tensorflow as tf

import hmc_lib
from hmc_lib import diagnostics, integrators
from hmc_lib.pm.kernel import PMHMC, PMNUTS
from hmc_lib.scale import seed
from hmc_lib.targets import pseudo_marginal as pmt
from hmc_lib.targets.pseudo_marginal import PseudoMarginalTarget


def _point(target, chains, seed, spread=0.5, dtype=tf.float64):
    rng = np.random.default_rng(seed)
    theta = target.true_theta[None] + spread * rng.standard_normal((chains, target.theta_dim))
    u = rng.standard_normal((chains, *target.u_shape))
    return tf.constant(theta, dtype), tf.constant(u, dtype)


@pytest.fixture(scope="module")
def small_glmm():
    return hmc_lib.targets.get("glmm", num_individuals=40, num_importance=16, seed=1)


@pytest.fixture(scope="module")
def gre():
    return pmt.gaussian_random_effects()


# --- the target and its gradients ---------------------------------------------------------

@pytest.mark.statistical
def test_glmm_registry_and_defaults():
    t = hmc_lib.targets.get("glmm", num_individuals=7, num_importance=5)
    assert isinstance(t, PseudoMarginalTarget)
    assert t.theta_dim == 13 and t.u_shape == (7, 5)
    assert t.data["Z"].shape == (7, 6, 8) and t.data["y"].shape == (7, 6)
    # λ are precisions: true θ holds log 10, log 3 and logit 0.8
    np.testing.assert_allclose(t.true_theta[8:], [0.0, 3.0, np.log(10), np.log(3), np.log(4)])
    # the simulated random effects have the mixture's variances (1/λ), not 1/λ²
    # (standard errors of the variances: 0.0011 and 0.0075; the bounds are 9 and 4.5 of them)
    big = pmt.simulate_glmm(num_individuals=20000, seed=seed(3))[0]
    x, c = big["X"], big["component"]
    assert abs(np.var(x[c == 0]) - 0.1) < 0.01 and abs(np.var(x[c == 1]) - 1 / 3) < 0.034
    # same seed, same data
    np.testing.assert_array_equal(t.data["y"], hmc_lib.targets.get(
        "glmm", num_individuals=7, num_importance=5).data["y"])


@pytest.mark.statistical
def test_glmm_covariate_scale():
    # default Z ~ N(0, I/p): Var(Zᵀβ) ≈ |β|²/p; the rest of the simulation is unchanged
    p = 8
    d_def, th_def = pmt.simulate_glmm(num_individuals=4000, seed=seed(5))
    d_one, th_one = pmt.simulate_glmm(num_individuals=4000, seed=seed(5), covariate_scale=1.0)
    np.testing.assert_allclose(d_def["Z"], d_one["Z"] / np.sqrt(p), rtol=1e-15, atol=0)
    np.testing.assert_array_equal(th_def, th_one)
    np.testing.assert_array_equal(d_def["X"], d_one["X"])
    sd = d_def["Z"].std()
    assert abs(sd - 1 / np.sqrt(p)) < 0.01
    beta = th_def[:p]
    zb = d_def["Z"] @ beta
    assert abs(zb.var() / (beta @ beta / p) - 1) < 0.05
    with pytest.raises(ValueError, match="covariate_scale"):
        pmt.glmm(num_individuals=3, num_importance=2, covariate_scale=-1.0)


def test_glmm_label_swap_is_a_symmetry_and_relabel_undoes_it():
    t = pmt.glmm(num_individuals=30, num_importance=4, seed=2)
    theta = t.true_theta.copy()
    swapped = theta.copy()
    swapped[-5:] = [theta[-4], theta[-5], theta[-2], theta[-3], -theta[-1]]
    # the exact likelihood and the prior are invariant: the posterior is label-symmetric
    assert abs(t.exact_log_likelihood(theta) - t.exact_log_likelihood(swapped)) < 1e-9
    assert abs(float(t.log_prior(tf.constant(theta))) - float(t.log_prior(tf.constant(swapped)))) < 1e-12
    draws = np.stack([theta, swapped, swapped])[:, None]              # [3, 1, 13]
    out, sw = pmt.glmm_relabel(draws)
    np.testing.assert_array_equal(sw[:, 0], [False, True, True])
    np.testing.assert_allclose(out, np.stack([theta] * 3)[:, None], rtol=0, atol=1e-15)
    assert np.all(draws[1, 0] == swapped)                             # input left unchanged


@pytest.mark.statistical
def test_glmm_random_effect_posterior_matches_monte_carlo():
    # X_t | y_t, θ by quadrature against self-normalised importance sampling from the prior
    data, theta = pmt.simulate_glmm(num_individuals=5, seed=seed(6))
    q = pmt.glmm_random_effect_posterior(theta, data)
    rng = np.random.default_rng(seed(0))
    M = 400_000
    second = rng.uniform(size=M) >= 0.8
    x = np.where(second, 3.0 + rng.standard_normal(M) / np.sqrt(3.0),
                 rng.standard_normal(M) / np.sqrt(10.0))
    eta = x[None, None, :] + (data["Z"] @ theta[:8])[:, :, None]
    log_g = np.sum(data["y"][..., None] * eta - np.logaddexp(0.0, eta), axis=1)   # [T, M]
    w = np.exp(log_g - log_g.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    ess = 1.0 / np.sum(w ** 2, 1)
    mean = w @ x
    sd = np.sqrt(w @ x ** 2 - mean ** 2)
    p2 = w @ second
    # 5 Monte Carlo standard errors (from the importance-sampling ESS; 15 tests)
    assert np.all(np.abs(mean - q["mean"]) < 5 * sd / np.sqrt(ess))
    assert np.all(np.abs(p2 - q["p_second"]) < 5 * np.sqrt(p2 * (1 - p2) / ess) + 1e-3)
    np.testing.assert_allclose(q["sd"], sd, rtol=0.05)


def test_manual_gradient_matches_autodiff(small_glmm):
    theta, u = _point(small_glmm, 4, seed=0)
    v_auto, gt_auto, gu_auto = small_glmm.autodiff_value_and_grad(theta, u)
    v_man, gt_man, gu_man = small_glmm.value_and_grad(theta, u)
    np.testing.assert_allclose(v_man, v_auto, rtol=1e-12, atol=0)
    np.testing.assert_allclose(gt_man, gt_auto, rtol=1e-6, atol=1e-6 * np.abs(gt_auto).max())
    np.testing.assert_allclose(gu_man, gu_auto, rtol=1e-6, atol=1e-6 * np.abs(gu_auto).max())
    # the manual gradient is a gradient: it predicts a finite difference of log p̂
    d_theta = tf.constant(np.random.default_rng(1).standard_normal(theta.shape) * 1e-6)
    diff = small_glmm.log_joint(theta + d_theta, u) - small_glmm.log_joint(theta - d_theta, u)
    np.testing.assert_allclose(diff, 2 * tf.reduce_sum(gt_man * d_theta, -1), rtol=1e-5)


def test_log_likelihood_hat_is_logsumexp_minus_log_n(small_glmm):
    theta, u = _point(small_glmm, 2, seed=2)
    lw = small_glmm.log_weights(theta, u).numpy()
    n = lw.shape[-1]
    mx = lw.max(-1, keepdims=True)
    expected = np.sum(np.log(np.mean(np.exp(lw - mx), -1)) + mx[..., 0], -1)
    np.testing.assert_allclose(small_glmm.log_likelihood_hat(theta, u), expected, rtol=1e-12)
    assert n == 16
    # log-sum-exp: far from the data log p̂ stays finite where exp(w) underflows
    far = theta + tf.constant([0.0] * 8 + [40.0, -40.0, 5.0, 5.0, 0.0], tf.float64)
    assert np.all(np.isfinite(small_glmm.log_joint(far, u)))


@pytest.mark.statistical
@pytest.mark.parametrize("which", ["gre", "glmm"])
def test_estimator_is_unbiased(which):
    """E_u[p̂(y | θ, u)] = p(y | θ): the mean of p̂/p over many u is 1 within Monte Carlo error."""
    if which == "gre":
        t = pmt.gaussian_random_effects(num_individuals=5)
        theta = t.posterior_mean
        exact = float(t.exact_log_likelihood(tf.constant(theta[None]))[0])
    else:  # GLMM against 1-d quadrature of each individual's integral
        t = pmt.glmm(num_individuals=5, num_importance=32, seed=4)
        theta = t.true_theta
        exact = t.exact_log_likelihood(theta)
    m = 20000
    u = tf.random.stateless_normal([m, *t.u_shape], seed=[seed(7), 7], dtype=tf.float64)
    ll = t.log_likelihood_hat(tf.constant(np.tile(theta, (m, 1))), u).numpy()
    ratio = np.exp(ll - exact)
    se = ratio.std() / np.sqrt(m)
    assert abs(ratio.mean() - 1.0) < 4.5 * se, (ratio.mean(), se)
    assert se < 0.02          # the check has power
    assert ll.mean() < exact   # while log p̂ is biased low (Jensen)


# --- the integrator ------------------------------------------------------------------------

def _gradient_fn(target):
    return lambda th, uu: target.grad(th, uu)


@pytest.mark.parametrize("order", ["ABA", "BAB"])
def test_pm_strang_reversible_in_all_variables(small_glmm, order):
    theta, u = _point(small_glmm, 3, seed=3)
    rho = tf.random.stateless_normal(theta.shape, [1, 1], dtype=tf.float64)
    p = tf.random.stateless_normal(u.shape, [1, 2], dtype=tf.float64)
    fwd = integrators.pm_strang(theta, rho, u, p, _gradient_fn(small_glmm), 0.02, 25, order=order)
    th1, r1, u1, p1 = fwd
    assert np.max(np.abs(u1 - u)) > 0.1 and np.max(np.abs(th1 - theta)) > 1e-3  # it moved
    back = integrators.pm_strang(th1, -r1, u1, -p1, _gradient_fn(small_glmm), 0.02, 25, order=order)
    th2, r2, u2, p2 = back
    for got, want in ((th2, theta), (-r2, rho), (u2, u), (-p2, p)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def test_chen_u_reversibility_failure_reproduced(small_glmm):
    """Chen §3.5.1 saw u not return (10 steps of h = 0.01, error > 1). Reproduced by reversing
    only ρ: the (u, p) rotation is reversed only if p is negated too. Forgetting that moves u
    on by another 2·L·h·p (to first order), an error of norm ≈ 0.2·√dim(u) — over 1 already
    for a few dozen u's. Negating both returns u to round-off."""
    t = pmt.glmm(num_individuals=500, num_importance=128, seed=0)
    theta, u = _point(t, 1, seed=5, spread=0.1)
    rho = tf.random.stateless_normal(theta.shape, [2, 1], dtype=tf.float64)
    p = tf.random.stateless_normal(u.shape, [2, 2], dtype=tf.float64)
    h, L = 0.01, 10
    th1, r1, u1, p1 = integrators.pm_strang(theta, rho, u, p, _gradient_fn(t), h, L)
    _, _, u_bug, _ = integrators.pm_strang(th1, -r1, u1, p1, _gradient_fn(t), h, L)   # p not negated
    err = np.linalg.norm(u_bug - u)
    assert err > 1.0
    np.testing.assert_allclose(err / np.linalg.norm(2 * L * h * p), 1.0, atol=0.05)
    _, _, u_ok, _ = integrators.pm_strang(th1, -r1, u1, -p1, _gradient_fn(t), h, L)
    np.testing.assert_allclose(u_ok, u, rtol=0, atol=1e-10)


@pytest.mark.parametrize("order", ["ABA", "BAB"])
def test_pm_strang_volume_preserving(order):
    t = pmt.glmm(num_individuals=3, num_importance=2, seed=2)
    theta, u = _point(t, 1, seed=4)
    rho = tf.random.stateless_normal(theta.shape, [3, 1], dtype=tf.float64)
    p = tf.random.stateless_normal(u.shape, [3, 2], dtype=tf.float64)
    z = tf.concat([tf.reshape(a, [-1]) for a in (theta, rho, u, p)], 0)
    sizes = [13, 13, 6, 6]

    def flow(z):
        th, r, uu, pp = tf.split(z, sizes)
        out = integrators.pm_strang(th[None], r[None], tf.reshape(uu, [1, 3, 2]),
                                    tf.reshape(pp, [1, 3, 2]), _gradient_fn(t), 0.05, 5, order=order)
        return tf.concat([tf.reshape(a, [-1]) for a in out], 0)

    with tf.GradientTape() as tape:
        tape.watch(z)
        out = flow(z)
    jac = tape.jacobian(out, z).numpy()
    sign, logdet = np.linalg.slogdet(jac)
    assert sign > 0 and abs(logdet) < 1e-10
    assert np.abs(jac - np.eye(38)).max() > 1e-2   # not trivially the identity


@pytest.mark.statistical
def test_pm_strang_energy_error_is_second_order(gre):
    theta, u = _point(gre, 16, seed=seed(6), spread=0.05)
    rho = tf.random.stateless_normal(theta.shape, [seed(4), 1], dtype=tf.float64)
    p = tf.random.stateless_normal(u.shape, [seed(4), 2], dtype=tf.float64)
    kernel = PMHMC(gre, 0.1, 1)

    def energy_error(h):
        out = integrators.pm_strang(theta, rho, u, p, _gradient_fn(gre), h, int(round(0.8 / h)))
        e0 = kernel.energy(theta, rho, u, p, gre.log_joint(theta, u))
        e1 = kernel.energy(out[0], out[1], out[2], out[3], gre.log_joint(out[0], out[2]))
        return np.mean(np.abs(e1 - e0))

    ratio = energy_error(0.04) / energy_error(0.02)
    assert 3.0 < ratio < 5.0, ratio


# --- the kernels ---------------------------------------------------------------------------

def _run(kernel, target, base_seed, num_results, burnin=200, chains=16):
    """Chains from θ drawn from the exact posterior (Gaussian here) and fresh u, burnt in."""
    s = seed(base_seed)
    rng = np.random.default_rng(s)
    sd = np.sqrt(target.posterior_variance)
    theta0 = tf.constant(target.posterior_mean + sd * rng.standard_normal(
        (chains, target.theta_dim)), tf.float32)
    u0 = tf.random.stateless_normal([chains, *target.u_shape], seed=[s, 1])
    return hmc_lib.sample(kernel, num_results, [theta0, u0], num_burnin_steps=burnin, seed=s,
                          keep_fn=lambda x: x[0])


def _assert_moments(samples, target):
    """θ's posterior mean and variance within the between-chain error (16 chains)."""
    diagnostics.assert_moments(samples, target.posterior_mean, target.posterior_variance)


@pytest.mark.statistical
def test_pmhmc_invariant(gre):
    samples, trace = _run(PMHMC(gre, 0.2, 7), gre, base_seed=11, num_results=500)
    _assert_moments(samples, gre)
    assert 0.5 < trace["is_accepted"].mean() < 0.99
    assert np.all(trace["grad_evals"] == 7)


@pytest.mark.statistical
def test_pmhmc_mass_matrix_invariant(gre):
    """A diagonal mass (here the inverse posterior variances) leaves the target invariant."""
    mass = 1.0 / gre.posterior_variance
    samples, trace = _run(PMHMC(gre, 0.3, 5, mass=mass), gre, base_seed=13, num_results=400)
    _assert_moments(samples, gre)
    assert 0.5 < trace["is_accepted"].mean() < 1.0


@pytest.mark.statistical
def test_pmnuts_invariant(gre):
    samples, trace = _run(PMNUTS(gre, 0.25, max_tree_depth=6), gre, base_seed=12,
                          num_results=300)
    _assert_moments(samples, gre)
    assert np.all(trace["tree_depth"] <= 6) and np.all(trace["grad_evals"] <= 63)
    assert trace["grad_evals"].mean() > 3


@pytest.mark.statistical
def test_pmnuts_cap_shortens_trees(gre):
    """Chen's cap stops a tree once |(z⁺ − z⁻)·v| exceeds it; under the (u, p) rotation that
    product grows like dim(u)·sin t, so a cap below dim(u) = 240 ends trees early, and without
    it they run to t ≈ π."""
    def mean_steps(cap):
        _, tr = _run(PMNUTS(gre, 0.1, max_tree_depth=7, uturn_cap=cap), gre, base_seed=4,
                     num_results=20, burnin=0, chains=4)
        return tr["grad_evals"].mean()
    free, capped = mean_steps(None), mean_steps(60.0)
    assert capped < 0.5 * free, (capped, free)
    assert 15 <= free <= 63     # first doubling past t = π at h = 0.1 is 63 steps (t = 6.3)


def test_pm_kernels_report_and_repeat(gre):
    k = PMHMC(gre, 0.2, 5)
    a = _run(k, gre, base_seed=3, num_results=20, burnin=0, chains=2)
    b = _run(k, gre, base_seed=3, num_results=20, burnin=0, chains=2)
    np.testing.assert_array_equal(a[0], b[0])
    # a huge step diverges: rejected, counted, state stays finite
    s, tr = _run(PMHMC(gre, 50.0, 3), gre, base_seed=3, num_results=10, burnin=0, chains=2)
    assert tr["is_divergent"].all() and not tr["is_accepted"].any() and np.isfinite(s).all()


def test_bad_input(gre):
    with pytest.raises(TypeError, match="target"):
        PMHMC(object(), 0.1, 5)
    with pytest.raises(ValueError, match="step_size"):
        PMHMC(gre, -0.1, 5)
    with pytest.raises(ValueError, match="num_leapfrog_steps"):
        PMHMC(gre, 0.1, 0)
    with pytest.raises(ValueError, match="max_tree_depth"):
        PMNUTS(gre, 0.1, max_tree_depth=0)
    with pytest.raises(ValueError, match="mass"):
        PMHMC(gre, 0.1, 3, mass=0.0)
    k = PMHMC(gre, 0.1, 3)
    with pytest.raises(ValueError, match="u"):
        k.bootstrap_results([tf.zeros([2, 2]), tf.zeros([2, 5, 5])])
    with pytest.raises(ValueError, match="theta"):
        k.bootstrap_results([tf.zeros([2, 3]), tf.zeros([2, *gre.u_shape])])
    with pytest.raises(ValueError, match="current_state"):
        k.bootstrap_results(tf.zeros([2, 2]))
    with pytest.raises(ValueError, match="u_shape"):
        PseudoMarginalTarget(lambda t: t[..., 0], lambda t, u: u, 2, (0, 3))
    with pytest.raises(TypeError, match="log_weights_fn"):
        PseudoMarginalTarget(lambda t: t[..., 0], None, 2, (3,))
    with pytest.raises(ValueError, match="u"):
        gre.log_likelihood_hat(tf.zeros([2]), tf.zeros([4, 4]))
    with pytest.raises(ValueError, match="step_size"):
        integrators.pm_strang(tf.zeros([1, 2]), tf.zeros([1, 2]), tf.zeros([1, 3]),
                              tf.zeros([1, 3]), lambda a, b: (a, b), 0.0, 3)
    with pytest.raises(ValueError, match="p"):
        integrators.pm_strang(tf.zeros([1, 2]), tf.zeros([1, 2]), tf.zeros([1, 3]),
                              tf.zeros([1, 4]), lambda a, b: (a, b), 0.1, 3)


# --- chapter 4's experiments (hmc_lib.pm.experiments) ----------------------------------------

from hmc_lib.pm import experiments as ex


def test_experiment_settings_are_typed_once_per_scale():
    paper = ex.settings("paper")
    # the papers' size and Chen's covariates (Chen 2025 §4.2: every element of Z ~ N(0, 1))
    assert (paper.num_individuals, paper.num_importance, paper.covariate_scale) == (500, 128, 1.0)
    for name in ("ci", "book", "paper"):
        cfg = ex.settings(name)
        assert cfg.scale == name and cfg.covariate_scale == ex.CHEN_COVARIATES
        assert cfg.chunk_draws <= cfg.max_draws and cfg.min_draws <= cfg.max_draws
        with pytest.raises(Exception):          # frozen
            cfg.chains = 1
    assert ex.settings("book").replace(chains=8).chains == 8
    with pytest.raises(ValueError, match="scale"):
        ex.settings("huge")
    assert ex.CHEN_MEANS == dict(w1=0.827, mu1=0.059, mu2=3.012)
    np.testing.assert_allclose(ex.NARROW_COVARIATES, 1 / np.sqrt(8))


@pytest.mark.statistical
def test_chen_initial_state():
    t = pmt.glmm(num_individuals=6, num_importance=3, covariate_scale=1.0)
    theta, u = ex.chen_initial_state(t, chains=3, seed=5)
    assert theta.shape == (3, 13) and u.shape == (3, 6, 3)
    th = theta.numpy()
    # the mixture starts at Chen's values, jittered by 0.1; β ~ N(0, I), apart per chain
    assert np.all(np.abs(th[:, 8:] - np.asarray(ex.CHEN_INITIAL_MIXTURE)) < 0.6)
    assert np.all(np.std(th[:, :8], axis=0) > 0)
    np.testing.assert_array_equal(th, ex.chen_initial_state(t, 3, 5)[0].numpy())
    # Chen's covariates: the target simulates Z ~ N(0, I) when asked
    big = ex.target(ex.settings("paper"))
    # 24,000 draws: the sample sd has s.e. 1/√(2·24,000) = 0.0046; 0.02 is 4.4 of them
    assert abs(big.data["Z"].std() - 1.0) < 0.02


@pytest.mark.statistical
def test_relabelled_gate_sees_through_label_switching():
    """Chains in the two mirror-image labellings of the same posterior: the gate on the raw
    draws fails (the chains disagree), on the relabelled draws it passes."""
    rng = np.random.default_rng(seed(21))
    draws = np.empty((2000, 4, 13))
    draws[..., :8] = rng.standard_normal((2000, 4, 8))
    draws[..., 8:] = np.array([0.0, 3.0, 2.3, 1.1, 1.4]) + 0.1 * rng.standard_normal((2000, 4, 5))
    swap = draws[:, 2:].copy()
    draws[:, 2:, 8:] = swap[..., [9, 8, 11, 10, 12]] * np.array([1, 1, 1, 1, -1.0])
    assert not diagnostics.convergence(draws).converged
    # iid draws, 4 chains of 2000: R̂ − 1 is of order 1/2000 and the ESS about 8000
    gate = ex.relabelled_gate(draws)
    assert gate.converged and gate.rhat_max < 1.01, gate


def test_cell_and_summaries_of_a_run():
    rng = np.random.default_rng(3)
    draws = np.zeros((40, 2, 13)) + rng.standard_normal((40, 2, 13))
    draws[..., -1] += 8.0                     # logit w₁ > 0 in every draw: no relabelling
    trace = dict(grad_evals=np.full((40, 2), 10), log_accept_ratio=np.zeros((40, 2)),
                 seconds=1.0, step_size=0.1, stopped="max_draws")
    c = ex.cell(draws, trace)
    assert c["draws"] == 40 and c["chains"] == 2 and c["grad_evals"] == 800
    assert c["ess_min_per_grad"] == pytest.approx(c["ess_bulk_min"] / 800)
    assert c["acceptance"] == 1.0 and set(c["mixture"]) == set(ex.MIXTURE)
    np.testing.assert_allclose(c["mixture"]["mu2"]["mean"], draws[..., 9].mean())
    th = c["thinned"]
    assert th["every"] == 1 and np.shape(th["w1"]) == (40, 2)
    assert np.shape(ex.thinned(np.zeros((1001, 2, 13)), most=500)["mu1"]) == (334, 2)


def test_long_run_record_resumes_from_its_units(tmp_path, monkeypatch):
    """A tiny record: written with provenance; run again, its units are read back (and a
    unit whose result was lost is recomputed from its checkpoints to the same numbers)."""
    from hmc_lib import records
    tiny = ex.settings("ci").replace(num_individuals=12, num_importance=4, warmup=20,
                                     nuts_warmup=20, max_tree_depth=3, chunk_draws=10,
                                     min_draws=10, max_draws=20, max_grad_evals=1e6)
    monkeypatch.setitem(ex._SETTINGS, "ci", tiny)
    out = tmp_path / "rec.json"
    rec = ex.record_long_run(tmp_path / "work", "ci", out=out, units=("pmhmc", "pmnuts"))
    rec = records.load(out)
    assert [r["key"] for r in rec["rows"]] == ["pmhmc", "pmnuts"]
    assert rec["settings"]["num_individuals"] == 12 and rec["chen_means"] == ex.CHEN_MEANS
    assert rec["rows"][0]["draws"] == 20 and rec["rows"][0]["stopped"] == "max_draws"
    first = rec["rows"]
    (tmp_path / "work" / "units" / "pmnuts.json").unlink()      # lose one unit's result
    again = ex.record_long_run(tmp_path / "work", "ci", out=out, units=("pmhmc", "pmnuts"))
    for a, b in zip(first, again["rows"]):
        assert a["theta_mean"] == b["theta_mean"] and a["grad_evals"] == b["grad_evals"]
