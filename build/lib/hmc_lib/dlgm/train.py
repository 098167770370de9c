"""The three models and their training loops (Levy et al. 2018, Sec. 5.2; Hoffman 2017).

All three share the prior, the Bernoulli decoder and the Gaussian encoder (`model.py`); the
encoder is always trained by the ELBO, E_q[log p(x, z) − log q(z | x)]. They differ in what
trains the decoder:

- ``vae``: the ELBO too, through the reparameterised encoder draw (Kingma & Welling 2014);
- ``hmc``: z₀ ~ q(z | x) refined by T HMC transitions on p(z | x) (step size adapted to
  acceptance 0.65), and the decoder maximises log p(x, z_T) at the refined draw (Hoffman
  2017: a sharper posterior sample than the encoder's gives a better decoder gradient);
- ``l2hmc``: the same with T L2HMC transitions of `samplers.ConditionalDynamics` (networks
  that read the data point), trained jointly by L2HMC's ESJD loss on each transition,
  started from the encoder's draw (the paper's burn-in term with q the encoder).

One training step = one minibatch; steps run in compiled chunks (XLA) between held-out
evaluations; a tqdm bar shows progress.
"""

import hashlib
import math
import time

import numpy as np
import tensorflow as tf

from hmc_lib import _checks, _reuse
from hmc_lib.dlgm import data as data_lib
from hmc_lib.dlgm import estimators
from hmc_lib.dlgm.model import Decoder, Encoder
from hmc_lib.dlgm.samplers import ConditionalDynamics, hmc_transition, l2hmc_transition
from hmc_lib.l2hmc.loss import esjd_loss
from hmc_lib.l2hmc.train import Adam

KINDS = ("vae", "hmc", "l2hmc")
TARGET_ACCEPTANCE = 0.65


class DLGM(tf.Module):
    """Encoder + decoder (+ the latent sampler): the state of one model.

    Args:
      kind: "vae", "hmc" or "l2hmc". latent_dim: K. hidden_units: of every MLP.
      num_transitions: T sampler transitions per training step (hmc, l2hmc).
      num_leapfrog_steps: L leapfrog (or L2HMC) steps per transition.
      step_size: initial ε. sampler_hidden_units: of L2HMC's x- and v-networks.
      seed: int, fixes every initial weight.
    """

    def __init__(self, kind, latent_dim=2, hidden_units=(64, 64), num_transitions=1,
                 num_leapfrog_steps=5, step_size=0.1, sampler_hidden_units=(32, 32), seed=0,
                 data_dim=data_lib.DATA_DIM):
        super().__init__(name=f"dlgm_{kind}")
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}")
        _checks.positive_int(latent_dim, "latent_dim")
        _checks.positive_int(num_transitions, "num_transitions")
        _checks.positive_int(num_leapfrog_steps, "num_leapfrog_steps")
        _checks.positive_float(step_size, "step_size")
        self.kind, self.latent_dim = kind, int(latent_dim)
        self.num_transitions, self.num_leapfrog_steps = int(num_transitions), int(num_leapfrog_steps)
        self.encoder = Encoder(latent_dim, data_dim, hidden_units, seed=seed)
        self.decoder = Decoder(latent_dim, data_dim, hidden_units, seed=seed)
        self.log_step_size = tf.Variable(math.log(step_size), trainable=False, name="log_eps")
        self.dynamics = None
        if kind == "l2hmc":
            self.dynamics = ConditionalDynamics(latent_dim, data_dim, num_leapfrog_steps,
                                                step_size, sampler_hidden_units, seed=seed)

    def log_joint(self, x, z):
        """log p(z) + log p(x | z), `[..., B]`."""
        return self.decoder.log_joint(x, z)

    def grad_evals_per_step(self):
        """∇_z log p(x, z) evaluations per data point per training step (0 for the VAE)."""
        return 0 if self.kind == "vae" else self.num_transitions * self.num_leapfrog_steps + 1

    def transition(self, x, z, seed, value=None, grad=None):
        """One transition of this model's sampler on p(z | x) (`samplers.Transition`)."""
        if self.kind == "hmc":
            return hmc_transition(self.log_joint, x, z, tf.exp(self.log_step_size),
                                  self.num_leapfrog_steps, seed, value, grad)
        if self.kind == "l2hmc":
            return l2hmc_transition(self.dynamics, self.log_joint, x, z, seed, value, grad)
        raise ValueError("the VAE has no latent sampler")

    def held_out_log_likelihood(self, x, num_samples, seed):
        """IWAE estimate of log p(x) with the encoder as proposal, `[B]` numpy (nats)."""
        x = tf.constant(data_lib.check_images(x))
        mean, log_scale = self.encoder(x)
        seed = tf.constant([int(seed), 3], tf.int32)
        return estimators.iwae(self.log_joint, x, mean, log_scale, num_samples, seed).numpy()


