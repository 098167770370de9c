"""Windowed warm-up like Stan's: dual-averaging step size and a diagonal mass matrix.

The warm-up of `num_warmup` iterations is cut into windows (Stan's defaults, Stan Reference
Manual §15.2): an initial fast window of 75 iterations (step size only), slow windows of 25,
50, 100, ... iterations, each doubling (the last stretched to reach the terminal window), and
a terminal fast window of 50. During the whole warm-up the step size follows Nesterov's dual
averaging (Hoffman & Gelman 2014, Alg. 5; γ = 0.05, t₀ = 10, κ = 0.75) towards the target
acceptance statistic, averaged over chains. At the end of each slow window the inverse mass
diagonal becomes the regularised variance of that window's draws, pooled over chains,

    M⁻¹ = n/(n + 5) · var + 10⁻³ · 5/(n + 5),

and dual averaging restarts from the current step size (μ = log 10ε). The final step size is
the dual-averaging average of the terminal window.

For a pseudo-marginal kernel (state `[theta, u]`) the mass matrix is θ's only: u has the
identity mass by construction.

The whole warm-up runs one compiled chunk function (the step size is written into the kernel
results; the mass is an input of the function for HMC and NUTS, a `tf.Variable` read by any
other kernel), so it compiles once; for HMC and NUTS that graph is shared by every warm-up
of the same target and settings in the process (`sampling.compiled_chunk`).
"""

import functools
import math
import time
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from hmc_lib import _checks
from hmc_lib.sampling import run_warnings, step_seeds

#: Stan's dual-averaging constants.
GAMMA, T0, KAPPA = 0.05, 10.0, 0.75


class DualAveraging(NamedTuple):
    """Dual-averaging state (scalars, float64): log ε, log ε̄, H̄, μ and the counter t."""
    log_step: tf.Tensor
    log_step_bar: tf.Tensor
    h_bar: tf.Tensor
    mu: tf.Tensor
    count: tf.Tensor


def dual_averaging_start(step_size):
    """A fresh dual-averaging state at `step_size` (μ = log 10ε, as Stan)."""
    log_eps = tf.constant(math.log(float(step_size)), tf.float64)
    zero = tf.constant(0.0, tf.float64)
    return DualAveraging(log_eps, zero, zero, log_eps + math.log(10.0), zero)


def dual_averaging_update(da, accept_prob, target_accept):
    """One update of Hoffman & Gelman's Alg. 5 with the observed acceptance statistic."""
    t = da.count + 1.0
    w = 1.0 / (t + T0)
    h_bar = (1.0 - w) * da.h_bar + w * (target_accept - accept_prob)
    log_eps = da.mu - tf.sqrt(t) / GAMMA * h_bar
    eta = t ** (-KAPPA)
    log_bar = eta * log_eps + (1.0 - eta) * da.log_step_bar
    return DualAveraging(log_eps, log_bar, h_bar, da.mu, t)


def window_schedule(num_warmup, init_buffer=75, term_buffer=50, base_window=25):
    """Stan's windows: `[(start, end, slow?)]` covering `range(num_warmup)`.

    If the three buffers do not fit, Stan's fallback: 15% initial, 10% terminal, the rest one
    slow window.
    """
    n = int(num_warmup)
    if init_buffer + term_buffer + base_window > n:
        init_buffer, term_buffer = int(0.15 * n), int(0.1 * n)
        base_window = n - init_buffer - term_buffer
    windows = [(0, init_buffer, False)] if init_buffer else []
    start, size, last = init_buffer, base_window, n - term_buffer
    while start < last:
        end = start + size
        if end + 2 * size > last:
            end = last
        windows.append((start, end, True))
        start, size = end, 2 * size
    if term_buffer:
        windows.append((last, n, False))
    return windows


def regularized_variance(variance, n):
    """Stan's shrinkage of a window's variance estimate towards 10⁻³: `[dim]`."""
    return (n / (n + 5.0)) * variance + 1e-3 * (5.0 / (n + 5.0))


def _theta(state):
    return state[0] if isinstance(state, (list, tuple)) else state


