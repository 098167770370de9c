"""NNgHMC's training schedule (the paper's Sec. 3) as one function, and gradient collection.

`collect_gradients` runs standard HMC and keeps `(q, ∇log π(q))` from every leapfrog step.
`run_schedule`: HMC to draw a; then, from draw a, collect pairs and refit the network every
r draws; after each fit, probe a few NNgHMC iterations; once the probe's acceptance is within
`tolerance` of HMC's, stop collecting and finish the chain with NNgHMC; if that never happens
by draw b, finish it with HMC (the fall-back). With `criterion="ess_per_second"` the switch
test is instead what the schedule is for: the probe's estimated ESS per second, with the
training so far charged to the remaining draws, against HMC's (`efficiency_per_draw`). Every phase is an exact π-invariant kernel, so
the chain is valid whichever path is taken.
"""

import time
from typing import Any, NamedTuple

import numpy as np

from hmc_lib import _checks, _reuse
from hmc_lib.kernels.hmc import HMC
from hmc_lib.nnghmc.kernel import NNgHMC, RecordingHMC
from hmc_lib.nnghmc.networks import GradientNet
from hmc_lib.sampling import sample, sample_until


class Collected(NamedTuple):
    """Output of `collect_gradients`.

    positions, grads: numpy `[num_results · chains · L, dim]` training pairs (finite ones).
    samples: `[num_results, chains, dim]` the HMC draws. trace: `hmc_lib.sample`'s trace
    (without the bulky trajectories). grad_evals: total true-gradient evaluations spent.
    seconds: wall-clock including compilation.
    """
    positions: Any
    grads: Any
    samples: Any
    trace: dict
    grad_evals: int
    seconds: float


#: kernels (and the network a probe kernel runs) per (target, ε, L): `hmc_lib.sample` keeps
#: its compiled graph on the kernel object, so re-using the object re-uses the graph
_KERNELS = _reuse.Cache(maxsize=8)


def _kernel(kind, target_log_prob_fn, step_size, num_leapfrog_steps):
    """The `kind` (`HMC` or `RecordingHMC`) kernel for this target, ε and L, built once."""
    return _KERNELS.get((target_log_prob_fn,),
                        (kind.__name__, _reuse.as_key(step_size), int(num_leapfrog_steps)),
                        lambda: kind(target_log_prob_fn, step_size, num_leapfrog_steps))


def _nnghmc_kernel(target_log_prob_fn, grad_fn, step_size, num_leapfrog_steps):
    """An `NNgHMC` kernel running `grad_fn`. For a `GradientNet` it is one kernel per target,
    ε, L and architecture, its own network holding a copy of `grad_fn`'s weights (so
    successive fits share one compiled sampler; `hmc_lib._reuse.kernel_for`); for any other
    callable a new kernel."""
    if not isinstance(grad_fn, GradientNet):
        return NNgHMC(target_log_prob_fn, grad_fn, step_size, num_leapfrog_steps)
    return _reuse.kernel_for(
        _KERNELS, (target_log_prob_fn,), ("NNgHMC", _reuse.as_key(step_size),
                                          int(num_leapfrog_steps)), grad_fn,
        lambda net: NNgHMC(target_log_prob_fn, net, step_size, num_leapfrog_steps))


def collect_gradients(target_log_prob_fn, current_state, step_size, num_leapfrog_steps,
                      num_results, seed=0, previous_kernel_results=None, jit_compile=True):
    """Runs `num_results` standard HMC draws and returns every leapfrog point with ∇log π there.

    Args:
      target_log_prob_fn: `[chains, dim] -> [chains]` or a `Target` (its analytic gradient is
        used when it has one).
      current_state: `[chains, dim]` start.
      step_size, num_leapfrog_steps: ε and L of the HMC run.
      num_results: HMC draws to run (each gives L pairs per chain, accepted or not).
      seed: int or `[2]` seed.
      previous_kernel_results: to continue a `RecordingHMC` run.
    Returns:
      A `Collected`.
    """
    start = time.perf_counter()
    kernel = _kernel(RecordingHMC, target_log_prob_fn, step_size, num_leapfrog_steps)
    samples, trace = sample(kernel, num_results, current_state, seed=seed,
                            previous_kernel_results=previous_kernel_results, jit_compile=jit_compile)
    pos = trace.pop("trajectory_positions")
    grads = trace.pop("trajectory_grads")
    dim = pos.shape[-1]
    pos, grads = pos.reshape(-1, dim), grads.reshape(-1, dim)
    keep = np.all(np.isfinite(pos), 1) & np.all(np.isfinite(grads), 1)
    return Collected(pos[keep], grads[keep], samples, trace, int(np.sum(trace["grad_evals"])),
                     time.perf_counter() - start)


