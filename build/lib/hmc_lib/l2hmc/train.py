"""Training L2HMC dynamics by the ESJD loss, with chains advanced by the sampler itself.

Each training step (Levy et al. 2018, Sec. 4; reference-code settings as defaults):
a batch of chains x (from the sampler's own past) and a fresh batch z ~ q = N(0, I) both get
momenta v ~ N(0, I) and directions d uniform in {±1}; the proposals FLξ and their acceptance
probabilities A give the loss ℓ(x) + λ_b ℓ(z) (`loss.esjd_loss`); one Adam step (learning rate
1e-3 × 0.96^⌊k/1000⌋) updates the networks and log ε; then the x-chains take their Metropolis
step. Steps run in compiled chunks (a `tf.while_loop` per chunk, XLA when it compiles).
"""

import hashlib
import json
import math
import time
import warnings

import numpy as np
import tensorflow as tf

from hmc_lib import _checks, _reuse
from hmc_lib.kernels import metropolis
from hmc_lib.l2hmc.dynamics import Dynamics
from hmc_lib.l2hmc.kernel import target_value_and_grad
from hmc_lib.l2hmc.loss import acceptance_probability, esjd_loss, expected_jump



class Adam:
    """Adam (Kingma & Ba) over a fixed list of variables, usable inside XLA-compiled loops."""

    def __init__(self, variables, beta1=0.9, beta2=0.999, epsilon=1e-8):
        self.variables = list(variables)
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def apply(self, grads, learning_rate):
        """One update; skipped (moments untouched) when any gradient is not finite."""
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        k = tf.cast(self.iterations + 1, self.variables[0].dtype)
        for var, m, v, g in zip(self.variables, self.m, self.v, grads):
            g = tf.where(finite, g, tf.zeros_like(g))
            m_new = self.beta1 * m + (1 - self.beta1) * g
            v_new = self.beta2 * v + (1 - self.beta2) * tf.square(g)
            m_hat = m_new / (1 - self.beta1 ** k)
            v_hat = v_new / (1 - self.beta2 ** k)
            step = tf.cast(learning_rate, var.dtype) * m_hat / (tf.sqrt(v_hat) + self.epsilon)
            m.assign(tf.where(finite, m_new, m))
            v.assign(tf.where(finite, v_new, v))
            var.assign_sub(tf.where(finite, step, tf.zeros_like(step)))
        self.iterations.assign_add(tf.cast(finite, tf.int64))
        return finite


def _tempered(value_and_grad_fn, temperature):
    def fn(x):
        value, grad = value_and_grad_fn(x)
        return value / temperature, grad / temperature
    return fn


