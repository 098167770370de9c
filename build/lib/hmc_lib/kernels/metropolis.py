"""The one Metropolis step every kernel shares: accept/reject, divergences, selection.

A proposal is "divergent" when its energy is not finite, when the proposed state is not
finite, or when the energy error exceeds `max_energy_error` (Stan's and TFP's 1000). A
divergent proposal is always rejected and is counted, never raised.
"""

from typing import NamedTuple

import tensorflow as tf

MAX_ENERGY_ERROR = 1000.0


class Decision(NamedTuple):
    """Outcome of one Metropolis test, each `[chains]`.

    is_accepted: bool. log_accept_ratio: log of the acceptance ratio, -inf where the energy
    was not finite. is_divergent: bool, see the module docstring.
    """
    is_accepted: tf.Tensor
    log_accept_ratio: tf.Tensor
    is_divergent: tf.Tensor


def kinetic_energy(momentum):
    """½ vᵀv over the last axis: `[..., dim] -> [...]`."""
    return 0.5 * tf.reduce_sum(tf.square(momentum), axis=-1)


def all_finite(x, batch_ndims=1):
    """`[chains]` bool: every element of each chain's part of `x` (a structure) is finite."""
    parts = []
    for t in tf.nest.flatten(x):
        finite = tf.math.is_finite(t)
        axes = list(range(batch_ndims, len(t.shape)))
        parts.append(tf.reduce_all(finite, axis=axes) if axes else finite)
    return tf.reduce_all(tf.stack(parts, 0), axis=0)


def decide(log_accept_ratio, seed, proposed_state=None, max_energy_error=MAX_ENERGY_ERROR):
    """Metropolis test: accept with probability min(1, exp(log_accept_ratio)).

    Args:
      log_accept_ratio: `[chains]`, e.g. H(current) - H(proposed) (+ log|det J| for L2HMC).
      seed: stateless seed, `[2]` int tensor.
      proposed_state: optional structure of `[chains, ...]` tensors; non-finite entries make
        that chain's proposal divergent.
      max_energy_error: a proposal with -log_accept_ratio above this is divergent.
    Returns:
      A `Decision`.
    """
    lar = tf.convert_to_tensor(log_accept_ratio)
    finite = tf.math.is_finite(lar)
    if proposed_state is not None:
        finite = finite & all_finite(proposed_state, batch_ndims=len(lar.shape))
    lar = tf.where(finite, lar, tf.constant(-float("inf"), lar.dtype))
    is_divergent = ~finite | (-lar > tf.cast(max_energy_error, lar.dtype))
    log_uniform = tf.math.log(tf.random.stateless_uniform(tf.shape(lar), seed=seed, dtype=lar.dtype))
    return Decision(log_uniform < lar, lar, is_divergent)


def choose(is_accepted, proposed, current):
    """Per chain, `proposed` where accepted else `current`; works on any matching structure."""
    def pick(p, c):
        mask = tf.reshape(is_accepted, tf.concat(
            [tf.shape(is_accepted), tf.ones([tf.rank(p) - tf.rank(is_accepted)], tf.int32)], 0))
        return tf.where(mask, p, c)
    return tf.nest.map_structure(pick, proposed, current)
