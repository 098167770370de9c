"""The comparison runner: one `Record` per (method, target), every field filled.

Per target (not pseudo-marginal), in this order, all chains started from the same N(0, I)
draws (a practitioner's default start; no exact draws):

1. our warm-up (`hmc_lib.warmup`, Stan's windows) with NUTS gives the state, the step size
   and a diagonal mass M, aiming at acceptance statistic `target_accept` (Stan's 0.8). If
   any transition of a short NUTS probe after it diverges, it is run again, from the same
   start, aiming at `retry_accept` (0.95): Stan's advice on divergent transitions after
   warm-up (a smaller step; `prepare`).
   Our samplers then run on the *standardised* target z = (x − c) / s with s = M^(-1/2) and
   c the warm chains' mean (an affine map with constant Jacobian), so every method, learned
   or not, gets the same diagonal preconditioning; draws are mapped back to x before bias
   is measured (R̂ and ESS are the same in z and x: the map is affine per coordinate);
2. `hmc`: L = NUTS's median number of leapfrog steps in the warm-up's last window (capped),
   step size from a short warm-up of HMC itself; `nuts`: the warm-up's step size;
3. `tfp_nuts`: `tfp.mcmc.NoUTurnSampler` in `DualAveragingStepSizeAdaptation`, on the
   original coordinates, from the same start, burn-in as long as our warm-up, the same
   target acceptance as ours, no mass matrix (TFP's documented recipe);
4. the learned samplers train *here*, on this target, from the warm state: no chapter saves a
   network trained on these targets, so reusing one would not be honest. Each trains once
   per training seed (`settings(scale)["training_seeds"]`, the same warm-up for all); its
   record holds the median of each measure over the seeds and their range in `spread`.
   Training cost is reported apart (`train_seconds`, `train_grad_evals`) with its
   `break_even_ess`.

For the GLMM (pseudo-marginal): PM-HMC's warm-up (`hmc_lib.warmup` with `PMHMC`, step size
and θ's mass), then PM-HMC, and PM-NUTS with the same step size and mass; their draws of θ
are relabelled (`glmm_relabel`) before they are gated and measured, since the mixture's
posterior is symmetric under swapping labels.

Run lengths are chosen by the answer: every sampling run (every training seed of a learned
cell on its own) is `hmc_lib.sampling.sample_until`, reading the convergence gate
(`diagnostics.convergence`: R̂ ≤ 1.01, bulk and tail ESS ≥ 100, all chains) every
`chunk_draws` draws, until it passes or the cell's budget is spent: `max_draws` draws per
chain or B = `budget_grads` true gradients per chain (summed over chains: B × chains).
`stopped` says which; a cell is `converged` only if its run (every seed's run) passed.

Measures (all from the kept draws only): `acceptance`; `ess_bulk_min`, `ess_tail_min`,
`rhat_max` (the gate's), `ess_min` (= `ess_bulk_min`, the ESS every rate uses) and
`ess_median` (bulk, over coordinates); `ess_per_grad` = ESS / (true gradients of sampling +
of training); `ess_per_second` = ESS / sampling seconds (compilation excluded); bias against
the ground truth in posterior sds (`metrics.bias`; None with `bias_note` where the target
has none); `break_even_ess` against the reference: the untrained method with the highest ESS
per second among the converged ones (None, and `reference_note` says so, where none
converged).

`run` spreads the targets over worker processes (one per core by default, each
single-threaded, so no two measurements share a core); each target's result depends only on
its seed, not on which worker ran it. `run_target(..., checkpoints=DIR)` checkpoints every
sampling run (`sample_until`), so a run killed midway and started again resumes
(`hmc_lib.compare.record`).
"""

import concurrent.futures
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Any, NamedTuple, Optional

import numpy as np
import tensorflow as tf

from hmc_lib import _reuse, diagnostics, scale as scale_mod, targets
from hmc_lib.compare import grid, metrics
from hmc_lib.kernels.hmc import HMC
from hmc_lib.kernels.nuts import NUTS
from hmc_lib.kernels.warmup import warmup
from hmc_lib.sampling import sample, sample_until
from hmc_lib.targets.base import Target