def _variables(model):
    """(encoder, decoder, sampler) trainable variables, each a list in a fixed order."""
    dyn_vars = model.dynamics.trainable() if model.dynamics is not None else []
    return (list(model.encoder.trainable_variables), list(model.decoder.trainable_variables),
            dyn_vars)


def _step_fn(model, train_x, batch_size, optimizer, learning_rate, esjd_scale, dynamic=False):
    enc_vars, dec_vars, dyn_vars = _variables(model)
    n_train = train_x.shape[0]

    def step(step_seed):
        s_idx, s_enc, s_mc, s_bin = tf.unstack(
            tf.random.experimental.stateless_split(step_seed, 4))
        idx = tf.random.stateless_uniform([batch_size], s_idx, 0, n_train, tf.int32)
        x = tf.gather(train_x, idx)
        if dynamic:   # a fresh binarisation of every minibatch: pixel ~ Bernoulli(grey level)
            x = tf.cast(tf.random.stateless_uniform(tf.shape(x), s_bin) < x, x.dtype)
        with tf.GradientTape(persistent=True) as tape:
            z0, log_q = model.encoder.sample(x, s_enc)
            elbo = tf.reduce_mean(model.log_joint(x, z0) - log_q)
            enc_loss = -elbo
        stats = dict(elbo=elbo, acceptance=tf.constant(0.0), sampler_loss=tf.constant(0.0))
        if model.kind == "vae":
            grads = tape.gradient(enc_loss, enc_vars + dec_vars)
            stats["loss"] = enc_loss
        else:
            enc_grads = tape.gradient(enc_loss, enc_vars)
            z = tf.stop_gradient(z0)
            seeds = tf.random.experimental.stateless_split(s_mc, model.num_transitions)
            value = grad = None
            with tf.GradientTape() as sampler_tape:
                sampler_loss, acc = 0.0, 0.0
                for t in range(model.num_transitions):
                    out = model.transition(x, z, seeds[t], value, grad)
                    sampler_loss += esjd_loss(z, out.proposal, out.accept_prob, esjd_scale)
                    acc += tf.reduce_mean(out.accept_prob)
                    z, value, grad = out.position, out.value, out.grad
                sampler_loss /= model.num_transitions
            acc /= model.num_transitions
            with tf.GradientTape() as dec_tape:
                dec_loss = -tf.reduce_mean(model.log_joint(x, tf.stop_gradient(z)))
            dec_grads = dec_tape.gradient(dec_loss, dec_vars)
            dyn_grads = sampler_tape.gradient(sampler_loss, dyn_vars) if dyn_vars else []
            grads = enc_grads + dec_grads + list(dyn_grads)
            if model.kind == "hmc":
                model.log_step_size.assign_add(0.02 * (acc - TARGET_ACCEPTANCE))
            stats.update(loss=dec_loss, acceptance=acc, sampler_loss=sampler_loss)
        del tape
        optimizer.apply(grads, learning_rate)
        stats["step_size"] = (tf.exp(model.log_step_size) if model.kind == "hmc" else
                              model.dynamics.step_size if model.kind == "l2hmc"
                              else tf.constant(0.0))
        return stats

    return step


