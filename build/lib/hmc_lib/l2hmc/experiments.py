"""The paper's four toy experiments (Levy et al. 2018, Sec. 5.1, Fig. 1) as one function.

`compare(name)` trains L2HMC on a toy target (its training chains start from exact draws,
so training works on mixing, not on burn-in), then runs L2HMC and HMC with the same number
of leapfrog steps at a grid of step sizes, all started from exact draws of the target (so
no burn-in is needed), and returns everything the chapter and the benchmark tabulate.
Run sizes follow `hmc_lib.scale`.
"""

import time
from typing import Any, NamedTuple

import numpy as np

from hmc_lib import _reuse, diagnostics, scale as scale_mod, targets
from hmc_lib.kernels.hmc import HMC
from hmc_lib.l2hmc.kernel import L2HMC
from hmc_lib.l2hmc.train import train
from hmc_lib.sampling import sample

#: ESS per Metropolis step from the paper's table (OpenReview version, PAPERS.md §1);
#: HMC has the same number of leapfrog steps, so the ratio is also per gradient.
PAPER = {
    "icg50": dict(l2hmc=7.30e-2, hmc=1.65e-2, ratio=4.4),
    "rough_well": dict(l2hmc=6.25e-1, hmc=1.16e-1, ratio=5.4),
    "scg": dict(l2hmc=2.32e-1, hmc=4.69e-3, ratio=49.5),
    "mog": dict(l2hmc=3.24e-2, hmc=None, ratio=None),  # "≪1": HMC does not mix
}

#: per-target settings: network width (paper: 100 units for the 50-d ICG); λ_b (0 where the
#: burn-in draws from N(0, I) sit far out in stiff directions and their huge jumps swamp the
#: loss); tempering for the mixture (T from 20 to 1, as in the reference code's MoG runs);
#: the HMC step-size grid (the largest stable step is 2σ_min = 0.2 for the Gaussians).
SETTINGS = {
    "icg50": dict(hidden_units=(100, 100), burn_in_weight=0.0, initial_temperature=1.0,
                  hmc_step_sizes=(0.05, 0.1, 0.15, 0.19)),
    "scg": dict(hidden_units=(10, 10), burn_in_weight=0.0, initial_temperature=1.0,
                hmc_step_sizes=(0.05, 0.1, 0.15, 0.19)),
    "mog": dict(hidden_units=(10, 10), burn_in_weight=1.0, initial_temperature=20.0,
                anneal_steps="all", hmc_step_sizes=(0.1, 0.2, 0.3, 0.4)),
    "rough_well": dict(hidden_units=(10, 10), burn_in_weight=1.0, initial_temperature=1.0,
                       hmc_step_sizes=(0.05, 0.1, 0.2, 0.3)),
}

NUM_LEAPFROG_STEPS = 10


def sizes(scale=None, name=None):
    """Run sizes at `scale` (for target `name` if given): training steps and batch, draws and
    chains per sampler, and whether training and sampling are XLA-compiled (always: without
    XLA a training step of these small networks costs many times more)."""
    pick = lambda ci, book, paper: scale_mod.pick(ci=ci, book=book, paper=paper, scale=scale)
    # `book` trains 3 seeds of each target within the chapter's budget, so its training is
    # 5-10x shorter than the paper's 5000 steps
    out = dict(train_steps=pick(150, 500, 5000), batch_size=pick(64, 100, 200),
               draws=pick(150, 500, 2000), chains=pick(32, 64, 200),
               train_jit=True, sample_jit=True)
    if name == "mog":  # learning to jump between the modes needs a long, slow anneal
        out.update(train_steps=pick(300, 2000, 10000), batch_size=pick(64, 200, 200))
    if name == "icg50":  # the widest networks
        out.update(train_steps=pick(150, 1000, 5000), batch_size=pick(64, 64, 200))
    if name == "scg":  # the jumped distance keeps growing until ~3000 steps
        out.update(train_steps=pick(150, 1500, 5000))
    return out


#: the targets of `compare`, built once per process (targets are immutable), and their
#: kernels: the training seeds on a target share compiled graphs (`hmc_lib._reuse`)
_target = _reuse.memo(targets.get)
_KERNELS = _reuse.Cache(maxsize=8)


