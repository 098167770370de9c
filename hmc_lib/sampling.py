"""`sample`: run any `tfp.mcmc.TransitionKernel` for many chains, compiled with XLA.

The run is cut into chunks of `chunk_size` steps; one compiled function (a `tf.while_loop`
over the chunk) serves every chunk, so the XLA compilation happens once, during the first
chunk, and the wall-clock seconds reported for the draws exclude it. Each step's seed is
split from `seed` in advance, so the chain does not depend on the chunk size.
"""

import math
import time

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from hmc_lib import _checks

#: Kernel-result fields recorded per step when a kernel has them (searched through wrappers
#: such as TFP's step-size adaptation). A kernel can add its own with a `trace_fields` attribute.
TRACE_FIELDS = ("is_accepted", "log_accept_ratio", "is_divergent", "grad_evals",
                "target_log_prob", "step_size")


def find_field(results, name):
    """The field `name` of kernel results, searching `inner_results`/`accepted_results`."""
    if hasattr(results, name):
        return getattr(results, name)
    for attr in ("inner_results", "accepted_results"):
        if hasattr(results, attr):
            found = find_field(getattr(results, attr), name)
            if found is not None:
                return found
    return None


def _trace_fields(kernel):
    fields = list(TRACE_FIELDS)
    k = kernel
    while k is not None:
        fields += [f for f in getattr(k, "trace_fields", ()) if f not in fields]
        k = getattr(k, "inner_kernel", None)
    return fields


def _default_trace_fn(fields):
    def trace_fn(state, results):
        out = {}
        for name in fields:
            value = find_field(results, name)
            if value is not None:
                out[name] = value
        return out
    return trace_fn


def _check_state(state):
    parts = tf.nest.flatten(state)
    if not parts:
        raise ValueError("`current_state` is empty")
    converted = []
    for i, part in enumerate(parts):
        name = "current_state" if len(parts) == 1 else f"current_state[{i}]"
        part = _checks.floating(part, name)
        if part.shape.rank is None or part.shape.rank < (2 if len(parts) == 1 else 1):
            raise ValueError(f"`{name}` must have shape [chains, ...] with a leading chain "
                             f"dimension (e.g. [chains, dim]), got {part.shape.as_list()}")
        converted.append(part)
    return tf.nest.pack_sequence_as(state, converted)


def step_seeds(seed, n):
    """`[n, 2]` int32 stateless seeds, one per step, from an int or `[2]` seed."""
    if isinstance(seed, (int, np.integer)):
        seed = tf.constant([int(seed), 0], tf.int32)
    seed = tfp.random.sanitize_seed(seed)
    return tf.random.experimental.stateless_split(seed, n)


#: compiled chunk functions kept per kernel object (the oldest dropped first)
_MAX_COMPILED_PER_KERNEL = 8


def _compiled(kernel, settings, fns, build):
    """The compiled chunk function for `kernel` with `settings` (chunk size, XLA) and the
    caller's `fns` (`trace_fn`, `keep_fn`, matched by identity; None for the defaults),
    built by `build()` the first time. It is kept on the kernel object, so sampling again
    with the same kernel (a longer run, another seed, a network whose weights were copied
    in) re-uses the traced and compiled graph. Kernels are immutable, so the graph stays valid."""
    store = getattr(kernel, "__dict__", None)
    if store is None:
        return build()
    cache = store.setdefault("_hmc_lib_compiled", {})
    key = (settings, tuple(None if f is None else id(f) for f in fns))
    hit = cache.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], fns)):
        return hit[1]
    compiled = build()
    cache[key] = (fns, compiled)   # holds `fns`, so no other function can take their ids
    while len(cache) > _MAX_COMPILED_PER_KERNEL:
        cache.pop(next(iter(cache)))
    return compiled


