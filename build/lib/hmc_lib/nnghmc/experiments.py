"""NNgHMC experiments: run settings per scale, the published numbers, the multi-seed driver
and the checks that the chapter and its tests assert.

Read by the chapter `book/03_nnghmc.md` and by `python -m hmc_lib.bench nnghmc`, so the book
and the benchmark run the same experiments. Numbers in `PAPER` are typed from Li et al. (2019).

- `settings(scale)`: run sizes; `run_compare`: `schedule.compare` with those settings;
- `logreg_seeds`: the logistic-regression comparison once per training seed; `spread`: median
  and range over seeds;
- `exactness_run`: NNgHMC with a given (imperfect) field from many exact draws, with the
  between-chain moment check of its uniform scores (`diagnostics.uniform_scores` of a map to
  N(0, I) such as `targets.analytic.banana_to_normal` or `diagonal_to_normal`);
- `mean_agreement`: two runs' posterior means agree within between-chain error
  (`laplace_starts` gives near-stationary starts for the logistic regression).
- `recorded_headline`: the recorded paper-size headline run (`bench nnghmc_headline`).
"""

import json
import os
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from hmc_lib import diagnostics, scale as scale_mod, targets
from hmc_lib.nnghmc.kernel import NNgHMC
from hmc_lib.nnghmc.schedule import compare
from hmc_lib.diagnostics import uniform_scores
from hmc_lib.sampling import sample
from hmc_lib.targets.regression import logreg_laplace

PAPER = {
    ("banana", "hmc"): dict(acceptance=0.58),
    ("banana", "nnghmc"): dict(acceptance=0.57),
    ("icg30", "hmc"): dict(acceptance=0.7),
    ("icg30", "nnghmc"): dict(acceptance=0.5),
    ("logreg", "hmc"): dict(acceptance=0.8, ess_per_second=1.5, seconds=300, num_data=50000),
    ("logreg", "nnghmc"): dict(acceptance=0.6, ess_per_second=6.75, seconds=40, speedup=4.5),
}


def settings(scale):
    """Run sizes and sampler settings per experiment at `scale`.

    Banana: ε=0.3, L=20 instead of the paper's 0.1, 5 (our banana, A=1, B=0.1, C=1, has
    sd(x1)=10; a trajectory of length 0.5 barely moves); `paper_settings`: the paper's ε and
    L, for HMC alone, run in chunks of `chunk` draws up to `max_draws` until the gate passes.
    `num_results`: draws per chunk of the final runs, `max_results` their budget (both
    continue until the convergence gate passes; `run_compare`). ICG30: the paper's ε=0.5, L=100.
    Logistic regression: the paper's L=20; ε is 0.0075 at the reference size (the middle one)
    and scales like n^-1/2 — the paper's ε=0.01 puts εL near one full period of the
    posterior's oscillation at our sizes (a fixed L resonates; the authors' code draws L at
    random), which drives the ESS of HMC to a few units.

    `exact`: chains and draws of `exactness_run` (independent chains from exact draws).
    `seeds`: training seeds of the logistic-regression headline; `agree`: chains, burn-in and
    draws of the runs that `mean_agreement` compares; `block`: training epochs and NNgHMC
    iterations of the block-network comparison.
    """
    p = lambda **kw: scale_mod.pick(scale=scale, **kw)
    return dict(
        banana=dict(target=dict(), step_size=0.3, L=20, chains=4,
                    num_results=p(ci=1000, book=2000, paper=5000),
                    max_results=p(ci=2000, book=16000, paper=40000), burnin=100,
                    collect=p(ci=100, book=500, paper=1000),
                    paper_settings=dict(step_size=0.1, L=5, chains=16,
                                        chunk=p(ci=2000, book=30000, paper=100000),
                                        max_draws=p(ci=4000, book=60000, paper=400000)),
                    net=dict(hidden=100, epochs=p(ci=20, book=50, paper=50), batch_size=64,
                             learning_rate=1e-2),
                    exact=dict(chains=128, draws=p(ci=50, book=200, paper=1000))),
        icg30=dict(target=dict(), step_size=0.5, L=100, chains=4,
                   num_results=p(ci=200, book=400, paper=5000), burnin=100,
                   collect=p(ci=100, book=100, paper=200),
                   net=dict(hidden=100, epochs=10, learning_rate=1e-3),
                   exact=dict(chains=128, draws=p(ci=30, book=100, paper=1000))),
        logreg=dict(target=dict(num_features=p(ci=20, book=50, paper=200)),
                    sizes=p(ci=[1000, 2000, 4000], book=[5000, 10000, 20000],
                            paper=[10000, 25000, 50000]),
                    step_size=p(ci=0.0075, book=0.0075, paper=0.005), L=20,
                    chains=p(ci=2, book=4, paper=4), num_results=p(ci=100, book=1000, paper=1000),
                    max_results=p(ci=100, book=4000, paper=4000),
                    burnin=50, collect=p(ci=100, book=100, paper=100),
                    net=dict(hidden=100, epochs=50, batch_size=128, learning_rate=1e-3,
                             linear=True),
                    seeds=p(ci=2, book=3, paper=5),
                    agree=dict(chains=16, burnin=50, draws=p(ci=50, book=100, paper=1000)),
                    block=dict(epochs=p(ci=5, book=20, paper=30),
                               iterations=p(ci=50, book=100, paper=200))),
    )


