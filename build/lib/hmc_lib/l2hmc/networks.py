"""The x- and v-networks of L2HMC (Levy et al. 2018, Sec. 5.1).

Each network takes three inputs `a`, `b` `[chains, dim]` and a time encoding `t`
`[chains, 2]`, embeds them separately and sums the embeddings, then applies ReLU layers and
three heads of size `dim`:

    S = tanh(W_S h + b_S) · exp(scale_S),  Q = tanh(W_Q h + b_Q) · exp(scale_Q),  T = W_T h + b_T.

The heads start with zero weights and biases, so S = Q = T = 0 exactly at initialisation and
the L2HMC update is then plain leapfrog. For the v-network (a, b) = (x, ∇log π(x)); for the
x-network (a, b) = (masked x, v). Variables are float32 by default; a call casts them to the
dtype of its inputs, so the same network also runs in float64.
"""

import math

import numpy as np
import tensorflow as tf

from hmc_lib import _checks

HEADS = ("S", "Q", "T")


def _hidden_units(hidden_units):
    units = tuple(hidden_units) if isinstance(hidden_units, (list, tuple)) else (hidden_units,)
    if not units:
        raise ValueError("`hidden_units` must list at least one layer size")
    for h in units:
        _checks.positive_int(h, "hidden_units")
    return tuple(int(h) for h in units)


class Network(tf.Module):
    """Three-input MLP with heads (S, Q, T), each `[chains, dim]`.

    Args:
      dim: the dimension of x.
      hidden_units: sizes of the hidden layers; the first is the width of the summed
        embeddings (the reference code's `(10, 10)`: an embedding layer and one more layer).
      seed: int, for the initial hidden weights (He-normal; each embedding's variance is
        divided by 3 because three of them are summed).
      dtype: dtype of the variables.
    """

    def __init__(self, dim, hidden_units=(10, 10), seed=0, dtype=tf.float32, name=None):
        super().__init__(name=name)
        _checks.positive_int(dim, "dim")
        units = _hidden_units(hidden_units)
        self.dim = int(dim)
        self.hidden_units = units
        rng = np.random.default_rng(seed)

        def he(fan_in, fan_out, gain=2.0):
            return rng.normal(0.0, math.sqrt(gain / fan_in), size=(fan_in, fan_out))

        def var(value, name):
            return tf.Variable(np.asarray(value, np.float64), dtype=dtype, name=name)

        h0 = units[0]
        self.embed_a = var(he(dim, h0, 2.0 / 3), "embed_a")
        self.embed_b = var(he(dim, h0, 2.0 / 3), "embed_b")
        self.embed_t = var(he(2, h0, 2.0 / 3), "embed_t")
        self.embed_bias = var(np.zeros(h0), "embed_bias")
        self.hidden = []
        for i, (h_in, h_out) in enumerate(zip(units[:-1], units[1:])):
            self.hidden.append((var(he(h_in, h_out), f"hidden{i}_w"),
                                var(np.zeros(h_out), f"hidden{i}_b")))
        last = units[-1]
        self.head_w = {k: var(np.zeros((last, dim)), f"head_{k}_w") for k in HEADS}
        self.head_b = {k: var(np.zeros(dim), f"head_{k}_b") for k in HEADS}
        self.log_scale = {k: var(np.zeros(dim), f"scale_{k}") for k in ("S", "Q")}

    def ordered_variables(self):
        """All variables in a fixed order (for save/load and the optimiser)."""
        out = [self.embed_a, self.embed_b, self.embed_t, self.embed_bias]
        for w, b in self.hidden:
            out += [w, b]
        out += [self.head_w[k] for k in HEADS] + [self.head_b[k] for k in HEADS]
        out += [self.log_scale["S"], self.log_scale["Q"]]
        return out

    def __call__(self, a, b, t):
        """`a`, `b`: `[chains, dim]`; `t`: `[chains, 2]` → `(S, Q, T)`, each `[chains, dim]`."""
        c = lambda w: tf.cast(w, a.dtype)
        h = tf.nn.relu(tf.matmul(a, c(self.embed_a)) + tf.matmul(b, c(self.embed_b))
                       + tf.matmul(t, c(self.embed_t)) + c(self.embed_bias))
        for w, bias in self.hidden:
            h = tf.nn.relu(tf.matmul(h, c(w)) + c(bias))
        lin = {k: tf.matmul(h, c(self.head_w[k])) + c(self.head_b[k]) for k in HEADS}
        s = tf.tanh(lin["S"]) * tf.exp(c(self.log_scale["S"]))
        q = tf.tanh(lin["Q"]) * tf.exp(c(self.log_scale["Q"]))
        return s, q, lin["T"]