def sample(kernel, num_results, current_state, num_burnin_steps=0, seed=0,
           previous_kernel_results=None, trace_fn=None, keep_fn=None, chunk_size=None,
           jit_compile=True, progress=False):
    """Runs `kernel` and returns `(samples, trace)`.

    Args:
      kernel: a `tfp.mcmc.TransitionKernel` (ours or TFP's, wrapped or not).
      num_results: number of draws kept.
      current_state: `[chains, dim]` tensor, or a list of `[chains, ...]` tensors.
      num_burnin_steps: steps run and discarded first.
      seed: int or `[2]` int tensor; the same seed gives the same chains.
      previous_kernel_results: results to continue from (default: `bootstrap_results`).
      trace_fn: `(state, results) -> dict` of per-step tensors; default records the fields
        of `TRACE_FIELDS` (and the kernel's `trace_fields`) that the results have.
      keep_fn: `state -> structure` stored per draw (default: the whole state); e.g.
        `lambda s: s[0]` keeps only θ of a pseudo-marginal state.
      chunk_size: steps per compiled call (default: a fifth of `num_results`).
      jit_compile: compile with XLA.
      progress: show a tqdm progress bar over chunks.
    Returns:
      samples: numpy, `[num_results, chains, ...]` per kept part.
      trace: dict of numpy arrays `[num_results, chains]` per traced field, plus
        `seconds` (wall-clock of the kept draws, compilation excluded), `burnin_seconds`,
        `compile_seconds` (estimated: first call minus a typical call), `num_chunks`,
        `final_state` and `final_kernel_results` (tensors, to continue the run).
    """
    _checks.positive_int(num_results, "num_results")
    if not isinstance(num_burnin_steps, (int, np.integer)) or num_burnin_steps < 0:
        raise ValueError(f"`num_burnin_steps` must be an integer >= 0, got {num_burnin_steps!r}")
    if chunk_size is None:
        chunk_size = max(1, math.ceil(num_results / 5))
    _checks.positive_int(chunk_size, "chunk_size")
    chunk_size = min(int(chunk_size), int(num_results))
    state = _check_state(current_state)
    results = (kernel.bootstrap_results(state) if previous_kernel_results is None
               else previous_kernel_results)
    user_fns = (trace_fn, keep_fn)
    trace_fn = trace_fn or _default_trace_fn(_trace_fields(kernel))
    keep_fn = keep_fn or (lambda s: s)

    def run_chunk(state, results, seeds, num_active):
        # Runs `chunk_size` iterations; those at or past `num_active` leave the state as it
        # is, so a partial last chunk needs no second compilation.
        kept0 = keep_fn(state)
        trace0 = trace_fn(state, results)
        arrays = lambda struct: tf.nest.map_structure(
            lambda t: tf.TensorArray(t.dtype, size=chunk_size, element_shape=t.shape), struct)
        write = lambda tas, i, struct: tf.nest.map_structure(lambda ta, t: ta.write(i, t), tas, struct)

        def body(i, state, results, kept, traced):
            state, results = tf.cond(
                i < num_active,
                lambda: kernel.one_step(state, results, seed=seeds[i]),
                lambda: (state, results))
            return (i + 1, state, results, write(kept, i, keep_fn(state)),
                    write(traced, i, trace_fn(state, results)))

        _, state, results, kept, traced = tf.while_loop(
            lambda i, *_: i < chunk_size, body,
            (tf.constant(0), state, results, arrays(kept0), arrays(trace0)))
        stack = lambda tas: tf.nest.map_structure(lambda ta: ta.stack(), tas)
        return state, results, stack(kept), stack(traced)

    compiled = _compiled(kernel, (chunk_size, bool(jit_compile)), user_fns,
                         lambda: tf.function(run_chunk, jit_compile=jit_compile, autograph=False))
    num_burnin_chunks = math.ceil(num_burnin_steps / chunk_size)
    num_result_chunks = math.ceil(num_results / chunk_size)
    total = num_burnin_chunks + num_result_chunks
    # one seed per step, in order, so the chain does not depend on the chunking
    seeds = step_seeds(seed, num_burnin_steps + num_results + chunk_size)
    plan = ([(c * chunk_size, min(chunk_size, num_burnin_steps - c * chunk_size))
             for c in range(num_burnin_chunks)] +
            [(num_burnin_steps + c * chunk_size, min(chunk_size, num_results - c * chunk_size))
             for c in range(num_result_chunks)])

    chunks = enumerate(plan)
    if progress:
        from tqdm.auto import tqdm
        chunks = tqdm(chunks, total=total, desc=f"sampling ({chunk_size} steps per chunk)")
    times, kept_chunks, trace_chunks = [], [], []
    for c, (first, active) in chunks:
        start = time.perf_counter()
        state, results, kept, traced = compiled(
            state, results, seeds[first:first + chunk_size], tf.constant(active, tf.int32))
        kept, traced = tf.nest.map_structure(lambda t: t.numpy()[:active], (kept, traced))
        times.append(time.perf_counter() - start)
        if c >= num_burnin_chunks:
            kept_chunks.append(kept)
            trace_chunks.append(traced)

    first_typical = np.median(times[1:]) if total > 1 else np.nan
    compile_seconds = float(times[0] - first_typical) if total > 1 else float("nan")
    result_times = list(times[num_burnin_chunks:])
    if num_burnin_chunks == 0 and total > 1:
        result_times[0] = first_typical
    concat = lambda *parts: np.concatenate(parts, axis=0)[:num_results]
    samples = tf.nest.map_structure(concat, *kept_chunks)
    trace = tf.nest.map_structure(concat, *trace_chunks) if trace_chunks[0] else {}
    trace = dict(trace)
    trace.update(
        seconds=float(np.sum(result_times)),
        burnin_seconds=float(np.sum(times[:num_burnin_chunks])),
        compile_seconds=compile_seconds, num_chunks=total, chunk_size=chunk_size,
        final_state=state, final_kernel_results=results)
    return samples, trace
