"""HNN samplers: integrator geometry (reversible, volume preserving, convergent fixed point),
the HNN's own structure (divergence-free field, conserved Ĥ), training on a Gaussian, save and
load, exactness of HNN-HMC and HNN-NUTS with poor networks, and the online error monitor."""

import numpy as np
import pytest
import tensorflow as tf

import hmc_lib
from hmc_lib import diagnostics, scale, targets
from hmc_lib.hnn import (HNN, HNNHMC, HNNNUTS, HNNPMNUTS, ExactHamiltonian, collect,
                         implicit_leapfrog,
                         load, save, separable_leapfrog, train)
from hmc_lib.hnn import experiments

VAR = np.array([1.0, 4.0])


def _gauss():
    return targets.get("gaussian", variance=VAR)


def _net(kind, dim=2, seed=0):
    """An untrained float64 HNN (a 'poor network': random but smooth)."""
    return HNN(dim, kind=kind, hidden=(16, 16), activation="tanh", dtype=tf.float64, seed=seed)


def _start(dim=2, chains=3, seed=0):
    x = tf.random.stateless_normal([chains, dim], [seed, 1], dtype=tf.float64)
    v = tf.random.stateless_normal([chains, dim], [seed, 2], dtype=tf.float64)
    return x, v


def _log_abs_det_jacobian(fn, z):
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        out = fn(z)
    jac = tape.jacobian(out, z, experimental_use_pfor=False)
    return np.linalg.slogdet(jac.numpy())[1]


def _flow(kind, net, eps, steps, tol=1e-13):
    def fn(z):
        x, v = z[None, :2], z[None, 2:]
        if kind == "separable":
            x1, v1 = separable_leapfrog(x, v, net, eps, steps)
        else:
            res = implicit_leapfrog(x, v, net, eps, steps, tol=tol, max_iter=500)
            x1, v1 = res.position, res.momentum
        return tf.concat([x1[0], v1[0]], 0)
    return fn


@pytest.mark.parametrize("kind", ["separable", "latent"])
def test_hnn_integrator_is_reversible_in_float64(kind):
    net = _net(kind)
    x, v = _start()
    if kind == "separable":
        x1, v1 = separable_leapfrog(x, v, net, 0.1, 20)
        x2, v2 = separable_leapfrog(x1, -v1, net, 0.1, 20)
    else:
        r1 = implicit_leapfrog(x, v, net, 0.1, 20, tol=1e-13, max_iter=500)
        r2 = implicit_leapfrog(r1.position, -r1.momentum, net, 0.1, 20, tol=1e-13,
                               max_iter=500)
        assert bool(tf.reduce_all(r1.converged)) and bool(tf.reduce_all(r2.converged))
        x1, v1, x2, v2 = r1.position, r1.momentum, r2.position, r2.momentum
    assert np.max(np.abs(x1 - x)) > 1e-2   # it moved
    np.testing.assert_allclose(x2, x, rtol=0, atol=1e-9)
    np.testing.assert_allclose(-v2, v, rtol=0, atol=1e-9)


@pytest.mark.parametrize("kind", ["separable", "latent"])
def test_hnn_integrator_preserves_volume(kind):
    net = _net(kind, seed=1)
    x, v = _start(chains=1, seed=3)
    z = tf.concat([x[0], v[0]], 0)
    logdet = _log_abs_det_jacobian(_flow(kind, net, 0.1, 10), z)
    assert abs(logdet) < 1e-8


class _Pendulum:
    """A known non-separable H(q, p) = ½ q² + ½ p² (1 + q²), even in p."""
    kind, dim = "latent", 1

    def hamiltonian(self, q, p):
        return tf.reduce_sum(0.5 * q**2 + 0.5 * p**2 * (1.0 + q**2), -1)

    def grads(self, q, p):
        return q + q * p**2, p * (1.0 + q**2)


def test_implicit_fixed_point_converges_on_known_nonseparable_h():
    h = _Pendulum()
    q = tf.constant([[0.5], [-1.0], [1.5]], tf.float64)
    p = tf.constant([[1.0], [0.3], [-0.7]], tf.float64)
    energies = []
    for eps, n in [(0.1, 10), (0.05, 20)]:
        res = implicit_leapfrog(q, p, h, eps, n, tol=1e-12, max_iter=200)
        assert bool(tf.reduce_all(res.converged))
        # iterations per implicit solve stay far below the cap (a contraction)
        assert int(tf.reduce_max(res.iterations)) < 2 * n * 60
        energies.append(np.abs(h.hamiltonian(res.position, res.momentum)
                               - h.hamiltonian(q, p)).max())
    # second order: halving ε divides the energy error by about 4
    assert energies[0] < 0.02 and 2.5 < energies[0] / energies[1] < 6.0
    # the implicit equations hold at the solution of one step
    res = implicit_leapfrog(q, p, h, 0.1, 1, tol=1e-13, max_iter=200)
    q1, p1 = res.position, res.momentum
    # recover p½ from the explicit last half step and check both implicit equations
    # p1 = p½ − ε/2 ∂qH(q1, p½): solve it by the same iteration, then test the first equation
    p_half = p
    for _ in range(200):
        p_half = p - 0.05 * h.grads(q, p_half)[0]
    np.testing.assert_allclose(p1, p_half - 0.05 * h.grads(q1, p_half)[0], atol=1e-11)
    np.testing.assert_allclose(
        q1, q + 0.05 * (h.grads(q, p_half)[1] + h.grads(q1, p_half)[1]), atol=1e-11)
    # too large a step: the iteration does not converge and says so
    bad = implicit_leapfrog(q, p * 5.0, h, 2.0, 3, tol=1e-12, max_iter=20)
    assert not bool(tf.reduce_all(bad.converged))


