"""NNgHMC: exactness for any field, leapfrog geometry with a network, the gradient network and
its block variant, the training schedule, the prior swap, and the logistic-regression target."""

import numpy as np
import pytest
import tensorflow as tf

import hmc_lib
from hmc_lib import diagnostics, integrators, scale, targets
from hmc_lib.nnghmc.kernel import NNgHMC, RecordingHMC, swap_prior
from hmc_lib.nnghmc import GradientNet, experiments, fit
from hmc_lib.nnghmc.schedule import collect_gradients, run_schedule
from hmc_lib.targets import analytic
from hmc_lib.targets.regression import logreg_laplace

VAR = np.array([1.0, 4.0, 0.25])


def _gauss():
    return targets.get("gaussian", variance=VAR)


def _wrong_field(target):
    """The true gradient rotated by 30° in the (x0, x1) plane, scaled by 1.3, plus a bias."""
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    rot = 1.3 * np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    def field(x):
        g = target.grad_log_prob(x)
        return tf.linalg.matvec(tf.cast(rot, x.dtype), g) + tf.cast([0.5, -0.3, 0.2], x.dtype)
    return field


@pytest.mark.statistical
def test_nnghmc_exact_with_a_wrong_field():
    """N(0, diag(1, 4, 0.25)) stays invariant under NNgHMC with a wrong field: 128 chains from
    exact draws, between-chain t statistics of the uniform scores Φ(x/σ) (level 1e-4)."""
    t = _gauss()
    field = _wrong_field(t)
    run = experiments.exactness_run(t, field, 0.3, 8, analytic.diagonal_to_normal(VAR),
                                    num_results=200, num_chains=128, seed=scale.seed(11))
    assert run.check.passed, run.check
    # the field is wrong enough to cost acceptance, yet the chain moves (each rate is a mean
    # over 25,600 transitions: its Monte Carlo error is below 0.01)
    x0 = t.sample(128, seed=scale.seed(3))
    _, hmc_trace = hmc_lib.sample(hmc_lib.HMC(t, 0.3, 8), 100, x0, seed=scale.seed(4))
    assert 0.15 < run.acceptance < float(np.mean(hmc_trace["is_accepted"])) - 0.1
    _, trace = hmc_lib.sample(NNgHMC(t, field, 0.3, 8), 5, x0, seed=scale.seed(5))
    assert np.all(trace["grad_evals"] == 0) and np.all(trace["potential_evals"] == 1)


@pytest.mark.statistical
def test_moment_check_detects_a_wrong_distribution():
    """The check of `exactness_run` has power: exact draws pass, draws scaled by 1.1 fail."""
    t = _gauss()
    to_z = analytic.diagonal_to_normal(VAR)
    x = t.sample(64 * 50, seed=scale.seed(7), dtype=tf.float64).numpy().reshape(50, 64, 3)
    half, twelfth = np.full(3, 0.5), np.full(3, 1.0 / 12.0)
    assert diagnostics.check_moments(diagnostics.uniform_scores(x, to_z), half, twelfth).passed
    bad = diagnostics.uniform_scores(1.1 * x, to_z)
    assert not diagnostics.check_moments(bad, half, twelfth).passed


@pytest.mark.statistical
def test_banana_to_normal_whitens_exact_draws():
    banana = targets.get("banana")
    x = banana.sample(64 * 50, seed=scale.seed(8), dtype=tf.float64).numpy()
    z = analytic.banana_to_normal(x).reshape(50, 64, 2)
    diagnostics.assert_moments(z, np.zeros(2), np.ones(2))


@pytest.mark.statistical
def test_mean_agreement():
    rng = np.random.default_rng(scale.seed(9))
    a, b = rng.standard_normal((2, 30, 16, 4))
    assert experiments.mean_agreement(a, b).passed
    shifted = experiments.mean_agreement(a, b + np.array([0.0, 0.0, 0.0, 1.0]))
    assert not shifted.passed and np.argmax(np.abs(shifted.z)) == 3
    with pytest.raises(ValueError, match="16 chains"):
        experiments.mean_agreement(a[:, :8], b)