class Comparison(NamedTuple):
    """Output of `compare`. `hmc` maps each HMC step size to `(samples, trace)`."""
    target: Any
    dynamics: Any
    history: dict
    l2hmc: tuple
    hmc: dict
    train_seconds: float


def _slice_trace(trace, chains):
    return {k: (v[:, chains] if isinstance(v, np.ndarray) and v.ndim == 2 else v)
            for k, v in trace.items() if k not in ("final_state", "final_kernel_results")}


def compare(name, scale=None, seed=0, dynamics=None, progress=False, **overrides):
    """Trains L2HMC on toy target `name` and samples it and HMC; returns a `Comparison`.

    Args:
      name: 'icg50', 'scg', 'mog' or 'rough_well'.
      scale: run size (default: the current `hmc_lib.scale`).
      seed: int; everything is seeded from it.
      dynamics: already trained dynamics (e.g. from `load`): training is skipped.
      progress: tqdm progress bar during training.
      overrides: replace entries of `sizes(scale)` or `SETTINGS[name]`, or pass other
        keyword arguments of `train`.
    """
    if name not in SETTINGS:
        raise ValueError(f"`name` must be one of {sorted(SETTINGS)}, got {name!r}")
    opts = {**sizes(scale, name), **SETTINGS[name], **overrides}
    target = _target(name)
    grid = tuple(opts.pop("hmc_step_sizes"))
    draws, chains = opts.pop("draws"), opts.pop("chains")
    train_jit, jit = opts.pop("train_jit"), opts.pop("sample_jit")
    history, train_seconds = {}, 0.0
    if dynamics is None:
        steps, batch = opts.pop("train_steps"), opts.pop("batch_size")
        if opts.get("anneal_steps") == "all":  # T reaches 1 at the last training step
            opts["anneal_steps"] = steps
        t0 = time.perf_counter()
        dynamics, history = train(target, num_train_steps=steps, batch_size=batch,
                                  num_leapfrog_steps=NUM_LEAPFROG_STEPS, seed=seed,
                                  init_state=target.sample(batch, seed=seed + 5),
                                  jit_compile=train_jit, progress=progress, **opts)
        train_seconds = time.perf_counter() - t0
    init = target.sample(chains, seed=seed + 1)
    # the kernels are built once per target and settings (each seed's weights copied into
    # the L2HMC kernel's own dynamics), so later seeds re-use the compiled samplers
    l2_kernel = _reuse.kernel_for(_KERNELS, (target,), ("l2hmc",), dynamics,
                                  lambda d: L2HMC(target, d))
    l2 = sample(l2_kernel, draws, init, seed=seed + 2, jit_compile=jit)
    n = len(grid)
    step = np.repeat(np.asarray(grid, np.float32), chains)[:, None]  # one step size per chain
    kernel = _KERNELS.get((target,), ("hmc", _reuse.as_key(step), dynamics.num_steps),
                          lambda: HMC(target, step_size=step,
                                      num_leapfrog_steps=dynamics.num_steps))
    init_h = target.sample(n * chains, seed=seed + 3)
    hs, ht = sample(kernel, draws, init_h, seed=seed + 4, jit_compile=jit)
    hmc = {}
    for i, eps in enumerate(grid):
        idx = slice(i * chains, (i + 1) * chains)
        trace = _slice_trace(ht, idx)
        trace["seconds"] = ht["seconds"] / n  # the grid ran as one batch
        hmc[eps] = (hs[:, idx], trace)
    return Comparison(target, dynamics, history, l2, hmc, float(train_seconds))


def ess_per_step(samples, target):
    """ESS per draw as the reference code measures it (`diagnostics.ess_known_moments`)."""
    return diagnostics.ess_known_moments(samples, target.mean, target.variance)


def autocorrelation(samples, target, max_lag):
    """ρ_k = E[(x_t − μ)·(x_{t+k} − μ)] / tr Σ with the true moments, k = 0..max_lag."""
    x = np.asarray(samples, np.float64) - target.mean
    n = x.shape[0]
    max_lag = min(int(max_lag), n - 1)
    acov = [np.mean(np.sum(x[: n - k] * x[k:], -1)) for k in range(max_lag + 1)]
    return np.asarray(acov) / float(np.sum(target.variance))