@pytest.mark.parametrize("kind", ["separable", "latent"])
def test_hnn_field_is_divergence_free_and_conserves_its_energy(kind):
    net = _net(kind, seed=2)
    x, v = _start(chains=1, seed=5)
    z = tf.concat([x[0], v[0]], 0)

    def field(z):
        dq, dp = net.time_derivative(z[None, :2], z[None, 2:])
        return tf.concat([dq[0], dp[0]], 0)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        f = field(z)
    jac = tape.jacobian(f, z, experimental_use_pfor=False).numpy()
    assert abs(np.trace(jac)) < 1e-10
    # dĤ/dt = ∇Ĥ · f = 0
    dq, dp = net.grads(x, v)
    gh = tf.concat([dq[0], dp[0]], 0).numpy()
    assert abs(gh @ f.numpy()) < 1e-10 * (1 + np.abs(gh).max() * np.abs(f.numpy()).max())
    # and the integrators conserve Ĥ to second order in ε
    errs = []
    for eps in (0.04, 0.02):
        if kind == "separable":
            x1, v1 = separable_leapfrog(x, v, net, eps, int(round(0.8 / eps)))
        else:
            r = implicit_leapfrog(x, v, net, eps, int(round(0.8 / eps)), tol=1e-13, max_iter=500)
            x1, v1 = r.position, r.momentum
        errs.append(float(np.abs(net.hamiltonian(x1, v1) - net.hamiltonian(x, v))[0]))
    assert errs[1] < errs[0] / 2.5 or errs[0] < 1e-9


@pytest.fixture(scope="module")
def trained_icg():
    t = experiments.get("icg5")
    data = collect(t, t.sample(8, scale.seed(1), tf.float64), num_trajectories=10,
                   num_steps=20, step_size=0.02, seed=scale.seed(3))
    train_data, held_out = data.split(0.2, seed=scale.seed(0))
    res = train(train_data, kind="separable", hidden=(32, 32), num_steps=600, batch_size=256,
                held_out=held_out, progress=False, seed=scale.seed(0))
    return t, res, held_out


@pytest.mark.statistical
def test_trained_hnn_matches_true_gradients_on_held_out_points(trained_icg):
    # Over 30 sweep seeds (HMC_BOOK_SEED = 0..29): the median relative field error on held-out
    # points was 0.036-0.080 (mean 0.053, sd 0.010; 0.1 is 4.8 sds above the mean), and the
    # held-out loss fell by a factor 5.4-15.1 (log-factor mean 2.17, sd 0.28; a factor 3 is
    # 3.8 sds below it, probability about 7e-5).
    t, res, held_out = trained_icg
    pred = res.hnn.field(tf.constant(held_out.q, tf.float32)).numpy()
    true = -held_out.dh_dq
    rel = np.linalg.norm(pred - true, axis=-1) / np.linalg.norm(true, axis=-1)
    assert np.median(rel) < 0.1, np.median(rel)
    h = res.history
    assert h["loss"].shape == (600,) and h["eval_loss"][-1] < h["eval_loss"][0] / 3
    assert res.grad_evals > 0 and res.seconds > 0


def test_collect_records_true_gradients():
    t = experiments.get("icg5")
    data = collect(t, t.sample(4, 0, tf.float64), 2, 5, 0.02, seed=0)
    assert data.q.shape == (40, 5)
    np.testing.assert_allclose(data.dh_dq, data.q / experiments.ICG5_VARIANCES, rtol=1e-10)
    np.testing.assert_array_equal(data.dh_dp, data.p)
    # the seed alone fixes the momenta: a second call repeats the data exactly, another
    # seed does not
    again = collect(t, t.sample(4, 0, tf.float64), 2, 5, 0.02, seed=0)
    np.testing.assert_array_equal(again.q, data.q)
    other = collect(t, t.sample(4, 0, tf.float64), 2, 5, 0.02, seed=1)
    assert not np.array_equal(other.q, data.q)


@pytest.mark.parametrize("kind", ["separable", "latent"])
def test_save_load_roundtrip_is_exact(kind, tmp_path):
    net = _net(kind, seed=4)
    net.set_standardisation([0.5, -1.0], [2.0, 0.3])
    path = save(net, tmp_path / "net")
    back = load(path)
    x, v = _start(seed=9)
    np.testing.assert_array_equal(net.hamiltonian(x, v), back.hamiltonian(x, v))
    assert back.config == net.config


def _moments_ok(samples, t):
    diagnostics.assert_moments(samples, t.mean, t.variance)


@pytest.mark.statistical
@pytest.mark.parametrize("kind", ["separable", "latent"])
def test_hnn_hmc_exact_with_a_poor_network(kind):
    t = _gauss()
    net = _net(kind, seed=6)
    kernel = HNNHMC(t, net, step_size=0.3, num_leapfrog_steps=6, tol=1e-10)
    x0 = t.sample(32, seed=scale.seed(3), dtype=tf.float64)
    samples, trace = hmc_lib.sample(kernel, 300, x0, seed=scale.seed(11))
    acc = float(np.mean(trace["is_accepted"]))
    assert acc > 0.05    # poor, but it moves
    assert np.all(trace["grad_evals"] == 0) and np.all(trace["potential_evals"] == 1)
    _moments_ok(samples, t)


def test_chen_rule_spends_no_true_evaluation():
    t = _gauss()
    kernel = HNNHMC(t, ExactHamiltonian(t), 0.3, 6, exact=False)
    _, trace = hmc_lib.sample(kernel, 10, t.sample(4, seed=0), seed=1)
    assert np.all(trace["potential_evals"] == 0) and np.all(trace["grad_evals"] == 0)


def _stays_where_rejected(samples, trace):
    """A fall-back whose draw the check tree rejected leaves the chain where it was, counted
    as not accepted (the draws are `[num_results, chains, dim]`, the first one's previous
    state is not kept)."""
    x, rej = np.asarray(samples), np.asarray(trace["fallback_rejected"])
    assert np.all(x[1:][rej[1:]] == x[:-1][rej[1:]])
    assert not (np.asarray(trace["is_accepted"]) & rej).any()


