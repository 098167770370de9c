"""Benchmark: PM-HMC and PM-NUTS on the full GLMM (T = 500, N = 128; PAPERS.md §3.1-3.2).

Rows: acceptance (PM-NUTS: mean acceptance statistic in `accept_stat`), ESS per gradient of
log p̂ and per second, beside the compiled cost of one gradient of log p̂ (`grad_ms`, all
chains at once), and the cost of one compiled PM-HMC iteration with L steps against L such
gradients (`iteration_over_L_grads`, goal <= 1.2); and the posterior means of the mixture
parameters (labels fixed by `glmm_relabel`) beside the truth (w₁ 0.8, μ = (0, 3),
1/λ = (0.1, 1/3)) and Chen's means (his data set). The covariates follow the target's default,
Z ~ N(0, I/8) (the papers do not state their distribution; see `pseudo_marginal.glmm`).
"""

import time

import numpy as np
import tensorflow as tf

import hmc_lib
from hmc_lib import bench, scale as scale_mod
from hmc_lib.pm.kernel import PMHMC, PMNUTS
from hmc_lib.targets.pseudo_marginal import glmm_relabel

#: Chen's PM-NUTS posterior means (his data set, not ours): w₁, μ₁, μ₂.
CHEN_MEANS = dict(w1=0.827, mu1=0.059, mu2=3.012)


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


def initial_state(target, chains, seed=0, dtype=tf.float32):
    """A dispersed start in the labelling of the truth (μ₁ < μ₂, w₁ > ½): β = 0, μ = (−0.5, 2),
    log λ = 0, logit w₁ = 1, plus N(0, 0.1²)."""
    rng = np.random.default_rng(seed)
    theta = np.zeros((chains, target.theta_dim))
    theta[:, -5:] = [-0.5, 2.0, 0.0, 0.0, 1.0]
    theta += 0.1 * rng.standard_normal(theta.shape)
    u = tf.random.stateless_normal([chains, *target.u_shape], seed=[seed, 1], dtype=dtype)
    return [tf.constant(theta, dtype), u]


def mixture_means(samples):
    """Posterior means of w₁, μ₁, μ₂, 1/λ₁, 1/λ₂ from θ draws `[draws, chains, 13]`, after
    `glmm_relabel` (component 1 = the heavier one), and the fraction of relabelled draws."""
    s, swapped = glmm_relabel(samples)
    m = s[..., -5:]
    return dict(w1=float(np.mean(1 / (1 + np.exp(-m[..., 4])))), mu1=float(np.mean(m[..., 0])),
                mu2=float(np.mean(m[..., 1])), inv_lambda1=float(np.mean(np.exp(-m[..., 2]))),
                inv_lambda2=float(np.mean(np.exp(-m[..., 3]))),
                relabelled=float(np.mean(swapped)))


def run(scale):
    target = hmc_lib.targets.get("glmm")            # T = 500, N = 128 at every scale
    chains = 4
    step_size, num_steps = 0.05, 10
    n = scale_mod.pick(ci=30, book=300, paper=2000, scale=scale)
    n_nuts = scale_mod.pick(ci=10, book=80, paper=500, scale=scale)
    burnin = scale_mod.pick(ci=10, book=100, paper=500, scale=scale)
    state = initial_state(target, chains)

    grad = tf.function(target.value_and_grad, jit_compile=True)
    autodiff = tf.function(target.autodiff_value_and_grad, jit_compile=True)
    grad_s = _time(grad, *state)
    autodiff_s = _time(autodiff, *state)
    kernel = PMHMC(target, step_size, num_steps)
    results = kernel.bootstrap_results(state)
    one_step = tf.function(lambda s, r: kernel.one_step(s, r, seed=[1, 2]), jit_compile=True)
    iter_s = _time(one_step, state, results, repeats=2)
    timing = dict(grad_ms=1e3 * grad_s, autodiff_grad_ms=1e3 * autodiff_s,
                  iteration_ms=1e3 * iter_s, iteration_over_L_grads=iter_s / (num_steps * grad_s),
                  chains=chains, step_size=step_size)

    rows = []
    keep = lambda s: s[0]
    samples, trace = hmc_lib.sample(kernel, n, state, num_burnin_steps=burnin, seed=1, keep_fn=keep)
    rows.append(bench.row("PM-HMC", "glmm", samples, trace, paper=None,
                          num_leapfrog_steps=num_steps, **mixture_means(samples), **timing))
    nuts = PMNUTS(target, step_size, max_tree_depth=6)
    samples, trace = hmc_lib.sample(nuts, n_nuts, state, num_burnin_steps=burnin, seed=1,
                                    keep_fn=keep)
    rows.append(bench.row("PM-NUTS", "glmm", samples, trace, paper=CHEN_MEANS,
                          accept_stat=float(np.mean(np.exp(trace["log_accept_ratio"]))),
                          mean_tree_depth=float(np.mean(trace["tree_depth"])),
                          **mixture_means(samples), **timing))
    return rows