def compare_kwargs(cfg):
    """The schedule's keyword arguments of `compare` for one experiment's settings `cfg`."""
    return dict(num_burnin_steps=cfg["burnin"], collect_until=cfg["burnin"] + cfg["collect"],
                retrain_every=cfg["collect"] // 2, probe_steps=20, tolerance=0.15,
                net_kwargs=cfg["net"], max_results=cfg.get("max_results"))


def run_compare(target, cfg, x0, seed, step_size=None, criterion="acceptance"):
    """`schedule.compare` with the settings `cfg` (one entry of `settings`) and the schedule's
    switch `criterion` ("acceptance" or "ess_per_second"); its 4-tuple."""
    eps = cfg["step_size"] if step_size is None else step_size
    return compare(target, x0, eps, cfg["L"], cfg["num_results"], seed=seed,
                   criterion=criterion, **compare_kwargs(cfg))


def logreg_step_size(cfg, num_data):
    """ε at `num_data` rows: `cfg["step_size"]` at the reference size (the middle one of
    `cfg["sizes"]`), scaled like n^-1/2 as the posterior's standard deviation."""
    return cfg["step_size"] * float(np.sqrt(cfg["sizes"][1] / num_data))


def logreg_target(cfg, num_data, **overrides):
    """The simulated logistic-regression posterior of `cfg` with `num_data` rows (data seed 0)."""
    return targets.get("logreg", num_data=num_data, seed=0, **{**cfg["target"], **overrides})


class SeedRun(NamedTuple):
    """One training seed of the logistic-regression experiment (see `logreg_seeds`).

    row: dict of the headline numbers — `seed`, `num_data`, `dim`, `hmc_ess_per_second`,
      `nnghmc_ess_per_second` (both with training, collection and probes charged),
      `speedup` (their ratio), `sampling_speedup` (ESS/s of the final phases only),
      `hmc_acceptance`, `nnghmc_acceptance`, `train_seconds`, `final_method`, the draws per
      chain and the convergence gate of both runs (`hmc_rhat`, `hmc_ess_gate`: the smaller
      of bulk and tail ESS; likewise `nnghmc_*`) and `converged` (both passed).
    hmc, nnghmc: `compare`'s summaries; hmc_run: `(samples, trace)`; schedule: the
    `ScheduleResult`.
    """
    row: dict
    hmc: dict
    nnghmc: dict
    hmc_run: Any
    schedule: Any


def logreg_seeds(cfg, num_data, seeds, criterion="acceptance"):
    """The logistic-regression comparison of HMC and scheduled NNgHMC, once per seed.

    The data are the same for every seed (data seed 0); `seed` drives HMC, the gradient
    collection, the network's initialisation and training, and the NNgHMC draws, so the spread
    over seeds is the spread of the whole experiment. Chains start at the true β.

    Args:
      cfg: `settings(scale)["logreg"]`.
      num_data: rows of X.
      seeds: ints (pass them through `hmc_lib.scale.seed`).
      criterion: the schedule's switch test (`run_schedule`'s `criterion`).
    Returns:
      A list of `SeedRun`, one per seed, in order.
    """
    if len(seeds) < 1:
        raise ValueError("`seeds` must hold at least one seed")
    target = logreg_target(cfg, num_data)
    x0 = tf.constant(np.tile(target.true_beta, (cfg["chains"], 1)), tf.float32)
    eps = logreg_step_size(cfg, num_data)
    runs = []
    for s in seeds:
        h, n, hmc_run, res = run_compare(target, cfg, x0, seed=int(s), step_size=eps,
                                         criterion=criterion)
        row = dict(seed=int(s), num_data=int(num_data), dim=target.dim,
                   hmc_ess_per_second=h["ess_per_second_total"],
                   nnghmc_ess_per_second=n["ess_per_second_total"],
                   speedup=n["ess_per_second_total"] / h["ess_per_second_total"],
                   sampling_speedup=n["ess_per_second"] / h["ess_per_second"],
                   hmc_acceptance=h["acceptance"], nnghmc_acceptance=n["acceptance"],
                   train_seconds=n["train_seconds"], final_method=n["method"],
                   hmc_draws=h["draws"], nnghmc_draws=n["draws"],
                   hmc_rhat=h["rhat_max"], nnghmc_rhat=n["rhat_max"],
                   hmc_ess_gate=min(h["ess_bulk_min"], h["ess_tail_min"]),
                   nnghmc_ess_gate=min(n["ess_bulk_min"], n["ess_tail_min"]),
                   converged=bool(h["converged"] and n["converged"]))
        runs.append(SeedRun(row, h, n, hmc_run, res))
    return runs