@pytest.mark.statistical
@pytest.mark.parametrize("which", ["poor", "exact"])
def test_hnn_nuts_invariant(which):
    # exact=True (the default) with Dhulipala's threshold of 10 (the exact monitor's default
    # is 1000): the monitor fires on about 3 transitions in 4 with the poor network, so both
    # branches of the kernel are exercised
    t = _gauss()
    net = ExactHamiltonian(t) if which == "exact" else _net("separable", seed=7)
    kernel = HNNNUTS(t, net, step_size=0.3, max_tree_depth=6, max_hnn_error=10.0)
    x0 = t.sample(32, seed=scale.seed(4), dtype=tf.float64)
    samples, trace = hmc_lib.sample(kernel, 300, x0, seed=scale.seed(12))
    _moments_ok(samples, t)
    if which == "exact":
        assert not trace["fell_back"].any() and trace["used_hnn"].all()
        assert np.all(trace["grad_evals"] == 0)
    else:
        assert 0.2 < trace["fell_back"].mean() and trace["fallback_rejected"].any()
        _stays_where_rejected(samples, trace)


@pytest.mark.statistical
def test_dhulipala_fallback_is_biased_and_the_exact_one_is_not():
    """Dhulipala's fall-back (exact=False; no cool-down, to isolate it) redoes a fired
    transition with true gradients from the same momentum: with a poor network (the monitor
    fires on ~3/4 of the transitions) its variance is ~20 % too large, measured at 4,000
    draws × 32 chains as z = 15 to 29 (Monte Carlo standard errors; two seeds), so at 1,500
    draws z ≈ 9 to 18 against the bound of 4.9. The exact fall-back on the same seeds passes."""
    t = _gauss()
    net = _net("separable", seed=7)
    x0 = t.sample(32, seed=scale.seed(5), dtype=tf.float64)
    checks = {}
    for exact in (False, True):
        kernel = HNNNUTS(t, net, step_size=0.3, max_tree_depth=6, exact=exact, cool_down=0,
                         max_hnn_error=10.0)
        samples, trace = hmc_lib.sample(kernel, 1500, x0, seed=scale.seed(13))
        checks[exact] = diagnostics.check_moments(samples, t.mean, t.variance)
        assert trace["fell_back"].mean() > 0.5
    assert not checks[False].passed and np.max(checks[False].z_var) > checks[False].bound
    assert checks[True].passed


def test_monitor_never_switches_for_the_true_hamiltonian():
    t = _gauss()
    kernel = HNNNUTS(t, ExactHamiltonian(t), step_size=0.2, max_tree_depth=8)
    _, trace = hmc_lib.sample(kernel, 50, t.sample(8, seed=0), seed=3)
    assert not trace["fell_back"].any()
    assert np.all(trace["grad_evals"] == 0)
    # one true log π per leaf, none else
    pe, depth = trace["potential_evals"], trace["tree_depth"]
    assert np.all(pe >= depth) and np.all(pe <= 2 ** depth - 1)


class _ConstantForce:
    """A deliberately wrong separable 'HNN': Ũ(q) = −c q₀, a huge constant force."""
    kind, dim, c = "separable", 2, 1000.0

    def potential(self, q):
        return -self.c * q[..., 0]

    def hamiltonian(self, q, p):
        return self.potential(q) + 0.5 * tf.reduce_sum(tf.square(p), -1)

    def field(self, q):
        return tf.concat([tf.fill(tf.shape(q[..., :1]), tf.cast(self.c, q.dtype)),
                          tf.zeros_like(q[..., 1:])], -1)

    def grads(self, q, p):
        return -self.field(q), p


def test_monitor_falls_back_and_cools_down_for_n_lf_samples():
    t = _gauss()
    # the first leaf moves ~ε²c/2 = 20 and gains momentum εc = 200: the monitor must fire
    wrong = _ConstantForce()
    n_lf = 3
    kernel = HNNNUTS(t, wrong, step_size=0.2, max_tree_depth=8, cool_down=n_lf, exact=False)
    _, trace = hmc_lib.sample(kernel, 12, t.sample(4, seed=0), seed=5)
    period = n_lf + 1
    fell = trace["fell_back"]
    expected = (np.arange(12) % period == 0)[:, None]
    np.testing.assert_array_equal(fell, np.broadcast_to(expected, fell.shape))
    assert not trace["used_hnn"].any()                     # every draw from true gradients
    np.testing.assert_array_equal(trace["cool_down"][:, 0], [3, 2, 1, 0] * 3)
    # the true trees cost gradients; fall-back transitions also paid the HNN leaves
    assert np.all(trace["grad_evals"] > 0)
    assert np.all(trace["potential_evals"][fell] > trace["grad_evals"][fell] - 1)


def test_exact_fallback_counts_its_check_tree():
    """With the constant force every HNN tree fires at its first leaf (also the check tree
    from the true draw, so no fall-back is rejected): each transition after the first (whose
    start gradient is not yet known) costs its true leaves in gradients and, in log π
    evaluations, those leaves plus one HNN leaf plus one check-tree leaf."""
    t = _gauss()
    kernel = HNNNUTS(t, _ConstantForce(), step_size=0.2, max_tree_depth=8)
    _, trace = hmc_lib.sample(kernel, 12, t.sample(4, seed=0), seed=5)
    assert trace["fell_back"].all() and not trace["fallback_rejected"].any()
    assert not trace["used_hnn"].any()
    np.testing.assert_array_equal(trace["potential_evals"][1:], trace["grad_evals"][1:] + 2)


