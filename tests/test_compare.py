"""Issue 18: the comparison (`hmc_lib.compare`, `python -m hmc_lib.bench compare`) and the
Inference Gym targets (`hmc_lib.targets.gym`)."""

import math

import numpy as np
import pytest
import tensorflow as tf

import hmc_lib
from hmc_lib import compare, scale, targets
from hmc_lib.bench import FIELDS
from hmc_lib.bench import compare as bench_compare
from hmc_lib.compare import grid, metrics

GYM = ("gym_eight_schools", "gym_brownian", "gym_funnel", "gym_icg")


# ------------------------------------------------------------------ Inference Gym targets

@pytest.mark.parametrize("name", GYM)
def test_gym_target_shapes_and_ground_truth(name):
    t = targets.get(name)
    assert name in targets.names()
    assert t.is_identity  # these four models are unconstrained: z = x
    assert t.reference_mean.shape == (t.dim,) and t.reference_sd.shape == (t.dim,)
    assert np.all(t.reference_sd > 0)
    np.testing.assert_array_equal(t.mean, t.reference_mean)
    np.testing.assert_allclose(t.variance, t.reference_sd ** 2)
    for dtype in (tf.float32, tf.float64):
        x = tf.zeros([3, t.dim], dtype)
        lp = t.log_prob(x)
        assert lp.shape == (3,) and lp.dtype == dtype
        assert np.all(np.isfinite(lp.numpy()))
        g = t.grad_log_prob(x)
        assert g.shape == (3, t.dim) and np.all(np.isfinite(g.numpy()))
    assert t.constrain(np.ones((2, t.dim))).shape == (2, t.dim)


def test_gym_target_bad_input():
    t = targets.get("gym_eight_schools")
    with pytest.raises(ValueError, match="x"):
        t.log_prob(tf.zeros([3, t.dim + 1]))
    with pytest.raises(ValueError, match="`z`"):
        t.constrain(np.zeros((2, t.dim + 1)))


@pytest.mark.statistical
def test_gym_brownian_nuts_matches_ground_truth(mc_check):
    """Our NUTS after our warm-up reproduces the gym's reference moments of the Brownian
    motion posterior (30-d, near Gaussian) within between-chain error. The reference's own
    standard error is below 0.4 % of a posterior sd, far below ours (≈ 2-3 %)."""
    t = targets.get("gym_brownian")
    x0 = tf.random.stateless_normal([16, t.dim], seed=[scale.seed(3), 1])
    w = hmc_lib.warmup(lambda eps, m: hmc_lib.NUTS(t, eps, max_tree_depth=8, mass=m), x0, 200,
                       seed=scale.seed(4))
    x, _ = hmc_lib.sample(hmc_lib.NUTS(t, w.step_size, max_tree_depth=8, mass=w.mass), 300,
                          w.state, seed=scale.seed(5))
    mc_check(x, t.reference_mean, t.reference_sd ** 2)


# ------------------------------------------------------------------ the gate, fast

def _awkward_draws(rng, n, m, dim):
    """Draws with the features that exercise the ESS and R̂ code paths: a random walk (long
    autocorrelation), ties (rounded values), an antithetic coordinate (negative lag-1
    autocorrelation), a chain shifted away from the others, and a constant coordinate."""
    x = rng.standard_normal((n, m, dim))
    x[:, :, 0] = np.cumsum(x[:, :, 0], 0) * 0.1
    x[:, :, 1] = np.round(x[:, :, 1])
    x[:, :, 2] = x[:, :, 2] * (-1.0) ** np.arange(n)[:, None]
    x[:, 0, 3] += 3.0
    return x


