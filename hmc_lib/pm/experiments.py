"""Chapter 4's experiments: PM-HMC and PM-NUTS on the GLMM (chapter 4).

Typed once here and shared by the chapter (`book/04_pseudo_marginal.md`), the benchmark
(`hmc_lib/bench/pm.py`) and the recorded long run (`record_long_run`, registered in
`tools/record.py` as `pm_glmm`):

- `Settings`, one frozen dataclass per scale (`settings()`): the data (T individuals, N
  importance draws, the covariates' scale), the chains, the warm-up and the run lengths,
  chosen by the answer (`sampling.sample_until` until the convergence gate passes or a
  gradient budget is spent);
- `CHEN_MEANS` (Chen's published PM-NUTS posterior means), `TRUTH` (the simulation's
  parameters) and `chen_initial_state` (the start of Chen's code);
- `run_pmhmc`, `run_pmnuts`: warm-up, then sampling until the gate passes, on the
  relabelled θ (`relabelled_gate`);
- `mixture_summary`: posterior means and sds of w₁, μ₁, μ₂, 1/λ₁, 1/λ₂ after relabelling.

The covariates: Chen (2025, §4.2) draws every element of Z from N(0, 1) (`covariate_scale
= 1`, the main data set); the book's earlier choice Z ~ N(0, I/8) (`NARROW_COVARIATES`) is
kept only as a labelled comparison.
"""

import dataclasses
import pathlib
import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from hmc_lib import diagnostics, scale as scale_mod
from hmc_lib.targets import pseudo_marginal as pmt

#: Chen's PM-NUTS posterior means (Chen 2025, Part II; his own simulated data set).
CHEN_MEANS = dict(w1=0.827, mu1=0.059, mu2=3.012)
#: the parameters that generate the data (Alenlöv et al. 2021 §4.1; Chen): λ are precisions.
TRUTH = dict(w1=0.8, mu1=0.0, mu2=3.0, inv_lambda1=0.1, inv_lambda2=1.0 / 3.0)
#: Z ~ N(0, c² I): c = 1 is Chen's (§4.2); 1/√8 is the book's earlier variant.
CHEN_COVARIATES = 1.0
NARROW_COVARIATES = 1.0 / math.sqrt(8.0)
#: the mixture part of Chen's initial state (his code's `INIT_PARAMS`): μ₁ = μ₂ = 0,
#: log λ₁ = 0, log λ₂ = −2.3 (λ₂ = 0.1), logit w₁ = 0 (w₁ = ½); β is drawn from N(0, I).
CHEN_INITIAL_MIXTURE = (0.0, 0.0, 0.0, -2.3, 0.0)
#: Alenlöv et al.'s step size (Sec. 4.2), the unit-mass runs' and the warm-up's start
UNIT_STEP_SIZE = 0.05
#: names of the mixture summaries, in table order
MIXTURE = ("w1", "mu1", "mu2", "inv_lambda1", "inv_lambda2")