def test_bad_input():
    t = _gauss()
    net = _net("separable")
    with pytest.raises(ValueError, match="step_size"):
        HNNHMC(t, net, 0.0, 5)
    with pytest.raises(ValueError, match="num_leapfrog_steps"):
        HNNHMC(t, net, 0.1, 0)
    with pytest.raises(ValueError, match="dim"):
        HNNHMC(t, _net("separable", dim=3), 0.1, 5)
    with pytest.raises(TypeError, match="hnn"):
        HNNNUTS(t, object(), 0.1)
    with pytest.raises(ValueError, match="cool_down"):
        HNNNUTS(t, net, 0.1, cool_down=-1, exact=False)
    with pytest.raises(ValueError, match="cool_down"):
        HNNNUTS(t, net, 0.1, cool_down=3)          # exact=True allows none
    with pytest.raises(TypeError, match="exact"):
        HNNNUTS(t, net, 0.1, exact=1)
    with pytest.raises(ValueError, match="max_hnn_error"):
        HNNNUTS(t, net, 0.1, max_hnn_error=0.0)
    # the thresholds by default: Dhulipala's 10 for his monitor, the true tree's 1000 for the
    # exact one (where the threshold only sets how often a true tree runs)
    assert HNNNUTS(t, net, 0.1, exact=False).parameters["max_hnn_error"] == 10.0
    assert HNNNUTS(t, net, 0.1).parameters["max_hnn_error"] == 1000.0
    with pytest.raises(ValueError, match="kind"):
        HNN(2, kind="other")
    with pytest.raises(TypeError, match="exact"):
        HNNHMC(t, net, 0.1, 5, exact="yes")


def test_top_level_names():
    assert hmc_lib.HNNHMC is HNNHMC and hmc_lib.HNNNUTS is HNNNUTS


# --- the 3-d Rosenbrock target ----------------------------------------------------------------

def test_rosenbrock_factorisation_matches_its_density():
    """log π = log p(x₁) + log N(x₂; m(x₁), 1/10.1) + log N(x₃; x₂², 1/10) + const."""
    t = experiments.get("rosenbrock3d")
    x = np.random.default_rng(0).normal(size=(50, 3)) * [1.5, 2.0, 4.0]
    lp = t.log_prob(tf.constant(x, tf.float64)).numpy()
    x1, x2, x3 = x.T
    m = (10 * x1 ** 2 + 0.1) / 10.1
    parts = (-(1 - x1) ** 2 / 20 - (x1 ** 2 - 1) ** 2 / 20.2
             - 0.5 * 10.1 * (x2 - m) ** 2 - 0.5 * 10.0 * (x3 - x2 ** 2) ** 2)
    diff = lp - parts
    np.testing.assert_allclose(diff, diff[0], rtol=0, atol=1e-9)
    # the Rosenblatt map: z₂, z₃ are the standardised conditionals
    z = experiments.rosenbrock3d_to_normal(x)
    np.testing.assert_allclose(z[:, 2], (x3 - x2 ** 2) * np.sqrt(10.0), rtol=1e-12)


@pytest.mark.statistical
def test_rosenbrock_exact_draws_match_quadrature_moments():
    t = experiments.get("rosenbrock3d")
    n = 200_000
    x = t.sample(n, seed=scale.seed(31), dtype=tf.float64).numpy()
    # z statistics of the means (all three) and variances (x₁, x₂); Bonferroni over 5 at 1e-4
    from scipy import stats
    bound = stats.norm.ppf(1 - 1e-4 / 10)
    z_mean = (x.mean(0) - t.mean) / (x.std(0) / np.sqrt(n))
    sq = (x[:, :2] - t.mean[:2]) ** 2
    z_var = (sq.mean(0) - t.variance[:2]) / (sq.std(0) / np.sqrt(n))
    assert np.all(np.abs(z_mean) < bound) and np.all(np.abs(z_var) < bound), (z_mean, z_var)


@pytest.mark.statistical
def test_hnn_hmc_exact_on_rosenbrock_with_a_wrong_hamiltonian():
    """HNN-HMC with a 20 %-wrong potential, from 64 exact draws: the uniform scores of the
    Rosenblatt map keep mean 1/2 and variance 1/12 (between-chain t statistics, level 1e-4)."""
    t = experiments.get("rosenbrock3d")
    kernel = HNNHMC(t, ExactHamiltonian(t, scale=0.8), step_size=0.04, num_leapfrog_steps=10)
    x0 = t.sample(64, seed=scale.seed(32), dtype=tf.float64)
    samples, trace = hmc_lib.sample(kernel, 200, x0, seed=scale.seed(33))
    assert 0.05 < float(np.mean(trace["is_accepted"])) < 0.99
    u = diagnostics.uniform_scores(np.asarray(samples), experiments.rosenbrock3d_to_normal)
    diagnostics.assert_moments(u, np.full(3, 0.5), np.full(3, 1.0 / 12.0))


def test_chen_large_step_energy_failure_is_the_leapfrog_stability_limit():
    """Chen §3.5.2: energy not conserved at h = 0.5. On the 5-d ICG (σ_min = 0.1) the leapfrog
    is unstable for h > 2σ_min = 0.2 with the *true* gradient too; below it the error is
    second order. The same holds for an HNN (here the exact one, ExactHamiltonian)."""
    t = experiments.get("icg5")
    x0 = t.sample(8, seed=0, dtype=tf.float64)
    v0 = tf.random.stateless_normal(x0.shape, [0, 7], dtype=tf.float64)
    h0 = -t.log_prob(x0) + 0.5 * tf.reduce_sum(v0 ** 2, -1)

    def err(h, steps, net=None):
        if net is None:
            x1, v1 = hmc_lib.integrators.leapfrog(x0, v0, t.grad_log_prob, h, steps)
        else:
            x1, v1 = separable_leapfrog(x0, v0, net, h, steps)
        return np.abs(-t.log_prob(x1) + 0.5 * tf.reduce_sum(v1 ** 2, -1) - h0).max()

    net = ExactHamiltonian(t)
    for which in (None, net):
        assert err(0.5, 4, which) > 1e3                 # beyond the stability limit
        assert err(0.19, 10, which) < 50                 # just inside it: bounded
        e1, e2 = err(0.02, 100, which), err(0.01, 200, which)
        assert 3.0 < e1 / e2 < 5.0                       # second order below it


