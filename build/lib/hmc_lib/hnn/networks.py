"""Hamiltonian neural networks (Greydanus et al. 2019; Dhulipala et al. 2023), chapter 7.

An HNN is a scalar network H̃(q, p) whose *input gradients* drive the dynamics,
dq/dt = ∂H̃/∂p, dp/dt = −∂H̃/∂q, so the learned flow is Hamiltonian by construction: it is
divergence free and conserves H̃ (a plain network predicting (dq/dt, dp/dt) is neither).

Two kinds:

- ``"separable"``: H̃(q, p) = Ũ(q) + ½|p|², with Ũ a network (summing its outputs). The
  kinetic part is known, so the standard leapfrog applies (field −∇Ũ ≈ ∇log π).
- ``"latent"`` (Dhulipala's L-HNN): an MLP of (q, p) with `latent_dim` outputs summed into
  Ĥ. We symmetrise it in p, Ĥ(q, p) = ½[f(q, p) + f(q, −p)], so that the implicit
  leapfrog is reversible under momentum flip (needed for an exact Metropolis test).

Inputs q are standardised with a shift and scale set from the training data (identity until
then); p enters as it is (p ~ N(0, I)). Activations: "sin" (Dhulipala), "tanh", "softplus".
"""

import numpy as np
import tensorflow as tf

from hmc_lib import _checks

_ACTIVATIONS = {"sin": tf.math.sin, "tanh": tf.math.tanh, "softplus": tf.math.softplus}
KINDS = ("separable", "latent")