@dataclass(frozen=True)
class Settings:
    """One scale's GLMM experiment.

    num_individuals: T. num_importance: N, importance draws per individual (u is [T, N]).
    covariate_scale: Z ~ N(0, c² I). data_seed: the simulation's seed (before
      `scale.seed`). chains: independent chains per sampler.
    warmup: iterations of Stan's windowed warm-up for PM-HMC (step size and θ's diagonal
      mass), also the burn-in of the unit-mass run. num_leapfrog_steps: PM-HMC's L, the same
      before and after the warm-up (Alenlöv et al.'s 10), so that they cost the same per
      iteration.
    nuts_warmup: PM-NUTS's own step-size warm-up (it reuses PM-HMC's mass).
    max_tree_depth: PM-NUTS's cap.
    chunk_draws: draws per chain between readings of the gate. min_draws: draws per chain
      before the gate may stop a run. max_draws: per chain.
    max_grad_evals: the gradient budget of one sampler (all chains, warm-up excluded).
    """
    scale: str
    num_individuals: int
    num_importance: int
    covariate_scale: float
    data_seed: int
    chains: int
    warmup: int
    num_leapfrog_steps: int
    nuts_warmup: int
    max_tree_depth: int
    chunk_draws: int
    min_draws: int
    max_draws: int
    max_grad_evals: float

    def replace(self, **changes):
        """A copy with `changes` (a dataclass is frozen)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self):
        return dataclasses.asdict(self)


def settings(scale=None):
    """The `Settings` of `scale` (default: `HMC_BOOK_SCALE`)."""
    name = scale_mod.get() if scale is None else scale
    if name not in _SETTINGS:
        raise ValueError(f"`scale` must be one of {sorted(_SETTINGS)}, got {scale!r}")
    return _SETTINGS[name]


_SETTINGS = {
    "ci": Settings(scale="ci", num_individuals=100, num_importance=16,
                   covariate_scale=CHEN_COVARIATES, data_seed=0, chains=4, warmup=150,
                   num_leapfrog_steps=10, nuts_warmup=30, max_tree_depth=5, chunk_draws=50,
                   min_draws=50,
                   max_draws=150, max_grad_evals=40_000),
    "book": Settings(scale="book", num_individuals=500, num_importance=32,
                     covariate_scale=CHEN_COVARIATES, data_seed=0, chains=4, warmup=300,
                     num_leapfrog_steps=10, nuts_warmup=50, max_tree_depth=5,
                     chunk_draws=50, min_draws=100,
                     max_draws=750, max_grad_evals=36_000),
    "paper": Settings(scale="paper", num_individuals=500, num_importance=128,
                      covariate_scale=CHEN_COVARIATES, data_seed=0, chains=4, warmup=1000,
                      num_leapfrog_steps=10, nuts_warmup=200, max_tree_depth=6,
                      chunk_draws=250, min_draws=1000,
                      max_draws=3000, max_grad_evals=120_000),
}


def target(cfg, covariate_scale=None, num_importance=None):
    """The GLMM of `cfg` (`Settings`): data from `scale.seed(cfg.data_seed)`; the covariate
    scale and N may be overridden (the comparisons)."""
    return pmt.glmm(num_individuals=cfg.num_individuals,
                    num_importance=num_importance or cfg.num_importance,
                    seed=scale_mod.seed(cfg.data_seed),
                    covariate_scale=cfg.covariate_scale if covariate_scale is None
                    else covariate_scale)


def chen_initial_state(target, chains, seed, dtype=tf.float32):
    """`[theta [chains, 13], u [chains, T, N]]`: Chen's start (β ~ N(0, I) per chain, the
    mixture at `CHEN_INITIAL_MIXTURE` plus N(0, 0.1²) jitter so that the chains start
    apart) and fresh u ~ N(0, I)."""
    rng = np.random.default_rng(int(seed))
    p = target.theta_dim - 5
    theta = np.empty((chains, target.theta_dim))
    theta[:, :p] = rng.standard_normal((chains, p))
    theta[:, p:] = np.asarray(CHEN_INITIAL_MIXTURE) + 0.1 * rng.standard_normal((chains, 5))
    u = tf.random.stateless_normal([chains, *target.u_shape], seed=[int(seed), 1], dtype=dtype)
    return [tf.constant(theta, dtype), u]


def relabel(theta):
    """θ draws with the mixture's labels fixed (component 1 the heavier; `glmm_relabel`)."""
    return pmt.glmm_relabel(np.asarray(theta, np.float64))[0]


def relabelled_gate(kept):
    """The convergence gate on θ after relabelling (`kept`: θ draws `[draws, chains, 13]`;
    u is never gated: it is the estimator's randomness, not a parameter)."""
    return diagnostics.convergence(relabel(kept))


def natural(theta):
    """w₁, μ₁, μ₂, 1/λ₁, 1/λ₂ from (relabelled) θ draws `[..., 13]`: dict of arrays."""
    s = np.asarray(theta, np.float64)[..., -5:]
    return dict(w1=1.0 / (1.0 + np.exp(-s[..., 4])), mu1=s[..., 0], mu2=s[..., 1],
                inv_lambda1=np.exp(-s[..., 2]), inv_lambda2=np.exp(-s[..., 3]))


def mixture_summary(theta):
    """Posterior mean, sd and Monte Carlo standard error (sd / √ESS bulk) of w₁, μ₁, μ₂,
    1/λ₁, 1/λ₂ from θ draws `[draws, chains, 13]`, relabelled: dict name -> dict."""
    nat = natural(relabel(theta))
    out = {}
    for key in MIXTURE:
        x = nat[key]
        e = float(diagnostics.ess(x[..., None], method="bulk")[0])
        out[key] = dict(mean=float(x.mean()), sd=float(x.std()),
                        mcse=float(x.std() / math.sqrt(max(e, 1.0))), ess_bulk=e)
    return out


# ------------------------------------------------------------------ the runs