@pytest.mark.parametrize("n, m", [(4, 2), (5, 3), (7, 4), (64, 2), (301, 8), (1000, 16)])
def test_convergence_fast_agrees_with_convergence(n, m):
    """`diagnostics.convergence_fast` (vectorised) gives ArviZ's numbers, those of
    `diagnostics.convergence`, to rounding: on awkward draws, per coordinate (R̂, bulk and
    tail ESS), for short runs where ArviZ's Geyer loop does not run, and for long ones."""
    from hmc_lib import diagnostics as d
    x = _awkward_draws(np.random.default_rng(n), n, m, 6)
    fast, slow = d.convergence_fast(x), d.convergence(x)
    np.testing.assert_allclose(fast[:3], slow[:3], rtol=1e-9)
    assert fast[3:] == slow[3:]
    y = np.ascontiguousarray(np.transpose(x, (2, 1, 0)))
    np.testing.assert_allclose(d._ess_geyer(d._z_scale(d._split_halves(y))),
                               d.ess(x, method="bulk"), rtol=1e-9)
    # ranks taken over the split halves: the R̂ of each coordinate, bulk and folded
    r = np.maximum(d._rhat_plain(d._z_scale(d._split_halves(y))), 0)
    assert np.all(r <= d.rhat(x) + 1e-12)
    with pytest.warns(RuntimeWarning, match="never moved"):
        frozen = x.copy()
        frozen[:, :, 5] = 1.0
        assert np.isnan(d.convergence_fast(frozen).rhat_max)
    assert d.convergence_fast(rng_draws := np.random.default_rng(0).standard_normal(
        (400, 4, 3))).converged == d.convergence(rng_draws).converged


def test_scheduled_gate_reads_at_growing_draw_counts():
    from hmc_lib.compare import runner
    assert runner.gate_schedule(100, 1000) == [100, 200, 300, 400, 500, 600, 700, 800, 1000]
    assert runner.gate_schedule(50, 60) == [50]
    at = runner.gate_schedule(500, 50_000)
    assert at[-1] == 50_000 and len(at) < 25 and all(a % 500 == 0 for a in at)
    assert all(b / a <= 1.25 for a, b in zip(at[3:-1], at[4:-1]))   # overshoot <= 25 %
    gate = runner.ScheduledGate(runner.Budget(1e5, 1000, 100))
    x = np.random.default_rng(0).standard_normal((900, 4, 2))
    skipped = gate(x)
    assert np.isnan(skipped.rhat_max) and not skipped.converged and skipped.draws == 900
    assert gate(x[:500]) == __import__("hmc_lib").diagnostics.convergence_fast(x[:500])


# ------------------------------------------------------------------ metrics

def test_break_even_and_amortised_rate():
    # training 100 s; 10 ESS/s against 5 ESS/s: 100 / (1/5 - 1/10) = 1000 effective draws
    assert metrics.break_even(100.0, 10.0, 5.0) == pytest.approx(1000.0)
    assert metrics.break_even(0.0, 1.0, 5.0) == 0.0
    assert math.isinf(metrics.break_even(10.0, 4.0, 5.0))
    # at the break-even the amortised rate of the trained sampler equals the reference's
    assert metrics.amortised_rate(1000.0, 10.0, 100.0) == pytest.approx(5.0)
    r = metrics.amortised_rate(np.array([1.0, 1e9]), 10.0, 100.0)
    assert r[0] < 0.01 and r[1] == pytest.approx(10.0, rel=1e-6)


def test_metrics_bad_input():
    with pytest.raises(ValueError, match="train_seconds"):
        metrics.break_even(-1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="ess_per_second"):
        metrics.break_even(1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="ess_wanted"):
        metrics.amortised_rate(0.0, 1.0, 1.0)
    x = np.zeros((10, 2, 3))
    with pytest.raises(ValueError, match="`mean`"):
        metrics.bias(x, np.zeros(2), np.ones(2), 10.0)
    with pytest.raises(ValueError, match="`sd`"):
        metrics.bias(x, np.zeros(3), np.zeros(3), 10.0)
    with pytest.raises(ValueError, match="samples"):
        metrics.bias(np.zeros((10, 3)), np.zeros(3), np.ones(3), 10.0)


