"""`sample`: run any `tfp.mcmc.TransitionKernel` for many chains, compiled with XLA.

The run is cut into chunks of `chunk_size` steps; one compiled function (a `tf.while_loop`
over the chunk) serves every chunk, so the XLA compilation happens once, during the first
chunk, and the wall-clock seconds reported for the draws exclude it. Each step's seed is
split from `seed` in advance, so the chain does not depend on the chunk size.
"""

import functools
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


def run_warnings(what, is_divergent=None, accepted=None, draws=None, moved=None):
    """One warning line for a run that went wrong silently: divergent transitions, an
    acceptance below 0.1, chains whose draws are all identical. Returns the line ("" when
    there is nothing to say) after issuing it as a `RuntimeWarning`.

    Args:
      what: the caller's name, starting the line ("sample", "warmup").
      is_divergent, accepted: `[steps, chains]` bool (or acceptance statistics in [0, 1]).
      draws: kept draws, `[steps, chains, ...]` or a structure of such, or None.
      moved: instead of `draws`, `[chains]` bool: whether each chain ever moved.
    """
    import warnings
    parts = []
    if is_divergent is not None and np.size(is_divergent):
        n = int(np.sum(is_divergent))
        if n:
            parts.append(f"{n} of {np.size(is_divergent)} transitions divergent (a non-finite "
                         "or exploding energy: step size too large, or a log-density that is "
                         "not finite there)")
    if accepted is not None and np.size(accepted):
        rate = float(np.mean(accepted))
        if rate < 0.1:
            parts.append(f"acceptance {rate:.3f} < 0.1")
    frozen = None if moved is None else ~np.asarray(moved, bool)
    if draws is not None:
        leaves = [np.asarray(d) for d in tf.nest.flatten(draws)]
        if leaves and leaves[0].ndim >= 2 and leaves[0].shape[0] > 1:
            frozen = np.ones(leaves[0].shape[1], bool)
            for d in leaves:
                frozen &= np.all((d == d[:1]).reshape(d.shape[0], d.shape[1], -1), axis=(0, 2))
    if frozen is not None and frozen.any():
        idx = np.flatnonzero(frozen)
        shown = ", ".join(map(str, idx[:8])) + (", ..." if idx.size > 8 else "")
        parts.append(f"{idx.size} of {frozen.size} chains never moved (chains {shown})")
    if not parts:
        return ""
    line = f"{what}: " + "; ".join(parts)
    warnings.warn(line, RuntimeWarning, stacklevel=3)
    return line


def _to_flat(kernel, state):
    """`(model, state)`: for a kernel built on a `hmc_lib.Model` (or a TFP joint
    distribution) and a state in the model's structure (a list, tuple, dict or namedtuple
    of constrained values), the model and the flat unconstrained state `[chains, dim]`;
    otherwise `(None, state)` unchanged."""
    if tf.is_tensor(state) or isinstance(state, (np.ndarray, tf.Variable)):
        return None, state
    from hmc_lib.model import model_of
    model = model_of(kernel)
    if model is None:
        return None, state
    return model, model.to_flat(state)


def step_seeds(seed, n):
    """`[n, 2]` int32 stateless seeds, one per step, from an int or `[2]` seed."""
    if isinstance(seed, (int, np.integer)):
        seed = tf.constant([int(seed), 0], tf.int32)
    seed = tfp.random.sanitize_seed(seed)
    return tf.random.experimental.stateless_split(seed, n)


#: compiled chunk functions kept per kernel object (the oldest dropped first)
_MAX_COMPILED_PER_KERNEL = 8
#: compiled chunk functions shared by kernels of equal `graph_key` (least recently used first)
_SHARED = {}
_MAX_SHARED = 16