#: rows of `comparison_frame`, in order: (label, key of `compare`'s summaries)
COMPARISON_ROWS = (("final phase", "method"), ("acceptance", "acceptance"),
                   ("draws per chain", "draws"), ("ESS min", "ess_min"),
                   ("ESS median", "ess_median"), ("R̂ (max)", "rhat_max"),
                   ("ESS bulk (min)", "ess_bulk_min"), ("ESS tail (min)", "ess_tail_min"),
                   ("sampling s", "seconds"), ("training s", "train_seconds"),
                   ("total s", "total_seconds"), ("ESS/s, all charged", "ess_per_second_total"))


def comparison_frame(hmc, nnghmc, paper_acceptance=None):
    """HMC against scheduled NNgHMC as a narrow table: one column per sampler, one row per
    quantity (`COMPARISON_ROWS`), with the convergence gate's reading of each.

    Args:
      hmc, nnghmc: `schedule.compare`'s summaries (`diagnostics.summary` dicts with the
        gate's `rhat_max`, `ess_bulk_min`, `ess_tail_min`, `converged`, and `compare`'s
        `total_seconds`, `train_seconds`, `ess_per_second_total`, `method`).
      paper_acceptance: optional `(hmc, nnghmc)` acceptance rates of the paper (a row).
    Returns:
      `(frame, converged)`: a `pd.DataFrame` with columns "HMC", "NNgHMC", and the two
      cells' gate verdicts, for `hmc_lib.book.gated_table(frame, converged, axis=1)`.
    """
    import pandas as pd
    cols = {}
    for name, s in (("HMC", hmc), ("NNgHMC", nnghmc)):
        cols[name] = [s[key] for _, key in COMPARISON_ROWS]
    frame = pd.DataFrame(cols, index=[label for label, _ in COMPARISON_ROWS], dtype=object)
    if paper_acceptance is not None:
        paper = pd.DataFrame({"HMC": [paper_acceptance[0]], "NNgHMC": [paper_acceptance[1]]},
                             index=["paper acceptance"], dtype=object)
        frame = pd.concat([frame.iloc[:2], paper, frame.iloc[2:]])
    return frame, [bool(hmc["converged"]), bool(nnghmc["converged"])]


def spread(values):
    """`dict(median=, min=, max=)` of a sequence of numbers (over training seeds)."""
    v = np.asarray(values, np.float64)
    return dict(median=float(np.median(v)), min=float(np.min(v)), max=float(np.max(v)))


# --- Exactness and agreement checks that a short run settles on any machine --------------

class Exactness(NamedTuple):
    """Output of `exactness_run`: `samples` `[draws, chains, dim]`, `acceptance`, and
    `check`, the `diagnostics.MomentCheck` of the uniform scores."""
    samples: Any
    acceptance: float
    check: Any


