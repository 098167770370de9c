"""The gradient network of NNgHMC (chapters 3 and 6) and its trainer.

Convention: the network predicts **∇log π(q) = −∇U(q)**, the field that
`hmc_lib.integrators` kicks with (so a trained network plugs straight into a leapfrog).

Architecture ("block network", the paper's Remark 1): the output `[dim]` is cut into `k`
contiguous blocks; block j has its own hidden layer, fed by the **whole** input,

    h_j = act(x̃ W1_j + b1_j),   out_j = h_j W2_j + b2_j,   ∇̂ = concat_j(out_j) · s_y + m_y,

with x̃ = (x − m_x) / s_x the standardised input and (m_y, s_y) the per-coordinate mean and
standard deviation of the training gradients. Blocks share no parameter. `blocks=1` is the
paper's one-hidden-layer MLP.

Option `linear=True` (ours, not the paper's) adds a linear skip term per block,
out_j = h_j W2_j + x̃ A_j + b2_j, with A_j initialised by least squares and W2_j by zeros (training starts at the linear fit). A posterior that is
nearly Gaussian has a nearly linear gradient, which the skip term captures from few draws;
the hidden layer then fits only the non-linear remainder.
"""

import time

import numpy as np
import tensorflow as tf

from hmc_lib import _checks

_ACTIVATIONS = {"relu": tf.nn.relu, "tanh": tf.math.tanh, "softplus": tf.math.softplus,
                "sigmoid": tf.math.sigmoid, "elu": tf.nn.elu}


def _block_sizes(dim, blocks):
    if isinstance(blocks, (int, np.integer)):
        _checks.positive_int(int(blocks), "blocks")
        if blocks > dim:
            raise ValueError(f"`blocks` must be <= dim ({dim}), got {blocks}")
        return [len(a) for a in np.array_split(np.arange(dim), int(blocks))]
    sizes = [int(b) for b in blocks]
    if not sizes or any(b < 1 for b in sizes) or sum(sizes) != dim:
        raise ValueError(f"`blocks` as sizes must be positive and sum to dim={dim}, got {sizes}")
    return sizes


class GradientNet(tf.Module):
    """A (block) one-hidden-layer MLP `q [..., dim] -> ∇̂log π(q) [..., dim]`.

    Args:
      dim: input and output dimension.
      hidden: hidden units per block (int, or one int per block).
      blocks: number of blocks k (near-equal contiguous sizes), or a list of block sizes.
      activation: one of "relu", "tanh", "softplus", "sigmoid", "elu".
      dtype: the network's float dtype; inputs of another dtype are cast in and out.
      seed: int, seeds the Glorot-uniform initialisation.
      linear: add a linear skip term per block (see the module docstring).
    Callable inside `tf.function`/XLA (variables are captured). Standardisation constants are
    non-trainable variables set by `fit` (identity until then).
    """

    def __init__(self, dim, hidden=100, blocks=1, activation="relu", dtype=tf.float32,
                 seed=0, linear=False, name="gradient_net"):
        super().__init__(name=name)
        _checks.positive_int(dim, "dim")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        dtype = tf.as_dtype(dtype)
        if not dtype.is_floating:
            raise TypeError(f"`dtype` must be a float dtype, got {dtype.name}")
        self.dim, self.dtype, self.activation = int(dim), dtype, activation
        self.block_sizes = _block_sizes(self.dim, blocks)
        k = len(self.block_sizes)
        hidden = [hidden] * k if isinstance(hidden, (int, np.integer)) else list(hidden)
        if len(hidden) != k:
            raise ValueError(f"`hidden` needs one size per block ({k}), got {hidden}")
        for h in hidden:
            _checks.positive_int(h, "hidden")
        self.hidden = [int(h) for h in hidden]
        seeds = tf.random.experimental.stateless_split(tf.constant([int(seed), 7], tf.int32), 2 * k)

        def glorot(shape, s):
            limit = np.sqrt(6.0 / (shape[0] + shape[1]))
            return tf.random.stateless_uniform(shape, seed=s, minval=-limit, maxval=limit, dtype=dtype)

        self.linear = bool(linear)
        self.w1, self.b1, self.w2, self.b2, self.lin = [], [], [], [], []
        for j, (h, out) in enumerate(zip(self.hidden, self.block_sizes)):
            self.w1.append(tf.Variable(glorot([self.dim, h], seeds[2 * j]), name=f"w1_{j}"))
            self.b1.append(tf.Variable(tf.zeros([h], dtype), name=f"b1_{j}"))
            self.w2.append(tf.Variable(glorot([h, out], seeds[2 * j + 1]), name=f"w2_{j}"))
            self.b2.append(tf.Variable(tf.zeros([out], dtype), name=f"b2_{j}"))
            if self.linear:
                self.lin.append(tf.Variable(tf.zeros([self.dim, out], dtype), name=f"lin_{j}"))
        self.x_mean = tf.Variable(tf.zeros([self.dim], dtype), trainable=False, name="x_mean")
        self.x_scale = tf.Variable(tf.ones([self.dim], dtype), trainable=False, name="x_scale")
        self.y_mean = tf.Variable(tf.zeros([self.dim], dtype), trainable=False, name="y_mean")
        self.y_scale = tf.Variable(tf.ones([self.dim], dtype), trainable=False, name="y_scale")

    def config(self):
        """The architecture (JSON-serialisable; `GradientNet(**config)` rebuilds it)."""
        return dict(dim=self.dim, hidden=list(self.hidden), blocks=list(self.block_sizes),
                    activation=self.activation, dtype=self.dtype.name, linear=self.linear)

    @property
    def num_params(self):
        """Number of trainable weights and biases."""
        return int(sum(np.prod(v.shape) for v in self.trainable_variables))

    def block_params(self, j):
        """The variables owned by block j: `(w1, b1, w2, b2[, lin])`."""
        own = (self.w1[j], self.b1[j], self.w2[j], self.b2[j])
        return own + ((self.lin[j],) if self.linear else ())

    def standardised(self, z):
        """The network in standardised units: `z = (x − m_x)/s_x` -> `(∇̂ − m_y)/s_y`."""
        act = _ACTIVATIONS[self.activation]
        outs = [act(z @ w1 + b1) @ w2 + b2
                for w1, b1, w2, b2 in zip(self.w1, self.b1, self.w2, self.b2)]
        if self.linear:
            outs = [o + z @ a for o, a in zip(outs, self.lin)]
        return outs[0] if len(outs) == 1 else tf.concat(outs, axis=-1)

    def __call__(self, x):
        """∇̂log π at `x` `[..., dim]`; returns `[..., dim]` in the dtype of `x`."""
        x = tf.convert_to_tensor(x)
        in_dtype = x.dtype
        z = (tf.cast(x, self.dtype) - self.x_mean) / self.x_scale
        out = self.standardised(z) * self.y_scale + self.y_mean
        return tf.cast(out, in_dtype)


