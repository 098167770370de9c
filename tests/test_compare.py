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
    book = grid.targets_at("book")
    assert set(grid.BOOK_TARGETS + grid.GYM_TARGETS) == set(book)


# ------------------------------------------------------------------ the comparison at ci

@pytest.fixture(scope="module")
def ci_rows():
    records, seconds = compare.run("ci")
    return bench_compare.to_rows(records, seconds)


@pytest.mark.statistical
def test_compare_ci_every_field_for_every_method(ci_rows):
    """The benchmark at ci scale: one row per (method, target), no missing rows; every
    applicable row has every measure as a number (no NaN; break-even may be inf, "never");
    the bias fields are numbers wherever the target has a ground truth, and None with a
    reason where it has none; n/a rows say why."""
    names = grid.targets_at("ci")
    assert [(r["method"], r["target"]) for r in ci_rows] == \
        [(m, n) for n in names for m in grid.METHODS]
    for r in ci_rows:
        assert all(f in r for f in FIELDS)
        assert r["total_seconds"] > 0
        if not r["applicable"]:
            assert r["reason"] and r["ess_min"] is None
            continue
        for f in compare.MEASURES:
            v = r[f]
            assert isinstance(v, float) and not math.isnan(v), (r["method"], r["target"], f, v)
            if f != "break_even_ess":
                assert math.isfinite(v), (r["method"], r["target"], f, v)
        assert 0.0 <= r["acceptance"] <= 1.0
        assert r["ess_min"] > 0 and r["ess_per_grad"] > 0 and r["ess_per_second"] > 0
        assert r["reference_method"] in grid.UNTRAINED + grid.PSEUDO_MARGINAL
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
            assert r["train_seconds"] == 0 and r["break_even_ess"] == 0


# ------------------------------------------------------------------ seeds and reference

def _rec(method, **kw):
    base = dict(acceptance=0.8, ess_min=100.0, ess_median=150.0, rhat_max=1.0,
                ess_per_grad=1e-3, ess_per_second=50.0, grad_evals=1e5, sample_grad_evals=1e5,
                train_grad_evals=0.0, warmup_grad_evals=1e4, seconds=2.0, train_seconds=0.0,
                warmup_seconds=1.0, break_even_ess=0.0, step_size=0.1)
    base.update(kw)
    return compare.Record(method, "banana", grid.METHODS[method], True, "", **base)


def test_aggregate_takes_medians_and_ranges_over_training_seeds():
    seeds = [_rec("l2hmc", ess_per_second=v, train_seconds=t, break_even_ess=b, note=n)
             for v, t, b, n in ((10.0, 3.0, math.inf, "a"), (30.0, 1.0, 200.0, "a"),
                                (20.0, 2.0, 500.0, "b"))]
    r = compare.aggregate(seeds)
    assert r.training_seeds == 3
    assert r.ess_per_second == 20.0 and r.train_seconds == 2.0 and r.break_even_ess == 500.0
    assert r.spread["ess_per_second"] == [10.0, 30.0]
    assert r.spread["break_even_ess"] == [200.0, math.inf]
    assert r.spread["bias_sd"] is None  # no ground truth in these records
    assert r.note == "seed 1: a; seed 2: a; seed 3: b"
    assert set(r.spread) == set(compare.SPREAD)
    one = _rec("nuts")
    assert compare.aggregate([one]) is one and one.training_seeds == 0
    with pytest.raises(ValueError, match="records"):
        compare.aggregate([])
    with pytest.raises(ValueError, match="one method"):
        compare.aggregate([_rec("l2hmc"), _rec("hnn_hmc")])
    with pytest.raises(ValueError, match="untrained"):
        compare.aggregate([one, one])


def test_break_even_reference_is_the_fastest_converged_untrained_method():
    fast_stuck = _rec("hmc", ess_per_second=500.0, rhat_max=1.5)
    slow_ok = _rec("nuts", ess_per_second=40.0, rhat_max=1.01)
    learned = _rec("l2hmc", ess_per_second=1000.0, train_seconds=1.0)
    ref, note = compare.reference([fast_stuck, slow_ok, learned])
    assert ref is slow_ok and note == ""
    ref, note = compare.reference([fast_stuck, _rec("nuts", ess_per_second=40.0, rhat_max=1.2)])
    assert ref is fast_stuck and "no untrained method converged" in note
    assert compare.reference([learned]) == (None, "")


def test_guidance_holds_for_every_training_seed():
    """`worst`, `converged`, `amortised_range` and `winner` on hand-made cells, as Records and
    as the dicts chapter 9 reads back from JSON."""
    learned = compare.aggregate([
        _rec("l2hmc", ess_per_second=e, train_seconds=t, rhat_max=r)
        for e, t, r in ((100.0, 4.0, 1.02), (300.0, 2.0, 1.05), (200.0, 3.0, 1.2))])
    fast = compare.aggregate([_rec("l2hmc", ess_per_second=e, train_seconds=1.0)
                              for e in (90.0, 95.0, 100.0)])
    nuts = _rec("nuts", ess_per_second=60.0)
    stuck = _rec("hmc", ess_per_second=1e4, rhat_max=1.3)
    for cell in (learned, learned._asdict()):
        assert compare.worst(cell, "rhat_max") == 1.2          # the worst seed's R̂
        assert compare.worst(cell, "ess_per_second", high=False) == 100.0
    assert compare.worst(nuts, "rhat_max") == nuts.rhat_max
    # converged only if every seed converged (the median R̂ 1.05 would pass)
    not_run = compare.Record("tfp_nuts", "banana", "TFP", False, "n/a")
    assert compare.converged([learned, nuts, stuck, not_run]) == [nuts]
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
    shared = runner._KERNELS
    shared.clear()
    hits = shared.hits
    reused = strip(runner._run_standard("banana", target, cfg, methods, 1000))
    assert shared.hits - hits == (cfg["training_seeds"] - 1) * len(methods)
    monkeypatch.setattr(runner, "_KERNELS", _FreshCache(maxsize=1))
    fresh = strip(runner._run_standard("banana", target, cfg, methods, 1000))
    assert runner._KERNELS.hits == 0
    assert reused == fresh
    for m in methods:   # the seeds really differ
        assert reused[m][0]["ess_min"] != reused[m][1]["ess_min"]