class _Workspace:
    """A model with its optimizer and compiled training chunk, reused across seeds.

    Tracing the L2HMC training step takes tens of seconds, so a workspace per configuration
    is built once (`_WORKSPACES`, `hmc_lib._reuse`); each `train` call copies a freshly
    initialised model's weights into it, resets the optimizer, trains, and copies the
    result back out.
    """

    names = ("loss", "elbo", "acceptance", "sampler_loss", "step_size")

    def __init__(self, config, train_np, test, batch_size, learning_rate, esjd_scale, chunk,
                 eval_samples, jit_compile, dynamic=False):
        self.model = DLGM(seed=0, **config)
        self.optimizer = Adam(sum(_variables(self.model), []))
        step = _step_fn(self.model, tf.constant(train_np), batch_size, self.optimizer,
                        learning_rate, esjd_scale, dynamic)
        names = self.names

        def run_chunk(chunk_seeds):
            arrays = {n: tf.TensorArray(tf.float32, size=chunk) for n in names}

            def body(i, arrays):
                stats = step(chunk_seeds[i])
                return i + 1, {n: arrays[n].write(i, tf.cast(stats[n], tf.float32))
                               for n in names}

            _, arrays = tf.while_loop(lambda i, _: i < chunk, body, (tf.constant(0), arrays))
            return {n: a.stack() for n, a in arrays.items()}

        self.compiled = tf.function(run_chunk, jit_compile=jit_compile, autograph=False)
        self.evaluate = None
        if test is not None:
            test_t, model = tf.constant(test), self.model
            self.evaluate = tf.function(
                lambda s: tf.reduce_mean(estimators.iwae(
                    model.log_joint, test_t, *model.encoder(test_t), eval_samples, s)),
                jit_compile=jit_compile, autograph=False)

    def reset(self, source):
        """Copies `source`'s weights in and zeroes the optimizer's state."""
        _reuse.copy_weights(source, self.model)
        for slot in self.optimizer.m + self.optimizer.v:
            slot.assign(tf.zeros_like(slot))
        self.optimizer.iterations.assign(0)

    def copy_to(self, target):
        """Copies the trained weights out into `target` (a `DLGM` of the same configuration)."""
        _reuse.copy_weights(self.model, target)

    def state(self):
        """Every weight (the step size included) and the optimizer's state, numpy."""
        return dict(weights=[v.numpy() for v in self.model.variables],
                    m=[v.numpy() for v in self.optimizer.m],
                    v=[v.numpy() for v in self.optimizer.v],
                    iterations=self.optimizer.iterations.numpy())

    def restore(self, state):
        """Sets what `state()` returned."""
        for var, value in zip(self.model.variables, state["weights"]):
            var.assign(value)
        for slots, values in ((self.optimizer.m, state["m"]), (self.optimizer.v, state["v"])):
            for var, value in zip(slots, values):
                var.assign(value)
        self.optimizer.iterations.assign(state["iterations"])


#: the workspaces per configuration (model, data, optimizer and chunk settings): one at a
#: time keeps memory flat
_WORKSPACES = _reuse.Cache(maxsize=1)


def _data_key(arr):
    """A hashable stand-in for a data array (dtype, shape and a digest of its bytes)."""
    if arr is None:
        return None
    return (arr.dtype.str, arr.shape, hashlib.sha1(np.ascontiguousarray(arr)).hexdigest())