def warm_up(target, cfg, state, seed):
    """Stan's windowed warm-up of PM-HMC (`hmc_lib.warmup`): step size by dual averaging
    towards an acceptance statistic of 0.8 from h = 0.05, θ's diagonal mass from windowed
    variances, L = `cfg.num_leapfrog_steps` throughout. Returns `WarmupResult`."""
    from hmc_lib.kernels.warmup import warmup
    from hmc_lib.pm.kernel import PMHMC
    steps = cfg.num_leapfrog_steps
    return warmup(lambda h, m: PMHMC(target, h, steps, mass=m), state, cfg.warmup,
                  seed=seed, target_accept=0.8, initial_step_size=UNIT_STEP_SIZE)


def _until(kernel, state, seed, cfg, checkpoint, progress, num_burnin_steps=0):
    from hmc_lib.sampling import sample_until
    return sample_until(kernel, state, seed=seed, chunk_draws=cfg.chunk_draws,
                        max_draws=cfg.max_draws, max_grad_evals=cfg.max_grad_evals,
                        min_draws=cfg.min_draws,
                        num_burnin_steps=num_burnin_steps, gate=relabelled_gate,
                        keep_fn=_keep_theta, checkpoint=checkpoint, progress=progress)


def _keep_theta(state):
    return state[0]


def run_pmhmc(target, cfg, state, seed, warm=None, checkpoint=None, progress=False):
    """PM-HMC after the warm-up (`warm`, or a fresh `warm_up`), sampled until the gate on
    the relabelled θ passes or the budget is spent. Returns `(samples, trace, warm)`:
    samples θ `[draws, chains, 13]`; trace as `sample_until`'s, with `step_size` and
    `num_leapfrog_steps`."""
    from hmc_lib.pm.kernel import PMHMC
    warm = warm if warm is not None else warm_up(target, cfg, state, seed)
    steps = cfg.num_leapfrog_steps
    kernel = PMHMC(target, warm.step_size, steps, mass=warm.mass)
    samples, trace = _until(kernel, warm.state, seed + 1, cfg, checkpoint, progress)
    trace.update(step_size=warm.step_size, num_leapfrog_steps=steps)
    return samples, trace, warm


def run_pmnuts(target, cfg, warm, seed, checkpoint=None, progress=False):
    """PM-NUTS from the end of PM-HMC's warm-up `warm` with its mass; its own step size by a
    short dual-averaging warm-up (`cfg.nuts_warmup` iterations, mass fixed), then sampled
    until the gate passes or the budget is spent. Returns `(samples, trace, nuts_warm)`."""
    from hmc_lib.kernels.warmup import warmup
    from hmc_lib.pm.kernel import PMNUTS
    depth = cfg.max_tree_depth
    nuts_warm = warmup(lambda h, m: PMNUTS(target, h, max_tree_depth=depth, mass=m),
                       warm.state, cfg.nuts_warmup, seed=seed, target_accept=0.8,
                       initial_step_size=warm.step_size, initial_mass=warm.mass,
                       adapt_mass=False)
    kernel = PMNUTS(target, nuts_warm.step_size, max_tree_depth=depth, mass=warm.mass)
    samples, trace = _until(kernel, nuts_warm.state, seed + 1, cfg, checkpoint, progress)
    trace.update(step_size=nuts_warm.step_size)
    return samples, trace, nuts_warm


def run_unit_mass(target, cfg, state, seed, checkpoint=None, progress=False):
    """PM-HMC as Alenlöv et al. run it, without a warm-up: unit mass, h = 0.05, L =
    `cfg.num_leapfrog_steps`, `cfg.warmup` iterations of burn-in, then sampled until the gate passes or the budget is
    spent. Returns `(samples, trace)`."""
    from hmc_lib.pm.kernel import PMHMC
    kernel = PMHMC(target, UNIT_STEP_SIZE, cfg.num_leapfrog_steps)
    samples, trace = _until(kernel, state, seed, cfg, checkpoint, progress,
                            num_burnin_steps=cfg.warmup)
    trace.update(step_size=UNIT_STEP_SIZE, num_leapfrog_steps=cfg.num_leapfrog_steps)
    return samples, trace