def compiled_chunk(kernel, settings, fns, build):
    """`(fn, inputs)`: the compiled chunk function for `kernel`, and the input values to
    call it with.

    `build(kernel_of)` traces the function; inside it, `kernel_of(inputs)` is the kernel to
    step with. `settings` (e.g. chunk size, XLA) and the caller's `fns` (matched by
    identity; None for the defaults) are part of the key.

    A kernel with a `graph_key` (HMC, NUTS) shares one compiled graph with every kernel of
    equal key, whatever its step size and mass: those are passed in as `inputs` (tensors),
    so a new step size or mass matrix (after a warm-up, for another seed) compiles nothing.
    Other kernels keep their compiled functions on the kernel object, so sampling again with
    the same kernel (a longer run, another seed, a network whose weights were copied in)
    re-uses the graph. Kernels are immutable, so a graph stays valid.
    """
    fn_key = tuple(None if f is None else id(f) for f in fns)
    graph_key = kernel.graph_key() if hasattr(kernel, "graph_key") else None
    if graph_key is not None:
        key = (graph_key, settings, fn_key)
        hit = _SHARED.pop(key, None)
        if hit is None or not all(a is b for a, b in zip(hit[0], fns)):
            template = kernel
            hit = (fns, build(lambda inputs: template.with_inputs(**inputs)), template)
        _SHARED[key] = hit        # holds `fns` and the template: their ids stay unique
        while len(_SHARED) > _MAX_SHARED:
            _SHARED.pop(next(iter(_SHARED)))
        return hit[1], True
    store = getattr(kernel, "__dict__", None)
    if store is None:
        return build(lambda inputs: kernel), False
    cache = store.setdefault("_hmc_lib_compiled", {})
    key = (settings, fn_key)
    hit = cache.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], fns)):
        return hit[1], False
    compiled = build(lambda inputs: kernel)
    cache[key] = (fns, compiled)   # holds `fns`, so no other function can take their ids
    while len(cache) > _MAX_COMPILED_PER_KERNEL:
        cache.pop(next(iter(cache)))
    return compiled, False


def sample(kernel, num_results, current_state, num_burnin_steps=0, seed=0,
           previous_kernel_results=None, trace_fn=None, keep_fn=None, chunk_size=None,
           jit_compile=True, progress=False, warn=True):
    """Runs `kernel` and returns `(samples, trace)`.

    Args:
      kernel: a `tfp.mcmc.TransitionKernel` (ours or TFP's, wrapped or not).
      num_results: number of draws kept.
      current_state: `[chains, dim]` tensor, or a list of `[chains, ...]` tensors (the
        pseudo-marginal `[theta, u]`); for a kernel built on a `hmc_lib.Model` or a TFP joint
        distribution, the state in the model's structure and constrained space (each part
        `[chains, ...]`), and then the draws come back the same way.
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
      warn: issue one `RuntimeWarning` line, with counts, when transitions diverged, the
        acceptance was below 0.1, or a chain never moved (`run_warnings`).
    Returns:
      samples: numpy, `[num_results, chains, ...]` per kept part.
      trace: dict of numpy arrays `[num_results, chains]` per traced field, plus
        `seconds` (wall-clock of the kept draws, compilation excluded), `burnin_seconds`,
        `compile_seconds` (estimated: first call minus a typical call), `num_chunks`,
        `final_state` and `final_kernel_results` (tensors, to continue the run).
    """
    _checks.positive_int(num_results, "num_results")
    model, current_state = _to_flat(kernel, current_state)
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

    def run_chunk(kernel_of, state, results, seeds, num_active, inputs):
        # Runs `chunk_size` iterations; those at or past `num_active` leave the state as it
        # is, so a partial last chunk needs no second compilation.
        kernel = kernel_of(inputs)
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

    compiled, shared = compiled_chunk(
        kernel, ("sample", chunk_size, bool(jit_compile)), user_fns,
        lambda kernel_of: tf.function(functools.partial(run_chunk, kernel_of),
                                      jit_compile=jit_compile, autograph=False))
    inputs = kernel.input_values(tf.nest.flatten(state)[0].dtype) if shared else {}
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
            state, results, seeds[first:first + chunk_size], tf.constant(active, tf.int32),
            inputs)
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
    if warn:
        run_warnings("sample", trace.get("is_divergent"), trace.get("is_accepted"), samples)
    if model is not None and user_fns[1] is None:
        samples = model.from_flat(samples)
    trace.update(
        seconds=float(np.sum(result_times)),
        burnin_seconds=float(np.sum(times[:num_burnin_chunks])),
        compile_seconds=compile_seconds, num_chunks=total, chunk_size=chunk_size,
        learned=_is_learned(kernel), final_state=state, final_kernel_results=results)
    return samples, trace


