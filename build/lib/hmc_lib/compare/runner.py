"""The comparison runner: one `Record` per (method, target), every field filled.

Per target (not pseudo-marginal), in this order, all chains started from the same N(0, I)
draws (a practitioner's default start; no exact draws):

1. our warm-up (`hmc_lib.warmup`, Stan's windows) with NUTS gives the state, the step size
   and a diagonal mass M. Our samplers then run on the *standardised* target
   z = (x − c) / s with s = M^(-1/2) and c the warm chains' mean (an affine map with constant
   Jacobian), so every method, learned or not, gets the same diagonal preconditioning;
   draws are mapped back to x before anything is measured;
2. `hmc`: L = NUTS's median number of leapfrog steps in the warm-up's last window (capped),
   step size from a short warm-up of HMC itself; `nuts`: the warm-up's step size;
3. `tfp_nuts`: `tfp.mcmc.NoUTurnSampler` in `DualAveragingStepSizeAdaptation`, on the
   original coordinates, from the same start, burn-in as long as our warm-up, no mass
   matrix (TFP's documented recipe);
4. the learned samplers train *here*, on this target, from the warm state: no chapter saves a
   network trained on these targets (chapters 2, 3 and 7 train on their own toy targets or
   on different settings), so reusing one would not be honest. Each trains once per
   training seed (`settings(scale)["training_seeds"]`, the same warm-up for all); its
   record holds the median of each measure over the seeds and their range in `spread`.
   Training cost is reported apart (`train_seconds`, `train_grad_evals`) with its
   `break_even_ess`.

For the GLMM (pseudo-marginal): PM-HMC's warm-up (`hmc_lib.warmup` with `PMHMC`, step size
and θ's mass), then PM-HMC, and PM-NUTS with the same step size and mass; their draws are
relabelled (`glmm_relabel`) before they are measured, since the mixture's posterior is
symmetric under swapping labels.

Measures (all from the kept draws only): `acceptance`; `ess_min`, `ess_median` (ArviZ, all
chains); `ess_per_grad` = ESS_min / (true gradients of sampling + of training);
`ess_per_second` = ESS_min / sampling seconds (compilation excluded); bias against the ground
truth in posterior sds (`hmc_lib.compare.metrics.bias`; None with `bias_note` where the target
has none); `break_even_ess` against the reference: the untrained method with the highest ESS
per second among those whose chains converged (largest split R̂ at most `metrics.RHAT_OK`),
or, where none converged, among all untrained ones (and `reference_note` says so).

`run` spreads the targets over worker processes (one per core by default, each
single-threaded, so no two measurements share a core); each target's result depends only on
its seed, not on which worker ran it.
"""

import concurrent.futures
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time
from typing import Any, NamedTuple, Optional

import numpy as np
import tensorflow as tf

from hmc_lib import _reuse, diagnostics, scale as scale_mod, targets
from hmc_lib.compare import grid, metrics
from hmc_lib.kernels.hmc import HMC
from hmc_lib.kernels.nuts import NUTS
from hmc_lib.kernels.warmup import warmup
from hmc_lib.sampling import sample
from hmc_lib.targets.base import Target