def test_logreg_laplace_mode():
    t = targets.get("logreg", num_data=500, num_features=4, seed=3)
    mode, cov = logreg_laplace(t)
    grad = t.grad_log_prob(tf.constant(mode[None], tf.float64)).numpy()
    np.testing.assert_allclose(grad, 0.0, atol=1e-8)
    assert np.all(np.linalg.eigvalsh(cov) > 0)
    with pytest.raises(TypeError, match="target"):
        logreg_laplace(_gauss())


def test_spread():
    assert experiments.spread([3.0, 1.0, 2.0]) == dict(median=2.0, min=1.0, max=3.0)


def test_nnghmc_with_true_gradient_is_hmc():
    t = _gauss()
    x0 = t.sample(4, seed=0, dtype=tf.float64)
    a, _ = hmc_lib.sample(hmc_lib.HMC(t, 0.3, 5), 30, x0, seed=5)
    b, _ = hmc_lib.sample(NNgHMC(t, t.grad_log_prob, 0.3, 5), 30, x0, seed=5)
    np.testing.assert_allclose(a, b, atol=1e-10)


def _f64_net(dim=3, seed=0):
    net = GradientNet(dim, hidden=16, blocks=1, activation="tanh", dtype=tf.float64, seed=seed)
    net.x_scale.assign(np.full(dim, 2.0))
    net.y_scale.assign(np.full(dim, 0.7))
    return net


def test_leapfrog_with_network_is_reversible():
    net = _f64_net()
    x = tf.constant([[0.3, -1.2, 0.8], [1.5, 0.1, -0.4]], tf.float64)
    v = tf.constant([[1.0, 0.5, -0.7], [-0.2, 0.9, 0.3]], tf.float64)
    x1, v1 = integrators.leapfrog(x, v, net, 0.1, 25)
    assert np.max(np.abs((x1 - x).numpy())) > 0.1      # it moved
    x2, v2 = integrators.leapfrog(x1, -v1, net, 0.1, 25)
    np.testing.assert_allclose(x2.numpy(), x.numpy(), atol=1e-10, rtol=0)
    np.testing.assert_allclose(-v2.numpy(), v.numpy(), atol=1e-10, rtol=0)