# --- HNN-PM-NUTS on a pseudo-marginal target ----------------------------------------------------

class _Marginal:
    """The exact θ-marginal Hamiltonian of a PM target with `exact_log_likelihood`:
    Ũ(θ) = −log p(θ) − log p(y | θ) (the HNN a perfect training would give)."""
    kind = "separable"

    def __init__(self, target):
        self.dim, self.t = target.theta_dim, target

    def potential(self, q):
        return -(self.t.log_prior(q) + self.t.exact_log_likelihood(q))

    def hamiltonian(self, q, p):
        return self.potential(q) + 0.5 * tf.reduce_sum(tf.square(p), -1)

    def field(self, q):
        with tf.GradientTape() as tape:
            tape.watch(q)
            u = self.potential(q)
        return -tape.gradient(u, q)

    def grads(self, q, p):
        return -self.field(q), p


@pytest.fixture(scope="module")
def gre():
    from hmc_lib.targets import pseudo_marginal as pmt
    return pmt.gaussian_random_effects()


def _pm_run(kernel, target, base_seed, num_results, burnin=100, chains=16):
    s = scale.seed(base_seed)
    rng = np.random.default_rng(s)
    theta0 = tf.constant(target.posterior_mean + np.sqrt(target.posterior_variance)
                         * rng.standard_normal((chains, target.theta_dim)), tf.float32)
    u0 = tf.random.stateless_normal([chains, *target.u_shape], seed=[s, 1])
    return hmc_lib.sample(kernel, num_results, [theta0, u0], num_burnin_steps=burnin, seed=s,
                          keep_fn=lambda x: x[0])


class _PMConstantForce(_ConstantForce):
    dim = 2


@pytest.mark.statistical
@pytest.mark.parametrize("part", ["hnn_tree", "pm_fallback"])
def test_hnn_pm_nuts_exact_parts_invariant(gre, part):
    """The two exact parts of HNN-PM-NUTS, each alone: (hnn_tree) u-refresh + the HNN tree
    on θ | u, the monitor disabled (Δ_max^hnn huge); (pm_fallback) u-refresh + PM-NUTS with
    the Δ_max^lf rejection, reached on every transition (a constant-force 'HNN' fires at the
    first leaf from every state, so the switch does not depend on the state). Only a
    non-finite leaf energy still fires the monitor in the first case (rarely)."""
    if part == "hnn_tree":
        kernel = HNNPMNUTS(gre, _Marginal(gre), 0.25, max_tree_depth=6, max_hnn_error=1e12,
                           u_correlation=0.9)
    else:
        kernel = HNNPMNUTS(gre, _PMConstantForce(), 0.25, max_tree_depth=6, cool_down=0,
                           u_correlation=0.9)
    samples, trace = _pm_run(kernel, gre, base_seed=41, num_results=300)
    diagnostics.assert_moments(samples, gre.posterior_mean, gre.posterior_variance)
    if part == "hnn_tree":
        # A non-finite leaf energy (float32 overflow far out in a tree) still fires the
        # monitor; those firings are rare. Measured rate: 23 firings in 384,000 transitions
        # (6 runs of 64 chains × 1,000 draws), 6.0e-5 per transition, upper bound 9e-5.
        # The trace's 16 chains × 300 kept transitions expect at most λ = 0.43 firings, and
        # P(Poisson(0.43) >= 6) = 6e-6: so at most 5, and the draws are (almost) all from
        # the exact part.
        used = trace["used_hnn"]
        assert int(np.sum(trace["fell_back"])) <= 5
        assert np.all(trace["grad_evals"][used] == 0)
    else:
        assert trace["fell_back"].all() and not trace["used_hnn"].any()
        assert np.all(trace["grad_evals"] > 0)
    assert 0.2 < trace["u_accepted"].mean() < 0.95


def test_hnn_pm_nuts_lf_threshold_rejects_and_counts(gre):
    """Δ_max^lf: a PM tree whose energy error exceeds it is a rejected sample, counted. With
    Δ_max^lf = 1e-6 nearly every PM tree has a leaf above it (a tree that grows past a few
    leaves all but surely does): those samples are rejected and θ stays where it was."""
    kernel = HNNPMNUTS(gre, _PMConstantForce(), 0.25, max_tree_depth=6, cool_down=2,
                       max_lf_error=1e-6, exact=False)
    samples, trace = _pm_run(kernel, gre, base_seed=0, num_results=9, burnin=0, chains=4)
    rej = trace["lf_rejected"]
    np.testing.assert_array_equal(rej, trace["is_divergent"])
    assert rej.mean() > 0.5, rej.mean()
    assert not (trace["is_accepted"] & rej).any()
    x = np.asarray(samples)
    moved = np.any(x[1:] != x[:-1], axis=-1)                        # [draws - 1, chains]
    assert not (moved & rej[1:]).any()
    # the monitor fired every cool_down + 1 transitions; the cool-down ran PM-NUTS too
    np.testing.assert_array_equal(trace["fell_back"][:, 0], [True, False, False] * 3)
    # costs: log p̂ for the u-refresh, the one HNN leaf when the HNN was tried (then it
    # fired), and one per PM leaf, each of which also costs a gradient
    pm_leaves = trace["potential_evals"] - 1 - trace["fell_back"].astype(int)
    assert np.all(pm_leaves >= 1)
    assert np.all((trace["grad_evals"] >= pm_leaves) & (trace["grad_evals"] <= pm_leaves + 1))
    # and with the usual Δ_max^lf = 1000 nothing is rejected on a short step
    kernel = HNNPMNUTS(gre, _PMConstantForce(), 0.05, max_tree_depth=4, cool_down=0)
    _, trace = _pm_run(kernel, gre, base_seed=0, num_results=5, burnin=0, chains=4)
    assert not trace["lf_rejected"].any() and trace["is_accepted"].any()


