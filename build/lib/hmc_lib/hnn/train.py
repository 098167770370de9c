"""Training an HNN with Chen's "method 4" loss (chapter 7).

    loss = w₁ ‖∂H/∂q − ∂H̃/∂q‖² + w₂ ‖∂H/∂p − ∂H̃/∂p‖²,

averaged over a mini-batch, with ∂H/∂q = −∇log π(q) and ∂H/∂p = p from true trajectories
(`hmc_lib.hnn.data`). For a separable HNN the second term is identically zero. Adam, as
Dhulipala (learning rate 5e-4, batch 1,000); a tqdm bar and a history of the training loss
and, every `eval_every` steps, of the held-out loss.
"""

import time
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from hmc_lib import _checks, _reuse
from hmc_lib.hnn.networks import HNN


class TrainResult(NamedTuple):
    """`hnn`: the trained `HNN`; `history`: dict of numpy arrays `step`, `loss` (training
    mini-batch loss, every step), `eval_step`, `eval_loss` (held-out loss); `seconds`: wall
    clock of the training; `grad_evals`: true gradients spent on the data."""
    hnn: Any
    history: dict
    seconds: float
    grad_evals: int


class _Adam(tf.Module):
    """Adam (Kingma & Ba) with a cosine decay of the rate to 1% over `num_steps`."""

    def __init__(self, variables, learning_rate, num_steps, b1=0.9, b2=0.999, eps=1e-8):
        super().__init__()
        self.vars = variables
        self.m = [tf.Variable(tf.zeros_like(v)) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v)) for v in variables]
        self.t = tf.Variable(0.0, dtype=variables[0].dtype)
        self.lr, self.num_steps, self.b1, self.b2, self.eps = learning_rate, num_steps, b1, \
            b2, eps

    def apply(self, grads):
        self.t.assign_add(1.0)
        t = self.t
        frac = tf.minimum(t / self.num_steps, 1.0)
        lr = self.lr * (0.01 + 0.99 * 0.5 * (1.0 + tf.cos(np.pi * frac)))
        lr = lr * tf.sqrt(1.0 - self.b2 ** t) / (1.0 - self.b1 ** t)
        for var, g, m, v in zip(self.vars, grads, self.m, self.v):
            m.assign(self.b1 * m + (1.0 - self.b1) * g)
            v.assign(self.b2 * v + (1.0 - self.b2) * tf.square(g))
            var.assign_sub(lr * m / (tf.sqrt(v) + self.eps))


def loss_fn(hnn, q, p, dh_dq, dh_dp, weights=(1.0, 1.0)):
    """Chen's method-4 loss on a batch `[n, dim]` each; returns a scalar."""
    gq, gp = hnn.grads(q, p)
    lq = tf.reduce_mean(tf.reduce_sum(tf.square(gq - dh_dq), -1))
    lp = tf.reduce_mean(tf.reduce_sum(tf.square(gp - dh_dp), -1))
    return weights[0] * lq + weights[1] * lp


def potential_loss_fn(hnn, q, potential):
    """Chen's "θ-only potential" variant: regress Ũ(q) on the true potential values `[n]`,
    both centred on the batch (the potential is known up to a constant); a scalar."""
    u = hnn.potential(q)
    return tf.reduce_mean(tf.square((u - tf.reduce_mean(u))
                                    - (potential - tf.reduce_mean(potential))))


def value_gradient_loss_fn(hnn, q, dh_dq, potential, weights=(1.0, 1.0)):
    """Chen's method 3, the θ-only potential fitted to values *and* gradients:
    w₁ ‖∂H/∂q − ∇Ũ(q)‖² + w₂ (centred value error)², batch means (`weights` = (w₁, w₂));
    a scalar."""
    return (weights[0] * loss_fn(hnn, q, tf.zeros_like(q), dh_dq, tf.zeros_like(q))
            + weights[1] * potential_loss_fn(hnn, q, potential))


class _Workspace:
    """An `HNN`, its optimizer and the compiled training step and held-out loss that read
    them, for one architecture and loss (`hmc_lib._reuse`): each `train` call copies its
    freshly initialised network in (`reset`), trains this one, and copies the result out.
    The data are arguments of the compiled functions, not constants in them."""

    def __init__(self, hnn, loss, weights, learning_rate, num_steps):
        self.hnn = hnn
        self.variables = list(hnn.trainable_variables)
        self.opt = _Adam(self.variables, learning_rate, num_steps)
        objective = {
            "gradient": lambda *b: loss_fn(hnn, *b, weights=weights),
            "potential": lambda *b: potential_loss_fn(hnn, *b),
            "value_gradient": lambda *b: value_gradient_loss_fn(hnn, *b, weights=weights),
        }[loss]

        # reduce_retracing: data sets of other sizes (training seeds, held-out splits) reuse
        # the traced function instead of tracing it again (and warning about it)
        @tf.function(jit_compile=True, reduce_retracing=True)
        def steps(indices, *arrays):
            """Adam steps, one per row of `indices` `[k, batch]` (int32); the k mini-batch
            losses `[k]`. One compiled call runs the k steps (`tf.while_loop`), so the
            per-step cost is the arithmetic, not a Python dispatch."""
            k = tf.shape(indices)[0]

            def body(i, losses):
                batch = [tf.gather(a, indices[i]) for a in arrays]
                with tf.GradientTape() as tape:
                    value = objective(*batch)
                self.opt.apply(tape.gradient(
                    value, self.variables, unconnected_gradients=tf.UnconnectedGradients.ZERO))
                return i + 1, losses.write(i, value)

            _, losses = tf.while_loop(lambda i, _: i < k, body,
                                      (tf.constant(0), tf.TensorArray(arrays[0].dtype, k)))
            return losses.stack()

        self.steps = steps
        self.evaluate = tf.function(objective, reduce_retracing=True)

    def reset(self, hnn):
        _reuse.copy_weights(hnn, self.hnn)
        for slot in self.opt.m + self.opt.v:
            slot.assign(tf.zeros_like(slot))
        self.opt.t.assign(0.0)