class Record(NamedTuple):
    """One (method, target) cell of the comparison. Numbers are Python floats/ints; a method
    that does not apply has `applicable=False`, its `reason`, and None in every measure.

    method, target: keys (`grid.METHODS`, target registry name); label: the method's label.
    applicable, reason: whether it ran, and why not.
    acceptance: mean Metropolis acceptance (NUTS: fraction of transitions that moved).
    ess_min, ess_median: effective sample sizes over coordinates (all chains together).
    rhat_max: the largest rank-normalised split R̂ over coordinates (ArviZ); above 1.01 the
      chains have not yet agreed, and far above (say > 1.1) the run has not converged.
    ess_per_grad: ESS_min per true gradient (sampling + training).
    ess_per_second: ESS_min per second of sampling (compilation excluded).
    bias_sd, sd_error, bias_mcse: `metrics.Bias` fields (None where no ground truth).
    bias_note: where the ground truth comes from, or why there is none.
    grad_evals: true gradients charged (sampling + training); sample_grad_evals,
      train_grad_evals, warmup_grad_evals: the parts (warm-up is not charged to ess_per_grad).
    seconds: sampling wall clock; train_seconds: training wall clock (collection, fitting,
      probes; compilation included); warmup_seconds.
    break_even_ess: effective draws after which training pays off against
      `reference_method` (0 if untrained, inf if never); reference_note: why that reference.
    step_size, num_leapfrog_steps (None for NUTS-type), draws, chains: run settings.
    note: anything a reader must know about this cell (e.g. NNgHMC fell back to HMC).
    training_seeds: how many training seeds the learned method ran (0 if untrained); every
      measure above is then the median over them, and `spread` maps each of `SPREAD` to its
      `[min, max]` over the seeds (None if untrained).
    paper: None (the comparison has no published numbers; kept for the benchmark's format).
    """
    method: str
    target: str
    label: str
    applicable: bool
    reason: str
    acceptance: Optional[float] = None
    ess_min: Optional[float] = None
    ess_median: Optional[float] = None
    rhat_max: Optional[float] = None
    ess_per_grad: Optional[float] = None
    ess_per_second: Optional[float] = None
    bias_sd: Optional[float] = None
    sd_error: Optional[float] = None
    bias_mcse: Optional[float] = None
    bias_note: str = ""
    grad_evals: Optional[float] = None
    sample_grad_evals: Optional[float] = None
    train_grad_evals: Optional[float] = None
    warmup_grad_evals: Optional[float] = None
    seconds: Optional[float] = None
    train_seconds: Optional[float] = None
    warmup_seconds: Optional[float] = None
    break_even_ess: Optional[float] = None
    reference_method: str = ""
    reference_note: str = ""
    step_size: Optional[float] = None
    num_leapfrog_steps: Optional[int] = None
    draws: Optional[int] = None
    chains: Optional[int] = None
    note: str = ""
    training_seeds: int = 0
    spread: Optional[dict] = None
    paper: Any = None


#: the measures every applicable record must carry as finite numbers (break_even_ess may be
#: inf: "never"); bias fields may be None only where the target has no ground truth
MEASURES = ("acceptance", "ess_min", "ess_median", "rhat_max", "ess_per_grad",
            "ess_per_second", "grad_evals", "sample_grad_evals", "train_grad_evals",
            "warmup_grad_evals",
            "seconds", "train_seconds", "warmup_seconds", "break_even_ess")
BIAS_FIELDS = ("bias_sd", "sd_error", "bias_mcse")
#: how far apart the seeds of successive training seeds are (a target's own seeds are its
#: base + 1 ... 13, and targets' bases 100 apart)
_SEED_STRIDE = 10_000
#: the learned samplers' kernels per (standardised target, method, settings, network
#: architecture): a target's training seeds share one compiled graph per method
#: (`hmc_lib._reuse.kernel_for`); three entries hold one target's l2hmc, hnn_hmc and hnn_nuts
_KERNELS = _reuse.Cache(maxsize=3)
#: the measures whose range over training seeds a learned record carries in `spread`
SPREAD = ("acceptance", "ess_min", "rhat_max", "ess_per_grad", "ess_per_second", "bias_sd",
          "train_seconds", "break_even_ess")


# ----------------------------------------------------------------------------- ground truth

def ground_truth(target):
    """`(to_x, mean, sd, note)`: how to map sampled coordinates to those of the truth, and the
    truth; `(None, None, None, reason)` where the target has none."""
    if hasattr(target, "reference_mean"):
        return (target.constrain, target.reference_mean, target.reference_sd,
                "Inference Gym reference (inference-gym 0.0.5)")
    if getattr(target, "mean", None) is not None and getattr(target, "variance", None) is not None:
        return (lambda x: np.asarray(x, np.float64), target.mean, np.sqrt(target.variance),
                "exact moments of the target")
    return None, None, None, "no ground truth: the target's moments are not known exactly"


def _load_target(name, cfg):
    if name == "logreg":
        return targets.get("logreg", **cfg["logreg"])
    if name == "glmm":
        g = cfg["glmm"]
        return targets.get("glmm", num_individuals=g["num_individuals"],
                           num_importance=g["num_importance"])
    return targets.get(name)