@pytest.mark.statistical
def test_hnn_pm_nuts_exact_switch_invariant_with_a_poor_network(gre):
    """The exact switch as a whole (u-refresh, HNN tree, PM-NUTS fall-back and its check
    tree) with an untrained network and a threshold of 100, so that the monitor fires on
    about 3 transitions in 4 (measured 0.76-0.77 on two seeds; 0.89 at a threshold of 30)
    and the check tree rejects some fall-backs (about 0.17 per transition): the moments of
    θ match the known posterior within Monte Carlo error."""
    poor = HNN(2, kind="separable", hidden=(16, 16), activation="tanh", dtype=tf.float32,
               seed=7)
    kernel = HNNPMNUTS(gre, poor, 0.25, max_tree_depth=6, max_hnn_error=100.0,
                       u_correlation=0.9)
    samples, trace = _pm_run(kernel, gre, base_seed=43, num_results=300)
    diagnostics.assert_moments(samples, gre.posterior_mean, gre.posterior_variance)
    assert 0.3 < trace["fell_back"].mean() < 0.95, trace["fell_back"].mean()
    assert trace["fallback_rejected"].any() and trace["used_hnn"].any()
    _stays_where_rejected(samples, trace)


def test_hnn_pm_nuts_exact_fallback_counts_its_check_tree(gre):
    """With the constant force every HNN tree fires at its first leaf, the check tree from
    the PM draw too (so no fall-back is rejected): log p̂ evaluations are the u-refresh,
    one HNN leaf, the PM leaves and one check-tree leaf; gradients are the PM leaves plus
    one at the start when the u-refresh was accepted (every fall-back leaves the gradient at
    its draw known, and a new u makes it stale)."""
    kernel = HNNPMNUTS(gre, _PMConstantForce(), 0.05, max_tree_depth=4)
    _, trace = _pm_run(kernel, gre, base_seed=0, num_results=8, burnin=0, chains=4)
    assert trace["fell_back"].all() and not trace["fallback_rejected"].any()
    assert not trace["lf_rejected"].any()
    pm_leaves = trace["grad_evals"] - trace["u_accepted"].astype(int)
    assert np.all(pm_leaves >= 1)
    np.testing.assert_array_equal(trace["potential_evals"], 3 + pm_leaves)


def test_collect_pm_records_theta_gradients(gre):
    from hmc_lib.hnn import collect_pm
    theta = tf.constant(np.tile(gre.posterior_mean, (3, 1)), tf.float64)
    u = tf.random.stateless_normal([3, *gre.u_shape], [0, 1], dtype=tf.float64)
    data = collect_pm(gre, theta, u, 2, 4, 0.1, seed=0)
    assert data.q.shape == (24, 2) and data.grad_evals == 3 * 2 * 5
    np.testing.assert_array_equal(collect_pm(gre, theta, u, 2, 4, 0.1, seed=0).q, data.q)
    np.testing.assert_array_equal(data.dh_dp, data.p)
    assert np.all(np.isfinite(data.dh_dq)) and np.std(data.q[:, 0]) > 0


def test_hnn_pm_nuts_bad_input(gre):
    with pytest.raises(TypeError, match="target"):
        HNNPMNUTS(_gauss(), _Marginal(gre), 0.1)
    with pytest.raises(ValueError, match="dim"):
        HNNPMNUTS(gre, _net("separable", dim=3), 0.1)
    with pytest.raises(ValueError, match="kind"):
        HNNPMNUTS(gre, _net("latent", dim=2), 0.1)
    with pytest.raises(ValueError, match="max_lf_error"):
        HNNPMNUTS(gre, _Marginal(gre), 0.1, max_lf_error=0.0)
    with pytest.raises(ValueError, match="u_correlation"):
        HNNPMNUTS(gre, _Marginal(gre), 0.1, u_correlation=1.0)
    with pytest.raises(TypeError, match="exact"):
        HNNPMNUTS(gre, _Marginal(gre), 0.1, exact="yes")
    with pytest.raises(ValueError, match="cool_down"):
        HNNPMNUTS(gre, _Marginal(gre), 0.1, cool_down=3)          # exact=True allows none
    with pytest.raises(ValueError, match="max_hnn_error"):
        HNNPMNUTS(gre, _Marginal(gre), 0.1, max_hnn_error=-1.0)
    assert HNNPMNUTS(gre, _Marginal(gre), 0.1).parameters["max_hnn_error"] == 1000.0
    assert HNNPMNUTS(gre, _Marginal(gre), 0.1, exact=False).parameters["cool_down"] == 20
    assert hmc_lib.HNNPMNUTS is HNNPMNUTS


# --- Chen's variants ------------------------------------------------------------------------------

def test_collect_records_the_potential_and_potential_regression_trains():
    t = experiments.get("icg5")
    data = collect(t, t.sample(8, 2, tf.float64), num_trajectories=10, num_steps=20,
                   step_size=0.02, seed=4)
    # the potential −log π(q) at every point (ICG5: ½ Σ q²/σ², no constant)
    np.testing.assert_allclose(data.potential,
                               0.5 * np.sum(data.q ** 2 / experiments.ICG5_VARIANCES, -1),
                               rtol=1e-10)
    train_data, held_out = data.split(0.2, seed=0)
    assert held_out.potential.shape == (held_out.q.shape[0],)
    res = train(train_data, kind="separable", hidden=(32, 32), num_steps=300, batch_size=256,
                held_out=held_out, progress=False, seed=0, loss="potential")
    assert res.history["eval_loss"][-1] < res.history["eval_loss"][0] / 2
    err_q, err_p = experiments.gradient_error(res.hnn, held_out)
    assert err_q < 0.5 and err_p < 1e-6
    with pytest.raises(ValueError, match="loss"):
        train(train_data, loss="trajectory", progress=False, num_steps=1)
    with pytest.raises(ValueError, match="potential"):
        train(train_data, kind="latent", loss="potential", progress=False, num_steps=1)