class _Adam(tf.Module):
    """Adam (Kingma & Ba) over a list of variables, with explicit slot variables."""

    def __init__(self, variables, learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-7):
        super().__init__()
        self.vars = list(variables)
        dtype = self.vars[0].dtype
        self.lr, self.b1, self.b2, self.eps = (tf.constant(c, dtype) for c in
                                               (learning_rate, beta1, beta2, epsilon))
        self.t = tf.Variable(tf.zeros([], dtype), trainable=False)
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.vars]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.vars]

    def apply(self, grads):
        t = self.t.assign_add(1.0)
        lr = self.lr * tf.sqrt(1.0 - self.b2**t) / (1.0 - self.b1**t)
        for var, g, m, v in zip(self.vars, grads, self.m, self.v):
            m.assign(self.b1 * m + (1.0 - self.b1) * g)
            v.assign(self.b2 * v + (1.0 - self.b2) * g * g)
            var.assign_sub(lr * m / (tf.sqrt(v) + self.eps))


def fit(positions, grads, hidden=100, blocks=1, epochs=50, batch_size=32, learning_rate=1e-3,
        activation="relu", seed=0, dtype=tf.float32, validation=None, jit_compile=False,
        linear=False, weight_decay=0.0, progress=False):
    """Fits a `GradientNet` to pairs `(q, ∇log π(q))` by mean squared error with Adam.

    Args:
      positions: `[n, dim]` training inputs q.
      grads: `[n, dim]` training targets ∇log π(q) (= −∇U(q)).
      hidden, blocks, activation, linear: the architecture (see `GradientNet`); with
        `linear`, the skip term starts at the least-squares fit of the standardised data.
      weight_decay: L2 penalty on the weights (not the biases) added to the loss.
      epochs: passes over the data (reshuffled each epoch, last partial batch dropped).
      batch_size: minibatch size (capped at n).
      learning_rate: Adam's step size.
      seed: int; seeds the initialisation and the shuffles.
      dtype: the network's dtype.
      validation: optional `(positions, grads)` held out; its loss is recorded per epoch.
      jit_compile: compile the training epoch with XLA. Off by default: on CPU the XLA
        epoch (a while loop of small minibatch steps) ran 25 times slower than the plain
        `tf.function` graph in our measurements; the network itself is XLA-compiled inside
        the sampler either way.
      progress: tqdm bar over epochs.
    Returns:
      `(net, history)`; history is a dict with `loss` (per epoch, mean squared error in
      standardised output units, averaged over the epoch's minibatches), `val_loss` (when
      `validation` is given; standardised units), `seconds` (wall-clock, compilation
      included), `num_params`, `num_train`.
    """
    q = np.asarray(positions, np.float64)
    g = np.asarray(grads, np.float64)
    if q.ndim != 2:
        raise ValueError(f"`positions` must have shape [n, dim], got {list(q.shape)}")
    if g.shape != q.shape:
        raise ValueError(f"`grads` must have the shape of `positions` {list(q.shape)}, got {list(g.shape)}")
    keep = np.all(np.isfinite(q), 1) & np.all(np.isfinite(g), 1)
    q, g = q[keep], g[keep]
    if q.shape[0] < 2:
        raise ValueError("`positions`: need at least 2 finite training pairs")
    _checks.positive_int(epochs, "epochs")
    _checks.positive_int(batch_size, "batch_size")
    _checks.positive_float(learning_rate, "learning_rate")
    start = time.perf_counter()
    n, dim = q.shape
    net = GradientNet(dim, hidden=hidden, blocks=blocks, activation=activation, dtype=dtype,
                      seed=seed, linear=linear)
    floor = 1e-8
    net.x_mean.assign(q.mean(0))
    net.x_scale.assign(np.maximum(q.std(0), floor))
    net.y_mean.assign(g.mean(0))
    net.y_scale.assign(np.maximum(g.std(0), floor))
    dt = net.dtype
    z = tf.constant((q - q.mean(0)) / np.maximum(q.std(0), floor), dt)
    t = tf.constant((g - g.mean(0)) / np.maximum(g.std(0), floor), dt)
    if linear:
        zz = np.concatenate([z.numpy().astype(np.float64), np.ones((n, 1))], 1)
        coef = np.linalg.lstsq(zz, t.numpy().astype(np.float64), rcond=None)[0]
        start_col = 0
        for j, out in enumerate(net.block_sizes):
            net.lin[j].assign(coef[:-1, start_col:start_col + out])
            net.b2[j].assign(coef[-1, start_col:start_col + out])
            net.w2[j].assign(tf.zeros_like(net.w2[j]))  # start exactly at the linear fit
            start_col += out
    batch = min(int(batch_size), n)
    num_batches = n // batch
    opt = _Adam(net.trainable_variables, learning_rate)

    weights = [v for v in net.trainable_variables if v.shape.rank == 2]
    decay = tf.constant(float(weight_decay), dt)

    def loss_fn(zb, tb):
        return tf.reduce_mean(tf.square(net.standardised(zb) - tb))

    def train_loss(zb, tb):
        loss = loss_fn(zb, tb)
        if weight_decay > 0:
            loss = loss + decay * tf.add_n([tf.reduce_sum(tf.square(w)) for w in weights])
        return loss

    def epoch(seed_pair):
        perm = tf.argsort(tf.random.stateless_uniform([n], seed=seed_pair))

        def body(i, total):
            idx = perm[i * batch:(i + 1) * batch]
            zb, tb = tf.gather(z, idx), tf.gather(t, idx)
            with tf.GradientTape() as tape:
                loss = train_loss(zb, tb)
            opt.apply(tape.gradient(loss, net.trainable_variables))
            return i + 1, total + loss

        _, total = tf.while_loop(lambda i, _: i < num_batches, body,
                                 (tf.constant(0), tf.zeros([], dt)))
        return total / num_batches

    epoch_fn = tf.function(epoch, jit_compile=jit_compile, autograph=False)
    if validation is not None:
        vq, vg = (np.asarray(a, np.float64) for a in validation)
        vz = tf.constant((vq - q.mean(0)) / np.maximum(q.std(0), floor), dt)
        vt = tf.constant((vg - g.mean(0)) / np.maximum(g.std(0), floor), dt)
        val_fn = tf.function(lambda: loss_fn(vz, vt), jit_compile=jit_compile, autograph=False)
    seeds = tf.random.experimental.stateless_split(tf.constant([int(seed), 11], tf.int32), int(epochs))
    epochs_iter = range(int(epochs))
    if progress:
        from tqdm.auto import tqdm
        epochs_iter = tqdm(epochs_iter, desc="fitting gradient network")
    history = dict(loss=[], num_params=net.num_params, num_train=int(n))
    if validation is not None:
        history["val_loss"] = []
    for e in epochs_iter:
        history["loss"].append(float(epoch_fn(seeds[e])))
        if validation is not None:
            history["val_loss"].append(float(val_fn()))
    history["seconds"] = time.perf_counter() - start
    return net, history