class Record(NamedTuple):
    """One (method, target) cell of the comparison. Numbers are Python floats/ints; a method
    that does not apply has `applicable=False`, its `reason`, and None in every measure.

    method, target: keys (`grid.METHODS`, target registry name); label: the method's label.
    applicable, reason: whether it ran, and why not.
    acceptance: mean Metropolis acceptance (NUTS: fraction of transitions that moved).
    rhat_max, ess_bulk_min, ess_tail_min: the convergence gate's reading of the kept draws
      (largest rank-normalised split R̂, smallest bulk and tail ESS over coordinates, all
      chains together); converged: whether it passed (learned: at every training seed).
    ess_min, ess_median: the smallest and the median bulk ESS over coordinates (ess_min is
      `ess_bulk_min`: the ESS of every rate below).
    ess_per_grad: ess_min per true gradient (sampling + training).
    ess_per_second: ess_min per second of sampling (compilation excluded).
    bias_sd, sd_error, bias_mcse: `metrics.Bias` fields (None where no ground truth).
    bias_note: where the ground truth comes from, or why there is none.
    grad_evals: true gradients charged (sampling + training); sample_grad_evals,
      train_grad_evals, warmup_grad_evals: the parts (warm-up is not charged to ess_per_grad).
    seconds: sampling wall clock; train_seconds: training wall clock (collection, fitting,
      probes; compilation included); warmup_seconds.
    break_even_ess: effective draws after which training pays off against
      `reference_method` (0 if untrained, inf if never, None if no untrained cell on the
      target converged); reference_note: why that reference, or why none.
    stopped: why sampling stopped (`sample_until`): "converged", "max_draws" or
      "max_grad_evals" (learned: each seed's, joined with "/" where they differ).
    budget_grads, budget_draws: the budget per chain, B true gradients and draws.
    divergences: divergent transitions among the kept draws (all chains).
    target_accept: the acceptance statistic the warm-up aimed at.
    step_size, num_leapfrog_steps (None for NUTS-type), draws (per chain), chains.
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
    ess_bulk_min: Optional[float] = None
    ess_tail_min: Optional[float] = None
    converged: Optional[bool] = None
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
    stopped: str = ""
    budget_grads: Optional[float] = None
    budget_draws: Optional[int] = None
    divergences: Optional[int] = None
    target_accept: Optional[float] = None
    step_size: Optional[float] = None
    num_leapfrog_steps: Optional[int] = None
    draws: Optional[int] = None
    chains: Optional[int] = None
    note: str = ""
    training_seeds: int = 0
    spread: Optional[dict] = None
    paper: Any = None


#: the measures every applicable record carries as finite numbers (break_even_ess may be
#: inf, "never", or None where no untrained cell converged, and is checked apart); bias
#: fields may be None only where the target has no ground truth
MEASURES = ("acceptance", "ess_min", "ess_median", "rhat_max", "ess_bulk_min",
            "ess_tail_min", "ess_per_grad", "ess_per_second", "grad_evals",
            "sample_grad_evals", "train_grad_evals", "warmup_grad_evals", "seconds",
            "train_seconds", "warmup_seconds")
BIAS_FIELDS = ("bias_sd", "sd_error", "bias_mcse")
#: how far apart the seeds of successive training seeds are (a target's own seeds are its
#: base + 1 ... 13, and targets' bases 100 apart)
_SEED_STRIDE = 10_000
#: the learned samplers' kernels per (standardised target, method, settings, network
#: architecture): a target's training seeds share one compiled graph per method
#: (`hmc_lib._reuse.kernel_for`); four entries hold one target's l2hmc, nnghmc, hnn_hmc
#: and hnn_nuts
_KERNELS = _reuse.Cache(maxsize=4)
#: the measures whose range over training seeds a learned record carries in `spread`
SPREAD = ("acceptance", "ess_min", "rhat_max", "ess_bulk_min", "ess_tail_min",
          "ess_per_grad", "ess_per_second", "bias_sd", "train_seconds", "break_even_ess")


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


# ----------------------------------------------------------------------------- one cell

def _na(method, target, reason):
    return Record(method, target, grid.METHODS[method], False, reason)


class Budget(NamedTuple):
    """What one sampling run may spend, per chain: `grads` (B) and `draws`; `chunk_draws`:
    draws between readings of the gate; `checkpoint`: a path for `sample_until`, or None."""
    grads: float
    draws: int
    chunk_draws: int
    checkpoint: Optional[str] = None


#: the gate is read after the chunks that end at these multiples of `chunk_draws` (and at
#: the draws budget): each reading costs time in proportion to the draws so far, so a long
#: run reads it at draws growing by about 25 % (a run that converges between two readings
#: runs on to the next one, at most 25 % longer)
def gate_schedule(chunk_draws, max_draws, growth=1.25):
    """The draw counts (multiples of `chunk_draws`, up to `max_draws`) at which `sample_until`
    reads the gate: every chunk up to 4, then growing by `growth` per reading, and the last
    chunk that fits the budget."""
    at, k = set(), 1
    last = (max_draws // chunk_draws) * chunk_draws
    while k * chunk_draws <= max_draws:
        at.add(k * chunk_draws)
        k = k + 1 if k < 4 else max(k + 1, int(k * growth))
    at.add(last)
    return sorted(at)


class ScheduledGate:
    """A `sample_until` gate: `diagnostics.convergence_fast` of `transform(kept draws)`, read
    only at the draw counts of `gate_schedule`; between them it answers "not converged" with
    NaN readings (the run goes on) without reading the draws."""

    def __init__(self, budget, transform=None):
        self.at = set(gate_schedule(budget.chunk_draws, budget.draws))
        self.transform = transform or (lambda x: np.asarray(x))

    def __call__(self, kept):
        draws = np.asarray(kept).shape[0]
        if draws not in self.at:
            nan = float("nan")
            return diagnostics.Convergence(nan, nan, nan, draws, np.asarray(kept).shape[1], False)
        return diagnostics.convergence_fast(self.transform(kept))


def _until(kernel, state, seed, budget, chains, transform=None, **kwargs):
    """`sample_until` with `budget` (a `Budget`) for `chains` chains, its gate a
    `ScheduledGate` of the draws (`transform`ed first: e.g. relabelled)."""
    return sample_until(kernel, state, seed, chunk_draws=budget.chunk_draws,
                        max_draws=budget.draws, max_grad_evals=budget.grads * chains,
                        checkpoint=budget.checkpoint, gate=ScheduledGate(budget, transform),
                        **kwargs)


def _measure(method, tname, z, trace, truth, to_x, budget, *, train_seconds=0.0,
             train_grads=0.0, warmup_grads=0.0, warmup_seconds=0.0, step_size=None,
             num_steps=None, target_accept=None, note=""):
    """A `Record` (break-even filled in later) from `sample_until`'s draws `z` `[draws,
    chains, dim]` (sampled coordinates; `to_x` maps them to the truth's) and trace."""
    z = np.asarray(z, np.float64)
    gate = diagnostics.convergence_fast(z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)    # frozen coordinates warned above
        bulk = diagnostics.ess(z, method="bulk")
    ess_min = gate.ess_bulk_min
    seconds = float(trace["seconds"])
    sample_grads = float(np.sum(trace["grad_evals"]))
    total = sample_grads + float(train_grads)
    _, mean, sd, bias_note = truth
    b = metrics.bias(to_x(z), mean, sd, ess_min) if mean is not None and ess_min > 0 else None
    return Record(
        method, tname, grid.METHODS[method], True, "",
        acceptance=float(np.mean(trace["is_accepted"])), ess_min=ess_min,
        ess_median=float(np.median(bulk)), rhat_max=gate.rhat_max,
        ess_bulk_min=gate.ess_bulk_min, ess_tail_min=gate.ess_tail_min,
        converged=bool(gate.converged),
        ess_per_grad=ess_min / total, ess_per_second=ess_min / seconds,
        bias_sd=b.mean_error if b else None, sd_error=b.sd_error if b else None,
        bias_mcse=b.mcse if b else None, bias_note=bias_note,
        grad_evals=total, sample_grad_evals=sample_grads, train_grad_evals=float(train_grads),
        warmup_grad_evals=float(warmup_grads), seconds=seconds,
        train_seconds=float(train_seconds), warmup_seconds=float(warmup_seconds),
        stopped=trace["stopped"], budget_grads=float(budget.grads),
        budget_draws=int(budget.draws),
        divergences=int(np.sum(trace["is_divergent"])) if "is_divergent" in trace else 0,
        target_accept=None if target_accept is None else float(target_accept),
        step_size=None if step_size is None else float(np.mean(step_size)),
        num_leapfrog_steps=None if num_steps is None else int(num_steps),
        draws=int(z.shape[0]), chains=int(z.shape[1]), note=note)


def tfp_nuts_kernel(target, max_tree_depth, num_burnin, target_accept=0.8,
                    initial_step_size=0.1):
    """`(kernel, trace_fn)`: TFP's NUTS in `DualAveragingStepSizeAdaptation`, adapting during
    the first 80 % of a burn-in of `num_burnin` steps; `trace_fn` gives `grad_evals` (TFP's
    `leapfrogs_taken`), `is_accepted`, `is_divergent` and the step size per step and chain."""
    import tensorflow_probability as tfp
    kernel = tfp.mcmc.DualAveragingStepSizeAdaptation(
        tfp.mcmc.NoUTurnSampler(target.log_prob, step_size=initial_step_size,
                                max_tree_depth=max_tree_depth),
        num_adaptation_steps=int(0.8 * num_burnin), target_accept_prob=target_accept)

    def trace_fn(_, results):
        inner = results.inner_results
        return dict(is_accepted=inner.is_accepted, grad_evals=inner.leapfrogs_taken,
                    is_divergent=inner.has_divergence,
                    step_size=results.new_step_size * tf.ones_like(inner.target_log_prob))

    return kernel, trace_fn


# ----------------------------------------------------------------------------- one target

class Prepared(NamedTuple):
    """A target after the shared warm-up (what every cell on it starts from).

    name, target, truth (`ground_truth`), tz (the standardised target), centre, sd (`[dim]`),
    x0 (the N(0, I) start, in x), z0 (the warm state, in z), eps_nuts, depth (max tree
    depth), L and eps_hmc (HMC's trajectory length and step size) and hmc_state (z after
    HMC's warm-up), target_accept (the warm-up's, after any retry), warm (dict: gradients
    and seconds of the NUTS warm-up, and of the HMC warm-up on top), note (the retry, if
    any), kernels (dict: the untrained kernels, built once so compiled graphs are shared).
    """
    name: str
    target: Any
    truth: tuple
    tz: Any
    centre: np.ndarray
    sd: np.ndarray
    x0: Any
    z0: Any
    eps_nuts: float
    depth: int
    L: int
    eps_hmc: float
    hmc_state: Any
    target_accept: float
    warm: dict
    note: str
    kernels: dict


def _standardise(target, w):
    """`(tz, centre, sd, z0)`: the target in the coordinates of warm-up `w` (module docstring)."""
    warm_x = np.asarray(w.state, np.float64)
    centre, sd = warm_x.mean(0), 1.0 / np.sqrt(w.mass)
    return (standardised(target, centre, sd), centre, sd,
            tf.constant((warm_x - centre) / sd, tf.float32))


def prepare(name, target, cfg, seed):
    """The shared warm-up of target `name` (a `Prepared`).

    NUTS warms up aiming at `cfg["target_accept"]`; a probe of `cfg["probe_draws"]` NUTS
    draws then runs from the warm state at the adapted step size and mass, and if any of its
    transitions diverged (Stan's warning "divergent transitions after warm-up"), the warm-up
    runs again from the same start aiming at `cfg["retry_accept"]` (Stan's advice: a
    smaller step). The probe's draws are not kept.
    """
    chains, depth = cfg["chains"], cfg["max_tree_depth"]
    x0 = tf.random.stateless_normal([chains, target.dim], seed=[seed, 11], dtype=tf.float32)
    factory = lambda eps, mass: NUTS(target, eps, max_tree_depth=depth, mass=mass)
    accept, note = cfg["target_accept"], ""
    # the probe runs the kernel of the `nuts` cell, in chunks of the size `sample_until`
    # uses, so its compiled graph serves that cell too
    chunk_size = math.ceil(cfg["budget"]["chunk_draws"] / 5)
    w = warmup(factory, x0, cfg["warmup"], seed=seed + 1, target_accept=accept)
    tz, centre, sd, z0 = _standardise(target, w)
    nuts = NUTS(tz, w.step_size, max_tree_depth=depth)
    _, probe = sample(nuts, cfg["probe_draws"], z0, seed=seed + 14, chunk_size=chunk_size)
    diverged = int(np.sum(probe["is_divergent"]))
    warm_grads = float(np.sum(w.trace["grad_evals"]) + np.sum(probe["grad_evals"]))
    warm_seconds = w.trace["seconds"] + probe["seconds"]
    if diverged:
        retry = cfg["retry_accept"]
        note = (f"{diverged} of {probe['is_divergent'].size} probe transitions after a warm-up "
                f"at acceptance {accept} diverged: warmed up again at {retry}")
        accept = retry
        w = warmup(factory, x0, cfg["warmup"], seed=seed + 1, target_accept=accept)
        tz, centre, sd, z0 = _standardise(target, w)
        nuts = NUTS(tz, w.step_size, max_tree_depth=depth)
        warm_grads += float(np.sum(w.trace["grad_evals"]))
        warm_seconds += w.trace["seconds"]
    last = w.trace["windows"][-1]
    L = int(np.clip(np.median(w.trace["grad_evals"][last[0]:last[1]]), 1, cfg["max_hmc_steps"]))
    wh = warmup(lambda eps, mass: HMC(tz, eps, L), z0, cfg["hmc_warmup"], seed=seed + 3,
                initial_step_size=w.step_size, adapt_mass=False, target_accept=accept)
    warm = dict(grads=warm_grads, seconds=warm_seconds, probe_divergences=diverged)
    warm.update(hmc_grads=warm["grads"] + float(np.sum(wh.trace["grad_evals"])),
                hmc_seconds=warm["seconds"] + wh.trace["seconds"])
    kernels = dict(nuts=nuts, hmc=HMC(tz, wh.step_size, L))
    return Prepared(name, target, ground_truth(target), tz, centre, sd, x0, z0, w.step_size,
                    depth, L, wh.step_size, wh.state, accept, warm, note, kernels)


def _budget(cfg, name, checkpoints, key):
    b = cfg["budget"]
    return Budget(b["grads_per_chain"].get(name, b["grads_per_chain"]["default"]),
                  b["max_draws"], b["chunk_draws"],
                  None if checkpoints is None else os.path.join(checkpoints, f"{key}.npz"))


def untrained_cells(p, cfg, methods, seed, checkpoints=None):
    """The untrained methods of `methods` (`nuts`, `hmc`, `tfp_nuts`) on prepared target `p`:
    dict method -> Record."""
    chains = cfg["chains"]
    to_x = lambda z: p.centre + p.sd * np.asarray(z, np.float64)
    budget = lambda m: _budget(cfg, p.name, checkpoints, m)
    common = dict(warmup_grads=p.warm["grads"], warmup_seconds=p.warm["seconds"],
                  target_accept=p.target_accept, note=p.note)
    rec = {}
    if "nuts" in methods:
        z, tr = _until(p.kernels["nuts"], p.z0, seed + 2, budget("nuts"), chains)
        rec["nuts"] = _measure("nuts", p.name, z, tr, p.truth, to_x, budget("nuts"),
                               step_size=p.eps_nuts, **common)
    if "hmc" in methods:
        z, tr = _until(p.kernels["hmc"], p.hmc_state, seed + 4, budget("hmc"), chains)
        rec["hmc"] = _measure("hmc", p.name, z, tr, p.truth, to_x, budget("hmc"),
                              step_size=p.eps_hmc, num_steps=p.L,
                              **dict(common, warmup_grads=p.warm["hmc_grads"],
                                     warmup_seconds=p.warm["hmc_seconds"]))
    if "tfp_nuts" in methods:
        kernel, trace_fn = tfp_nuts_kernel(p.target, p.depth, cfg["warmup"], p.target_accept)
        x, tr = _until(kernel, p.x0, seed + 5, budget("tfp_nuts"), chains,
                       num_burnin_steps=cfg["warmup"], trace_fn=trace_fn)
        rec["tfp_nuts"] = _measure(
            "tfp_nuts", p.name, x, tr, p.truth, lambda x: np.asarray(x, np.float64),
            budget("tfp_nuts"), step_size=float(np.mean(tr["step_size"][-1])),
            warmup_seconds=tr["burnin_seconds"],
            warmup_grads=float(cfg["warmup"] * chains * np.mean(tr["grad_evals"])),
            target_accept=p.target_accept,
            note="no mass matrix (TFP's recipe); warm-up gradients estimated from the kept "
                 "draws' mean trajectory length")
    return rec


def learned_cells(p, cfg, methods, s, checkpoints=None):
    """The learned methods of `methods` with training seed `s` on prepared target `p`: dict
    method -> Record (one seed's)."""
    chains = cfg["chains"]
    to_x = lambda z: p.centre + p.sd * np.asarray(z, np.float64)
    budget = lambda m: _budget(cfg, p.name, checkpoints, f"{m}-{s}")
    tz, z0 = p.tz, p.z0
    common = dict(warmup_grads=p.warm["grads"], warmup_seconds=p.warm["seconds"],
                  target_accept=p.target_accept)

    # Each learned sampler's kernel is built once per standardised target and settings,
    # around a network of the seed's architecture; every seed copies its weights into that
    # network (`_reuse.kernel_for`), so `sample_until` re-uses the compiled graph (tracing
    # and compiling cost more than a short run; the draws are unchanged).
    def reused(method, settings_, net, build):
        return _reuse.kernel_for(_KERNELS, (tz,), (method, _reuse.as_key(settings_)), net,
                                 build)

    out = {}
    if "l2hmc" in methods:
        from hmc_lib.l2hmc import L2HMC, train as l2_train
        c = cfg["l2hmc"]
        t0 = time.perf_counter()
        dyn, hist = l2_train(tz, num_train_steps=c["train_steps"], batch_size=chains,
                             num_leapfrog_steps=c["num_leapfrog_steps"], step_size=p.eps_nuts,
                             hidden_units=c["hidden_units"], burn_in_weight=0.0,
                             init_state=z0, seed=s + 6)
        train_s = time.perf_counter() - t0
        train_grads = c["train_steps"] * chains * c["num_leapfrog_steps"]
        z, tr = _until(reused("l2hmc", (), dyn, lambda d: L2HMC(tz, d)), hist["final_state"],
                       s + 7, budget("l2hmc"), chains)
        out["l2hmc"] = _measure("l2hmc", p.name, z, tr, p.truth, to_x, budget("l2hmc"),
                                train_seconds=train_s, train_grads=train_grads,
                                step_size=float(dyn.step_size.numpy()),
                                num_steps=c["num_leapfrog_steps"], **common)

    if "nnghmc" in methods:
        from hmc_lib.nnghmc import NNgHMC, run_schedule
        c = cfg["nnghmc"]
        # the paper's schedule (collect, fit, probe, switch); its final phase is ours: one
        # draw there, then `sample_until` from where it ended
        res = run_schedule(tz, p.hmc_state, p.eps_hmc, p.L, 1, collect_from=0,
                           collect_until=c["collect"], retrain_every=max(1, c["collect"] // 2),
                           probe_steps=c["probe_steps"], tolerance=c["tolerance"],
                           net_kwargs=c["net"], seed=s + 8)
        fell_back = res.log["method"] != "nnghmc"
        kernel = (p.kernels["hmc"] if fell_back else
                  reused("nnghmc", (p.eps_hmc, p.L), res.grad_fn,
                         lambda net: NNgHMC(tz, net, p.eps_hmc, p.L)))
        z, tr = _until(kernel, res.trace["final_state"], s + 11, budget("nnghmc"), chains)
        out["nnghmc"] = _measure(
            "nnghmc", p.name, z, tr, p.truth, to_x, budget("nnghmc"),
            train_seconds=res.log["overhead_seconds"],
            train_grads=res.log["collect_grad_evals"], step_size=p.eps_hmc, num_steps=p.L,
            note=("the network never reached HMC's acceptance: fell back to HMC" if fell_back
                  else f"switched to the network after {res.log['switched_at']} HMC draws"),
            **dict(common, warmup_grads=p.warm["hmc_grads"],
                   warmup_seconds=p.warm["hmc_seconds"]))

    if "hnn_hmc" in methods or "hnn_nuts" in methods:
        from hmc_lib.hnn import HNNHMC, HNNNUTS, collect, train as hnn_train
        c = cfg["hnn"]
        t0 = time.perf_counter()
        data = collect(tz, tf.cast(z0, tf.float64), c["num_trajectories"], c["num_steps"],
                       p.eps_nuts, seed=s + 9)
        fit = hnn_train(data, kind="separable", hidden=c["hidden"], num_steps=c["train_steps"],
                        batch_size=c["batch_size"], learning_rate=c["learning_rate"],
                        seed=s + 10, progress=False)
        train_s = time.perf_counter() - t0
        hnn_kw = dict(train_seconds=train_s, train_grads=fit.grad_evals, **common)
        if "hnn_hmc" in methods:
            eps = p.eps_hmc
            kernel = reused("hnn_hmc", (eps, p.L), fit.hnn, lambda h: HNNHMC(tz, h, eps, p.L))
            z, tr = _until(kernel, z0, s + 12, budget("hnn_hmc"), chains)
            out["hnn_hmc"] = _measure("hnn_hmc", p.name, z, tr, p.truth, to_x,
                                      budget("hnn_hmc"), step_size=eps, num_steps=p.L,
                                      note="exact Metropolis test on the true H", **hnn_kw)
        if "hnn_nuts" in methods:
            # the exact monitor (`HNNNUTS(exact=True)`; Dhulipala's is biased)
            kernel = reused("hnn_nuts", (p.eps_nuts, p.depth, c["max_hnn_error"]), fit.hnn,
                            lambda h: HNNNUTS(tz, h, p.eps_nuts, max_tree_depth=p.depth,
                                              max_hnn_error=c["max_hnn_error"]))
            z, tr = _until(kernel, z0, s + 13, budget("hnn_nuts"), chains)
            out["hnn_nuts"] = _measure(
                "hnn_nuts", p.name, z, tr, p.truth, to_x, budget("hnn_nuts"),
                step_size=p.eps_nuts,
                note=f"exact monitor: fell back to a true tree on "
                     f"{100 * np.mean(tr['fell_back']):.0f}% of transitions", **hnn_kw)
    return out


def training_seed(seed, k):
    """The seed of training seed number `k` (0, 1, ...) on a target whose seed is `seed`."""
    return int(seed) + _SEED_STRIDE * int(k)


_RELABEL_NOTE = "mixture labels fixed by `glmm_relabel` (component 1 the heavier)"


def pm_cells(tname, target, cfg, methods, seed, checkpoints=None):
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
                  warmup_seconds=w.trace["seconds"], target_accept=0.8)
    keep = lambda s: s[0]
    # the GLMM's mixture is symmetric under swapping its labels: a chain may visit either
    # labelling, and the ESS of raw θ would measure label switches, not mixing
    relabel = (lambda x: glmm_relabel(x)[0]) if tname == "glmm" else (lambda x: x)
    budget = lambda m: _budget(dict(cfg, budget=g["budget"]), tname, checkpoints, m)
    rec = {}
    if "pm_hmc" in methods:
        x, tr = _until(PMHMC(target, w.step_size, L, mass=w.mass), w.state, seed + 2,
                       budget("pm_hmc"), chains, keep_fn=keep, transform=relabel)
        rec["pm_hmc"] = _measure("pm_hmc", tname, relabel(x), tr, truth, lambda x: x,
                                 budget("pm_hmc"), step_size=w.step_size, num_steps=L,
                                 note=_RELABEL_NOTE, **common)
    if "pm_nuts" in methods:
        x, tr = _until(PMNUTS(target, w.step_size, max_tree_depth=g["max_tree_depth"],
                              mass=w.mass), w.state, seed + 3, budget("pm_nuts"), chains,
                       keep_fn=keep, transform=relabel)
        rec["pm_nuts"] = _measure("pm_nuts", tname, relabel(x), tr, truth, lambda x: x,
                                  budget("pm_nuts"), step_size=w.step_size,
                                  note="step size and mass from PM-HMC's warm-up; "
                                       + _RELABEL_NOTE, **common)
    return rec


# ----------------------------------------------------------------------------- a target's cells

def reference(records):
    """`(record, note)`: the break-even reference among one target's untrained `records`
    (their pseudo-marginal ones included): the highest ESS per second among those that
    passed the convergence gate; `(None, note)` if none passed or none ran."""
    base = [r for r in records if r.applicable and r.method not in grid.LEARNED]
    if not base:
        return None, ""
    ok = [r for r in base if r.converged]
    if ok:
        return max(ok, key=lambda r: r.ess_per_second), ""
    return None, "no untrained method passed the convergence gate: no break-even"


def with_break_even(cells):
    """`cells`: method -> list of Records (one per training seed; one if untrained). Fills
    `break_even_ess`, `reference_method` and `reference_note` of every record (learned
    records get `break_even_ess` None where no untrained cell converged)."""
    ref, note = reference([rs[0] for rs in cells.values()])
    if ref is None:   # untrained cells break even at once; learned ones have no reference
        return {m: [r._replace(reference_note=note, reference_method="",
                               break_even_ess=None if m in grid.LEARNED else 0.0)
                    for r in rs] for m, rs in cells.items()}
    return {m: [r._replace(reference_method=ref.method, reference_note=note,
                           break_even_ess=metrics.break_even(r.train_seconds, r.ess_per_second,
                                                             ref.ess_per_second))
                for r in rs] for m, rs in cells.items()}


def aggregate(records):
    """One Record from a learned method's Records over training seeds (same method and
    target): each measure (`MEASURES`, `BIAS_FIELDS`, `step_size`, `break_even_ess`) the
    median over seeds, `spread` the `[min, max]` of each of `SPREAD`, `converged` only if
    every seed converged, `stopped` the seeds' reasons, `training_seeds` their number, and
    the notes joined per seed where they differ. A single untrained record is returned as
    is."""
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
    for f in MEASURES + BIAS_FIELDS + ("step_size", "break_even_ess", "divergences"):
        vals = [getattr(r, f) for r in records]
        med[f] = None if any(v is None for v in vals) else float(np.median(vals))
    med["divergences"] = None if med["divergences"] is None else int(med["divergences"])
    spread = {f: None if any(getattr(r, f) is None for r in records) else
              [float(min(getattr(r, f) for r in records)),
               float(max(getattr(r, f) for r in records))] for f in SPREAD}
    notes = [r.note for r in records]
    note = notes[0] if len(set(notes)) == 1 else "; ".join(
        f"seed {k + 1}: {n}" for k, n in enumerate(notes))
    stops = [r.stopped for r in records]
    return first._replace(note=note, training_seeds=len(records), spread=spread,
                          converged=all(r.converged for r in records),
                          stopped=stops[0] if len(set(stops)) == 1 else "/".join(stops),
                          draws=int(max(r.draws for r in records)), **med)


def finish(name, methods, done):
    """A target's Records in `methods` order from `done` (method -> Record or list of
    per-seed Records): break-even filled in, learned cells aggregated, n/a rows added."""
    cells = with_break_even({m: (v if isinstance(v, list) else [v]) for m, v in done.items()})
    return [aggregate(cells[m]) if m in cells else _na(m, name, grid.applies(m, name)[1])
            for m in methods]


def check_methods(methods):
    """`methods` as a tuple (default: all of `grid.METHODS`); ValueError on an unknown one."""
    methods = tuple(grid.METHODS) if methods is None else tuple(methods)
    for m in methods:
        if m not in grid.METHODS:
            raise ValueError(f"unknown method in `methods`: {m!r}; "
                             f"known: {', '.join(grid.METHODS)}")
    return methods


def run_target(name, scale=None, methods=None, seed=None, checkpoints=None):
    """Every method of `methods` (default: all of `grid.METHODS`) on target `name`; one
    `Record` per method, in `methods` order (n/a ones included; learned ones aggregated
    over training seeds by `aggregate`). `checkpoints`: a folder for `sample_until`'s
    checkpoints (one file per sampling run), or None."""
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a target name (str), got {name!r}")
    methods = check_methods(methods)
    cfg = grid.settings(scale)
    seed = scale_mod.seed(1000) if seed is None else int(seed)
    target = _load_target(name, cfg)
    run = [m for m in methods if grid.applies(m, name)[0]]
    if name in grid.PM_TARGETS:
        return finish(name, methods, pm_cells(name, target, cfg, run, seed, checkpoints))
    p = prepare(name, target, cfg, seed)
    done = untrained_cells(p, cfg, run, seed, checkpoints)
    if any(m in grid.LEARNED for m in run):
        seeds = [learned_cells(p, cfg, run, training_seed(seed, k), checkpoints)
                 for k in range(cfg["training_seeds"])]
        for m in seeds[0]:
            done[m] = [r[m] for r in seeds]
    return finish(name, methods, done)


def target_seeds(names, seed=None):
    """The seed of each target of `names`, in order: `scale.seed(1000 + 100 k)` for the k-th
    (or `seed + 100 k`)."""
    return [scale_mod.seed(1000 + 100 * k) if seed is None else int(seed) + 100 * k
            for k in range(len(names))]


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
    check_methods(methods)
    if workers is None:
        workers = min(len(names), os.cpu_count() or 1)
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"`workers` must be a positive int, got {workers!r}")
    jobs = [dict(name=name, scale=scale, methods=methods, seed=s)
            for name, s in zip(names, target_seeds(names, seed))]
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


def _library_key():
    """A hash of every source and data file of `hmc_lib` and of the TensorFlow version: what,
    besides the scale and the seed, `run`'s records depend on."""
    import hashlib
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digest = hashlib.sha256(tf.__version__.encode())
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for f in sorted(filenames):
            if f.endswith((".py", ".json")):
                path = os.path.join(dirpath, f)
                digest.update(os.path.relpath(path, root).encode())
                with open(path, "rb") as fh:
                    digest.update(fh.read())
    return digest.hexdigest()[:16]


def default_cache_dir():
    """`<checkout>/_build/compare-cache`: where `run_cached` keeps its runs by default."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(root, "_build", "compare-cache")


def run_cached(scale, directory=None, workers=None):
    """`run(scale, workers=workers)`, computed once per library version: the records and
    seconds are stored in `directory` (default `default_cache_dir()`) under a key of the
    scale, the seed offset (`HMC_BOOK_SEED`) and a hash of `hmc_lib`'s files and the
    TensorFlow version, and a later call with the same key reads them back instead of
    running again. The test suite and chapter 9 at `ci` share one run this way: the same
    code at the same seed gives the same records (`run` depends on the seed only).
    Returns `(records, seconds, cached)`."""
    import json
    import fcntl
    directory = default_cache_dir() if directory is None else directory
    key = f"{scale}-seed{scale_mod.seed_offset()}-{_library_key()}"
    path = os.path.join(directory, f"{key}.json")
    os.makedirs(directory, exist_ok=True)
    # one process computes a key while any other asking for it waits and then reads it
    # (pytest-xdist runs chapter 9 and tests/test_compare.py side by side)
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(path):
            with open(path) as f:
                stored = json.load(f)
            return [Record(**r) for r in stored["records"]], stored["seconds"], True
        records, seconds = run(scale, workers=workers)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(dict(records=[r._asdict() for r in records], seconds=seconds), f)
        os.replace(tmp, path)
    return records, seconds, False


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


def single_thread():
    """Limits TensorFlow in this process to one thread (intra- and inter-op)."""
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _worker_main(inp, out):
    single_thread()
    tf.get_logger().setLevel("ERROR")
    with open(inp, "rb") as f:
        job = pickle.load(f)
    records = run_target(**job)
    with open(out, "wb") as f:
        pickle.dump(records, f)