def test_leapfrog_with_network_preserves_volume():
    net = _f64_net(seed=1)
    z = tf.constant([0.3, -1.2, 0.8, 1.0, 0.5, -0.7], tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(z)
        x1, v1 = integrators.leapfrog(z[None, :3], z[None, 3:], net, 0.2, 10)
        out = tf.concat([x1[0], v1[0]], 0)
    jac = tape.jacobian(out, z).numpy()
    _, logdet = np.linalg.slogdet(jac)
    assert abs(logdet) < 1e-8
    assert np.max(np.abs(jac - np.eye(6))) > 0.1        # a non-trivial map


@pytest.mark.statistical
def test_network_learns_gradient():
    """Trained on 4000 exact draws of a correlated 4-d Gaussian; held-out relative error < 5 %."""
    cov = np.array([[2.0, 0.8, 0.0, 0.3], [0.8, 1.0, 0.2, 0.0],
                    [0.0, 0.2, 0.5, 0.1], [0.3, 0.0, 0.1, 1.5]])
    t = targets.get("gaussian", covariance=cov)
    q = t.sample(4000, seed=scale.seed(1))
    qv = t.sample(500, seed=scale.seed(2))
    net, hist = fit(q, t.grad_log_prob(q), hidden=64, epochs=30, batch_size=64,
                    learning_rate=1e-2, seed=scale.seed(0), validation=(qv, t.grad_log_prob(qv)))
    assert hist["loss"][-1] < hist["loss"][0] and len(hist["loss"]) == 30
    assert hist["seconds"] > 0 and hist["num_params"] == 4 * 64 + 64 + 64 * 4 + 4
    g, gh = t.grad_log_prob(qv).numpy(), net(qv).numpy()
    rel = np.linalg.norm(gh - g) / np.linalg.norm(g)
    assert rel < 0.05, rel
    # the linear skip term starts at least squares: a linear gradient is fitted at once
    lin, _ = fit(q, t.grad_log_prob(q), hidden=8, epochs=1, learning_rate=1e-6, linear=True)
    assert np.linalg.norm(lin(qv).numpy() - g) / np.linalg.norm(g) < 0.02
    # an untrained net is far off: the bound means something
    untrained = GradientNet(4, hidden=64, seed=0)
    assert np.linalg.norm(untrained(qv).numpy() - g) / np.linalg.norm(g) > 0.5


@pytest.mark.parametrize("linear", [False, True])
def test_block_network_structure(linear):
    dim, k = 6, 3
    net = GradientNet(dim, hidden=5, blocks=k, activation="tanh", seed=0, linear=linear)
    if linear:
        for j in range(k):
            net.lin[j].assign(tf.fill([dim, 2], 0.1))
    assert net.block_sizes == [2, 2, 2]
    x = tf.random.stateless_normal([1, dim], seed=[1, 2])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        out = net(x)[0]
        blocks = [out[2 * j:2 * j + 2] for j in range(k)]
    jac = tape.jacobian(out, x)[:, 0, :].numpy()
    assert np.all(np.abs(jac) > 1e-6)                   # each output sees the whole input
    for j in range(k):                                  # block j depends only on its own params
        for i in range(k):
            grads = tape.gradient(blocks[j], net.block_params(i))
            if i == j:
                assert all(g is not None and np.any(g.numpy() != 0) for g in grads)
            else:
                assert all(g is None or np.all(g.numpy() == 0) for g in grads)
    del tape
    ids = [{id(v) for v in net.block_params(j)} for j in range(k)]
    assert all(not (ids[a] & ids[b]) for a in range(k) for b in range(a + 1, k))
    # the paper's counts (Remark 1): 8 blocks of 50 for d=200 vs one layer of 400
    assert GradientNet(200, hidden=50, blocks=8).num_params == 8 * (200 * 50 + 50 + 50 * 25 + 25)
    assert GradientNet(200, hidden=400).num_params == 200 * 400 + 400 + 400 * 200 + 200


def test_recording_hmc_pairs_are_true_gradients():
    t = _gauss()
    x0 = t.sample(3, seed=0, dtype=tf.float64)
    col = collect_gradients(t, x0, 0.3, 5, num_results=20, seed=2)
    assert col.positions.shape == (20 * 3 * 5, 3) and col.grad_evals == 20 * 3 * 5
    np.testing.assert_allclose(col.grads, t.grad_log_prob(col.positions).numpy(), atol=1e-12)
    hmc_samples, _ = hmc_lib.sample(hmc_lib.HMC(t, 0.3, 5), 20, x0, seed=2)
    np.testing.assert_allclose(col.samples, hmc_samples, atol=1e-9)


@pytest.mark.statistical
def test_schedule_falls_back_with_useless_network():
    t = _gauss()
    useless = lambda pos, grads, seed: (lambda x: 40.0 * x, dict(seconds=0.0, loss=[np.nan]))
    res = run_schedule(t, tf.zeros([4, 3]), 0.3, 5, num_results=30, collect_from=10,
                       collect_until=50, retrain_every=20, probe_steps=10, tolerance=0.1,
                       fit_fn=useless, seed=scale.seed(0), jit_compile=False)
    assert res.log["method"] == "hmc" and res.log["switched_at"] is None
    assert len(res.log["events"]) == 2 and not any(e["passed"] for e in res.log["events"])
    assert np.all(res.trace["grad_evals"] == 5)
    assert res.log["collect_grad_evals"] == 50 * 4 * 5


@pytest.mark.statistical
def test_schedule_switches_with_good_field():
    """The exact gradient passes the first probe: its acceptance has the same law as HMC's
    (about 0.97 here), so falling short by the tolerance 0.5 over 40 probe transitions is
    out of reach."""
    t = _gauss()
    perfect = lambda pos, grads, seed: (t.grad_log_prob, dict(seconds=0.0, loss=[0.0]))
    res = run_schedule(t, tf.zeros([4, 3]), 0.3, 5, num_results=30, collect_from=10,
                       collect_until=50, retrain_every=20, probe_steps=10, tolerance=0.5,
                       fit_fn=perfect, seed=scale.seed(0), jit_compile=False)
    assert res.log["method"] == "nnghmc" and res.log["switched_at"] == 30
    assert res.log["events"][0]["num_pairs"] == 20 * 4 * 5
    assert np.all(res.trace["grad_evals"] == 0)


def test_prior_swap_gives_new_posterior_gradient():
    old = targets.get("logreg", num_data=200, num_features=5, prior_variance=10.0, seed=1)
    new = targets.get("logreg", num_data=200, num_features=5, prior_variance=0.1, seed=1)
    field = swap_prior(old.grad_log_prob, old.log_prior_fn, new.log_prior_fn)
    q = tf.random.stateless_normal([7, 5], seed=[3, 4], dtype=tf.float64)
    np.testing.assert_allclose(field(q).numpy(), new.grad_log_prob(q).numpy(), rtol=1e-10, atol=1e-10)


def test_logreg_gradient_analytic_autodiff_finite_differences():
    t = targets.get("logreg", num_data=300, num_features=6, seed=2)
    assert t.dim == 6 and t.data[0].shape == (300, 6) and set(np.unique(t.data[1])) <= {0.0, 1.0}
    assert np.all(np.abs(t.true_beta) <= 1)
    q = tf.random.stateless_normal([4, 6], seed=[1, 1], dtype=tf.float64)
    analytic = t.grad_log_prob(q).numpy()
    np.testing.assert_allclose(analytic, t.autodiff_grad_log_prob(q).numpy(), rtol=1e-10, atol=1e-9)
    h, fd = 1e-6, np.zeros_like(analytic)
    for i in range(6):
        e = np.zeros(6)
        e[i] = h
        fd[:, i] = (t.log_prob(q + e).numpy() - t.log_prob(q - e).numpy()) / (2 * h)
    np.testing.assert_allclose(analytic, fd, rtol=1e-6, atol=1e-5)
    # stable far out: softplus, no overflow
    assert np.all(np.isfinite(t.log_prob(tf.fill([1, 6], 200.0)).numpy()))
    # seeded data
    t2 = targets.get("logreg", num_data=300, num_features=6, seed=2)
    np.testing.assert_array_equal(t.data[0], t2.data[0])


def test_bad_input():
    t = _gauss()
    with pytest.raises(TypeError, match="grad_fn"):
        NNgHMC(t, 3.0, 0.1, 5)
    with pytest.raises(ValueError, match="step_size"):
        NNgHMC(t, t.grad_log_prob, 0.0, 5)
    with pytest.raises(ValueError, match="num_leapfrog_steps"):
        NNgHMC(t, t.grad_log_prob, 0.1, 0)
    with pytest.raises(ValueError, match="grad_fn"):
        NNgHMC(t, lambda x: x[:, :2], 0.1, 5).bootstrap_results(tf.zeros([2, 3]))
    with pytest.raises(ValueError, match="current_state"):
        NNgHMC(t, t.grad_log_prob, 0.1, 5).bootstrap_results(tf.zeros([2, 4]))
    with pytest.raises(ValueError, match="step_size"):
        RecordingHMC(t, -1.0, 5)
    with pytest.raises(ValueError, match="grads"):
        fit(np.zeros((10, 3)), np.zeros((10, 2)))
    with pytest.raises(ValueError, match="epochs"):
        fit(np.zeros((10, 3)), np.zeros((10, 3)), epochs=0)
    with pytest.raises(ValueError, match="activation"):
        GradientNet(3, activation="swish!")
    with pytest.raises(ValueError, match="blocks"):
        GradientNet(3, blocks=[1, 1])
    with pytest.raises(ValueError, match="collect_until"):
        run_schedule(t, tf.zeros([2, 3]), 0.1, 5, 10, collect_from=20, collect_until=10)
    with pytest.raises(ValueError, match="num_data"):
        targets.get("logreg", num_data=0)
    with pytest.raises(ValueError, match="prior_variance"):
        targets.get("logreg", prior_variance=-1.0)
    with pytest.raises(TypeError, match="new_log_prior_fn"):
        swap_prior(t.grad_log_prob, t.log_prob, None)


def test_top_level_name():
    assert hmc_lib.NNgHMC is NNgHMC


@pytest.mark.statistical
def test_schedule_ess_per_second_criterion_charges_training():
    """criterion="ess_per_second": a perfect field with a huge training bill never pays off
    (the projected NNgHMC rate is divided by the 1e9 charged seconds); the same field free
    of charge passes at once; a useless field (no move) falls back. The default criterion is
    unchanged (test above)."""
    t = _gauss()
    kw = dict(num_results=30, collect_from=10, collect_until=50, retrain_every=20,
              probe_steps=10, seed=scale.seed(0), jit_compile=False, criterion="ess_per_second")
    field = lambda seconds: (lambda pos, grads, seed: (t.grad_log_prob, dict(seconds=seconds,
                                                                              loss=[0.0])))
    costly = run_schedule(t, tf.zeros([4, 3]), 0.3, 5, fit_fn=field(1e9), **kw)
    assert costly.log["method"] == "hmc" and not any(e["passed"] for e in costly.log["events"])
    ev = costly.log["events"][0]
    assert ev["est_nnghmc_ess_per_second"] < 1e-3 * ev["est_hmc_ess_per_second"]
    free = run_schedule(t, tf.zeros([4, 3]), 0.3, 5, fit_fn=field(0.0), min_speedup=1e-3, **kw)
    assert free.log["method"] == "nnghmc" and free.log["switched_at"] == 30
    assert free.log["criterion"] == "ess_per_second"
    stuck = lambda pos, grads, seed: (lambda x: 40.0 * x, dict(seconds=0.0, loss=[np.nan]))
    res = run_schedule(t, tf.zeros([4, 3]), 0.3, 5, fit_fn=stuck, min_speedup=1e-3, **kw)
    assert res.log["method"] == "hmc"
    with pytest.raises(ValueError, match="criterion"):
        run_schedule(t, tf.zeros([4, 3]), 0.3, 5, 10, criterion="speed")
    with pytest.raises(ValueError, match="min_speedup"):
        run_schedule(t, tf.zeros([4, 3]), 0.3, 5, 10, min_speedup=0.0)


def test_efficiency_per_draw():
    from hmc_lib.nnghmc.schedule import efficiency_per_draw
    rng = np.random.default_rng(0)
    iid = rng.standard_normal((2000, 8, 2))
    assert abs(efficiency_per_draw(iid, np.ones(2)) - 1.0) < 0.1
    ar = np.zeros((2000, 8, 2))
    for k in range(1, 2000):
        ar[k] = 0.9 * ar[k - 1] + np.sqrt(1 - 0.81) * rng.standard_normal((8, 2))
    assert abs(efficiency_per_draw(ar, np.ones(2)) - 0.1 / 1.9) < 0.02
    assert efficiency_per_draw(np.zeros((5, 2, 2)), np.ones(2)) < 1e-3   # a stuck chain
    with pytest.raises(ValueError, match="samples"):
        efficiency_per_draw(np.zeros((1, 2, 2)), np.ones(2))


def test_recorded_headline_is_complete_and_bad_files_are_refused(tmp_path):
    """The recorded paper-scale headline (chapter 3) carries its provenance, and its summary
    row is the median and range of its seed rows."""
    import json
    from hmc_lib.nnghmc import experiments
    rec = experiments.recorded_headline()
    assert rec["scale"] == "paper" and rec["command"].startswith("python -m hmc_lib.bench")
    nn = [r for r in rec["rows"] if r["method"] == "nnghmc"]
    (summary,) = [r for r in rec["rows"] if r["method"] == "nnghmc/hmc"]
    assert len(nn) >= 3 and all(r["num_data"] == 50000 for r in nn)
    sp = [r["speedup"] for r in nn]
    assert summary["speedup_median"] == pytest.approx(float(np.median(sp)))
    assert summary["speedup_min"] == min(sp) and summary["speedup_max"] == max(sp)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="missing"):
        experiments.recorded_headline(str(bad))