def mode_switch_rate(samples, axis=0):
    """Fraction of steps on which a chain changes the sign of coordinate `axis` (MoG modes)."""
    side = np.sign(np.asarray(samples)[..., axis])
    return float(np.mean(side[1:] != side[:-1]))


def best_hmc(comparison):
    """`(step_size, ess_per_step)` of the HMC step size with the largest ESS per step."""
    scores = {eps: ess_per_step(s, comparison.target) for eps, (s, _) in comparison.hmc.items()}
    eps = max(scores, key=scores.get)
    return eps, scores[eps]


def break_even(train_seconds, l2hmc_ess_per_second, hmc_ess_per_second):
    """Effective draws after which training plus L2HMC beats HMC in wall-clock time.

    Solves train_seconds + N / r_L2HMC = N / r_HMC; infinite when L2HMC is not faster per
    second.
    """
    gain = 1.0 / hmc_ess_per_second - 1.0 / l2hmc_ess_per_second
    return float(train_seconds / gain) if gain > 0 else float("inf")


def table(comparison):
    """One dict of the chapter's table row for this comparison.

    `*_ess_per_step` / `*_ess_per_grad`: the reference code's ESS (trace-weighted, so the
    widest coordinates dominate; at most 1 per step); `*_min_ess_per_grad`: ArviZ's ESS of the
    worst coordinate per gradient evaluation (`diagnostics.summary`).
    """
    t = comparison.target
    l2_samples, l2_trace = comparison.l2hmc
    eps, hmc_ess = best_hmc(comparison)
    l2_ess = ess_per_step(l2_samples, t)
    h_samples, h_trace = comparison.hmc[eps]
    draws, chains = l2_samples.shape[:2]
    per_sec = lambda ess, tr: ess * draws * chains / tr["seconds"]
    l2_rate, h_rate = per_sec(l2_ess, l2_trace), per_sec(hmc_ess, h_trace)
    paper = PAPER[t.name]
    worst = lambda samples, trace: diagnostics.summary(samples, trace)["ess_per_grad"]
    return dict(
        target=t.name, l2hmc_ess_per_step=l2_ess, hmc_ess_per_step=hmc_ess, hmc_step_size=eps,
        ratio=l2_ess / hmc_ess if hmc_ess > 0 else float("inf"),
        l2hmc_ess_per_grad=l2_ess / comparison.dynamics.num_steps,
        hmc_ess_per_grad=hmc_ess / comparison.dynamics.num_steps,
        l2hmc_min_ess_per_grad=worst(l2_samples, l2_trace),
        hmc_min_ess_per_grad=worst(h_samples, h_trace),
        paper_l2hmc=paper["l2hmc"], paper_hmc=paper["hmc"], paper_ratio=paper["ratio"],
        l2hmc_acceptance=float(np.mean(l2_trace["is_accepted"])),
        hmc_acceptance=float(np.mean(h_trace["is_accepted"])),
        learned_step_size=float(comparison.dynamics.step_size.numpy()),
        train_seconds=comparison.train_seconds,
        l2hmc_ess_per_second=l2_rate, hmc_ess_per_second=h_rate,
        break_even_ess=break_even(comparison.train_seconds, l2_rate, h_rate))


#: the headline numbers of `table` that the multi-seed summary reports, with the paper's
HEADLINES = ("ratio", "min_ratio", "train_seconds", "break_even_ess")


def num_seeds(scale=None):
    """Training seeds per target at `scale`: 2 at `ci`, 3 at `book`, 5 at `paper`."""
    return scale_mod.pick(ci=2, book=3, paper=5, scale=scale)


def training_seeds(scale=None):
    """The base seeds of the multi-seed runs, each through `hmc_lib.scale.seed` (so the seed
    sweep shifts them): 0, 10, 20, ... (`compare` uses seed + 1 .. seed + 5 internally)."""
    return [scale_mod.seed(10 * i) for i in range(num_seeds(scale))]


def _picklable(trace):
    return {k: v for k, v in trace.items() if k not in ("final_state", "final_kernel_results")}