def _accept_prob(results):
    """Acceptance statistic per chain from `log_accept_ratio` (NUTS: Stan's accept_stat)."""
    lar = tf.cast(results.log_accept_ratio, tf.float64)
    lar = tf.where(tf.math.is_finite(lar), lar, tf.constant(-np.inf, tf.float64))
    return tf.exp(tf.minimum(lar, 0.0))


class WarmupResult(NamedTuple):
    """What `warmup` returns.

    state: the state after warm-up (same structure as `initial_state`).
    step_size: float, the adapted step size.
    mass: numpy `[dim]` (θ's `[theta_dim]` for pseudo-marginal kernels), the adapted mass
      diagonal M (= 1 / the regularised variance estimate).
    trace: dict of numpy arrays, per iteration: `step_size` `[num_warmup]`, `accept_prob`
      `[num_warmup, chains]`, `grad_evals` and `is_divergent` `[num_warmup, chains]`;
      `windows` (list of `(start, end, slow)`), `inverse_mass` (one `[dim]` per slow window),
      `chain_variance` (per slow window, each chain's own variance estimate `[chains, dim]`:
      their spread gives the Monte Carlo error of `inverse_mass`), `seconds` (wall clock,
      compilation included).
    """
    state: object
    step_size: float
    mass: np.ndarray
    trace: dict