def _is_learned(kernel):
    """Whether `kernel` (or a kernel it wraps) is a learned sampler (`Kernel.learned`)."""
    k = kernel
    while k is not None:
        if getattr(k, "learned", False):
            return True
        k = getattr(k, "inner_kernel", None)
    return False


# ------------------------------------------------------------------ run until the gate passes

def _flat_draws(kept):
    """Kept draws as one `[draws, chains, k]` array for the gate: a structure's parts are
    flattened per chain and joined along the last axis."""
    parts = [np.asarray(p) for p in tf.nest.flatten(kept)]
    parts = [p.reshape(p.shape[0], p.shape[1], -1) if p.ndim >= 2 else p[:, :, None]
             for p in parts]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)


def _fingerprint(kernel, state, seed, chunk_draws, num_burnin_steps, chunk_size):
    seed = np.asarray(tfp.random.sanitize_seed(seed)).tolist() if not isinstance(
        seed, (int, np.integer)) else int(seed)
    shapes = [[t.dtype.name, t.shape.as_list()] for t in tf.nest.flatten(state)]
    return dict(kernel=type(kernel).__name__, seed=seed, chunk_draws=int(chunk_draws),
                num_burnin_steps=int(num_burnin_steps), chunk_size=chunk_size, state=shapes)


def _save_checkpoint(path, meta, state, results, kept, trace):
    """Writes the run so far to `path` atomically (a kill mid-write leaves the old file)."""
    import json
    import os
    arrays = {"meta": np.array(json.dumps(meta))}
    for prefix, struct in (("state", state), ("results", results), ("kept", kept)):
        for i, leaf in enumerate(tf.nest.flatten(struct)):
            arrays[f"{prefix}/{i:04d}"] = np.asarray(leaf)
    for name, value in trace.items():
        arrays[f"trace/{name}"] = np.asarray(value)
    tmp = f"{path}.tmp.npz"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _load_checkpoint(path, kernel, state_like, keep_fn, fingerprint):
    """`(meta, state, results, kept, trace)` from `path`, or None if there is no such file.
    Raises `ValueError` if the file belongs to a different run."""
    import json
    import os
    if not os.path.exists(path):
        return None
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        if meta["fingerprint"] != fingerprint:
            raise ValueError(f"checkpoint {path!r} belongs to another run "
                             f"({meta['fingerprint']} != {fingerprint}); delete it or pass "
                             "another `checkpoint`")
        part = lambda prefix: [data[k] for k in sorted(k for k in data.files
                                                       if k.startswith(prefix + "/"))]
        flat_state, flat_results, flat_kept = part("state"), part("results"), part("kept")
        trace = {k[len("trace/"):]: data[k] for k in data.files if k.startswith("trace/")}
    state = tf.nest.pack_sequence_as(
        state_like, [tf.constant(a, dtype=t.dtype) for a, t in
                     zip(flat_state, tf.nest.flatten(state_like))])
    like = kernel.bootstrap_results(state)
    results = tf.nest.pack_sequence_as(
        like, [tf.constant(a, dtype=tf.as_dtype(t.dtype)) for a, t in
               zip(flat_results, tf.nest.flatten(like))])
    kept = tf.nest.pack_sequence_as(keep_fn(state), flat_kept)
    return meta, state, results, kept, trace