def _compare_in_worker(name, scale, seed, kwargs):
    """Runs `compare` in a worker process; returns it with the dynamics as (config, weights)
    and the target as its name, so that it pickles."""
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    c = compare(name, scale=scale, seed=seed, **kwargs)
    l2 = (c.l2hmc[0], _picklable(c.l2hmc[1]))
    hmc = {eps: (s, _picklable(t)) for eps, (s, t) in c.hmc.items()}
    history = {k: v for k, v in c.history.items() if k != "final_state"}
    dyn = (c.dynamics.config, c.dynamics.get_weights())
    return Comparison(name, dyn, history, l2, hmc, c.train_seconds)


def _rebuild(payload):
    from hmc_lib.l2hmc.dynamics import Dynamics
    config, weights = payload.dynamics
    dynamics = Dynamics(**config)
    dynamics.set_weights(weights)
    return payload._replace(target=targets.get(payload.target), dynamics=dynamics)


def compare_many(jobs, scale=None, processes=None, **kwargs):
    """`compare(name, seed=seed)` for each `(name, seed)` in `jobs`, optionally in parallel.

    Args:
      jobs: list of `(target name, seed)`.
      processes: worker processes (default: `num_processes()`); 1 runs everything here.
        Each job is seeded, so the results do not depend on which process ran it; only the
        measured seconds do (jobs running side by side share the machine).
    Returns:
      list of `Comparison`, in the order of `jobs`.
    """
    jobs = [(str(name), int(seed)) for name, seed in jobs]
    if not jobs:
        raise ValueError("`jobs` must name at least one (target, seed)")
    processes = num_processes() if processes is None else int(processes)
    if processes < 1:
        raise ValueError(f"`processes` must be >= 1, got {processes}")
    scale = scale_mod.get() if scale is None else scale
    if processes == 1 or len(jobs) == 1:
        return [compare(name, scale=scale, seed=seed, **kwargs) for name, seed in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    ctx = multiprocessing.get_context("spawn")  # TensorFlow does not survive fork
    with ProcessPoolExecutor(max_workers=min(processes, len(jobs)), mp_context=ctx) as pool:
        futures = [pool.submit(_compare_in_worker, name, scale, seed, kwargs)
                   for name, seed in jobs]
        return [_rebuild(f.result()) for f in futures]


def num_processes():
    """Worker processes for `compare_many`: the CPU count, at most 3 (the runs are small,
    so one process rarely keeps more than one core busy)."""
    import os
    return max(1, min(3, os.cpu_count() or 1))


def compare_seeds(name, seeds=None, scale=None, processes=None, **kwargs):
    """`compare(name, seed=s)` for every training seed `s` (default `training_seeds`).

    Returns a list of `Comparison`, one per seed, in the order of `seeds`.
    """
    seeds = training_seeds(scale) if seeds is None else list(seeds)
    if not seeds:
        raise ValueError("`seeds` must name at least one seed")
    return compare_many([(name, s) for s in seeds], scale=scale, processes=processes,
                        **kwargs)


def seed_rows(comparisons):
    """`table(c)` for each comparison, with its seed index and `min_ratio`, the L2HMC/HMC
    ratio of worst-coordinate ESS per gradient evaluation."""
    rows = []
    for i, c in enumerate(comparisons):
        row = table(c)
        h = row["hmc_min_ess_per_grad"]
        row["min_ratio"] = row["l2hmc_min_ess_per_grad"] / h if h > 0 else float("inf")
        row["seed_index"] = i
        rows.append(row)
    return rows


def spread(rows, key):
    """`(median, min, max)` of `row[key]` over rows (infinite values allowed)."""
    values = np.asarray([float(r[key]) for r in rows], np.float64)
    if values.size == 0:
        raise ValueError("`rows` is empty")
    return float(np.median(values)), float(values.min()), float(values.max())


def headline_summary(rows_by_target):
    """Median and range over seeds of each headline, per target.

    Args:
      rows_by_target: `{target name: seed_rows(...)}`.
    Returns:
      `{target: {headline: (median, min, max), "paper_ratio": float or None,
      "seeds": n}}` for the headlines in `HEADLINES`.
    """
    out = {}
    for name, rows in rows_by_target.items():
        entry = {key: spread(rows, key) for key in HEADLINES}
        entry["paper_ratio"] = PAPER[name]["ratio"]
        entry["seeds"] = len(rows)
        out[name] = entry
    return out