def exactness_run(target, grad_fn, step_size, num_leapfrog_steps, to_normal, num_results,
                  num_chains=128, seed=0):
    """NNgHMC driven by `grad_fn` from `num_chains` exact draws; tests that π stays invariant.

    Every chain starts at an exact, independent draw of `target`, so if the kernel leaves π
    invariant every later draw is distributed as π too, the chains are independent, and the
    between-chain t statistics of `diagnostics.check_moments` on the uniform scores
    `Φ(to_normal(x))` (mean 1/2, variance 1/12) are calibrated: a correct kernel fails with
    probability below 1e-4 whatever the network's error. No burn-in, no ESS estimate.

    Args:
      target: a `Target` with an exact sampler.
      grad_fn: the field NNgHMC kicks with (e.g. a trained network).
      step_size, num_leapfrog_steps: ε and L.
      to_normal: `[..., dim] -> [..., dim]` numpy map taking π to N(0, I).
      num_results: draws per chain; num_chains: independent chains (>= 16).
      seed: int (pass it through `hmc_lib.scale.seed`).
    Returns:
      An `Exactness`.
    """
    if num_chains < 16:
        raise ValueError(f"`num_chains` must be >= 16, got {num_chains}")
    x0 = target.sample(int(num_chains), seed=int(seed))
    samples, trace = sample(NNgHMC(target, grad_fn, step_size, num_leapfrog_steps),
                            int(num_results), x0, seed=int(seed) + 1)
    u = uniform_scores(samples, to_normal)
    dim = u.shape[-1]
    check = diagnostics.check_moments(u, np.full(dim, 0.5), np.full(dim, 1.0 / 12.0))
    return Exactness(samples, float(np.mean(trace["is_accepted"])), check)


class Agreement(NamedTuple):
    """Output of `mean_agreement`: `z` `[dim]` two-sample t statistics, `bound`, `passed`."""
    z: np.ndarray
    bound: float
    passed: bool


def mean_agreement(a, b, alpha=1e-4):
    """Do two samplers' runs agree on the posterior means, within between-chain error?

    Each chain's average is one independent estimate (chains independent and started near
    stationarity); z_j = (ā_j − b̄_j) / sqrt(s²_a/C_a + s²_b/C_b) with s the between-chain
    standard deviations of the chain averages. The bound is the t quantile with
    min(C_a, C_b) − 1 degrees of freedom (conservative for Welch's statistic), Bonferroni over
    the `dim` coordinates at family-wise level `alpha`.

    Args:
      a, b: `[draws, chains, dim]` runs on the same target (>= 16 chains each).
    Returns:
      An `Agreement`.
    """
    ca = np.asarray(a, np.float64).mean(0)
    cb = np.asarray(b, np.float64).mean(0)
    if ca.shape[-1] != cb.shape[-1]:
        raise ValueError(f"`a` and `b` must have the same dim, got {ca.shape} and {cb.shape}")
    chains = min(ca.shape[0], cb.shape[0])
    if chains < 16:
        raise ValueError(f"`a` and `b` need >= 16 chains each, got {ca.shape[0]}, {cb.shape[0]}")
    se = np.sqrt(ca.var(0, ddof=1) / ca.shape[0] + cb.var(0, ddof=1) / cb.shape[0])
    z = (ca.mean(0) - cb.mean(0)) / se
    bound = diagnostics.moment_bound(chains, ca.shape[-1], alpha)
    return Agreement(z, bound, bool(np.all(np.abs(z) < bound)))


def laplace_starts(target, num_chains, seed=0):
    """`[num_chains, dim]` float32 independent draws of a `logreg` posterior's Laplace
    approximation (`targets.regression.logreg_laplace`): starting points close to
    stationarity, one per chain, for `mean_agreement`."""
    mode, cov = logreg_laplace(target)
    draws = np.random.default_rng(int(seed)).multivariate_normal(mode, cov, int(num_chains))
    return tf.constant(draws, tf.float32)


# --- The paper-size headline row, recorded ------------------------------------------------

#: the recorded output of `python -m hmc_lib.bench nnghmc_headline --scale paper --json`
HEADLINE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recorded",
                             "headline_paper.json")


def recorded_headline(path=HEADLINE_FILE):
    """The recorded paper-scale headline run (`hmc_lib.bench.nnghmc_headline`): a dict with
    `command`, `date`, `machine`, `total_seconds` and `rows` (the benchmark's rows: per seed
    an `hmc` and an `nnghmc` row, then the `nnghmc/hmc` summary)."""
    with open(path) as f:
        rec = json.load(f)
    missing = {"command", "date", "machine", "total_seconds", "rows"} - set(rec)
    if missing:
        raise ValueError(f"{path}: missing {sorted(missing)}")
    return rec


#: `RecordedComparison.outcome`: how the seeds' speed-ups compare with the paper's
OUTCOMES = ("every", "median", "best", "none")