def cell(samples, trace):
    """One table cell of a run: the gate's reading on the relabelled θ, the run's size and
    cost, ESS per gradient (min and median over θ, bulk ESS, kept draws' gradients), and
    the mixture summaries. JSON-serialisable."""
    x = relabel(samples)
    gate = trace.get("convergence") or diagnostics.convergence(x)
    bulk = diagnostics.ess(x, method="bulk")
    grads = float(np.sum(trace["grad_evals"]))
    return dict(
        converged=bool(gate.converged), rhat_max=gate.rhat_max, ess_bulk_min=gate.ess_bulk_min,
        ess_tail_min=gate.ess_tail_min, draws=int(x.shape[0]), chains=int(x.shape[1]),
        stopped=trace.get("stopped"), grad_evals=grads,
        grads_per_iteration=float(np.mean(trace["grad_evals"])),
        ess_min_per_grad=gate.ess_bulk_min / grads if grads else float("nan"),
        ess_median_per_grad=float(np.median(bulk)) / grads if grads else float("nan"),
        acceptance=float(np.mean(np.exp(np.minimum(
            np.asarray(trace["log_accept_ratio"], np.float64), 0.0)))),
        step_size=float(trace.get("step_size", float("nan"))),
        seconds=float(trace.get("seconds", float("nan"))),
        theta_mean=x.reshape(-1, x.shape[-1]).mean(0).tolist(),
        theta_sd=x.reshape(-1, x.shape[-1]).std(0).tolist(),
        mixture=mixture_summary(samples), thinned=thinned(x))


def thinned(theta, most=500):
    """The relabelled draws of w₁, μ₁, μ₂, 1/λ₁, 1/λ₂ thinned to at most `most` per chain,
    for trace plots of a recorded run: dict name -> `[draws, chains]` nested lists (4
    significant digits), and `every` (the thinning)."""
    theta = np.asarray(theta, np.float64)
    every = max(1, int(math.ceil(theta.shape[0] / most)))
    nat = natural(theta[::every])
    out = {k: np.round(v, 4).tolist() for k, v in nat.items()}
    out["every"] = every
    return out


# ------------------------------------------------------------------ the recorded long run

#: seeds (before `scale.seed`) of the data, the start and each run
SEEDS = dict(data=0, start=10, pmhmc=11, pmnuts=20, unit=30, narrow=40)
#: where the chapter reads the paper-scale record
RECORD_PATH = pathlib.Path(__file__).resolve().parent / "recorded" / "glmm_paper.json"
#: the record's units: key -> (sampler, data set)
UNITS = {"pmhmc": ("PM-HMC", "Z ~ N(0, I) (Chen)"),
         "pmnuts": ("PM-NUTS", "Z ~ N(0, I) (Chen)"),
         "narrow": ("PM-HMC", "Z ~ N(0, I/8) (comparison)"),
         "unit": ("PM-HMC, unit mass", "Z ~ N(0, I) (Chen)")}


def _saved_warmup(path, make):
    """A `WarmupResult`-like (state, step_size, mass, grad_evals) saved at `path` by an
    earlier process, or `make()`'s, saved there."""
    from hmc_lib import records
    like = dict(theta=np.zeros(1), u=np.zeros(1), step_size=np.zeros(()), mass=np.zeros(1),
                grad_evals=np.zeros(()))
    import os
    if os.path.exists(path):
        d = records.load_tree(path, like)
    else:
        w = make()
        d = dict(theta=np.asarray(w.state[0]), u=np.asarray(w.state[1]),
                 step_size=np.asarray(w.step_size, np.float64), mass=np.asarray(w.mass),
                 grad_evals=np.asarray(float(np.sum(w.trace["grad_evals"]))))
        records.save_tree(path, d)
        d = records.load_tree(path, like)
    state = [tf.constant(d["theta"], tf.float32), tf.constant(d["u"], tf.float32)]
    return _Warm(state, float(d["step_size"]), np.asarray(d["mass"], np.float64),
                 float(d["grad_evals"]))


class _Warm(tuple):
    """(state, step_size, mass, grad_evals) of a warm-up, as `run_pmhmc`/`run_pmnuts` read it."""
    def __new__(cls, state, step_size, mass, grad_evals):
        return super().__new__(cls, (state, step_size, mass, grad_evals))
    state = property(lambda self: self[0])
    step_size = property(lambda self: self[1])
    mass = property(lambda self: self[2])
    grad_evals = property(lambda self: self[3])


def _row(key, samples, trace, warmup_grads, **extra):
    sampler, data = UNITS[key]
    return dict(key=key, sampler=sampler, data=data, warmup_grad_evals=warmup_grads,
                history=trace["history"], **cell(samples, trace), **extra)