def standardised(target, centre, scale):
    """The target in z = (x − centre) / scale coordinates (`centre`, `scale` `[dim]`, scale
    > 0): log π_z(z) = log π(centre + scale·z) (the constant log-Jacobian is dropped)."""
    centre = np.asarray(centre, np.float64)
    scale = np.asarray(scale, np.float64)
    if centre.shape != (target.dim,) or scale.shape != (target.dim,):
        raise ValueError(f"`centre` and `scale` must have shape [{target.dim}]")
    if not np.all(scale > 0):
        raise ValueError("`scale` must be > 0 everywhere")

    def log_prob(z):
        return target.log_prob(tf.constant(centre, z.dtype) + tf.constant(scale, z.dtype) * z)

    return Target(log_prob, target.dim, name=f"{target.name} (standardised)")


# ----------------------------------------------------------------------------- one target

def _na(method, target, reason):
    return Record(method, target, grid.METHODS[method], False, reason)


def _measure(method, tname, x, trace, truth, *, train_seconds=0.0, train_grads=0.0,
             warmup_grads=0.0, warmup_seconds=0.0, step_size=None, num_steps=None, note=""):
    """A `Record` (break-even filled in later) from draws `x` `[draws, chains, dim]` in the
    truth's coordinates and the run's trace."""
    s = diagnostics.summary(x, trace)
    sample_grads = float(np.sum(trace["grad_evals"]))
    total = sample_grads + float(train_grads)
    to_x, mean, sd, bias_note = truth
    b = metrics.bias(to_x(x), mean, sd, s["ess_min"]) if mean is not None else None
    return Record(
        method, tname, grid.METHODS[method], True, "",
        acceptance=s["acceptance"], ess_min=s["ess_min"], ess_median=s["ess_median"],
        rhat_max=float(np.max(diagnostics.rhat(x))),
        ess_per_grad=s["ess_min"] / total, ess_per_second=s["ess_min"] / s["seconds"],
        bias_sd=b.mean_error if b else None, sd_error=b.sd_error if b else None,
        bias_mcse=b.mcse if b else None, bias_note=bias_note,
        grad_evals=total, sample_grad_evals=sample_grads, train_grad_evals=float(train_grads),
        warmup_grad_evals=float(warmup_grads), seconds=s["seconds"],
        train_seconds=float(train_seconds), warmup_seconds=float(warmup_seconds),
        step_size=None if step_size is None else float(np.mean(step_size)),
        num_leapfrog_steps=None if num_steps is None else int(num_steps),
        draws=s["draws"], chains=s["chains"], note=note)


def tfp_nuts(target, x0, num_burnin, num_results, max_tree_depth, seed, target_accept=0.8,
             initial_step_size=0.1):
    """TFP's NUTS with `DualAveragingStepSizeAdaptation` (adapting during the first 80 % of
    the burn-in), the library's `sample` driving it. Returns `(samples, trace)` with
    `grad_evals` = TFP's `leapfrogs_taken` per step and chain."""
    import tensorflow_probability as tfp
    kernel = tfp.mcmc.DualAveragingStepSizeAdaptation(
        tfp.mcmc.NoUTurnSampler(target.log_prob, step_size=initial_step_size,
                                max_tree_depth=max_tree_depth),
        num_adaptation_steps=int(0.8 * num_burnin), target_accept_prob=target_accept)

    def trace_fn(_, results):
        inner = results.inner_results
        return dict(is_accepted=inner.is_accepted, grad_evals=inner.leapfrogs_taken,
                    step_size=results.new_step_size * tf.ones_like(inner.target_log_prob))

    return sample(kernel, num_results, x0, num_burnin_steps=num_burnin, seed=seed,
                  trace_fn=trace_fn)