class _Workspace:
    """The dynamics, the optimizer and the compiled training chunk that reads them.

    `spec`: the Python settings baked into the graph (see `train`). `reset(dynamics)` copies a
    run's initial weights in and zeroes the optimizer; the trainer copies the result out.
    """

    def __init__(self, value_and_grad_fn, dynamics, spec):
        self.dynamics, self.spec = dynamics, dict(spec)
        self.variables = dynamics.trainable()
        self.optimizer = Adam(self.variables)
        self._value_and_grad_fn = value_and_grad_fn
        self.compile(spec["jit_compile"])

    def reset(self, dynamics):
        _reuse.copy_weights(dynamics, self.dynamics)
        for slot in self.optimizer.m + self.optimizer.v:
            slot.assign(tf.zeros_like(slot))
        self.optimizer.iterations.assign(0)

    def compile(self, jit_compile):
        self.jit_compile = bool(jit_compile)
        self.compiled = tf.function(self._run_chunk, jit_compile=self.jit_compile,
                                    autograph=False)

    def _one_step(self, k, x, step_seed):
        spec, dynamics, variables = self.spec, self.dynamics, self.variables
        dtype, use_q = spec["dtype"], spec["use_q"]
        s_z, s_v, s_d, s_acc = tf.unstack(tf.random.experimental.stateless_split(step_seed, 4))
        n = tf.shape(x)[0]
        if use_q:
            z = tf.random.stateless_normal(tf.shape(x), seed=s_z, dtype=dtype)
            start = tf.concat([x, z], 0)
        else:
            start = x
        v = tf.random.stateless_normal(tf.shape(start), seed=s_v, dtype=dtype)
        d = tf.where(tf.random.stateless_uniform(tf.shape(start)[:1], seed=s_d) < 0.5,
                     tf.constant(-1.0, dtype), tf.constant(1.0, dtype))
        frac = tf.minimum(tf.cast(k, dtype) / max(spec["anneal_steps"], 1), 1.0)
        temperature = tf.exp(tf.constant(spec["log_t0"], dtype) * (1.0 - frac))
        fn = _tempered(self._value_and_grad_fn, temperature)
        value, grad = fn(start)
        with tf.GradientTape() as tape:
            end = dynamics.trajectory(start, v, d, fn, value, grad)
            lar = (end.value - value + metropolis.kinetic_energy(v)
                   - metropolis.kinetic_energy(end.momentum) + end.log_det_jacobian)
            accept = acceptance_probability(lar)
            loss = esjd_loss(start[:n], end.position[:n], accept[:n], spec["scale"])
            if use_q:
                loss += spec["burn_in_weight"] * esjd_loss(start[n:], end.position[n:],
                                                           accept[n:], spec["scale"])
        grads = tape.gradient(loss, variables)
        lr = tf.constant(spec["learning_rate"], dtype) * tf.pow(
            tf.constant(spec["decay_rate"], dtype),
            tf.floor(tf.cast(k, dtype) / spec["decay_steps"]))
        applied = self.optimizer.apply(grads, lr)
        u = tf.random.stateless_uniform([n], seed=s_acc, dtype=dtype)
        ok = metropolis.all_finite(end.position[:n])
        x_new = metropolis.choose((u < accept[:n]) & ok, end.position[:n], x)
        stats = dict(loss=loss, acceptance=tf.reduce_mean(accept[:n]),
                     esjd=tf.reduce_mean(expected_jump(start[:n], end.position[:n], accept[:n])),
                     step_size=tf.cast(dynamics.step_size, dtype), learning_rate=lr,
                     temperature=temperature, skipped=tf.cast(~applied, dtype))
        return x_new, stats

    def _run_chunk(self, x, k0, chunk_seeds):
        names = ("loss", "acceptance", "esjd", "step_size", "learning_rate", "temperature",
                 "skipped")
        chunk_size, dtype = self.spec["chunk_size"], self.spec["dtype"]
        arrays = {n: tf.TensorArray(dtype, size=chunk_size) for n in names}

        def body(i, x, arrays):
            x, stats = self._one_step(k0 + i, x, chunk_seeds[i])
            return i + 1, x, {n: arrays[n].write(i, stats[n]) for n in names}

        _, x, arrays = tf.while_loop(lambda i, *_: i < chunk_size, body,
                                     (tf.constant(0), x, arrays))
        return x, {n: a.stack() for n, a in arrays.items()}


def _digest(x):
    """A short hash of an array (the training chains' start), to tell runs apart."""
    return hashlib.sha1(np.ascontiguousarray(np.asarray(x)).tobytes()).hexdigest()[:16]


_HISTORY = ("loss", "acceptance", "esjd", "step_size", "learning_rate", "temperature",
            "skipped")


def _save_checkpoint(path, fingerprint, work, chunks_done, elapsed, times, x, records):
    from hmc_lib import records as records_mod
    history = {n: np.concatenate([r[n] for r in records]) for n in _HISTORY}
    records_mod.save_tree(path, dict(
        fingerprint=np.array(fingerprint), chunks_done=np.int64(chunks_done),
        elapsed=np.float64(elapsed), times=np.asarray(times, np.float64), x=np.asarray(x),
        weights=[v.numpy() for v in work.dynamics.ordered_variables()],
        adam_m=[m.numpy() for m in work.optimizer.m],
        adam_v=[v.numpy() for v in work.optimizer.v],
        adam_iterations=work.optimizer.iterations.numpy(), history=history))


def _load_checkpoint(path, fingerprint, work):
    """`(chunks_done, elapsed, times, x, records)` from `path` with the workspace's weights
    and optimiser restored, or None if there is no checkpoint."""
    import os
    from hmc_lib import records as records_mod
    if not os.path.exists(path):
        return None
    variables = work.dynamics.ordered_variables()
    like = dict(fingerprint=0, chunks_done=0, elapsed=0, times=0, x=0,
                weights=[0] * len(variables), adam_m=[0] * len(work.optimizer.m),
                adam_v=[0] * len(work.optimizer.v), adam_iterations=0,
                history={n: 0 for n in _HISTORY})
    tree = records_mod.load_tree(path, like)
    if str(tree["fingerprint"]) != fingerprint:
        raise ValueError(f"`checkpoint` {path!r} belongs to another training run; delete it "
                         "or pass another path")
    for var, value in zip(variables, tree["weights"]):
        var.assign(value)
    for slot, value in zip(work.optimizer.m + work.optimizer.v,
                           tree["adam_m"] + tree["adam_v"]):
        slot.assign(value)
    work.optimizer.iterations.assign(int(tree["adam_iterations"]))
    x = tf.constant(tree["x"])
    return (int(tree["chunks_done"]), float(tree["elapsed"]), list(tree["times"]), x,
            [dict(tree["history"])])


#: compiled training loops, one per (target, dynamics' architecture, settings)
_WORKSPACES = _reuse.Cache(maxsize=4)