class ScheduleResult(NamedTuple):
    """Output of `run_schedule`.

    samples: `[num_results, chains, dim]` draws of the final phase (NNgHMC, or HMC on
      fall-back). trace: `hmc_lib.sample`'s trace of that phase.
    grad_fn: the last fitted field (None if none was fitted).
    log: dict — `method` ("nnghmc" or "hmc"), `switched_at` (draw index or None),
      `events` (one dict per fit: `draw`, `num_pairs`, `train_seconds`, `final_loss`,
      `probe_acceptance`, `hmc_acceptance`, `passed`, and with the "ess_per_second"
      criterion `est_hmc_ess_per_second`, `est_nnghmc_ess_per_second` (training so far
      charged)), `criterion`, `histories` (each fit's history),
      `collect_grad_evals` (true gradients spent by HMC from draw 0 to the switch),
      `burnin_seconds`, `collect_seconds`, `train_seconds`, `probe_seconds` (all wall-clock,
      compilation included), `overhead_seconds` (their sum: everything before the final phase).
    """
    samples: Any
    trace: dict
    grad_fn: Any
    log: dict


def efficiency_per_draw(samples, variance, statistic="median"):
    """Estimated ESS per draw of a short run, from its lag-1 autocorrelation.

    ρ_j = 1 − ESJD_j / (2 Var_j) per coordinate (ESJD_j the mean squared jump of coordinate
    j, Var_j a reference variance, e.g. of the HMC draws), and ESS/draw ≈ (1 − ρ_j)/(1 + ρ_j)
    (exact for an AR(1) chain). A few draws per chain settle ρ_j, where an ESS estimate
    would not. Args: `samples` `[draws >= 2, chains, dim]`; `variance` `[dim]`;
    `statistic`: "median" or "min" over coordinates. Returns a float.
    """
    x = np.asarray(samples, np.float64)
    if x.ndim != 3 or x.shape[0] < 2:
        raise ValueError(f"`samples` must be [draws >= 2, chains, dim], got {list(x.shape)}")
    jump = np.mean(np.diff(x, axis=0) ** 2, axis=(0, 1))
    rho = np.clip(1.0 - jump / (2.0 * np.maximum(np.asarray(variance, np.float64), 1e-300)),
                  -0.95, 0.999)
    eff = (1.0 - rho) / (1.0 + rho)
    if statistic not in ("median", "min"):
        raise ValueError(f"`statistic` must be 'median' or 'min', got {statistic!r}")
    return float(np.median(eff) if statistic == "median" else np.min(eff))


def _default_fit(net_kwargs):
    def fit_fn(positions, grads, seed):
        from hmc_lib.nnghmc.networks import fit
        kwargs = dict(net_kwargs or {})
        kwargs.setdefault("seed", seed)
        return fit(positions, grads, **kwargs)
    return fit_fn