def train(kind, train_x, test_x=None, num_train_steps=2000, batch_size=100,
          learning_rate=1e-3, eval_every=200, eval_samples=200, latent_dim=2,
          hidden_units=(64, 64), num_transitions=1, num_leapfrog_steps=5, step_size=0.1,
          sampler_hidden_units=(32, 32), esjd_scale=0.1, seed=0, progress=True,
          jit_compile=False, dynamic=False, checkpoint=None, checkpoint_seconds=120.0):
    """Trains one model; returns `(model, history)`.

    Args:
      kind: "vae", "hmc" or "l2hmc".
      train_x: binary images `[N, D]` (D = 64 or 784, or `[N, 8, 8]`, `[N, 28, 28]`); with
        `dynamic=True`, grey levels in [0, 1] instead, and every minibatch is a fresh
        binarisation (pixel ~ Bernoulli(grey level): "dynamically binarised" MNIST).
      test_x: binary held-out images for the log-likelihood curve (optional).
      num_train_steps, batch_size, learning_rate: Adam on minibatches drawn with replacement.
      eval_every, eval_samples: the held-out IWAE estimate every `eval_every` steps with
        `eval_samples` importance samples.
      latent_dim, hidden_units, num_transitions, num_leapfrog_steps, step_size: the `DLGM`.
      sampler_hidden_units: the `DLGM`'s sampler network.
      esjd_scale: λ² of L2HMC's loss.
      seed: int; the same seed gives the same model and history on one machine.
      jit_compile: compile the chunks with XLA. Off by default: on the book's 2-core
        machine XLA took twice as long to compile the L2HMC step (≈40 s) and was not faster
        per step than TensorFlow's graph mode.
      checkpoint: a path (`.npz`): the weights, optimizer state, step and history so far are
        written there (`records.save_tree`) every `checkpoint_seconds` and at the end, and a
        run started again with the same arguments resumes from it, to the same result as a
        run never interrupted (every minibatch and random draw is a function of `seed` and
        the step).
    Returns:
      model: the trained `DLGM`.
      history: numpy arrays `[num_train_steps]` for `loss` (the decoder's objective:
        −ELBO for the VAE, −log p(x, z_T) otherwise), `elbo`, `acceptance`, `step_size`,
        `sampler_loss`; `eval_steps` and `held_out` (mean IWAE log-likelihood, nats) at each
        evaluation; scalars `train_seconds` (this process's), `grad_evals` (∇_z log p
        evaluations, all data points together).
    """
    train_np = data_lib.check_images(train_x, "train_x", grey=bool(dynamic))
    test = None if test_x is None else data_lib.check_images(test_x, "test_x")
    if test is not None and test.shape[1] != train_np.shape[1]:
        raise ValueError(f"`test_x` has {test.shape[1]} pixels per image, `train_x` "
                         f"{train_np.shape[1]}")
    for name, value in (("num_train_steps", num_train_steps), ("batch_size", batch_size),
                        ("eval_every", eval_every), ("eval_samples", eval_samples)):
        _checks.positive_int(value, name)
    _checks.positive_float(learning_rate, "learning_rate")
    _checks.positive_float(esjd_scale, "esjd_scale")
    _checks.positive_float(checkpoint_seconds, "checkpoint_seconds")
    config = dict(kind=kind, latent_dim=latent_dim, hidden_units=tuple(hidden_units),
                  num_transitions=num_transitions, num_leapfrog_steps=num_leapfrog_steps,
                  step_size=step_size, sampler_hidden_units=tuple(sampler_hidden_units),
                  data_dim=train_np.shape[1])
    model = DLGM(seed=seed, **config)   # the result: fresh weights for this seed
    chunk = min(int(eval_every), int(num_train_steps))
    args = (int(batch_size), float(learning_rate), float(esjd_scale), chunk, int(eval_samples),
            bool(jit_compile), bool(dynamic))
    settings = (tuple(sorted(config.items())), _data_key(train_np), _data_key(test), args)
    work = _WORKSPACES.get((), settings, lambda: _Workspace(config, train_np, test, *args))
    work.reset(model)
    num_chunks = math.ceil(num_train_steps / chunk)
    root = tf.random.experimental.stateless_split(tf.constant([int(seed), 17], tf.int32), 2)
    seeds = tf.reshape(tf.random.experimental.stateless_split(root[0], num_chunks * chunk),
                       [num_chunks, chunk, 2])
    names = _Workspace.names
    compiled, evaluate = work.compiled, work.evaluate
    # the history as fixed-size arrays, so that a checkpoint has a fixed structure
    hist = {n: np.zeros(num_chunks * chunk, np.float32) for n in names}
    held_out = np.zeros(num_chunks)
    first = 0
    if checkpoint is not None:
        from hmc_lib import records
        like = dict(state=work.state(), hist=hist, held_out=held_out, done=np.int64(0))
        saved = records.load_tree(checkpoint, like)
        if saved is not None:
            work.restore(saved["state"])
            hist = {n: np.array(saved["hist"][n]) for n in names}
            held_out = np.array(saved["held_out"])
            first = int(saved["done"])

    def save(done):
        from hmc_lib import records
        records.save_tree(checkpoint, dict(state=work.state(), hist=hist, held_out=held_out,
                                           done=np.int64(done)))

    chunks = range(first, num_chunks)
    if progress:
        from tqdm.auto import tqdm
        chunks = tqdm(chunks, desc=f"training {kind}", leave=False)
    start = last_save = time.perf_counter()
    for c in chunks:
        out = compiled(seeds[c])
        for n in names:
            hist[n][c * chunk:(c + 1) * chunk] = out[n].numpy()
        if evaluate is not None:
            held_out[c] = float(evaluate(root[1] + c))
        if checkpoint is not None and (time.perf_counter() - last_save >= checkpoint_seconds
                                       or c == num_chunks - 1):
            save(c + 1)
            last_save = time.perf_counter()
    train_seconds = time.perf_counter() - start
    work.copy_to(model)
    history = {n: hist[n][:num_train_steps] for n in names}
    eval_steps = np.minimum((np.arange(num_chunks) + 1) * chunk, num_train_steps)
    history.update(eval_steps=eval_steps if evaluate is not None else np.zeros(0, int),
                   held_out=held_out if evaluate is not None else np.zeros(0),
                   train_seconds=float(train_seconds),
                   grad_evals=int(num_train_steps * batch_size * model.grad_evals_per_step()))
    return model, history