def train(target, num_train_steps=5000, batch_size=200, num_leapfrog_steps=10, step_size=0.1,
          hidden_units=(10, 10), scale=0.1, burn_in_weight=1.0, learning_rate=1e-3,
          decay_rate=0.96, decay_steps=1000, initial_temperature=1.0, anneal_steps=None,
          dynamics=None, init_state=None, dim=None, seed=0, chunk_size=None,
          jit_compile=True, progress=False, checkpoint=None, checkpoint_seconds=120.0):
    """Trains L2HMC dynamics for `target`; returns `(dynamics, history)`.

    Args:
      target: a `Target`, or a callable `[chains, dim] -> [chains]` log-density (give `dim`).
      num_train_steps: Adam steps (paper: 5,000).
      batch_size: chains advanced by the sampler during training (paper: 200); as many fresh
        draws from q = N(0, I) enter the burn-in term.
      num_leapfrog_steps, step_size, hidden_units: the `Dynamics` built when `dynamics` is None
        (M = 10, ε₀ = 0.1, (10, 10) in the paper; (100, 100) for the 50-d ICG).
      scale: λ² of the loss (0.1). burn_in_weight: λ_b (1); with 0 the burn-in batch is
        not simulated (halves the cost).
      learning_rate, decay_rate, decay_steps: Adam's rate, × `decay_rate` every `decay_steps`.
      initial_temperature, anneal_steps: optional tempering for multimodal targets: the
        trainer targets π^(1/T) with T decaying geometrically from `initial_temperature` to 1
        over `anneal_steps` (default: 80% of training), then 1.
      dynamics: a `Dynamics` to continue training (it is updated in place).
      init_state: `[batch_size, dim]` starting chains (default: draws from q).
      seed: int; the same seed gives the same dynamics and history.
      chunk_size: steps per compiled call (default: min(100, num_train_steps)).
      jit_compile: try XLA first (falls back to plain `tf.function` if XLA fails).
      progress: show a tqdm progress bar.
      checkpoint: a file path (`.npz`), or None. The run so far (weights, Adam's moments and
        step count, the training chains, the history, elapsed seconds) is written there
        atomically after a chunk once `checkpoint_seconds` have passed since the last write,
        and after the last chunk; called again with the same arguments after the process
        was killed (even `kill -9`), `train` resumes from it and ends, on the same machine,
        with the same dynamics and history as a run that was never interrupted. A file
        written by a run with other settings raises `ValueError`.
      checkpoint_seconds: least wall-clock seconds between checkpoint writes.
    Returns:
      `dynamics` and `history`, a dict of numpy arrays `[num_train_steps]` for `loss`,
      `acceptance` (mean A of the sampler's chains), `esjd` (mean ‖x − x'‖² A),
      `step_size`, `learning_rate`, `temperature`, `seconds_per_step`; and scalars
      `train_seconds` (wall clock, compilation included, summed over resumed processes),
      `compile_seconds` (estimated), `xla` (whether the training step ran under XLA) and
      `xla_fallback` (True when XLA failed to compile it and training ran without, which a
      `RuntimeWarning` also says),
      `skipped_steps` (updates skipped for non-finite gradients), plus `final_state`.
    """
    value_and_grad_fn, target_dim = target_value_and_grad(target)
    dim = target_dim if target_dim is not None else dim
    if dim is None:
        raise ValueError("`dim` is required when `target` is a plain callable")
    _checks.positive_int(dim, "dim")
    if target_dim is not None and dim != target_dim:
        raise ValueError(f"`dim` ({dim}) does not match the target's dim ({target_dim})")
    for name, value in (("num_train_steps", num_train_steps), ("batch_size", batch_size),
                        ("decay_steps", decay_steps)):
        _checks.positive_int(value, name)
    for name, value in (("scale", scale), ("learning_rate", learning_rate),
                        ("decay_rate", decay_rate), ("initial_temperature", initial_temperature)):
        _checks.positive_float(value, name)
    if not (np.isscalar(burn_in_weight) and burn_in_weight >= 0):
        raise ValueError(f"`burn_in_weight` must be a number >= 0, got {burn_in_weight!r}")
    if dynamics is None:
        dynamics = Dynamics(dim, num_steps=num_leapfrog_steps, step_size=step_size,
                            hidden_units=hidden_units, seed=seed)
    elif not isinstance(dynamics, Dynamics):
        raise TypeError(f"`dynamics` must be a Dynamics, got {type(dynamics).__name__}")
    if dynamics.dim != dim:
        raise ValueError(f"`dynamics` has dim {dynamics.dim} but the target has dim {dim}")
    dtype = dynamics.log_step_size.dtype
    num_train_steps, batch_size = int(num_train_steps), int(batch_size)
    anneal_steps = int(0.8 * num_train_steps) if anneal_steps is None else int(anneal_steps)
    chunk_size = min(int(chunk_size or 100), num_train_steps)
    _checks.positive_int(chunk_size, "chunk_size")

    root = tf.random.experimental.stateless_split(tf.constant([int(seed), 7], tf.int32), 2)
    if init_state is None:
        x = tf.random.stateless_normal([batch_size, dim], seed=root[0], dtype=dtype)
    else:
        x = tf.cast(_checks.state_shape(_checks.floating(init_state, "init_state"), dim,
                                        "init_state"), dtype)
        if x.shape.rank != 2 or x.shape[0] != batch_size:
            raise ValueError(f"`init_state` must have shape [batch_size={batch_size}, {dim}], "
                             f"got {x.shape.as_list()}")
    num_chunks = math.ceil(num_train_steps / chunk_size)
    seeds = tf.reshape(tf.random.experimental.stateless_split(root[1], num_chunks * chunk_size),
                       [num_chunks, chunk_size, 2])
    spec = dict(use_q=burn_in_weight > 0, dtype=dtype, anneal_steps=anneal_steps,
                log_t0=math.log(float(initial_temperature)), scale=float(scale),
                burn_in_weight=float(burn_in_weight), learning_rate=float(learning_rate),
                decay_rate=float(decay_rate), decay_steps=int(decay_steps),
                chunk_size=chunk_size, jit_compile=bool(jit_compile))
    if type(dynamics) is Dynamics:
        # one traced and compiled training loop per (target, architecture, settings): a new
        # seed copies its initial weights into the workspace's dynamics (`hmc_lib._reuse`)
        settings = (_reuse.structure(dynamics, exclude=("seed", "step_size")), tuple(sorted((k, str(v)) for k, v in spec.items())))
        work = _WORKSPACES.get((target,), settings, lambda: _Workspace(
            value_and_grad_fn, Dynamics(**dynamics.config), spec))
        work.reset(dynamics)
    else:
        work = _Workspace(value_and_grad_fn, dynamics, spec)
    first_chunk, spent, times, records = 0, 0.0, [], []
    fingerprint = None
    if checkpoint is not None:
        fingerprint = json.dumps(dict(
            seed=int(seed), steps=num_train_steps, batch=batch_size,
            dynamics=dynamics.config, init=_digest(x),
            spec={k: str(v) for k, v in sorted(spec.items()) if k != "jit_compile"}),
            sort_keys=True)
        restored = _load_checkpoint(checkpoint, fingerprint, work)
        if restored is not None:
            first_chunk, spent, times, x, records = restored
    chunks = range(first_chunk, num_chunks)
    if progress:
        from tqdm.auto import tqdm
        chunks = tqdm(chunks, desc="training L2HMC", initial=first_chunk, total=num_chunks)
    start_time = time.perf_counter()
    last_write = start_time
    xla_fallback = False
    for c in chunks:
        t0 = time.perf_counter()
        try:
            x, stats = work.compiled(x, tf.constant(c * chunk_size), seeds[c])
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
                tf.errors.InternalError) as err:
            if c > first_chunk or not work.jit_compile:
                raise
            first_line = (str(err.message).strip().splitlines() or [""])[0][:200]
            warnings.warn(f"l2hmc.train: XLA could not compile the training step "
                          f"({type(err).__name__}: {first_line}); training without XLA "
                          f"(slower); history['xla'] is False", RuntimeWarning, stacklevel=2)
            xla_fallback = True
            work.compile(jit_compile=False)
            x, stats = work.compiled(x, tf.constant(c * chunk_size), seeds[c])
        records.append({n: s.numpy() for n, s in stats.items()})
        times.append(time.perf_counter() - t0)
        now = time.perf_counter()
        if checkpoint is not None and (c == num_chunks - 1
                                       or now - last_write >= checkpoint_seconds):
            _save_checkpoint(checkpoint, fingerprint, work, c + 1,
                             spent + now - start_time, times, x, records)
            last_write = now
    train_seconds = spent + time.perf_counter() - start_time
    if work.dynamics is not dynamics:
        _reuse.copy_weights(work.dynamics, dynamics)
    typical = float(np.median(times[1:])) if len(times) > 1 else float("nan")
    per_step = np.repeat(np.asarray(times) / chunk_size, chunk_size)[:num_train_steps]
    history = {n: np.concatenate([r[n] for r in records])[:num_train_steps]
               for n in records[0] if n != "skipped"}
    history["seconds_per_step"] = per_step
    history.update(
        train_seconds=float(train_seconds),
        compile_seconds=float(times[0] - typical) if len(times) > 1 else float("nan"),
        xla=bool(work.jit_compile), xla_fallback=xla_fallback,
        skipped_steps=int(np.sum(np.concatenate([r["skipped"] for r in records])[:num_train_steps])),
        final_state=x.numpy())
    return dynamics, history