def run_schedule(target_log_prob_fn, current_state, step_size, num_leapfrog_steps, num_results,
                 collect_from=0, collect_until=1000, retrain_every=200, probe_steps=20,
                 tolerance=0.1, net_kwargs=None, fit_fn=None, seed=0, jit_compile=True,
                 criterion="acceptance", min_speedup=1.0, max_results=None, gate=None):
    """NNgHMC with the paper's training schedule; falls back to HMC if the network never fits.

    Args:
      target_log_prob_fn: `[chains, dim] -> [chains]` or a `Target`.
      current_state: `[chains, dim]` start.
      step_size, num_leapfrog_steps: ε and L, shared by HMC and NNgHMC.
      num_results: draws of the final phase (returned); with `max_results`, the draws per
        chunk of `sample_until`.
      collect_from (a), collect_until (b): HMC draws before collecting, and the draw at which
        collection stops at the latest (a < b).
      retrain_every (r): draws collected between fits.
      probe_steps: NNgHMC iterations run after each fit to measure its acceptance.
      tolerance: the switch test is `probe acceptance >= HMC acceptance − tolerance`
        (HMC acceptance over the collected draws), with `criterion="acceptance"`.
      criterion: "acceptance" (the default, the paper's test) or "ess_per_second": switch when
        the probe's projected ESS per second over the `num_results` final draws, training
        seconds so far charged to them, is at least `min_speedup` times HMC's. Both are
        estimated by `efficiency_per_draw` (median over coordinates, reference variance of the
        collected HMC draws) and seconds per draw (compilation excluded; HMC's from the
        recording runs).
      min_speedup: the ratio the "ess_per_second" test requires (> 0).
      net_kwargs: keyword arguments of `hmc_lib.nnghmc.fit` (hidden, epochs, ...).
      fit_fn: optional `(positions, grads, seed) -> (grad_fn, history)` replacing the default
        trainer (history a dict with `seconds` and `loss`).
      seed: int; seeds every phase.
      jit_compile: compile the samplers with XLA.
      max_results: None (the final phase runs `num_results` draws), or the most draws of a
        final phase that runs in chunks of `num_results` until the convergence gate passes
        (`sampling.sample_until`; its trace then has `convergence`, `stopped` and
        `history`). The projected switch test still assumes `num_results` draws.
      gate: `sample_until`'s gate (default `diagnostics.convergence`).
    Returns:
      A `ScheduleResult`.
    """
    for v, name in ((collect_from, "collect_from"), (collect_until, "collect_until")):
        if not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"`{name}` must be an integer >= 0, got {v!r}")
    if collect_until <= collect_from:
        raise ValueError(f"`collect_until` ({collect_until}) must exceed `collect_from` ({collect_from})")
    _checks.positive_int(retrain_every, "retrain_every")
    _checks.positive_int(probe_steps, "probe_steps")
    _checks.positive_int(num_results, "num_results")
    _checks.positive_float(tolerance, "tolerance")
    _checks.positive_float(min_speedup, "min_speedup")
    if criterion not in ("acceptance", "ess_per_second"):
        raise ValueError(f"`criterion` must be 'acceptance' or 'ess_per_second', got {criterion!r}")
    if criterion == "ess_per_second" and (probe_steps < 2 or retrain_every < 2
                                          or collect_until - collect_from < 2):
        raise ValueError("`criterion='ess_per_second'` needs `probe_steps` >= 2 and "
                         "`retrain_every` >= 2 (draws to estimate autocorrelations from)")
    if fit_fn is not None and not callable(fit_fn):
        raise TypeError(f"`fit_fn` must be callable, got {fit_fn!r}")
    fit_fn = fit_fn or _default_fit(net_kwargs)
    seeds = iter(np.random.default_rng(seed).integers(0, 2**31 - 1, size=1000).tolist())
    log = dict(events=[], histories=[], collect_grad_evals=0, burnin_seconds=0.0, criterion=criterion,
               collect_seconds=0.0, train_seconds=0.0, probe_seconds=0.0, switched_at=None)
    state, draw = current_state, 0
    hmc_kwargs = dict(step_size=step_size, num_leapfrog_steps=num_leapfrog_steps)

    if collect_from > 0:
        t0 = time.perf_counter()
        _, tr = sample(_kernel(HMC, target_log_prob_fn, **hmc_kwargs), collect_from, state,
                       seed=next(seeds), jit_compile=jit_compile)
        state, draw = tr["final_state"], collect_from
        log["collect_grad_evals"] += int(np.sum(tr["grad_evals"]))
        log["burnin_seconds"] = time.perf_counter() - t0

    positions, grads, accepted, grad_fn = [], [], [], None
    hmc_draws, hmc_draw_seconds = [], []
    while draw < collect_until:
        n = min(int(retrain_every), collect_until - draw)
        col = collect_gradients(target_log_prob_fn, state, num_results=n, seed=next(seeds),
                                jit_compile=jit_compile, **hmc_kwargs)
        state, draw = col.trace["final_state"], draw + n
        positions.append(col.positions)
        grads.append(col.grads)
        accepted.append(col.trace["is_accepted"])
        hmc_draws.append(col.samples)
        hmc_draw_seconds.append(col.trace["seconds"] / n)
        log["collect_grad_evals"] += col.grad_evals
        log["collect_seconds"] += col.seconds

        grad_fn, history = fit_fn(np.concatenate(positions), np.concatenate(grads), next(seeds))
        log["train_seconds"] += float(history["seconds"])
        log["histories"].append(history)

        t0 = time.perf_counter()
        probe_samples, probe = sample(_nnghmc_kernel(target_log_prob_fn, grad_fn, **hmc_kwargs),
                                      int(probe_steps), state, seed=next(seeds),
                                      jit_compile=jit_compile)
        log["probe_seconds"] += time.perf_counter() - t0
        state = probe["final_state"]    # the probe draws are valid moves of the chain
        hmc_acc = float(np.mean(np.concatenate(accepted)))
        probe_acc = float(np.mean(probe["is_accepted"]))
        if criterion == "acceptance":
            passed = probe_acc >= hmc_acc - tolerance
            projected = {}
        else:
            # projected ESS per second of both samplers (`efficiency_per_draw`)
            if len(hmc_draws[-1]) < 2 or len(probe_samples) < 2:
                raise ValueError("`criterion='ess_per_second'` needs `probe_steps` >= 2 and "
                                 "`retrain_every` >= 2")
            ref = np.concatenate(hmc_draws)
            ref_var = ref.reshape(-1, ref.shape[-1]).var(0)
            hmc_rate = (efficiency_per_draw(hmc_draws[-1], ref_var)
                        / max(hmc_draw_seconds[-1], 1e-12))
            probe_sec = probe["seconds"] / int(probe_steps)
            nn_rate = (num_results * efficiency_per_draw(probe_samples, ref_var)
                       / (num_results * probe_sec + log["train_seconds"]))
            passed = bool(nn_rate >= min_speedup * hmc_rate)
            projected = dict(est_hmc_ess_per_second=float(hmc_rate),
                             est_nnghmc_ess_per_second=float(nn_rate))
        loss = history.get("loss") or [float("nan")]
        log["events"].append(dict(draw=draw, num_pairs=int(sum(len(p) for p in positions)),
                                  train_seconds=float(history["seconds"]), final_loss=float(loss[-1]),
                                  probe_acceptance=probe_acc, hmc_acceptance=hmc_acc,
                                  **projected, passed=passed))
        if passed:
            log["switched_at"] = draw
            break

    log["method"] = "nnghmc" if log["switched_at"] is not None else "hmc"
    kernel = (_nnghmc_kernel(target_log_prob_fn, grad_fn, **hmc_kwargs)
              if log["method"] == "nnghmc" else _kernel(HMC, target_log_prob_fn, **hmc_kwargs))
    samples, trace = _final_phase(kernel, num_results, state, next(seeds), jit_compile,
                                  max_results, gate)
    log["overhead_seconds"] = (log["burnin_seconds"] + log["collect_seconds"]
                               + log["train_seconds"] + log["probe_seconds"])
    return ScheduleResult(samples, trace, grad_fn, log)