def warmup(kernel_factory, initial_state, num_warmup, seed, target_accept=0.8,
           initial_step_size=0.1, init_buffer=75, term_buffer=50, base_window=25,
           adapt_mass=True, initial_mass=None, chunk_size=25, jit_compile=True):
    """Stan's windowed warm-up for any of the library's kernels (HMC, NUTS, PMHMC, PMNUTS).

    Args:
      kernel_factory: `(step_size, mass) -> kernel`, e.g.
        `lambda step_size, mass: hmc_lib.NUTS(target, step_size, mass=mass)` or
        `lambda step_size, mass: hmc_lib.PMHMC(glmm, step_size, 10, mass=mass)`. It is called
        once, with a `tf.Variable` as `mass`; the kernel's results must carry `step_size` and
        `log_accept_ratio` (all of the library's do).
      initial_state: `[chains, dim]`, or the pseudo-marginal list `[theta, u]`, or, for a
        kernel on a `hmc_lib.Model` or TFP joint distribution, a state in the model's
        structure (then `state` comes back in it; the mass is that of the flat
        unconstrained space).
      num_warmup: iterations (>= 20; Stan's buffers 75/25/50 need >= 150).
      seed: int or `[2]` stateless seed.
      target_accept: the acceptance statistic dual averaging aims at, in (0, 1).
      initial_step_size: ε at the start, > 0.
      init_buffer, term_buffer, base_window: Stan's window sizes.
      adapt_mass: False adapts the step size only (the mass stays `initial_mass`).
      initial_mass: the mass diagonal to start from, `[dim]` > 0 (default ones), e.g. one
        learned by an earlier warm-up.
      chunk_size: iterations per compiled call.
    Returns:
      `WarmupResult(state, step_size, mass, trace)`; unpacks as a 4-tuple.
    """
    if not callable(kernel_factory):
        raise TypeError(f"`kernel_factory` must be callable (step_size, mass) -> kernel, got "
                        f"{kernel_factory!r}")
    _checks.positive_int(num_warmup, "num_warmup")
    if int(num_warmup) < 20:
        raise ValueError(f"`num_warmup` must be >= 20, got {num_warmup}")
    if not isinstance(target_accept, (int, float, np.floating)) or not 0 < target_accept < 1:
        raise ValueError(f"`target_accept` must be in (0, 1), got {target_accept!r}")
    _checks.positive_float(initial_step_size, "initial_step_size")
    if np.ndim(initial_step_size) != 0:
        raise ValueError(f"`initial_step_size` must be a scalar, got {initial_step_size!r}")
    for name, v in (("init_buffer", init_buffer), ("term_buffer", term_buffer)):
        if not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"`{name}` must be an integer >= 0, got {v!r}")
    _checks.positive_int(base_window, "base_window")
    _checks.positive_int(chunk_size, "chunk_size")

    model = None
    if not (tf.is_tensor(initial_state) or isinstance(initial_state, np.ndarray)):
        # A state in a model's structure: the kernel's `Model` flattens it (a pseudo-marginal
        # kernel's `[theta, u]` has no model and stays a list).
        from hmc_lib.model import model_of
        try:
            model = model_of(kernel_factory(initial_step_size, None))
        except (TypeError, ValueError):
            model = None
        if model is not None:
            initial_state = model.to_flat(initial_state)
    is_list = isinstance(initial_state, (list, tuple))
    if is_list:
        parts = [_checks.floating(initial_state[0], "initial_state[0]")]
        parts += [tf.convert_to_tensor(t, parts[0].dtype) for t in initial_state[1:]]
        state = list(parts)
    else:
        state = _checks.floating(initial_state, "initial_state")
    theta = _theta(state)
    if theta.shape.rank != 2:
        raise ValueError(f"`initial_state` must be [chains, dim] (or [theta, u] with theta "
                         f"[chains, theta_dim]), got theta of shape {theta.shape.as_list()}")
    dtype = theta.dtype
    dim = int(theta.shape[-1])
    if initial_mass is None:
        initial_mass = np.ones(dim)
    _checks.positive_float(initial_mass, "initial_mass")
    if np.shape(initial_mass) != (dim,):
        raise ValueError(f"`initial_mass` must have shape [{dim}], got {np.shape(initial_mass)}")
    # A kernel whose graph takes its mass as an input (HMC, NUTS: `graph_key`) shares one
    # compiled warm-up graph with every warm-up of the same target and settings; any other
    # kernel reads its mass from a `tf.Variable` that the windows update.
    mass = np.asarray(initial_mass, np.float64)
    kernel = kernel_factory(initial_step_size, mass)
    shared = getattr(kernel, "graph_key", lambda: None)() is not None
    mass_var = None
    if not shared:
        mass_var = tf.Variable(_checks.as_dtype(mass, dtype), trainable=False,
                               name="warmup_mass")
        kernel = kernel_factory(initial_step_size, mass_var)
    results = kernel.bootstrap_results(state)
    if not hasattr(results, "step_size") or not hasattr(results, "log_accept_ratio"):
        raise TypeError("`kernel_factory` must return one of the library's kernels (its results "
                        "need `step_size` and `log_accept_ratio`)")

    chunk = int(chunk_size)
    windows = window_schedule(num_warmup, init_buffer, term_buffer, base_window)
    seeds = step_seeds(seed, int(num_warmup) + chunk)

    def run_chunk(kernel_of, state, results, da, sums, shift, seeds, num_active, collect,
                  target, inputs):
        """`chunk` iterations (those at or past `num_active` change nothing): dual averaging
        on the step size towards `target`, and (if `collect`) sums of θ − shift for the
        window variance."""
        kernel = kernel_of(inputs)
        arrays = [tf.TensorArray(dt, size=chunk) for dt in (tf.float64, tf.float64, tf.int32,
                                                            tf.bool)]

        def body(i, state, results, da, sums, tas):
            def step():
                eps = tf.cast(tf.exp(da.log_step), results.step_size.dtype)
                res = results._replace(step_size=tf.broadcast_to(eps, tf.shape(
                    results.step_size)))
                new_state, new_res = kernel.one_step(state, res, seed=seeds[i])
                acc = _accept_prob(new_res)
                new_da = dual_averaging_update(da, tf.reduce_mean(acc), target)
                x = tf.cast(_theta(new_state), tf.float64) - shift
                c = tf.cast(collect, tf.float64)
                new_sums = (sums[0] + c, sums[1] + c * x, sums[2] + c * x * x)
                out = (tf.exp(da.log_step), acc, tf.cast(new_res.grad_evals, tf.int32),
                       tf.cast(new_res.is_divergent, tf.bool))
                return new_state, new_res, new_da, new_sums, out

            def skip():
                lp = results.log_accept_ratio
                out = (tf.exp(da.log_step), tf.zeros(tf.shape(lp), tf.float64),
                       tf.zeros(tf.shape(lp), tf.int32), tf.zeros(tf.shape(lp), tf.bool))
                return state, results, da, sums, out

            state, results, da, sums, out = tf.cond(i < num_active, step, skip)
            tas = [ta.write(i, o) for ta, o in zip(tas, out)]
            return i + 1, state, results, da, sums, tas

        _, state, results, da, sums, tas = tf.while_loop(
            lambda i, *_: i < chunk, body, (tf.constant(0), state, results, da, sums, arrays))
        return state, results, da, sums, [ta.stack() for ta in tas]

    from hmc_lib.sampling import compiled_chunk
    compiled, _ = compiled_chunk(
        kernel, ("warmup", chunk, bool(jit_compile)), (),
        lambda kernel_of: tf.function(functools.partial(run_chunk, kernel_of),
                                      jit_compile=jit_compile, autograph=False))
    target = tf.constant(float(target_accept), tf.float64)
    da = dual_averaging_start(initial_step_size)
    traces, inverse_masses, chain_variances = [], [], []
    start_time = time.perf_counter()
    for first, last, slow in windows:
        shift = tf.reduce_mean(tf.cast(_theta(state), tf.float64), 0)
        zeros = tf.zeros(tf.shape(_theta(state)), tf.float64)          # per chain
        sums = (tf.constant(0.0, tf.float64), zeros, zeros)
        for c0 in range(first, last, chunk):
            active = min(chunk, last - c0)
            inputs = (kernel.with_inputs(mass=mass).input_values(dtype) if shared else {})
            state, results, da, sums, out = compiled(
                state, results, da, sums, shift, seeds[c0:c0 + chunk],
                tf.constant(active, tf.int32), tf.constant(bool(slow and adapt_mass)),
                target, inputs)
            traces.append([o.numpy()[:active] for o in out])
        if slow and adapt_mass:
            steps = float(sums[0])
            s1, s2 = sums[1].numpy(), sums[2].numpy()          # [chains, dim]
            n = steps * s1.shape[0]                            # draws pooled over chains
            mean = s1.sum(0) / n
            var = (s2.sum(0) - n * mean ** 2) / (n - 1.0)
            inv_mass = regularized_variance(np.maximum(var, 0.0), n)
            inverse_masses.append(inv_mass)
            chain_mean = s1 / steps
            chain_variances.append((s2 / steps - chain_mean ** 2) * steps / (steps - 1.0))
            mass = 1.0 / inv_mass
            if mass_var is not None:
                mass_var.assign(tf.constant(mass, dtype))
            da = dual_averaging_start(math.exp(float(da.log_step)))
    step_size = math.exp(float(da.log_step_bar)) if float(da.count) > 0 \
        else math.exp(float(da.log_step))
    trace = {k: np.concatenate([t[j] for t in traces], 0)
             for j, k in enumerate(("step_size", "accept_prob", "grad_evals", "is_divergent"))}
    trace.update(windows=windows, inverse_mass=inverse_masses, chain_variance=chain_variances,
                 seconds=time.perf_counter() - start_time)
    # Early divergences are part of finding the step size; those of the terminal window,
    # whose step sizes average to the one the run will use, and a chain that never moves
    # there are worth a line (dual averaging still tries larger steps there, so a few
    # divergences need not recur in sampling).
    last = slice(windows[-1][0], windows[-1][1])
    run_warnings(f"warmup (its last {last.stop - last.start} iterations, the step size still "
                 "adapting)",
                 trace["is_divergent"][last], trace["accept_prob"][last],
                 moved=np.any(trace["accept_prob"][last] > 0, axis=0))
    if is_list:
        state = [tf.convert_to_tensor(t) for t in state]
    if model is not None:
        state = model.from_flat(state)
    final_mass = mass_var.numpy().copy() if mass_var is not None else np.asarray(
        _checks.as_dtype(mass, dtype).numpy()).copy()
    return WarmupResult(state, step_size, final_mass, trace)