def _run_standard(tname, target, cfg, methods, seed):
    """All applicable methods on a target with a tractable log-density; list of Records."""
    chains, draws = cfg["chains"], cfg["draws"]
    truth = ground_truth(target)
    x0 = tf.random.stateless_normal([chains, target.dim], seed=[seed, 11], dtype=tf.float32)
    rec = {}

    # 1. shared warm-up (NUTS, Stan's windows)
    depth = cfg["max_tree_depth"]
    w = warmup(lambda eps, mass: NUTS(target, eps, max_tree_depth=depth, mass=mass), x0,
               cfg["warmup"], seed=seed + 1)
    warm_grads = float(np.sum(w.trace["grad_evals"]))
    warm_x = np.asarray(w.state, np.float64)
    centre, sd = warm_x.mean(0), 1.0 / np.sqrt(w.mass)
    tz = standardised(target, centre, sd)
    z0 = tf.constant((warm_x - centre) / sd, tf.float32)
    to_x = lambda z: centre + sd * np.asarray(z, np.float64)
    last = w.trace["windows"][-1]
    L = int(np.clip(np.median(w.trace["grad_evals"][last[0]:last[1]]), 1, cfg["max_hmc_steps"]))
    eps_nuts = w.step_size
    common = dict(warmup_grads=warm_grads, warmup_seconds=w.trace["seconds"])

    if "nuts" in methods:
        z, tr = sample(NUTS(tz, eps_nuts, max_tree_depth=depth), draws, z0, seed=seed + 2)
        rec["nuts"] = _measure("nuts", tname, to_x(z), tr, truth, step_size=eps_nuts, **common)

    # HMC's own step size (mass: NUTS's, through the standardisation)
    need_hmc_eps = any(m in methods for m in ("hmc", "nnghmc", "hnn_hmc"))
    if need_hmc_eps:
        wh = warmup(lambda eps, mass: HMC(tz, eps, L), z0, cfg["hmc_warmup"], seed=seed + 3,
                    initial_step_size=eps_nuts, adapt_mass=False)
        eps_hmc = wh.step_size
        hmc_common = dict(warmup_grads=warm_grads + float(np.sum(wh.trace["grad_evals"])),
                          warmup_seconds=w.trace["seconds"] + wh.trace["seconds"])
    if "hmc" in methods:
        z, tr = sample(HMC(tz, eps_hmc, L), draws, wh.state, seed=seed + 4)
        rec["hmc"] = _measure("hmc", tname, to_x(z), tr, truth, step_size=eps_hmc,
                              num_steps=L, **hmc_common)

    if "tfp_nuts" in methods:
        x, tr = tfp_nuts(target, x0, cfg["warmup"], draws, depth, seed=seed + 5)
        rec["tfp_nuts"] = _measure(
            "tfp_nuts", tname, x, tr, truth, step_size=float(np.mean(tr["step_size"][-1])),
            warmup_seconds=tr["burnin_seconds"],
            warmup_grads=float(cfg["warmup"] * chains * np.mean(tr["grad_evals"])),
            note="no mass matrix (TFP's recipe); warm-up gradients estimated from the kept "
                 "draws' mean trajectory length")

    # Each learned sampler's kernel is built once per standardised target and settings,
    # around a network of the seed's architecture; every seed copies its weights into that
    # network (`_reuse.kernel_for`), so `sample` re-uses the compiled graph (tracing and
    # compiling cost more than a 400-draw run; the draws are unchanged).
    def reused(method, settings_, net, build):
        return _reuse.kernel_for(_KERNELS, (tz,), (method, _reuse.as_key(settings_)), net,
                                 build)

    def learned(s):
        """The learned methods with training seed `s` (the shared warm-up above)."""
        out = {}
        if "l2hmc" in methods:
            from hmc_lib.l2hmc import L2HMC, train as l2_train
            c = cfg["l2hmc"]
            t0 = time.perf_counter()
            dyn, hist = l2_train(tz, num_train_steps=c["train_steps"], batch_size=chains,
                                 num_leapfrog_steps=c["num_leapfrog_steps"], step_size=eps_nuts,
                                 hidden_units=c["hidden_units"], burn_in_weight=0.0,
                                 init_state=z0, seed=s + 6)
            train_s = time.perf_counter() - t0
            train_grads = c["train_steps"] * chains * c["num_leapfrog_steps"]
            z, tr = sample(reused("l2hmc", (), dyn, lambda d: L2HMC(tz, d)), draws,
                           hist["final_state"], seed=s + 7)
            out["l2hmc"] = _measure("l2hmc", tname, to_x(z), tr, truth, train_seconds=train_s,
                                    train_grads=train_grads,
                                    step_size=float(dyn.step_size.numpy()),
                                    num_steps=c["num_leapfrog_steps"], **common)

        if "nnghmc" in methods:
            from hmc_lib.nnghmc import run_schedule
            c = cfg["nnghmc"]
            res = run_schedule(tz, wh.state, eps_hmc, L, draws, collect_from=0,
                               collect_until=c["collect"], retrain_every=max(1, c["collect"] // 2),
                               probe_steps=c["probe_steps"], tolerance=c["tolerance"],
                               net_kwargs=c["net"], seed=s + 8)
            fell_back = res.log["method"] != "nnghmc"
            out["nnghmc"] = _measure(
                "nnghmc", tname, to_x(res.samples), res.trace, truth,
                train_seconds=res.log["overhead_seconds"],
                train_grads=res.log["collect_grad_evals"], step_size=eps_hmc, num_steps=L,
                note=("the network never reached HMC's acceptance: fell back to HMC" if fell_back
                      else f"switched to the network after {res.log['switched_at']} HMC draws"),
                **hmc_common)

        if "hnn_hmc" in methods or "hnn_nuts" in methods:
            from hmc_lib.hnn import HNNHMC, HNNNUTS, collect, train as hnn_train
            c = cfg["hnn"]
            t0 = time.perf_counter()
            data = collect(tz, tf.cast(z0, tf.float64), c["num_trajectories"], c["num_steps"],
                           eps_nuts, seed=s + 9)
            fit = hnn_train(data, kind="separable", hidden=c["hidden"], num_steps=c["train_steps"],
                            batch_size=c["batch_size"], learning_rate=c["learning_rate"],
                            seed=s + 10, progress=False)
            train_s = time.perf_counter() - t0
            hnn_kw = dict(train_seconds=train_s, train_grads=fit.grad_evals, **common)
            if "hnn_hmc" in methods:
                eps = eps_hmc if need_hmc_eps else eps_nuts
                kernel = reused("hnn_hmc", (eps, L), fit.hnn, lambda h: HNNHMC(tz, h, eps, L))
                z, tr = sample(kernel, draws, z0, seed=s + 12)
                out["hnn_hmc"] = _measure("hnn_hmc", tname, to_x(z), tr, truth,
                                          step_size=eps_hmc, num_steps=L,
                                          note="exact Metropolis test on the true H", **hnn_kw)
            if "hnn_nuts" in methods:
                # the exact monitor (`HNNNUTS(exact=True)`; Dhulipala's is biased)
                kernel = reused("hnn_nuts", (eps_nuts, depth, c["max_hnn_error"]), fit.hnn,
                                lambda h: HNNNUTS(tz, h, eps_nuts, max_tree_depth=depth,
                                                  max_hnn_error=c["max_hnn_error"]))
                z, tr = sample(kernel, draws, z0, seed=s + 13)
                out["hnn_nuts"] = _measure(
                    "hnn_nuts", tname, to_x(z), tr, truth, step_size=eps_nuts,
                    note=f"exact monitor: fell back to a true tree on "
                         f"{100 * np.mean(tr['fell_back']):.0f}% of transitions", **hnn_kw)
        return out

    if any(m in grid.LEARNED for m in methods):
        runs = [learned(seed + _SEED_STRIDE * k) for k in range(cfg["training_seeds"])]
        for m in runs[0]:
            rec[m] = [r[m] for r in runs]
    return rec


_RELABEL_NOTE = "mixture labels fixed by `glmm_relabel` (component 1 the heavier)"


def _run_pm(tname, target, cfg, methods, seed):
    """PM-HMC and PM-NUTS on a pseudo-marginal target; dict method -> Record."""
    from hmc_lib.pm import PMHMC, PMNUTS
    from hmc_lib.targets.pseudo_marginal import glmm_relabel
    g = cfg["glmm"]
    chains, L = g["chains"], g["num_leapfrog_steps"]
    rng = np.random.default_rng(seed)
    theta = 0.1 * rng.standard_normal((chains, target.theta_dim))
    u = tf.random.stateless_normal([chains, *target.u_shape], seed=[seed, 12])
    state = [tf.constant(theta, tf.float32), u]
    truth = ground_truth(target)
    w = warmup(lambda eps, mass: PMHMC(target, eps, L, mass=mass), state, g["warmup"],
               seed=seed + 1, initial_step_size=0.05)
    common = dict(warmup_grads=float(np.sum(w.trace["grad_evals"])),
                  warmup_seconds=w.trace["seconds"])
    keep = lambda s: s[0]
    # the GLMM's mixture is symmetric under swapping its labels: a chain may visit either
    # labelling, and the ESS of raw θ would measure label switches, not mixing
    relabel = lambda x: glmm_relabel(x)[0] if tname == "glmm" else x
    rec = {}
    if "pm_hmc" in methods:
        x, tr = sample(PMHMC(target, w.step_size, L, mass=w.mass), g["draws"], w.state,
                       seed=seed + 2, keep_fn=keep)
        rec["pm_hmc"] = _measure("pm_hmc", tname, relabel(x), tr, truth, step_size=w.step_size,
                                 num_steps=L, note=_RELABEL_NOTE, **common)
    if "pm_nuts" in methods:
        x, tr = sample(PMNUTS(target, w.step_size, max_tree_depth=g["max_tree_depth"],
                              mass=w.mass), g["draws"], w.state, seed=seed + 3, keep_fn=keep)
        rec["pm_nuts"] = _measure("pm_nuts", tname, relabel(x), tr, truth,
                                  step_size=w.step_size,
                                  note="step size and mass from PM-HMC's warm-up; "
                                       + _RELABEL_NOTE, **common)
    return rec


def reference(records):
    """`(record, note)`: the break-even reference among one target's untrained `records`
    (their pseudo-marginal ones included): highest ESS per second among those whose largest
    R̂ is at most `metrics.RHAT_OK`, else among all (the note says so). None if none ran."""
    base = [r for r in records if r.applicable and r.method not in grid.LEARNED]
    if not base:
        return None, ""
    ok = [r for r in base if r.rhat_max <= metrics.RHAT_OK]
    if ok:
        return max(ok, key=lambda r: r.ess_per_second), ""
    return (max(base, key=lambda r: r.ess_per_second),
            f"no untrained method converged (R̂ > {metrics.RHAT_OK}): the fastest of them")


def _with_break_even(cells):
    """`cells`: method -> list of Records (one per training seed; one if untrained). Fills
    `break_even_ess`, `reference_method` and `reference_note` of every record."""
    ref, note = reference([rs[0] for rs in cells.values()])
    if ref is None:
        return cells
    return {m: [r._replace(reference_method=ref.method, reference_note=note,
                           break_even_ess=metrics.break_even(r.train_seconds, r.ess_per_second,
                                                             ref.ess_per_second))
                for r in rs] for m, rs in cells.items()}


def aggregate(records):
    """One Record from a learned method's Records over training seeds (same method and
    target): each measure (`MEASURES`, `BIAS_FIELDS`, `step_size`) the median over seeds,
    `spread` the `[min, max]` of each of `SPREAD`, `training_seeds` their number, and the
    notes joined per seed where they differ. A single untrained record is returned as is."""
    if not records:
        raise ValueError("`records` is empty")
    if len({(r.method, r.target) for r in records}) != 1:
        raise ValueError("`records` must all be of one method and target")
    first = records[0]
    if first.method not in grid.LEARNED or not first.applicable:
        if len(records) != 1:
            raise ValueError(f"{first.method!r} is untrained: expected one record")
        return first
    med = {}
    for f in MEASURES + BIAS_FIELDS + ("step_size",):
        vals = [getattr(r, f) for r in records]
        med[f] = None if any(v is None for v in vals) else float(np.median(vals))
    spread = {f: None if getattr(first, f) is None else
              [float(min(getattr(r, f) for r in records)),
               float(max(getattr(r, f) for r in records))] for f in SPREAD}
    notes = [r.note for r in records]
    note = notes[0] if len(set(notes)) == 1 else "; ".join(
        f"seed {k + 1}: {n}" for k, n in enumerate(notes))
    return first._replace(note=note, training_seeds=len(records), spread=spread, **med)


def run_target(name, scale=None, methods=None, seed=None):
    """Every method of `methods` (default: all of `grid.METHODS`) on target `name`; one
    `Record` per method, in `grid.METHODS` order (n/a ones included; learned ones aggregated
    over training seeds by `aggregate`)."""
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a target name (str), got {name!r}")
    methods = tuple(grid.METHODS) if methods is None else tuple(methods)
    for m in methods:
        if m not in grid.METHODS:
            raise ValueError(f"unknown method in `methods`: {m!r}; "
                             f"known: {', '.join(grid.METHODS)}")
    cfg = grid.settings(scale)
    seed = scale_mod.seed(1000) if seed is None else int(seed)
    target = _load_target(name, cfg)
    run = [m for m in methods if grid.applies(m, name)[0]]
    if name in grid.PM_TARGETS:
        done = _run_pm(name, target, cfg, run, seed)
    else:
        done = _run_standard(name, target, cfg, run, seed)
    cells = _with_break_even({m: (v if isinstance(v, list) else [v]) for m, v in done.items()})
    return [aggregate(cells[m]) if m in cells else _na(m, name, grid.applies(m, name)[1])
            for m in methods]


def run(scale=None, target_names=None, methods=None, seed=None, workers=None):
    """The whole comparison at `scale`: `run_target` for each of `target_names` (default
    `grid.targets_at(scale)`); returns `(records, seconds)` (total wall clock), records in
    target order.

    workers: how many targets run at once (default: one per core, at most one per target).
      With more than one, each target runs in a fresh Python process of its own, limited to
      one thread, so that no two timed runs share a core and a target's result depends on
      its seed only (not on what ran before it); 1 runs every target here, in this process.
    """
    t0 = time.perf_counter()
    scale = scale_mod.get() if scale is None else scale
    names = grid.targets_at(scale) if target_names is None else tuple(target_names)
    if workers is None:
        workers = min(len(names), os.cpu_count() or 1)
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"`workers` must be a positive int, got {workers!r}")
    jobs = []
    for k, name in enumerate(names):
        s = scale_mod.seed(1000 + 100 * k) if seed is None else int(seed) + 100 * k
        jobs.append(dict(name=name, scale=scale, methods=methods, seed=s))
    if workers == 1:
        results = [run_target(**job) for job in jobs]
    else:
        # the costliest targets first, so that no worker is left with one at the end
        order = sorted(range(len(jobs)), key=lambda k: grid.COST.get(names[k], 1.0),
                       reverse=True)
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = {k: pool.submit(_in_subprocess, jobs[k]) for k in order}
            results = [futures[k].result() for k in range(len(jobs))]
    return [r for rs in results for r in rs], time.perf_counter() - t0


def _in_subprocess(job):
    """`run_target(**job)` in a fresh single-threaded Python (`python -m
    hmc_lib.compare._worker`), the job and its records passed as pickles."""
    with tempfile.TemporaryDirectory(prefix="hmc_compare_") as tmp:
        inp, out = os.path.join(tmp, "job.pkl"), os.path.join(tmp, "records.pkl")
        with open(inp, "wb") as f:
            pickle.dump(job, f)
        proc = subprocess.run([sys.executable, "-m", "hmc_lib.compare._worker", inp, out],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_worker_env())
        if proc.returncode != 0:
            raise RuntimeError(f"the comparison on target {job['name']!r} failed in its "
                               f"worker process:\n{proc.stderr[-4000:]}")
        with open(out, "rb") as f:
            return pickle.load(f)


def _worker_env():
    # the child imports this very `hmc_lib`, wherever the parent found it
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.environ.get("PYTHONPATH", "")
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                PYTHONPATH=root + (os.pathsep + path if path else ""))


def _worker_main(inp, out):
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.get_logger().setLevel("ERROR")
    with open(inp, "rb") as f:
        job = pickle.load(f)
    records = run_target(**job)
    with open(out, "wb") as f:
        pickle.dump(records, f)