@pytest.mark.statistical
def test_bias_of_exact_draws_is_monte_carlo_error():
    """Exact draws of the banana: each standardised mean error is N(0, 1/n); the max over 2
    coordinates exceeds 3.9/√n with probability < 2·1e-4."""
    t = targets.get("banana")
    n = 4000
    x = t.sample(n, seed=scale.seed(7), dtype=tf.float64).numpy().reshape(n // 8, 8, 2)
    b = metrics.bias(x, t.mean, np.sqrt(t.variance), ess_min=n)
    assert b.mean_error < 3.9 / math.sqrt(n)
    assert b.mcse == pytest.approx(1 / math.sqrt(n))


def test_standardised_target():
    t = targets.get("banana")
    c, s = np.array([1.0, -2.0]), np.array([10.0, 3.0])
    tz = compare.standardised(t, c, s)
    z = tf.constant([[0.3, -0.2]], tf.float64)
    np.testing.assert_allclose(tz.log_prob(z).numpy(), t.log_prob(c + s * z.numpy()).numpy())
    with pytest.raises(ValueError, match="scale"):
        compare.standardised(t, c, np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="centre"):
        compare.standardised(t, np.zeros(3), s)


# ------------------------------------------------------------------ the grid

def test_applicability():
    for m in grid.METHODS:
        ok, reason = grid.applies(m, "glmm")
        assert ok == (m in grid.PSEUDO_MARGINAL) and (ok or reason)
        ok, reason = grid.applies(m, "banana")
        assert ok == (m not in grid.PSEUDO_MARGINAL) and (ok or reason)
    with pytest.raises(ValueError, match="method"):
        grid.applies("mala", "banana")
    with pytest.raises(TypeError, match="target"):
        grid.applies("hmc", 3)
    with pytest.raises(ValueError, match="methods"):
        compare.run_target("banana", methods=("mala",))
    with pytest.raises(TypeError, match="name"):
        compare.run_target(None)


def test_ci_grid_covers_every_method():
    names = grid.targets_at("ci")
    for m in grid.METHODS:
        assert any(grid.applies(m, n)[0] for n in names), m
        assert any(not grid.applies(m, n)[0] for n in names), m
    assert any(n in GYM for n in names)
    # the recorded grid runs all nine; `book` every method on a subset, the rest recorded
    assert set(grid.BOOK_TARGETS + grid.GYM_TARGETS) == set(grid.targets_at("paper"))
    book = grid.targets_at("book")
    assert set(book) | set(grid.RECORDED_ONLY) == set(grid.targets_at("paper"))
    assert not set(book) & set(grid.RECORDED_ONLY)
    # every target left to the record has its stated reason (chapter 9 glues it)
    assert set(grid.RECORDED_ONLY) == set(grid.NEVER_CONVERGED_AT_BOOK + grid.LEFT_OUT_FOR_TIME)
    for m in grid.METHODS:
        assert any(grid.applies(m, n)[0] for n in book), m


# ------------------------------------------------------------------ the comparison at ci

@pytest.fixture(scope="module")
def ci_rows():
    # shared with chapter 9 at `ci` (`compare.run_cached`: the same library, scale and seed
    # give the same records, so the suite runs the comparison once)
    records, seconds, _ = compare.runner.run_cached("ci")
    return bench_compare.to_rows(records, seconds)


@pytest.mark.statistical
def test_compare_ci_every_field_for_every_method(ci_rows):
    """The benchmark at ci scale: one row per (method, target), no missing rows; every
    applicable row has every measure as a number (no NaN), its gate reading and why it
    stopped, and is marked converged exactly when its gate reading passes (R̂ <= 1.01, bulk
    and tail ESS >= 100); break-even is a number (inf: "never") against a converged
    untrained reference, or None with a note where none converged; the bias fields are
    numbers wherever the target has a ground truth, and None with a reason where it has
    none; n/a rows say why."""
    from hmc_lib import diagnostics
    names = grid.targets_at("ci")
    assert [(r["method"], r["target"]) for r in ci_rows] == \
        [(m, n) for n in names for m in grid.METHODS]
    for r in ci_rows:
        assert all(f in r for f in FIELDS)
        assert r["total_seconds"] > 0
        if not r["applicable"]:
            assert r["reason"] and r["ess_min"] is None and r["converged"] is None
            continue
        for f in compare.MEASURES:
            v = r[f]
            assert isinstance(v, float) and math.isfinite(v), (r["method"], r["target"], f, v)
        assert 0.0 <= r["acceptance"] <= 1.0
        assert r["ess_min"] == r["ess_bulk_min"]
        assert r["ess_min"] > 0 and r["ess_per_grad"] > 0 and r["ess_per_second"] > 0
        stops = r["stopped"].split("/")
        assert set(stops) <= {"converged", "max_draws", "max_grad_evals"}
        if r["method"] not in grid.LEARNED:
            gate = (r["rhat_max"] <= diagnostics.RHAT_MAX and r["ess_bulk_min"] >= 100
                    and r["ess_tail_min"] >= 100)
            assert r["converged"] == gate
            assert r["converged"] or stops != ["converged"]
            assert r["draws"] <= r["budget_draws"]
        else:   # stopped by the gate at every seed: converged at every seed
            assert r["converged"] or set(stops) != {"converged"}
            assert r["training_seeds"] == grid.settings("ci")["training_seeds"]
        if r["reference_method"]:
            assert r["reference_method"] in grid.UNTRAINED + grid.PSEUDO_MARGINAL
            assert isinstance(r["break_even_ess"], float) and not math.isnan(r["break_even_ess"])
        else:
            assert "no untrained method" in r["reference_note"]
            assert r["break_even_ess"] == (None if r["method"] in grid.LEARNED else 0.0)
        has_truth = r["target"] not in grid.PM_TARGETS and \
            compare.ground_truth(targets.get(r["target"]))[1] is not None
        for f in compare.BIAS_FIELDS:
            if has_truth:
                assert isinstance(r[f], float) and math.isfinite(r[f]), (r["method"], f)
            else:
                assert r[f] is None and r["bias_note"].startswith("no ground truth")
        if r["method"] in grid.LEARNED:
            assert r["train_seconds"] > 0 and r["train_grad_evals"] > 0
        else:
            assert r["train_seconds"] == 0
            assert r["break_even_ess"] in (0.0, None)


def test_run_cached_reads_back_what_it_stored(tmp_path, monkeypatch):
    """`run_cached` runs once per key and returns the stored records after; a change of the
    library (its hash) or of the seed offset is a new key."""
    from hmc_lib.compare import runner
    calls = []
    fake = [compare.Record("hmc", "banana", "HMC", False, "n/a")]
    monkeypatch.setattr(runner, "run", lambda scale, workers=None: calls.append(scale)
                        or (fake, 1.5))
    first = runner.run_cached("ci", tmp_path)
    again = runner.run_cached("ci", tmp_path)
    assert calls == ["ci"] and first == (fake, 1.5, False) and again == (fake, 1.5, True)
    monkeypatch.setenv("HMC_BOOK_SEED", "3")
    assert runner.run_cached("ci", tmp_path)[2] is False and calls == ["ci", "ci"]
    monkeypatch.setattr(runner, "_library_key", lambda: "other")
    assert runner.run_cached("ci", tmp_path)[2] is False and len(calls) == 3


def test_run_cached_computes_a_key_once_when_two_ask_at_once(tmp_path, monkeypatch):
    """Two callers at once (pytest-xdist runs chapter 9 beside this file): one runs, the
    other waits for its result instead of running the comparison a second time."""
    import threading
    import time
    from hmc_lib.compare import runner
    calls = []
    fake = [compare.Record("hmc", "banana", "HMC", False, "n/a")]

    def slow_run(scale, workers=None):
        calls.append(scale)
        time.sleep(0.5)
        return fake, 1.5

    monkeypatch.setattr(runner, "run", slow_run)
    out = []
    threads = [threading.Thread(target=lambda: out.append(runner.run_cached("ci", tmp_path)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["ci"]
    assert sorted(o[2] for o in out) == [False, True]


# ------------------------------------------------------------------ seeds and reference

def _rec(method, target="banana", **kw):
    base = dict(acceptance=0.8, ess_min=150.0, ess_median=150.0, rhat_max=1.0,
                ess_bulk_min=150.0, ess_tail_min=120.0, converged=True,
                ess_per_grad=1e-3, ess_per_second=50.0, grad_evals=1e5, sample_grad_evals=1e5,
                train_grad_evals=0.0, warmup_grad_evals=1e4, seconds=2.0, train_seconds=0.0,
                warmup_seconds=1.0, break_even_ess=0.0, step_size=0.1, stopped="converged",
                divergences=0, draws=500)
    base.update(kw)
    return compare.Record(method, target, grid.METHODS[method], True, "", **base)


def test_aggregate_takes_medians_and_ranges_over_training_seeds():
    seeds = [_rec("l2hmc", ess_per_second=v, train_seconds=t, break_even_ess=b, note=n)
             for v, t, b, n in ((10.0, 3.0, math.inf, "a"), (30.0, 1.0, 200.0, "a"),
                                (20.0, 2.0, 500.0, "b"))]
    r = compare.aggregate(seeds)
    assert r.training_seeds == 3 and r.converged and r.stopped == "converged"
    assert r.ess_per_second == 20.0 and r.train_seconds == 2.0 and r.break_even_ess == 500.0
    assert r.spread["ess_per_second"] == [10.0, 30.0]
    assert r.spread["break_even_ess"] == [200.0, math.inf]
    assert r.spread["bias_sd"] is None  # no ground truth in these records
    assert r.note == "seed 1: a; seed 2: a; seed 3: b"
    assert set(r.spread) == set(compare.SPREAD)
    one = _rec("nuts")
    assert compare.aggregate([one]) is one and one.training_seeds == 0
    # one seed that did not converge makes the cell unconverged, and says why it stopped
    mixed = compare.aggregate([_rec("l2hmc"), _rec("l2hmc", converged=False, rhat_max=1.05,
                                                    stopped="max_draws")])
    assert not mixed.converged and mixed.stopped == "converged/max_draws"
    assert mixed.spread["rhat_max"] == [1.0, 1.05]
    with pytest.raises(ValueError, match="records"):
        compare.aggregate([])
    with pytest.raises(ValueError, match="one method"):
        compare.aggregate([_rec("l2hmc"), _rec("hnn_hmc")])
    with pytest.raises(ValueError, match="untrained"):
        compare.aggregate([one, one])


def test_break_even_reference_is_the_fastest_converged_untrained_method():
    fast_stuck = _rec("hmc", ess_per_second=500.0, rhat_max=1.05, converged=False)
    slow_ok = _rec("nuts", ess_per_second=40.0)
    learned = _rec("l2hmc", ess_per_second=1000.0, train_seconds=1.0)
    ref, note = compare.reference([fast_stuck, slow_ok, learned])
    assert ref is slow_ok and note == ""
    # no converged untrained cell: no reference, hence no break-even for anyone
    ref, note = compare.reference([fast_stuck, _rec("nuts", converged=False)])
    assert ref is None and "no untrained method passed" in note
    cells = compare.runner.with_break_even({"hmc": [fast_stuck], "l2hmc": [learned]})
    assert cells["l2hmc"][0].break_even_ess is None and cells["l2hmc"][0].reference_method == ""
    cells = compare.runner.with_break_even({"nuts": [slow_ok], "l2hmc": [learned]})
    assert cells["l2hmc"][0].break_even_ess == pytest.approx(1.0 / (1 / 40.0 - 1 / 1000.0))
    assert compare.reference([learned]) == (None, "")


def test_paired_takes_only_targets_where_both_cells_converged():
    rows = [_rec("nuts", "a"), _rec("tfp_nuts", "a"),
            _rec("nuts", "b"), _rec("tfp_nuts", "b", converged=False),
            _rec("nuts", "c")]
    pairs = metrics.paired(rows, "nuts", "tfp_nuts", "ess_per_second")
    assert list(pairs) == ["a"] and pairs["a"] == (rows[0], rows[1])
    as_dicts = metrics.paired([r._asdict() for r in rows], "nuts", "tfp_nuts", "ess_min")
    assert list(as_dicts) == ["a"]
    with pytest.raises(ValueError, match="field"):
        metrics.paired(rows, "nuts", "tfp_nuts", "speed")


def test_guidance_holds_for_every_training_seed():
    """`worst`, `converged`, `amortised_range` and `winner` on hand-made cells, as Records and
    as the dicts chapter 9 reads back from JSON."""
    learned = compare.aggregate([
        _rec("l2hmc", ess_per_second=e, train_seconds=t, rhat_max=r, converged=c)
        for e, t, r, c in ((100.0, 4.0, 1.0, True), (300.0, 2.0, 1.005, True),
                           (200.0, 3.0, 1.2, False))])
    fast = compare.aggregate([_rec("l2hmc", ess_per_second=e, train_seconds=1.0)
                              for e in (90.0, 95.0, 100.0)])
    nuts = _rec("nuts", ess_per_second=60.0)
    stuck = _rec("hmc", ess_per_second=1e4, rhat_max=1.3, converged=False)
    for cell in (learned, learned._asdict()):
        assert compare.worst(cell, "rhat_max") == 1.2          # the worst seed's R̂
        assert compare.worst(cell, "ess_per_second", high=False) == 100.0
    assert compare.worst(nuts, "rhat_max") == nuts.rhat_max
    # converged only if every seed converged (the median seed's R̂ 1.005 would pass)
    not_run = compare.Record("tfp_nuts", "banana", "TFP", False, "n/a")
    assert compare.converged([learned, nuts, stuck, not_run]) == [nuts]
    learned = learned._replace(converged=True)
    # amortised over n effective draws: n / (train + n / rate)
    lo, mid, hi = compare.amortised_range(learned, 600.0)
    assert (lo, mid, hi) == (600.0 / (4.0 + 6.0), 600.0 / (3.0 + 3.0), 600.0 / (2.0 + 2.0))
    assert compare.amortised_range(nuts, 600.0) == (60.0, 60.0, 60.0)
    # for many draws the learned cell wins, for every seed only against nuts alone
    score = lambda r: compare.amortised_range(r, 1e6)
    assert compare.winner([nuts, learned], score) == (learned, True)
    w = compare.winner([nuts, learned, fast], score)
    assert w.record is learned and not w.sure                 # fast's best seed beats its worst
    # for few draws, training dominates and nuts wins for every seed
    assert compare.winner([nuts, learned], lambda r: compare.amortised_range(r, 10.0)) == (nuts, True)
    assert compare.winner([], score) == (None, False)


def test_run_rejects_bad_workers():
    with pytest.raises(ValueError, match="workers"):
        compare.run("ci", workers=0)


def test_gym_icg_log_prob_matches_the_gyms_own():
    """`gym_icg` evaluates the gym's multivariate normal with L⁻¹ precomputed; it must agree
    with the gym's own `unnormalized_log_prob` (float32 round-off of values near −10³)."""
    t = targets.get("gym_icg")
    x = tf.random.stateless_normal([64, t.dim], seed=[5, 6]) * 3.0
    ours = t.log_prob(x).numpy()
    gym = t.model.unnormalized_log_prob(x).numpy()
    np.testing.assert_allclose(ours, gym, rtol=2e-5, atol=1e-3)
    g = t.grad_log_prob(x).numpy()
    with tf.GradientTape() as tape:
        tape.watch(x)
        lp = t.model.unnormalized_log_prob(x)
    np.testing.assert_allclose(g, tape.gradient(lp, x).numpy(), rtol=1e-3, atol=1e-2)


def test_parallel_run_is_reproducible_and_keeps_target_order():
    """Targets run in worker processes: a rerun gives identical records, in target order, and
    each target gets its own seed (the same target twice gives two different runs)."""
    names = ("glmm", "glmm")
    first, _ = compare.run("ci", target_names=names, methods=("pm_hmc",), workers=2)
    again, _ = compare.run("ci", target_names=names, methods=("pm_hmc",), workers=2)
    assert [r.target for r in first] == list(names)
    assert [r.method for r in first] == ["pm_hmc"] * 2
    clock = {"ess_per_second", "seconds", "train_seconds", "warmup_seconds", "break_even_ess"}
    drawn = lambda recs: [{k: v for k, v in r._asdict().items() if k not in clock} for r in recs]
    assert drawn(first) == drawn(again)  # everything but wall-clock times
    assert first[0].ess_min != first[1].ess_min


class _FreshCache(compare.runner._reuse.Cache):
    """A `_reuse.Cache` that forgets everything before each look-up: every kernel is new."""

    def get(self, pins, settings, build):
        self.clear()
        return super().get(pins, settings, build)


def test_learned_kernels_are_reused_across_training_seeds_with_each_seeds_weights(monkeypatch):
    """The learned samplers' kernels are built once per target and method and shared by the
    training seeds (`runner._KERNELS`, `_reuse.kernel_for`); each seed's draws are exactly
    those of a kernel built fresh around its own network (fails if a seed's weights were
    not copied in: it would sample with the previous seed's network)."""
    from hmc_lib.compare import runner
    cfg = grid.settings("ci")
    target = runner._load_target("banana", cfg)
    methods = ["l2hmc", "hnn_hmc"]
    strip = lambda recs: {m: [{k: v for k, v in r._asdict().items() if "second" not in k}
                              for r in rs] for m, rs in recs.items()}

    def learned_runs():
        p = runner.prepare("banana", target, cfg, 1000)
        seeds = [runner.learned_cells(p, cfg, methods, runner.training_seed(1000, k))
                 for k in range(cfg["training_seeds"])]
        return {m: [s[m] for s in seeds] for m in methods}

    shared = runner._KERNELS
    shared.clear()
    hits = shared.hits
    reused = strip(learned_runs())
    assert shared.hits - hits == (cfg["training_seeds"] - 1) * len(methods)
    monkeypatch.setattr(runner, "_KERNELS", _FreshCache(maxsize=1))
    fresh = strip(learned_runs())
    assert runner._KERNELS.hits == 0
    assert reused == fresh
    for m in methods:   # the seeds really differ
        assert reused[m][0]["ess_min"] != reused[m][1]["ess_min"]


def test_warm_up_is_repeated_at_the_retry_acceptance_after_a_divergent_probe(monkeypatch):
    """`prepare`: the probe after the warm-up decides. With a divergent transition in it the
    warm-up runs again at `retry_accept` (and HMC's warm-up aims at that too); without,
    the first warm-up stands."""
    from hmc_lib.compare import runner
    cfg = grid.settings("ci")
    target = targets.get("banana")
    real_sample, real_warmup = runner.sample, runner.warmup
    for diverge in (True, False):
        aims = []

        def warmup(*args, target_accept, **kw):
            aims.append(target_accept)
            return real_warmup(*args, target_accept=target_accept, **kw)

        def sample(*args, **kw):
            x, tr = real_sample(*args, **kw)
            tr["is_divergent"] = np.full_like(tr["is_divergent"], diverge)
            return x, tr

        monkeypatch.setattr(runner, "warmup", warmup)
        monkeypatch.setattr(runner, "sample", sample)
        p = runner.prepare("banana", target, cfg, 1000)
        if diverge:
            assert aims == [cfg["target_accept"], cfg["retry_accept"], cfg["retry_accept"]]
            assert p.target_accept == cfg["retry_accept"] and "warmed up again" in p.note
        else:
            assert aims == [cfg["target_accept"]] * 2
            assert p.target_accept == cfg["target_accept"] and p.note == ""


def test_recorded_grid_resumes_unit_by_unit(tmp_path, monkeypatch):
    """`compare.record.record`: a run interrupted in a training seed's unit, started again,
    reads back the finished units (it does not run them again: the untrained cells and the
    first seed's are those the first attempt stored) and runs the rest; the record carries
    its provenance and says it is complete. (Resuming inside a unit is `sample_until`'s
    checkpoint, tested with the kill -9 test of `hmc_lib.records`.)"""
    import json
    from hmc_lib import records as records_mod
    from hmc_lib.compare import record, runner
    kw = dict(scale="ci", target_names=("mog",), methods=("nuts", "l2hmc"))
    seed = runner.target_seeds(("mog",))[0]
    real = runner.learned_cells

    def interrupted(p, cfg, methods, s, checkpoints=None):
        if s == runner.training_seed(seed, 1):
            raise KeyboardInterrupt("killed")
        return real(p, cfg, methods, s, checkpoints)

    work, out = tmp_path / "work", tmp_path / "grid.json"
    monkeypatch.setattr(runner, "learned_cells", interrupted)
    with pytest.raises(KeyboardInterrupt):
        record.record(work, out=out, **kw)
    assert not out.exists()
    stored = {u: json.loads((work / "units" / f"{u}.json").read_text())["result"]
              for u in ("mog", "mog-seed0")}
    monkeypatch.setattr(runner, "learned_cells", real)
    monkeypatch.setattr(runner, "untrained_cells", lambda *a, **k: pytest.fail("re-ran"))
    rec = record.record(work, out=out, **kw)
    assert records_mod.load(out)["complete"] is True and rec["targets_done"] == ["mog"]
    assert [u["key"] for u in rec["units"]] == ["mog"] + [
        f"mog-seed{k}" for k in range(grid.settings("ci")["training_seeds"])]
    rows = {r.method: r for r in record.rows_of(rec)}
    assert list(rows) == ["nuts", "l2hmc"] and rows["l2hmc"].training_seeds == 2
    assert rows["nuts"].ess_bulk_min == stored["mog"]["nuts"]["ess_bulk_min"]
    # two seeds: the range's ends are the seeds' values, seed 0's the stored one
    assert stored["mog-seed0"]["l2hmc"]["ess_bulk_min"] in rows["l2hmc"].spread["ess_bulk_min"]
    # the work folder lost: the record's finished target stands and nothing runs again
    import shutil
    shutil.rmtree(work)
    monkeypatch.setattr(runner, "learned_cells", lambda *a, **k: pytest.fail("re-ran"))
    again = record.record(work, out=out, **kw)
    assert again["rows"] == rec["rows"] and again["units"] == rec["units"]
    assert again["complete"] is True and again["targets_done"] == ["mog"]