def test_recorded_comparison_tables_a_record_and_refuses_a_tampered_summary():
    """`recorded_comparison` (chapters 3 and 6): one table row per seed plus the paper's, the
    verdict's outcome from the seeds' speed-ups, and a ValueError for a summary or a seed row
    that does not match the others."""
    import copy
    from hmc_lib.nnghmc import expensive
    rec = experiments.recorded_headline()
    paper = dict(hmc_rate=1.5, nnghmc_rate=6.75, hmc_acceptance=0.8, nnghmc_acceptance=0.6,
                 speedup=4.5)
    args = (("hmc", "nnghmc"), "ess_per_second_total", "ESS/s")
    out = experiments.recorded_comparison(rec, *args, paper=paper)
    nn = [r for r in rec["rows"] if r["method"] == "nnghmc"]
    assert list(out.table.columns) == [
        "HMC ESS/s", "NNgHMC ESS/s (training charged)", "speed-up", "HMC acceptance",
        "NNgHMC acceptance", "final sampler", "wall (min)"]
    assert len(out.table) == len(nn) + 1 and out.table.index[-1] == "paper"
    assert all(i.startswith("seed ") for i in out.table.index[:-1])
    np.testing.assert_array_equal(out.table["speed-up"].iloc[:-1], [r["speedup"] for r in nn])
    assert out.table.loc["paper", "speed-up"] == 4.5
    assert np.isnan(out.table.loc["paper", "wall (min)"])
    assert list(out.nnghmc.index) == list(out.hmc.index) == [r["seed"] for r in nn]
    assert out.summary.method == "nnghmc/hmc"
    sp = sorted(r["speedup"] for r in nn)
    for p, outcome in ((sp[0], "every"), (sp[1], "median"), (sp[-1], "best"),
                       (sp[-1] + 1.0, "none")):
        got = experiments.recorded_comparison(rec, *args, paper={**paper, "speedup": p})
        assert got.outcome == outcome, (p, got.outcome)
    garch = experiments.recorded_comparison(
        expensive.recorded_garch(), ("HMC", "NNgHMC"), "ess_median_per_second",
        "median ESS/s", paper={**paper, "speedup": 4.98})
    assert garch.outcome == "median" and garch.table.columns[0] == "HMC median ESS/s"

    def tampered(edit):
        bad = copy.deepcopy(rec)
        edit(bad["rows"])
        return bad

    summary = lambda rows: next(r for r in rows if r["method"] == "nnghmc/hmc")
    first_nn = lambda rows: next(r for r in rows if r["method"] == "nnghmc")
    for edit, match in (
            (lambda rows: summary(rows).update(speedup_median=6.0), "speedup_median"),
            (lambda rows: summary(rows).update(speedup_max=9.0), "speedup_max"),
            (lambda rows: first_nn(rows).update(speedup=4.0), "speedup"),
            (lambda rows: rows.remove(summary(rows)), "summary row"),
            (lambda rows: rows.append(dict(summary(rows))), "summary row"),
            (lambda rows: rows.remove(first_nn(rows)), "seeds")):
        with pytest.raises(ValueError, match=match):
            experiments.recorded_comparison(tampered(edit), *args, paper=paper)
    with pytest.raises(ValueError, match=">= 4 seeds"):
        experiments.recorded_comparison(rec, *args, paper=paper, min_seeds=4)


def test_recorded_garch_is_complete_and_its_summary_is_computed():
    """The recorded paper-size GARCH run (chapter 6): provenance, the paper's run length,
    >= 3 seeds, and a summary row that is the median and range of the seed rows."""
    from hmc_lib.nnghmc import expensive
    rec = expensive.recorded_garch()
    assert rec["scale"] == "paper" and "garch_headline" in rec["command"]
    nn = [r for r in rec["rows"] if r["method"] == "NNgHMC"]
    hmc = [r for r in rec["rows"] if r["method"] == "HMC"]
    (summary,) = [r for r in rec["rows"] if r["method"] == "nnghmc/hmc"]
    assert len(nn) == len(hmc) >= 3
    assert all(r["num_results"] == expensive.settings("paper")["garch"]["num_results"]
               for r in nn)
    sp = [r["speedup"] for r in nn]
    for n, h in zip(nn, hmc):
        assert n["seed"] == h["seed"]
        assert n["speedup"] == pytest.approx(n["ess_median_per_second"]
                                             / h["ess_median_per_second"])
    assert summary["speedup_median"] == pytest.approx(float(np.median(sp)))
    assert summary["speedup_min"] == min(sp) and summary["speedup_max"] == max(sp)