class RecordedComparison(NamedTuple):
    """Output of `recorded_comparison`.

    table: `pd.DataFrame`, one row per seed (`"seed <k>"`) then `"paper"`; columns
      `HMC <rate_label>`, `NNgHMC <rate_label> (training charged)`, `speed-up`,
      `HMC acceptance`, `NNgHMC acceptance`, `final sampler`, `wall (min)` (the paper row has
      NaN in the last two).
    hmc, nnghmc: the recorded rows of each method, `pd.DataFrame` indexed by seed.
    summary: the recorded `nnghmc/hmc` summary row (`pd.Series`).
    outcome: one of `OUTCOMES`: `"every"` seed's speed-up reaches the paper's, else the
      `"median"` does, else only the `"best"` seed does, else `"none"` does.
    """
    table: Any
    hmc: Any
    nnghmc: Any
    summary: Any
    outcome: str


def recorded_comparison(rec, methods, rate, rate_label, paper, min_seeds=3):
    """A recorded HMC-against-NNgHMC run (chapters 3 and 6) as a per-seed table, checked
    against its own summary, and how it compares with the paper.

    Args:
      rec: a recorded run (`recorded_headline()`, `expensive.recorded_garch()`): `rows` holds
        per seed one row of each of `methods` (with `seed`, `acceptance`, `rate`,
        `final_method` and `wall_seconds`; NNgHMC's also `speedup`) and one `nnghmc/hmc`
        summary row (`speedup_median`, `speedup_min`, `speedup_max`).
      methods: `(hmc, nnghmc)`, the two methods' names in the rows, e.g. `("hmc", "nnghmc")`.
      rate: the rows' ESS-per-second column the speed-up is the ratio of (NNgHMC's with its
        training charged), e.g. `"ess_per_second_total"`.
      rate_label: that rate's name in the table's headers, e.g. `"ESS/s"`.
      paper: the paper's figures, a dict with `hmc_rate`, `nnghmc_rate`, `hmc_acceptance`,
        `nnghmc_acceptance` and `speedup`.
      min_seeds: the fewest seeds accepted.
    Returns:
      `RecordedComparison(table, hmc, nnghmc, summary, outcome)` (see there).
    Raises:
      ValueError: fewer than `min_seeds` seeds, the two methods' seeds differ, not exactly
        one summary row, a seed's speed-up is not NNgHMC's rate over HMC's, or the summary's
        median, min or max is not that of the seeds' speed-ups (a summary typed or edited by
        hand, or rows from another run).
    """
    import pandas as pd
    name_hmc, name_nn = methods
    rows = pd.DataFrame(rec["rows"])
    hmc = rows[rows.method == name_hmc].set_index("seed")
    nn = rows[rows.method == name_nn].set_index("seed")
    summaries = rows[rows.method == "nnghmc/hmc"]
    if len(nn) < min_seeds or not hmc.index.equals(nn.index):
        raise ValueError(f"need the same >= {min_seeds} seeds for {name_hmc!r} and "
                         f"{name_nn!r}, got {list(hmc.index)} and {list(nn.index)}")
    if len(summaries) != 1:
        raise ValueError(f"need exactly one 'nnghmc/hmc' summary row, got {len(summaries)}")
    summary = summaries.iloc[0]
    if not np.allclose(nn.speedup, nn[rate] / hmc[rate]):
        raise ValueError(f"a seed's speedup is not {name_nn}'s {rate} over {name_hmc}'s")
    speedup = np.asarray(nn.speedup, np.float64)
    for stat, fn in (("median", np.median), ("min", np.min), ("max", np.max)):
        if not np.isclose(summary[f"speedup_{stat}"], fn(speedup)):
            raise ValueError(f"the summary's speedup_{stat} {summary[f'speedup_{stat}']} is "
                             f"not the {stat} of the seeds' speed-ups {speedup.tolist()}")
    table = pd.DataFrame({
        f"HMC {rate_label}": hmc[rate],
        f"NNgHMC {rate_label} (training charged)": nn[rate],
        "speed-up": nn.speedup,
        "HMC acceptance": hmc.acceptance,
        "NNgHMC acceptance": nn.acceptance,
        "final sampler": nn.final_method,
        "wall (min)": nn.wall_seconds / 60.0,
    })
    table.loc["paper"] = pd.Series({
        f"HMC {rate_label}": paper["hmc_rate"],
        f"NNgHMC {rate_label} (training charged)": paper["nnghmc_rate"],
        "speed-up": paper["speedup"],
        "HMC acceptance": paper["hmc_acceptance"],
        "NNgHMC acceptance": paper["nnghmc_acceptance"]})
    table.index = [f"seed {k}" if k != "paper" else "paper" for k in table.index]
    p = paper["speedup"]
    outcome = ("every" if summary.speedup_min >= p else
               "median" if summary.speedup_median >= p else
               "best" if summary.speedup_max >= p else "none")
    return RecordedComparison(table, hmc, nn, summary, outcome)