#: the losses `train` fits
LOSSES = ("gradient", "potential", "value_gradient")

#: compiled training steps, one per (architecture, loss, optimizer settings)
_WORKSPACES = _reuse.Cache(maxsize=4)


def train(data, kind="separable", hidden=(64, 64), activation="tanh", num_steps=2000,
          batch_size=1000, learning_rate=5e-3, weights=(1.0, 1.0), held_out=None,
          eval_every=100, seed=0, dtype=tf.float32, progress=True, latent_dim=None,
          loss="gradient"):
    """Fits an `HNN` to `data` (a `TrainingData`); returns a `TrainResult`.

    Args:
      data: training points (`hmc_lib.hnn.data.collect`).
      kind, hidden, activation, latent_dim, dtype: the `HNN`'s architecture.
      num_steps: Adam steps; batch_size: points per step (sampled with replacement).
      learning_rate: Adam's (a cosine decay to 1% over the run).
      weights: (w₁, w₂) of the loss.
      held_out: optional `TrainingData` for the held-out loss.
      seed: int, seeds the initialisation and the batches.
      progress: show a tqdm bar.
      loss: "gradient" (Chen's method 4, default), "potential" (the potential's values
        only: `potential_loss_fn` on `data.potential`) or "value_gradient" (Chen's method
        3, the θ-only potential fitted to values and gradients: `value_gradient_loss_fn`,
        `weights` = (gradient weight, value weight)); the last two need a separable HNN.
    """
    if loss not in LOSSES:
        raise ValueError(f"`loss` must be one of {LOSSES}, got {loss!r}")
    if loss != "gradient" and (kind != "separable" or data.potential is None):
        raise ValueError(f"`loss={loss!r}` needs kind='separable' and `data.potential`")
    _checks.positive_int(num_steps, "num_steps")
    _checks.positive_int(batch_size, "batch_size")
    _checks.positive_float(learning_rate, "learning_rate")
    _checks.positive_int(eval_every, "eval_every")
    n, dim = data.q.shape
    if n < 2:
        raise ValueError(f"`data` must hold at least 2 points, got {n}")
    hnn = HNN(dim, kind=kind, hidden=hidden, activation=activation, dtype=dtype, seed=seed,
              latent_dim=latent_dim)
    hnn.set_standardisation(data.q.mean(0), np.maximum(data.q.std(0), 1e-8))
    fields = {"gradient": ("q", "p", "dh_dq", "dh_dp"), "potential": ("q", "potential"),
              "value_gradient": ("q", "dh_dq", "potential")}[loss]
    arrays = [tf.constant(getattr(data, f), dtype) for f in fields]
    settings = (_reuse.structure(hnn), loss, tuple(float(x) for x in weights),
                float(learning_rate), int(num_steps))
    work = _WORKSPACES.get((), settings, lambda: _Workspace(_reuse.rebuild(hnn), *settings[1:]))
    work.reset(hnn)
    held = None if held_out is None else [tf.constant(getattr(held_out, f), dtype)
                                          for f in fields]
    rng = np.random.default_rng(seed)
    batch = min(int(batch_size), n)
    # the steps run in blocks of `eval_every` (one compiled call each; the held-out loss
    # between blocks), the last block shorter if `eval_every` does not divide `num_steps`
    blocks = [eval_every] * (int(num_steps) // eval_every)
    if int(num_steps) % eval_every:
        blocks.append(int(num_steps) % eval_every)
    losses, eval_steps, eval_losses = [], [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=int(num_steps), desc=f"HNN ({kind})", mininterval=2.0, leave=False)
    start = time.perf_counter()
    for k in blocks:
        idx = rng.integers(0, n, size=(k, batch)).astype(np.int32)
        losses.extend(np.asarray(work.steps(tf.constant(idx), *arrays)).tolist())
        if held is not None:
            eval_steps.append(len(losses))
            eval_losses.append(float(work.evaluate(*held)))
        if bar is not None:
            bar.update(k)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    _reuse.copy_weights(work.hnn, hnn)
    history = dict(step=np.arange(1, len(losses) + 1), loss=np.asarray(losses),
                   eval_step=np.asarray(eval_steps), eval_loss=np.asarray(eval_losses))
    return TrainResult(hnn, history, seconds, int(data.grad_evals))
