"""L2HMC: the operator's mathematics (leapfrog limit, exact inverse, log-Jacobian), the
kernel's invariance, training, save/load and input checks."""

import numpy as np
import pytest
import tensorflow as tf

import hmc_lib
from hmc_lib import diagnostics, integrators, scale, targets
from hmc_lib.l2hmc import L2HMC, Dynamics, flip, load, save, train
from hmc_lib.l2hmc.kernel import target_value_and_grad

F64 = tf.float64


def _random_weights(dynamics, seed, scale=0.3):
    """Perturbs every weight (heads and scales included) so S, Q, T are all non-zero."""
    rng = np.random.default_rng(seed)
    dynamics.set_weights([w if i == 0 else w + scale * rng.normal(size=w.shape)
                          for i, w in enumerate(dynamics.get_weights())])
    return dynamics


def _rough_log_prob(x):
    """A 3-d non-Gaussian log-density with a non-constant Hessian (tests the Jacobian)."""
    return -0.5 * tf.reduce_sum(x**2, -1) - 0.3 * tf.reduce_sum(tf.sin(2.0 * x) * x, -1) \
        - 0.2 * x[..., 0] * x[..., 1]


def _state(shape, seed):
    x = tf.random.stateless_normal(shape, seed=[seed, 1], dtype=F64)
    v = tf.random.stateless_normal(shape, seed=[seed, 2], dtype=F64)
    return x, v