def record_long_run(workdir, scale="paper", out=None, units=tuple(UNITS)):
    """The recorded long run of chapter 4 (`tools/record.py pm_glmm`): on the GLMM at the
    `Settings` of `scale` (paper: T = 500, N = 128, Z ~ N(0, I) as Chen), PM-HMC after the
    warm-up, PM-NUTS with its mass, PM-HMC with unit mass and no warm-up (Alenlöv et al.'s
    h = 0.05, L = 10), and PM-HMC on the Z ~ N(0, I/8) variant; each sampled until the
    gate on the relabelled θ passes (`min_draws` at least) or its budget is spent.

    Each run is a resumable unit of a `records.LongRun` in `workdir` (warm-ups saved,
    sampling checkpointed by `sample_until`); the record is (re)written after every unit,
    so a partial record holds the units done so far. Writes to `out` (default: the
    package's `recorded/glmm_paper.json` at paper scale, else `workdir/glmm_<scale>.json`)
    and returns the record."""
    from hmc_lib import records
    cfg = settings(scale)
    seeds = {k: scale_mod.seed(v) for k, v in SEEDS.items()}
    run = records.LongRun("pm_glmm", workdir, scale, seeds=sorted(seeds.values()),
                          settings=dict(cfg.as_dict(), seeds=seeds,
                                        narrow_covariate_scale=NARROW_COVARIATES))
    if out is None:
        out = RECORD_PATH if scale == "paper" else pathlib.Path(workdir) / f"glmm_{scale}.json"
    main = target(cfg)
    start = chen_initial_state(main, cfg.chains, seeds["start"])
    hmc_warm = lambda: _saved_warmup(run.checkpoint("pmhmc-warmup"),
                                     lambda: warm_up(main, cfg, start, seeds["pmhmc"]))
    rows = []

    def pmhmc(ckpt):
        w = hmc_warm()
        s, tr, _ = run_pmhmc(main, cfg, start, seeds["pmhmc"], warm=w, checkpoint=ckpt,
                             progress=True)
        return _row("pmhmc", s, tr, w.grad_evals, mass=w.mass.tolist())

    def pmnuts(ckpt):
        from hmc_lib.kernels.warmup import warmup
        from hmc_lib.pm.kernel import PMNUTS
        w = hmc_warm()
        nw = _saved_warmup(run.checkpoint("pmnuts-warmup"), lambda: warmup(
            lambda h, m: PMNUTS(main, h, max_tree_depth=cfg.max_tree_depth, mass=m), w.state,
            cfg.nuts_warmup, seed=seeds["pmnuts"], target_accept=0.8,
            initial_step_size=w.step_size, initial_mass=w.mass, adapt_mass=False))
        kernel = PMNUTS(main, nw.step_size, max_tree_depth=cfg.max_tree_depth, mass=w.mass)
        s, tr = _until(kernel, nw.state, seeds["pmnuts"] + 1, cfg, ckpt, True)
        tr.update(step_size=nw.step_size)
        return _row("pmnuts", s, tr, w.grad_evals + nw.grad_evals,
                    mean_tree_depth=float(np.mean(tr["tree_depth"])))

    def unit(ckpt):
        s, tr = run_unit_mass(main, cfg, start, seeds["unit"], checkpoint=ckpt, progress=True)
        return _row("unit", s, tr, float(cfg.warmup * cfg.chains * cfg.num_leapfrog_steps))

    def narrow(ckpt):
        t = target(cfg, covariate_scale=NARROW_COVARIATES)
        st = chen_initial_state(t, cfg.chains, seeds["start"])
        w = _saved_warmup(run.checkpoint("narrow-warmup"),
                          lambda: warm_up(t, cfg, st, seeds["narrow"]))
        s, tr, _ = run_pmhmc(t, cfg, st, seeds["narrow"], warm=w, checkpoint=ckpt,
                             progress=True)
        return _row("narrow", s, tr, w.grad_evals)

    fns = dict(pmhmc=pmhmc, pmnuts=pmnuts, unit=unit, narrow=narrow)
    rec = None
    for key in units:
        rows.append(run.unit(key, fns[key]))
        rec = run.write(out, rows, truth=TRUTH, chen_means=CHEN_MEANS,
                        true_theta=main.true_theta.tolist(),
                        units_planned=list(units))
    return rec


def load_record(path=None):
    """The recorded long run (`records.load`), or None where it has not been recorded."""
    from hmc_lib import records
    path = RECORD_PATH if path is None else path
    return records.load(path) if pathlib.Path(path).exists() else None