def sample_until(kernel, current_state, seed, chunk_draws, max_draws, max_grad_evals=None,
                 min_draws=None, num_burnin_steps=0, gate=None, keep_fn=None, trace_fn=None,
                 chunk_size=None, checkpoint=None, checkpoint_seconds=120.0,
                 jit_compile=True, progress=False):
    """Samples in chunks until the convergence gate passes or a budget is spent.

    Run lengths chosen by the answer, not by the clock: after every chunk of `chunk_draws`
    kept draws the gate (default `diagnostics.convergence`: R̂ ≤ 1.01, bulk and tail ESS ≥
    100) reads all kept draws so far; the run stops when it passes (and at least `min_draws`
    are kept), or when another chunk would pass `max_draws` or `max_grad_evals`. "Did not
    converge within the budget" is a result too: `trace["stopped"]` says which.

    Chunk k runs `sample(kernel, chunk_draws, ...)` from where chunk k − 1 ended, with the
    seed `fold_in(seed, k)` (the burn-in runs inside chunk 0), so a run is fixed by `seed`
    and `chunk_draws` and a longer budget only appends chunks.

    With `checkpoint` (a file path) the run so far (kept draws, trace, chain state, kernel
    results, chunk count, elapsed time, gate history) is written there atomically at the end
    of a chunk once `checkpoint_seconds` have passed since the last write, and at the stop.
    Calling again with the same arguments after the process was killed (even `kill -9`)
    resumes from the last write and gives, on the same machine, the same draws as a run that
    was never interrupted.

    Args:
      kernel: a `tfp.mcmc.TransitionKernel`.
      current_state: `[chains, dim]`, or a list of `[chains, ...]` tensors.
      seed: int or `[2]` int tensor.
      chunk_draws: kept draws per chunk (the gate is read between chunks).
      max_draws: the most kept draws per chain.
      max_grad_evals: the most gradient evaluations, summed over chains and kept draws
        (`grad_evals` of the kernel results; burn-in not counted), or None.
      min_draws: draws to keep before the gate may stop the run (default: one chunk).
      num_burnin_steps: steps run and discarded before the first kept draw.
      gate: `kept draws -> diagnostics.Convergence` (default `diagnostics.convergence` of
        the kept draws, a structure's parts joined along the last axis). Pass your own to
        gate on some coordinates only, or with relabelling.
      keep_fn, trace_fn, chunk_size, jit_compile, progress: as for `sample`.
      checkpoint: path of the checkpoint file (`.npz`), or None.
      checkpoint_seconds: least wall-clock seconds between checkpoint writes.
    Returns:
      `(samples, trace)` as from `sample`, for all kept draws, with `trace` also holding
      `convergence` (the gate's reading at the stop), `stopped` ("converged", "max_draws"
      or "max_grad_evals"), `history` (a dict per chunk: draws, grad_evals, rhat_max,
      ess_bulk_min, ess_tail_min, converged), `resumed_draws` (draws restored from the
      checkpoint, 0 if none) and `elapsed_seconds` (wall clock of all chunks, earlier
      processes included).
    """
    from hmc_lib import diagnostics
    _checks.positive_int(chunk_draws, "chunk_draws")
    _checks.positive_int(max_draws, "max_draws")
    if max_grad_evals is not None and not max_grad_evals > 0:
        raise ValueError(f"`max_grad_evals` must be > 0 or None, got {max_grad_evals!r}")
    if min_draws is None:
        min_draws = chunk_draws
    if not isinstance(min_draws, (int, np.integer)) or min_draws < 0:
        raise ValueError(f"`min_draws` must be an integer >= 0, got {min_draws!r}")
    if chunk_draws > max_draws:
        raise ValueError(f"`chunk_draws` ({chunk_draws}) must be <= `max_draws` ({max_draws})")
    gate = gate or (lambda kept: diagnostics.convergence(_flat_draws(kept)))
    keep = keep_fn or (lambda s: s)
    model, current_state = _to_flat(kernel, current_state)
    state = _check_state(current_state)
    base_seed = tfp.random.sanitize_seed(
        tf.constant([int(seed), 0], tf.int32) if isinstance(seed, (int, np.integer)) else seed)
    chunk_size = chunk_size or max(1, math.ceil(chunk_draws / 5))
    fingerprint = _fingerprint(kernel, state, seed, chunk_draws, num_burnin_steps,
                               int(chunk_size))

    kept, trace, results, history = None, {}, None, []
    meta = dict(fingerprint=fingerprint, chunks=0, elapsed=0.0, seconds=0.0,
                burnin_seconds=0.0, compile_seconds=float("nan"), history=history)
    restored = (_load_checkpoint(checkpoint, kernel, state, keep, fingerprint)
                if checkpoint else None)
    if restored is not None:
        meta, state, results, kept, trace = restored
        history = meta["history"]
    resumed_draws = 0 if kept is None else int(tf.nest.flatten(kept)[0].shape[0])

    def done(kept, trace):
        if not history:
            return None
        draws = history[-1]["draws"]
        if history[-1]["converged"] and draws >= min_draws:
            return "converged"
        if draws + chunk_draws > max_draws:
            return "max_draws"
        if max_grad_evals is not None:
            per_chunk = history[-1]["grad_evals"] / len(history)
            if history[-1]["grad_evals"] + per_chunk > max_grad_evals:
                return "max_grad_evals"
        return None

    last_write = time.perf_counter()
    stopped = done(kept, trace)
    while stopped is None:
        k = meta["chunks"]
        start = time.perf_counter()
        s, tr = sample(kernel, chunk_draws, state,
                       num_burnin_steps=num_burnin_steps if k == 0 else 0,
                       seed=tf.random.experimental.stateless_fold_in(base_seed, k),
                       previous_kernel_results=results, trace_fn=trace_fn, keep_fn=keep_fn,
                       chunk_size=chunk_size, jit_compile=jit_compile, progress=False,
                       warn=False)
        state, results = tr.pop("final_state"), tr.pop("final_kernel_results")
        run_keys = {key: tr.pop(key) for key in list(tr) if key in (
            "seconds", "burnin_seconds", "compile_seconds", "num_chunks", "chunk_size",
            "learned")}
        kept = s if kept is None else tf.nest.map_structure(
            lambda a, b: np.concatenate([a, b], 0), kept, s)
        trace = tr if not trace else {key: np.concatenate([trace[key], tr[key]], 0)
                                      for key in trace}
        meta["seconds"] += run_keys["seconds"]
        if k == 0:
            meta["burnin_seconds"] = run_keys["burnin_seconds"]
            meta["compile_seconds"] = run_keys["compile_seconds"]
        meta["chunks"] = k + 1
        meta["elapsed"] += time.perf_counter() - start
        g = gate(kept)
        history.append(dict(
            draws=int(tf.nest.flatten(kept)[0].shape[0]),
            grad_evals=float(np.sum(trace["grad_evals"])) if "grad_evals" in trace else 0.0,
            rhat_max=g.rhat_max, ess_bulk_min=g.ess_bulk_min, ess_tail_min=g.ess_tail_min,
            converged=bool(g.converged)))
        meta["history"] = history
        stopped = done(kept, trace)
        if progress:
            import sys
            h = history[-1]
            print(f"sample_until: {h['draws']} draws, R̂ {h['rhat_max']:.3f}, ESS bulk "
                  f"{h['ess_bulk_min']:.0f} tail {h['ess_tail_min']:.0f}"
                  + (f" -> {stopped}" if stopped else ""), file=sys.stderr, flush=True)
        if checkpoint and (stopped or time.perf_counter() - last_write >= checkpoint_seconds):
            _save_checkpoint(checkpoint, meta, state, results, kept, trace)
            last_write = time.perf_counter()

    run_warnings("sample_until", trace.get("is_divergent"), trace.get("is_accepted"), kept)
    if model is not None and keep_fn is None:
        kept = model.from_flat(kept)
    out = dict(trace)
    out.update(seconds=meta["seconds"], burnin_seconds=meta["burnin_seconds"],
               compile_seconds=meta["compile_seconds"], final_state=state,
               final_kernel_results=results, convergence=gate(kept), stopped=stopped,
               history=list(history), resumed_draws=resumed_draws,
               elapsed_seconds=meta["elapsed"], learned=_is_learned(kernel))
    return kept, out
