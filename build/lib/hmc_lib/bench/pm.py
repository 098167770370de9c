"""Benchmark: PM-HMC and PM-NUTS on the GLMM (chapter 4), at the sizes of chapter 4.

The data, the start, the warm-up and the run lengths are chapter 4's (`hmc_lib.pm.experiments`:
Z ~ N(0, I) as Chen draws it, Chen's initial state, Stan's warm-up for PM-HMC, PM-NUTS with
its mass, each sampled until the convergence gate on the relabelled θ passes or the scale's
gradient budget is spent). Rows: acceptance (the mean acceptance statistic), ESS per
gradient of log p̂ and per second, the gate's reading (`rhat_max`, `ess_bulk_min`,
`ess_tail_min`, `converged`, `stopped`), the compiled cost of one gradient of log p̂ (`grad_ms`,
all chains at once) and of one PM-HMC iteration of L steps against L such gradients
(`iteration_over_L_grads`, goal <= 1.2); and the posterior means of the mixture parameters
(labels fixed by `glmm_relabel`) beside the truth and Chen's means (`paper`, his data set).
"""

import time

import numpy as np
import tensorflow as tf

from hmc_lib import bench, scale as scale_mod
from hmc_lib.pm import experiments as ex
from hmc_lib.pm.kernel import PMHMC

#: Chen's PM-NUTS posterior means (his data set, not ours): w₁, μ₁, μ₂.
CHEN_MEANS = ex.CHEN_MEANS


def _time(fn, *args, repeats=5, rounds=5):
    """Seconds per call of a compiled `fn`: the fastest of `rounds` rounds of `repeats` calls
    (the minimum is the least disturbed by other work on the machine)."""
    fn(*args)                                     # compile
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            out = fn(*args)
        tf.nest.map_structure(lambda t: t.numpy(), out)
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def mixture_means(samples):
    """Posterior means of w₁, μ₁, μ₂, 1/λ₁, 1/λ₂ from θ draws `[draws, chains, 13]`, after
    relabelling (component 1 = the heavier one)."""
    return {k: v["mean"] for k, v in ex.mixture_summary(samples).items()}


def run(scale):
    cfg = ex.settings(scale)
    target = ex.target(cfg)
    seed = lambda key: scale_mod.seed(ex.SEEDS[key])
    state = ex.chen_initial_state(target, cfg.chains, seed("start"))

    grad = tf.function(target.value_and_grad, jit_compile=True)
    autodiff = tf.function(target.autodiff_value_and_grad, jit_compile=True)
    grad_s = _time(grad, *state)
    autodiff_s = _time(autodiff, *state)
    kernel = PMHMC(target, ex.UNIT_STEP_SIZE, cfg.num_leapfrog_steps)
    results = kernel.bootstrap_results(state)
    one_step = tf.function(lambda s, r: kernel.one_step(s, r, seed=[1, 2]), jit_compile=True)
    iter_s = _time(one_step, state, results, repeats=2)
    timing = dict(grad_ms=1e3 * grad_s, autodiff_grad_ms=1e3 * autodiff_s,
                  iteration_ms=1e3 * iter_s,
                  iteration_over_L_grads=iter_s / (cfg.num_leapfrog_steps * grad_s),
                  chains=cfg.chains, num_individuals=cfg.num_individuals,
                  num_importance=cfg.num_importance)

    def gate(trace):
        g = trace["convergence"]
        return dict(rhat_max=g.rhat_max, ess_bulk_min=g.ess_bulk_min,
                    ess_tail_min=g.ess_tail_min, converged=g.converged,
                    stopped=trace["stopped"])

    rows = []
    samples, trace, warm = ex.run_pmhmc(target, cfg, state, seed("pmhmc"))
    rows.append(bench.row("PM-HMC", "glmm", ex.relabel(samples), trace, paper=None,
                          step_size=warm.step_size, num_leapfrog_steps=cfg.num_leapfrog_steps,
                          **gate(trace), **mixture_means(samples), **timing))
    samples, trace, nuts_warm = ex.run_pmnuts(target, cfg, warm, seed("pmnuts"))
    rows.append(bench.row("PM-NUTS", "glmm", ex.relabel(samples), trace, paper=CHEN_MEANS,
                          step_size=nuts_warm.step_size,
                          accept_stat=float(np.mean(np.exp(trace["log_accept_ratio"]))),
                          mean_tree_depth=float(np.mean(trace["tree_depth"])),
                          **gate(trace), **mixture_means(samples), **timing))
    return rows