@pytest.mark.parametrize("num_steps", [1, 4])
def test_zero_networks_are_leapfrog(num_steps):
    target = targets.get("scg")
    vg, _ = target_value_and_grad(target)
    dyn = Dynamics(2, num_steps=num_steps, step_size=0.07, dtype=F64)
    x, v = _state([6, 2], 0)
    eps = tf.constant(0.07, F64)
    x1, v1, logdet = dyn.forward(x, v, vg)
    x2, v2 = integrators.leapfrog(x, v, target.grad_log_prob, eps, num_steps)
    np.testing.assert_allclose(x1, x2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(v1, v2, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(logdet, np.zeros(6))
    # d = -1 is leapfrog backwards in time: L^{-1}(x, v) = R L R (x, v), R flips v.
    x3, v3, _ = dyn.inverse(x, v, vg)
    x4, v4 = integrators.leapfrog(x, -v, target.grad_log_prob, eps, num_steps)
    np.testing.assert_allclose(x3, x4, rtol=0, atol=1e-12)
    np.testing.assert_allclose(v3, -v4, rtol=0, atol=1e-12)


def test_forward_then_inverse_is_identity_with_nonzero_networks():
    vg = integrators.value_and_grad(_rough_log_prob)
    dyn = _random_weights(Dynamics(3, num_steps=5, step_size=0.2, hidden_units=(8, 8),
                                   seed=3, dtype=F64), seed=1)
    x, v = _state([7, 3], 1)
    # the networks really are non-zero, T included (the widely copied inverse fails then)
    s, q, t = dyn.x_net(x, v, tf.ones([7, 2], F64))
    assert min(np.abs(s).max(), np.abs(q).max(), np.abs(t).max()) > 1e-2
    x1, v1, ld_f = dyn.forward(x, v, vg)
    assert np.abs(x1 - x).max() > 1e-2  # it moved
    x2, v2, ld_b = dyn.inverse(x1, v1, vg)
    np.testing.assert_allclose(x2, x, rtol=0, atol=1e-10)
    np.testing.assert_allclose(v2, v, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ld_f + ld_b, np.zeros(7), atol=1e-10)
    assert np.abs(ld_f).max() > 1e-3  # not volume preserving, so the test has teeth
    # mixed directions in one batch: each chain follows its own d
    d = tf.constant([1.0, -1.0, 1.0, -1.0, -1.0, 1.0, 1.0], F64)
    mixed = dyn.trajectory(x, v, d, vg)
    x_b, v_b, ld_b2 = dyn.inverse(x, v, vg)
    want_x = np.where(d.numpy()[:, None] > 0, x1, x_b)
    want_ld = np.where(d.numpy() > 0, ld_f, ld_b2)
    np.testing.assert_allclose(mixed.position, want_x, atol=1e-12)
    np.testing.assert_allclose(mixed.log_det_jacobian, want_ld, atol=1e-12)
    np.testing.assert_array_equal(flip(d), -d)


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_log_jacobian_matches_autodiff(direction):
    vg = integrators.value_and_grad(_rough_log_prob)
    dyn = _random_weights(Dynamics(3, num_steps=3, step_size=0.25, hidden_units=(6, 6),
                                   seed=5, dtype=F64), seed=2)
    x, v = _state([1, 3], 2)
    z = tf.concat([x, v], -1)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        out = dyn.trajectory(z[:, :3], z[:, 3:], direction, vg)
        image = tf.concat([out.position, out.momentum], -1)
    jac = tape.jacobian(image, z, experimental_use_pfor=False).numpy().reshape(6, 6)
    sign, logabsdet = np.linalg.slogdet(jac)
    assert sign != 0
    np.testing.assert_allclose(out.log_det_jacobian.numpy()[0], logabsdet, rtol=0, atol=1e-8)
    assert abs(logabsdet) > 1e-3


@pytest.fixture(scope="module")
def trained():
    """A short training on a correlated 2-d Gaussian (float32, graph mode for a fast start)."""
    target = targets.get("gaussian", covariance=[[1.0, 0.95], [0.95, 1.0]], mean=[1.0, -0.5])
    dyn, hist = train(target, num_train_steps=120, batch_size=64, num_leapfrog_steps=5,
                      step_size=0.1, seed=scale.seed(0), jit_compile=False, chunk_size=60,
                      init_state=target.sample(64, seed=scale.seed(9)))
    return target, dyn, hist


@pytest.mark.statistical
def test_training_history_and_progress(trained):
    _, dyn, hist = trained
    for key in ("loss", "acceptance", "esjd", "step_size", "learning_rate", "seconds_per_step"):
        assert hist[key].shape == (120,), key
        assert np.all(np.isfinite(hist[key])), key
    assert hist["loss"][-20:].mean() < hist["loss"][:20].mean()
    assert hist["esjd"][-20:].mean() > hist["esjd"][:20].mean()
    assert 0.3 < hist["acceptance"][-20:].mean() <= 1.0
    assert hist["skipped_steps"] == 0 and hist["train_seconds"] > 0
    np.testing.assert_allclose(hist["learning_rate"][0], 1e-3, rtol=1e-6)
    # training moved the networks off zero
    s, q, t = dyn.v_net(tf.ones([1, 2]), tf.ones([1, 2]), tf.ones([1, 2]))
    assert np.abs(np.concatenate([s, q, t])).max() > 1e-4


def _check_moments(target, samples):
    # between-chain t statistics, Bonferroni at 1e-4 (no ESS estimate): 64 chains started
    # from exact draws
    diagnostics.assert_moments(samples.astype(np.float64), target.mean, target.variance)


@pytest.mark.statistical
def test_kernel_leaves_target_invariant(trained):
    target, dyn, _ = trained
    kernel = L2HMC(target, dyn)
    samples, trace = hmc_lib.sample(kernel, 400, target.sample(64, seed=scale.seed(3)),
                                    seed=scale.seed(4), jit_compile=False)
    assert set(("is_accepted", "log_accept_ratio", "is_divergent", "grad_evals",
                "log_det_jacobian")) <= set(trace)
    assert np.all(trace["grad_evals"] == 5)
    assert 0.3 < trace["is_accepted"].mean() < 1.0
    _check_moments(target, samples)


@pytest.mark.statistical
def test_kernel_exact_with_random_networks():
    """Untrained random networks (far from volume preserving): the MH test with log|det J|
    must still leave the target invariant; without the Jacobian term it would not."""
    target = targets.get("gaussian", covariance=[[2.0, -0.6], [-0.6, 0.5]], mean=[0.0, 1.0])
    dyn = _random_weights(Dynamics(2, num_steps=3, step_size=0.3, hidden_units=(8, 8), seed=4),
                          seed=6, scale=0.15)
    samples, trace = hmc_lib.sample(L2HMC(target, dyn), 600,
                                    target.sample(64, seed=scale.seed(5)),
                                    seed=scale.seed(6), jit_compile=False)
    assert np.abs(trace["log_det_jacobian"]).mean() > 0.05
    assert trace["is_accepted"].mean() > 0.1
    _check_moments(target, samples)


def test_kernel_is_seeded_and_counts_divergences():
    target = targets.get("scg")
    dyn = Dynamics(2, num_steps=3, step_size=0.05)
    init = target.sample(8, seed=1)
    a, _ = hmc_lib.sample(L2HMC(target, dyn), 20, init, seed=5, jit_compile=False)
    b, _ = hmc_lib.sample(L2HMC(target, dyn), 20, init, seed=5, jit_compile=False)
    np.testing.assert_array_equal(a, b)
    wild = Dynamics(2, num_steps=3, step_size=50.0)
    c, trace = hmc_lib.sample(L2HMC(target, wild), 10, init, seed=5, jit_compile=False)
    assert trace["is_divergent"].all() and not trace["is_accepted"].any()
    np.testing.assert_array_equal(c[-1], init.numpy())


def test_save_load_round_trip(tmp_path):
    vg = integrators.value_and_grad(_rough_log_prob)
    dyn = _random_weights(Dynamics(3, num_steps=4, step_size=0.15, hidden_units=(5, 7), seed=8),
                          seed=4, scale=0.2)
    path = save(dyn, tmp_path / "dyn")
    back = load(path)
    assert back.config == dyn.config
    x, v = _state([5, 3], 4)
    x, v = tf.cast(x, tf.float32), tf.cast(v, tf.float32)
    d = tf.constant([1.0, -1.0, 1.0, 1.0, -1.0])
    one, two = dyn.trajectory(x, v, d, vg), back.trajectory(x, v, d, vg)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    as64 = load(path, dtype=F64)
    assert as64.log_step_size.dtype == F64
    with pytest.raises(ValueError, match="not a saved"):
        np.savez(tmp_path / "other.npz", a=np.zeros(2))
        load(tmp_path / "other.npz")


def test_bad_input():
    target = targets.get("scg")
    with pytest.raises(ValueError, match="step_size"):
        Dynamics(2, step_size=0.0)
    with pytest.raises(ValueError, match="step_size"):
        Dynamics(2, step_size=-0.1)
    with pytest.raises(ValueError, match="num_steps"):
        Dynamics(2, num_steps=0)
    with pytest.raises(ValueError, match="dim"):
        Dynamics(0)
    with pytest.raises(ValueError, match="hidden_units"):
        Dynamics(2, hidden_units=(10, 0))
    with pytest.raises(ValueError, match="dim"):
        L2HMC(target, Dynamics(3))
    with pytest.raises(TypeError, match="dynamics"):
        L2HMC(target, "not dynamics")
    dyn = Dynamics(2)
    vg, _ = target_value_and_grad(target)
    with pytest.raises(ValueError, match="position"):
        dyn.trajectory(tf.zeros([4, 3]), tf.zeros([4, 3]), 1.0, vg)
    with pytest.raises(ValueError, match="current_state"):
        L2HMC(target, dyn).bootstrap_results(tf.zeros([4, 5]))
    with pytest.raises(ValueError, match="batch_size"):
        train(target, num_train_steps=2, batch_size=0)
    with pytest.raises(ValueError, match="num_train_steps"):
        train(target, num_train_steps=-1)
    with pytest.raises(ValueError, match="dim"):
        train(lambda x: -tf.reduce_sum(x**2, -1), num_train_steps=2)
    with pytest.raises(ValueError, match="scale"):
        train(target, num_train_steps=2, scale=0.0)
    with pytest.raises(ValueError, match="init_state"):
        train(target, num_train_steps=2, batch_size=4, init_state=tf.zeros([3, 2]))
    assert hmc_lib.L2HMC is L2HMC


def test_multi_seed_summary(monkeypatch):
    from hmc_lib.l2hmc import experiments as toy
    monkeypatch.delenv("HMC_BOOK_SEED", raising=False)
    assert toy.training_seeds("ci") == [0, 10]
    assert toy.training_seeds("book") == toy.training_seeds("paper") == [0, 10, 20]
    monkeypatch.setenv("HMC_BOOK_SEED", "2")
    assert toy.training_seeds("book") == [200006, 200016, 200026]
    rows = [dict(ratio=r, min_ratio=2 * r, train_seconds=10.0, break_even_ess=b, converged=c)
            for r, b, c in ((0.8, float("inf"), True), (3.0, 50.0, True), (1.5, 20.0, False))]
    summary = toy.headline_summary({"icg50": rows})["icg50"]
    assert summary["ratio"] == (1.5, 0.8, 3.0)
    assert summary["min_ratio"] == (3.0, 1.6, 6.0)
    assert summary["break_even_ess"] == (50.0, 20.0, float("inf"))
    assert summary["paper_ratio"] == 4.4 and summary["seeds"] == 3
    assert summary["converged"] is False        # one seed's cell did not pass the gate
    with pytest.raises(ValueError, match="names"):
        toy.run_targets([])
    with pytest.raises(ValueError, match="processes"):
        toy.run_targets(["scg"], processes=0)
    with pytest.raises(ValueError, match="name"):
        toy.train_toy("banana", 0)


def test_ratio_row_needs_both_runs_converged():
    from hmc_lib.l2hmc import experiments as toy
    l2 = dict(l2hmc_ess_per_step=0.5, l2hmc_ess_per_step_refcode=0.4,
              l2hmc_min_ess_per_grad=0.05, l2hmc_ess_per_second=100.0, l2hmc_converged=True,
              train_seconds=10.0)
    hmc = dict(hmc_ess_per_step=0.01, hmc_ess_per_step_refcode=0.008,
               hmc_min_ess_per_grad=0.001, hmc_ess_per_second=1000.0, hmc_converged=True)
    row = toy.ratio_row("scg", l2, hmc)
    assert row["ratio"] == pytest.approx(50.0) and row["ratio_refcode"] == pytest.approx(50.0)
    assert row["min_ratio"] == pytest.approx(50.0) and row["converged"]
    assert row["break_even_ess"] == float("inf")     # slower per second: never pays
    assert row["paper_ratio"] == 49.5
    assert not toy.ratio_row("scg", l2, {**hmc, "hmc_converged": False})["converged"]
    fast = toy.ratio_row("scg", {**l2, "l2hmc_ess_per_second": 2000.0}, hmc)
    assert fast["break_even_ess"] == pytest.approx(10.0 / (1 / 1000 - 1 / 2000))


def test_the_two_known_moment_ess_estimators():
    """The paper's description (sum until the autocorrelation first drops below 0.05) and
    the reference code's rule (zero every lag below 0.05, sum all the others up to n - 2)
    differ on an antithetic chain, whose autocorrelation alternates: the first stops at lag
    1 and scores 1, the second sums every even lag. On independent draws the first scores
    exactly 1; the second at most 1, less when noise at the long lags (averages over few
    pairs) exceeds the cut-off."""
    from hmc_lib.l2hmc import experiments as toy
    target = targets.get("gaussian", variance=[1.0, 4.0])
    rng = np.random.default_rng(0)
    n = 500
    iid = rng.normal(size=(n, 64, 2)) * np.sqrt([1.0, 4.0])
    assert toy.ess_per_step(iid, target) == 1.0
    assert toy.ess_per_step_reference_code(iid, target) <= 1.0
    flip = iid[:1] * (-1.0) ** np.arange(n)[:, None, None]   # x, -x, x, ...
    assert toy.ess_per_step(flip, target) == 1.0
    c = np.mean(np.sum(iid[0] ** 2, -1)) / 5.0               # ρ_k = (-1)^k c exactly
    assert c > 0.05
    even_lags = len(range(2, n - 1, 2))
    assert toy.ess_per_step_reference_code(flip, target) == pytest.approx(
        1.0 / (1.0 + 2.0 * c * even_lags), rel=1e-9)


def test_gate_reads_a_thinned_run():
    from hmc_lib.l2hmc import experiments as toy
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5000, 4, 2))
    g = toy.gate(x, max_draws=1000)
    assert g.draws == 1000 and g.chains == 4 and g.converged
    assert g == diagnostics.convergence(x[::5])
    assert toy.gate(x[:800], max_draws=1000).draws == 800