class HNN(tf.Module):
    """A Hamiltonian neural network H̃(q, p).

    Args:
      dim: dimension of q (and of p).
      kind: "separable" or "latent" (see the module docstring).
      hidden: hidden layer widths, e.g. (100, 100, 100, 100) for Dhulipala's L-HNN.
      activation: "sin", "tanh" or "softplus".
      latent_dim: number of summed outputs (default 2·dim for "latent", 1 for "separable").
      dtype: float dtype of the weights; inputs of another dtype are cast in and out.
      seed: int, seeds the Glorot-uniform initialisation.
    """

    def __init__(self, dim, kind="separable", hidden=(64, 64), activation="tanh",
                 latent_dim=None, dtype=tf.float32, seed=0, name="hnn"):
        super().__init__(name=name)
        _checks.positive_int(dim, "dim")
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {sorted(_ACTIVATIONS)}, "
                             f"got {activation!r}")
        hidden = [int(h) for h in hidden]
        for h in hidden:
            _checks.positive_int(h, "hidden")
        dtype = tf.as_dtype(dtype)
        if not dtype.is_floating:
            raise TypeError(f"`dtype` must be a float dtype, got {dtype.name}")
        latent_dim = (2 * int(dim) if kind == "latent" else 1) if latent_dim is None \
            else int(latent_dim)
        _checks.positive_int(latent_dim, "latent_dim")
        self.dim, self.kind, self.hidden = int(dim), kind, hidden
        self.activation, self.latent_dim, self.dtype, self.seed = activation, latent_dim, \
            dtype, int(seed)
        sizes = [2 * self.dim if kind == "latent" else self.dim] + hidden + [latent_dim]
        rng = np.random.default_rng(int(seed))
        self.weights_, self.biases_ = [], []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            limit = np.sqrt(6.0 / (a + b))
            self.weights_.append(tf.Variable(rng.uniform(-limit, limit, (a, b)), dtype=dtype,
                                             name=f"w{i}"))
            self.biases_.append(tf.Variable(np.zeros(b), dtype=dtype, name=f"b{i}"))
        self.shift = tf.Variable(np.zeros(self.dim), dtype=dtype, trainable=False,
                                 name="shift")
        self.scale = tf.Variable(np.ones(self.dim), dtype=dtype, trainable=False,
                                 name="scale")

    @property
    def config(self):
        """The constructor arguments (JSON-serialisable)."""
        return dict(dim=self.dim, kind=self.kind, hidden=list(self.hidden),
                    activation=self.activation, latent_dim=self.latent_dim,
                    dtype=self.dtype.name, seed=self.seed)

    def get_weights(self):
        return [v.numpy() for v in self._all_variables()]

    def set_weights(self, weights):
        variables = self._all_variables()
        if len(weights) != len(variables):
            raise ValueError(f"`weights` must hold {len(variables)} arrays, got {len(weights)}")
        for v, w in zip(variables, weights):
            if tuple(v.shape) != tuple(np.shape(w)):
                raise ValueError(f"weight {v.name} has shape {v.shape}, got {np.shape(w)}")
            v.assign(w)

    def _all_variables(self):
        return [*self.weights_, *self.biases_, self.shift, self.scale]

    def set_standardisation(self, shift, scale):
        """Sets the input shift and scale of q (`[dim]` each, scale > 0)."""
        scale = np.asarray(scale, np.float64)
        if np.any(~np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError("`scale` must be finite and positive")
        self.shift.assign(np.asarray(shift, np.float64))
        self.scale.assign(scale)

    def _mlp(self, z):
        act = _ACTIVATIONS[self.activation]
        for w, b in zip(self.weights_[:-1], self.biases_[:-1]):
            z = act(tf.matmul(z, w) + b)
        return tf.reduce_sum(tf.matmul(z, self.weights_[-1]) + self.biases_[-1], axis=-1)

    def _flat(self, fn, q, p):
        # the network acts on [n, features]; restore any leading batch shape afterwards
        lead = tf.shape(q)[:-1]
        out = fn(tf.reshape(q, [-1, self.dim]), tf.reshape(p, [-1, self.dim]))
        return tf.reshape(out, lead)

    def potential(self, q):
        """Ũ(q) `[..., dim] -> [...]` ("separable" only)."""
        if self.kind != "separable":
            raise ValueError("`potential` is defined for kind='separable' only")
        in_dtype = q.dtype
        q = tf.cast(q, self.dtype)
        lead = tf.shape(q)[:-1]
        u = self._mlp(tf.reshape((q - self.shift) / self.scale, [-1, self.dim]))
        return tf.cast(tf.reshape(u, lead), in_dtype)

    def hamiltonian(self, q, p):
        """H̃(q, p): `[..., dim]`, `[..., dim]` -> `[...]`."""
        q = tf.convert_to_tensor(q)
        p = tf.convert_to_tensor(p, q.dtype)
        if self.kind == "separable":
            return self.potential(q) + 0.5 * tf.reduce_sum(tf.square(p), -1)
        in_dtype = q.dtype
        q, p = tf.cast(q, self.dtype), tf.cast(p, self.dtype)

        def latent(qf, pf):
            x = (qf - self.shift) / self.scale
            return 0.5 * (self._mlp(tf.concat([x, pf], -1)) + self._mlp(tf.concat([x, -pf], -1)))

        return tf.cast(self._flat(latent, q, p), in_dtype)

    def grads(self, q, p):
        """(∂H̃/∂q, ∂H̃/∂p), each shaped like `q`."""
        q = tf.convert_to_tensor(q)
        p = tf.convert_to_tensor(p, q.dtype)
        if self.kind == "separable":
            return -self.field(q), p
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([q, p])
            h = self.hamiltonian(q, p)
        dq, dp = tape.gradient(h, [q, p])
        return dq, dp

    def time_derivative(self, q, p):
        """The learned vector field (dq/dt, dp/dt) = (∂H̃/∂p, −∂H̃/∂q)."""
        dq, dp = self.grads(q, p)
        return dp, -dq

    def field(self, q):
        """−∇Ũ(q) ≈ ∇log π(q), `[..., dim]` ("separable" only): the leapfrog's kick field."""
        q = tf.convert_to_tensor(q)
        with tf.GradientTape() as tape:
            tape.watch(q)
            u = self.potential(q)
        return -tape.gradient(u, q)


class ExactHamiltonian:
    """The true separable Hamiltonian H = −c·log π(q) + ½|p|² behind the HNN interface.

    A control for the samplers ("the network is the true Hamiltonian", c = 1) and a way to
    build deliberately wrong ones (c ≠ 1). `target`: a `Target` (or any object with
    `log_prob` and `dim`); `scale`: c, a float.
    """

    kind = "separable"

    def __init__(self, target, scale=1.0):
        self.dim, self.target, self.scale_ = int(target.dim), target, float(scale)

    def potential(self, q):
        return -self.scale_ * self.target.log_prob(q)

    def hamiltonian(self, q, p):
        return self.potential(q) + 0.5 * tf.reduce_sum(tf.square(p), -1)

    def field(self, q):
        q = tf.convert_to_tensor(q)
        with tf.GradientTape() as tape:
            tape.watch(q)
            u = self.potential(q)
        return -tape.gradient(u, q)

    def grads(self, q, p):
        return -self.field(q), tf.convert_to_tensor(p, q.dtype)