def _final_phase(kernel, num_results, state, seed, jit_compile, max_results, gate,
                 num_burnin_steps=0):
    """`sample` of `num_results` draws, or with `max_results` `sample_until` in chunks of
    `num_results` until the gate passes or `max_results` draws are kept."""
    if max_results is None:
        return sample(kernel, num_results, state, num_burnin_steps=num_burnin_steps,
                      seed=seed, jit_compile=jit_compile)
    _checks.positive_int(max_results, "max_results")
    if max_results < num_results:
        raise ValueError(f"`max_results` ({max_results}) must be >= `num_results` "
                         f"({num_results})")
    return sample_until(kernel, state, seed, chunk_draws=num_results, max_draws=max_results,
                        num_burnin_steps=num_burnin_steps, gate=gate, jit_compile=jit_compile)


def compare(target_log_prob_fn, current_state, step_size, num_leapfrog_steps, num_results,
            num_burnin_steps=100, seed=0, **schedule_kwargs):
    """HMC and scheduled NNgHMC from the same start, with costs counted the same way.

    HMC: `num_burnin_steps` discarded, then `num_results` draws. NNgHMC: `run_schedule` with
    `collect_from=num_burnin_steps` (the same burn-in), then `num_results` NNgHMC draws.
    With `max_results` (a `run_schedule` argument), both final runs continue in chunks of
    `num_results` until the convergence gate passes or `max_results` draws are kept, and
    each is charged for the draws it ran.

    NNgHMC's cost includes its training: `total_seconds` = final sampling + training +
    (draws spent collecting after burn-in) × HMC's seconds per draw + probe draws × NNgHMC's
    seconds per draw (per-draw times measured without compilation, as `hmc_lib.sample`
    reports them); `total_grad_evals` = the true gradients spent collecting after burn-in.
    Returns `(hmc_summary, nnghmc_summary, hmc_run, schedule_result)`, the summaries being
    `diagnostics.summary` dicts extended with `total_seconds`, `total_grad_evals`,
    `ess_per_second_total`, `ess_per_grad_total`, `ess_median_per_second_total`,
    `train_seconds`, `method`. `schedule_kwargs` go to `run_schedule` (`jit_compile` to the
    HMC run too).
    """
    from hmc_lib import diagnostics
    hmc_samples, hmc_trace = _final_phase(
        _kernel(HMC, target_log_prob_fn, step_size, num_leapfrog_steps), num_results,
        current_state, seed, schedule_kwargs.get("jit_compile", True),
        schedule_kwargs.get("max_results"), schedule_kwargs.get("gate"),
        num_burnin_steps=num_burnin_steps)
    h = diagnostics.summary(hmc_samples, hmc_trace)
    h.update(total_seconds=h["seconds"], total_grad_evals=h["grad_evals"], train_seconds=0.0,
             method="hmc")
    res = run_schedule(target_log_prob_fn, current_state, step_size, num_leapfrog_steps,
                       num_results, collect_from=num_burnin_steps, seed=seed + 1, **schedule_kwargs)
    n = diagnostics.summary(res.samples, res.trace)
    chains = res.samples.shape[1]
    hmc_per_draw = h["seconds"] / h["draws"]
    final_per_draw = n["seconds"] / n["draws"]
    probe_steps = schedule_kwargs.get("probe_steps", 20)
    extra_draws = (res.log["events"][-1]["draw"] - num_burnin_steps) if res.log["events"] else 0
    collect_grads = res.log["collect_grad_evals"] - num_burnin_steps * chains * num_leapfrog_steps
    total = (n["seconds"] + res.log["train_seconds"] + extra_draws * hmc_per_draw
             + len(res.log["events"]) * probe_steps * final_per_draw)
    true_grads = collect_grads + float(np.sum(res.trace["grad_evals"]))
    n.update(total_seconds=total, total_grad_evals=float(true_grads),
             train_seconds=res.log["train_seconds"], method=res.log["method"],
             collect_draws=int(extra_draws))
    for s in (h, n):
        s["ess_per_second_total"] = s["ess_min"] / s["total_seconds"]
        s["ess_median_per_second_total"] = s["ess_median"] / s["total_seconds"]
        s["ess_per_grad_total"] = (s["ess_min"] / s["total_grad_evals"]
                                   if s["total_grad_evals"] > 0 else float("inf"))
    return h, n, (hmc_samples, hmc_trace), res