def test_sizes_and_overrides():
    from hmc_lib.l2hmc import experiments as toy
    s = toy.sizes("paper", "scg")
    assert s.train_steps == 5000 and s.batch_size == 200
    assert s.budget_grads() == s.max_draws * toy.NUM_LEAPFROG_STEPS
    settings, size, extra = toy._options("scg", "ci", dict(train_steps=7, loss_scale=1.0,
                                                           jit_compile=False))
    assert size.train_steps == 7 and settings.loss_scale == 1.0
    assert extra == {"jit_compile": False}
    assert toy.SETTINGS["scg"].loss_scale == 0.1   # the defaults are untouched


def test_training_resumes_from_its_checkpoint_to_the_same_result(tmp_path, monkeypatch):
    """A training run killed after a checkpoint and started again ends exactly as a run that
    was never interrupted (weights, Adam state, chains and history are all restored)."""
    import sys
    train_module = sys.modules["hmc_lib.l2hmc.train"]
    target = targets.get("scg")
    kw = dict(num_train_steps=12, batch_size=8, num_leapfrog_steps=3, hidden_units=(6,),
              chunk_size=3, seed=5, jit_compile=False)
    whole, h_whole = train(target, **kw)
    path = str(tmp_path / "train.npz")
    real_save, saves = train_module._save_checkpoint, []

    class Killed(Exception):
        pass

    def save_then_die(*args):
        real_save(*args)
        saves.append(args[3])
        if len(saves) == 2:       # killed right after the second checkpoint (6 of 12 steps)
            raise Killed

    monkeypatch.setattr(train_module, "_save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train(target, checkpoint=path, checkpoint_seconds=0.0, **kw)
    monkeypatch.setattr(train_module, "_save_checkpoint", real_save)
    resumed, h_resumed = train(target, checkpoint=path, checkpoint_seconds=0.0, **kw)
    assert saves == [1, 2]
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    for key in ("loss", "acceptance", "esjd", "step_size"):
        np.testing.assert_array_equal(h_whole[key], h_resumed[key])
    np.testing.assert_array_equal(h_whole["final_state"], h_resumed["final_state"])
    # a finished checkpoint returns the same run without training again
    again, h_again = train(target, checkpoint=path, **kw)
    np.testing.assert_array_equal(h_again["loss"], h_whole["loss"])
    with pytest.raises(ValueError, match="checkpoint"):
        train(target, checkpoint=path, **{**kw, "seed": 6})


def test_rough_well_official_period():
    """The official code's rough well, cos(x/η²): analytic gradient = autodiff, moments from
    the quadrature grid agree with the density's (the perturbation averages out: variance
    within 1e-4 of 1, as for the paper's cos(x/η))."""
    paper = targets.get("rough_well")
    official = targets.get("rough_well", period=1e-4)
    assert paper.name == "rough_well" and official.name == "rough_well_official"
    x = tf.constant([[0.3, -1.7], [2.2, 0.01]], F64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        lp = official.log_prob(x)
    np.testing.assert_allclose(tape.gradient(lp, x), official.grad_log_prob(x), rtol=1e-9)
    assert np.abs(np.asarray(official.grad_log_prob(x)) + x.numpy()).max() > 10  # up to 100
    np.testing.assert_allclose(official.variance, 1.0, atol=1e-4)
    np.testing.assert_allclose(paper.variance, official.variance, atol=1e-4)
    with pytest.raises(ValueError, match="period"):
        targets.get("rough_well", period=0.0)


def test_tuned_hmc_step_sizes_are_the_recorded_runs():
    """`ToySettings.hmc_step_size` (what the chapter's `book` run uses) is the recorded run's
    choice: its best converged step size by ESS per step, or its best one where none
    converged; and that choice is in the grid the record put through the gate."""
    from hmc_lib import records
    from hmc_lib.l2hmc import experiments as toy, long_runs
    rec = records.load(long_runs.record_path("toys", "paper"))
    for name, grid in rec["hmc"].items():
        chosen = {r["hmc_step_size"] for r in rec["rows"] if r["target"] == name}
        assert chosen == {toy.SETTINGS[name].hmc_step_size}, (name, chosen)
        ok = {float(e): g["hmc_ess_per_step"] for e, g in grid.items() if g["hmc_converged"]}
        pool = ok or {float(e): g["hmc_ess_per_step"] for e, g in grid.items()}
        assert toy.SETTINGS[name].hmc_step_size == max(pool, key=pool.get), (name, pool)
        assert set(map(float, grid)) == set(toy.SETTINGS[name].hmc_step_sizes)