# --- Chen §8.2: the data-conditioned HNN ----------------------------------------------------------

def test_conditional_hnn_binds_to_a_data_set_and_trains():
    from hmc_lib.hnn import conditional as cond
    sets = cond.simulate_sets(3, seed=0)
    s = cond.summary(sets[0].data["y"])
    assert s.shape == (3,) and s[1] >= s[0] ** 2       # mean y² >= (mean y)²
    data = cond.collect_sets(sets, 100, seed=1)
    assert data.q.shape == (300, 2) and data.s.shape == (300, 3) and data.grad_evals == 300
    res = cond.train_conditional(data, hidden=(32, 32), num_steps=600, batch_size=128, seed=0)
    assert res.loss[-20:].mean() < res.loss[:20].mean() / 2.5
    bound = res.net.bind(s)
    # the bound network is a separable HNN: usable by the kernels, field = −∇Ũ
    q = tf.constant(data.q[:5], tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(q)
        u = bound.potential(q)
    np.testing.assert_allclose(bound.field(q), -tape.gradient(u, q), rtol=1e-5, atol=1e-6)
    HNNPMNUTS(sets[0], bound, 0.1)                         # accepted by the PM kernel
    assert cond.field_error(bound, data.q[:100], data.dh_dq[:100]) < 1.0
    with pytest.raises(ValueError, match="y"):
        cond.summary(np.zeros(5))


def test_goal_verdict_names_the_targets_that_meet_the_goal_for_every_seed():
    from hmc_lib.hnn.experiments import goal_verdict
    assert goal_verdict({"a": [12, 30], "b": [11], "c": [9.9, 50]}) == "on a and b but not on c"
    assert goal_verdict({"a": [10.0], "b": [np.nan, 20], "c": [5]}) == "on a but not on b and c"
    assert goal_verdict({"a": [12], "b": [15], "c": [20]}) == "on a, b and c"
    assert goal_verdict({"a": [1.0]}) == "on no target"
    assert goal_verdict({"a": [3.0]}, goal=2.0) == "on a"
    with pytest.raises(ValueError, match="`ratios`"):
        goal_verdict({})
    # targets whose cells did not pass the gate get no verdict, whatever their ratios
    ok = {"a": True, "b": False, "c": True}
    assert (goal_verdict({"a": [12], "b": [50], "c": [3]}, converged=ok)
            == "on a but not on c; no verdict on b (not converged)")
    assert (goal_verdict({"a": [12], "b": [50]}, converged={"a": False, "b": False})
            == "on no target that passed the convergence gate; no verdict on a and b "
               "(not converged)")
    with pytest.raises(ValueError, match="converged"):
        goal_verdict({"a": [12]}, converged={})


def test_ratio_table_divides_by_the_baseline_and_needs_both_cells_converged():
    import pandas as pd
    rows = [dict(target="t", method="nuts", seed=10, ess_per_grad=0.01, ess_per_potential=0.02,
                 rhat_max=1.0, ess_bulk_min=900, ess_tail_min=800, converged=True),
            dict(target="t", method="hnn_nuts_exact", seed=0, ess_per_grad=0.1,
                 ess_per_sample_grad=0.4, ess_per_potential=0.01, hnn_fraction=0.9,
                 fallback_rate=0.1, fallback_rejected=0.5, rhat_max=1.005, ess_bulk_min=500,
                 ess_tail_min=400, converged=True),
            dict(target="t", method="hnn_nuts_exact", seed=1, ess_per_grad=0.05,
                 ess_per_sample_grad=0.2, ess_per_potential=0.02, hnn_fraction=0.8,
                 fallback_rate=0.2, fallback_rejected=0.4, rhat_max=1.2, ess_bulk_min=20,
                 ess_tail_min=30, converged=False)]
    t = experiments.ratio_table(pd.DataFrame(rows), "hnn_nuts_exact")
    np.testing.assert_allclose(t.ratio.values, [10.0, 5.0])
    np.testing.assert_allclose(t.sampling.values, [40.0, 20.0])
    np.testing.assert_allclose(t.potential.values, [0.5, 1.0])
    assert list(t.converged) == [True, False]
    rows[0]["converged"] = False                  # the baseline fails: no cell stands
    t = experiments.ratio_table(pd.DataFrame(rows), "hnn_nuts_exact")
    assert not t.converged.any()


@pytest.mark.statistical
@pytest.mark.parametrize("name", experiments.TARGETS)
def test_uniform_scores_of_exact_draws_pass_the_moment_check(name):
    """`to_uniform` is each coordinate's conditional CDF: exact draws give U(0, 1) scores,
    so `moment_fields`' score check passes (fails with probability 2e-5), and a wrong map
    (the marginal of the first coordinate reused for the others) fails."""
    t = experiments.get(name)
    x = np.asarray(t.sample(16 * 400, scale.seed(31), tf.float64)).reshape(400, 16, -1)
    fields = experiments.moment_fields(name, x)
    assert fields["score_z"] < fields["score_bound"]
    u = experiments.to_uniform(name, x)
    assert u.shape == x.shape and np.all((u >= 0) & (u <= 1))
    if x.shape[-1] > 1:       # the scores are not those of a shifted target
        shifted = experiments.to_uniform(name, x + 0.5 * np.sqrt(t.variance))
        check = diagnostics.check_moments(shifted, np.full(x.shape[-1], 0.5),
                                          np.full(x.shape[-1], 1.0 / 12.0))
        assert not check.passed
    with pytest.raises(ValueError, match="name"):
        experiments.to_uniform("nope", x)


def test_training_in_blocks_runs_the_same_steps_as_one_block():
    """`train` runs its Adam steps in compiled blocks of `eval_every`: the blocks, a short
    last one included, change when the held-out loss is taken, not the steps."""
    t = experiments.get("icg5")
    data = collect(t, t.sample(4, 0, tf.float64), 2, 10, 0.02, seed=0)
    train_data, held_out = data.split(0.25, seed=0)
    runs = [train(train_data, hidden=(8, 8), num_steps=20, batch_size=16, held_out=held_out,
                  eval_every=every, seed=3, progress=False) for every in (7, 20)]
    np.testing.assert_array_equal(runs[0].history["eval_step"], [7, 14, 20])
    np.testing.assert_array_equal(runs[1].history["eval_step"], [20])
    for r in runs:
        assert r.history["loss"].shape == (20,)
        np.testing.assert_array_equal(r.history["step"], np.arange(1, 21))
    np.testing.assert_allclose(runs[0].history["loss"], runs[1].history["loss"], rtol=1e-6)
    np.testing.assert_allclose(runs[0].history["eval_loss"][-1],
                               runs[1].history["eval_loss"][-1], rtol=1e-6)
    q = tf.constant(held_out.q, tf.float32)
    np.testing.assert_allclose(runs[0].hnn.field(q), runs[1].hnn.field(q), rtol=1e-5,
                               atol=1e-6)


# --- Chen's five methods ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pm_states(gre):
    from hmc_lib.hnn.data import collect_pm_states
    theta = tf.constant(np.tile(gre.posterior_mean, (4, 1)), tf.float64)
    u = tf.random.stateless_normal([4, *gre.u_shape], [5, 1], dtype=tf.float64)
    return collect_pm_states(gre, theta, u, num_trajectories=3, num_steps=8, step_size=0.05,
                             seed=7)


def test_collect_pm_states_keeps_the_whole_state_and_its_gradients(gre, pm_states):
    d = pm_states
    assert d.theta.shape == (12, 8, 2) and d.u.shape == (12, 8, *gre.u_shape)
    assert d.grad_evals == 4 * 3 * 9 and d.step_size == 0.05
    value, g_theta, g_u = gre.value_and_grad(tf.constant(d.points("theta")),
                                             tf.constant(d.points("u")))
    np.testing.assert_allclose(d.points("log_joint"), value, rtol=1e-10)
    np.testing.assert_allclose(d.points("grad_theta"), g_theta, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(d.points("grad_u"), g_u, rtol=1e-8, atol=1e-10)
    # consecutive points are one Strang step apart (to round-off: the data's steps are
    # XLA-compiled, these eager)
    from hmc_lib.integrators import PMState, pm_trajectory
    s0 = PMState(*(tf.constant(getattr(d, f)[:, 0]) for f in ("theta", "rho", "u", "p")),
                 tf.constant(d.log_joint[:, 0]), tf.constant(d.grad_theta[:, 0]),
                 tf.constant(d.grad_u[:, 0]))
    s1 = pm_trajectory(s0, gre.value_and_grad, 0.05, 1)
    np.testing.assert_allclose(s1.theta, d.theta[:, 1], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(s1.p, d.p[:, 1], rtol=1e-6, atol=1e-8)
    train_data, held_out = d.split(0.25, seed=0)
    assert held_out.theta.shape[0] == 3 and train_data.theta.shape[0] == 9


def test_trajectory_matching_integrates_the_networks_leapfrog():
    """Method 5's loss differentiates through `variants.leapfrog`: the library's leapfrog
    with the network's field."""
    from hmc_lib import integrators
    from hmc_lib.hnn import variants
    net = _net("separable")
    q, p = _start()
    q1, p1 = variants.leapfrog(net, q, p, 0.1, 5)
    q2, p2 = integrators.leapfrog(q, p, net.field, 0.1, 5)
    np.testing.assert_allclose(q1, q2, rtol=1e-12)
    np.testing.assert_allclose(p1, p2, rtol=1e-12)


def test_every_chen_method_trains_and_is_judged_on_held_out_paths(pm_states):
    from hmc_lib.hnn import variants
    train_data, held_out = pm_states.split(0.25, seed=0)
    cfg = variants.TrainSettings(hidden=(8, 8), num_steps=20, batch_size=16, match_steps=2)
    widths = {}
    for key in variants.KEYS:
        fitted = variants.fit(key, train_data, cfg, seed=0)
        pts = [held_out.points(f) for f in ("theta", "rho", "u", "p")]
        field = fitted.field(*pts)
        assert field.shape == pts[0].shape and np.all(np.isfinite(field))
        assert np.all(np.isfinite(fitted.history))
        err = variants.evaluate(fitted, train_data, held_out, -held_out.points("grad_theta"))
        assert err["marginal_error"] == pytest.approx(err["held_out_error"])
        widths[key] = fitted.inputs
    u_size = int(np.prod(pm_states.u.shape[2:]))
    assert widths == {"1": 2 * (2 + u_size), "2": 2 + u_size, "3": 2, "4": 4, "4s": 2, "5": 2}
    with pytest.raises(ValueError, match="key"):
        variants.fit("6", train_data, cfg)
    assert variants.relative_error([[1.0, 0.0]], [[2.0, 0.0]]) == pytest.approx(0.5)


def test_trained_network_of_a_long_run_is_loaded_back_not_retrained(tmp_path):
    from hmc_lib import records
    from hmc_lib.hnn import long_runs
    from hmc_lib.hnn.train import TrainResult
    calls = []

    def fake_train():
        calls.append(1)
        return TrainResult(_net("separable", seed=4), {}, 1.5, 42)

    run = records.LongRun("t", tmp_path, "ci", [0], {})
    first = long_runs.trained(run, "net0", fake_train)
    again = long_runs.trained(records.LongRun("t", tmp_path, "ci", [0], {}), "net0",
                              fake_train)
    assert calls == [1] and again.grad_evals == 42 and again.seconds == 1.5
    q = tf.constant([[0.3, -0.2]], tf.float64)
    np.testing.assert_allclose(again.hnn.field(q), first.hnn.field(q), rtol=1e-6)
