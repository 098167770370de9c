"""L2HMC's training loss: reciprocal expected squared jumped distance (Levy et al. 2018, eq. 7).

For a batch of starts ξ and proposals ξ' = FLξ accepted with probability A,

    ℓ_λ = λ² / δ − δ / λ²,  δ = ‖x − x'‖² A,

averaged over the batch; the first term punishes chains that do not move at all, the second
rewards large expected jumps. The trainer adds the same loss on fresh draws from the
initial distribution q with weight λ_b (fast burn-in). As in the reference code the two
terms are averaged separately, `scale` = λ², and δ gets `1e-4` added to stay positive.
"""

import tensorflow as tf

DELTA_FLOOR = 1e-4


def acceptance_probability(log_accept_ratio):
    """A = min(1, exp(log_accept_ratio)), 0 where the ratio is not finite. `[chains]`."""
    finite = tf.math.is_finite(log_accept_ratio)
    safe = tf.where(finite, log_accept_ratio, tf.zeros_like(log_accept_ratio))
    return tf.where(finite, tf.exp(tf.minimum(safe, 0.0)), tf.zeros_like(safe))


def expected_jump(x, x_proposed, accept_prob):
    """δ = ‖x − x'‖² A per chain (`[chains]`); non-finite proposals count as no move."""
    diff = x_proposed - x
    finite = tf.reduce_all(tf.math.is_finite(diff), axis=-1)
    diff = tf.where(finite[:, None], diff, tf.zeros_like(diff))
    return tf.reduce_sum(tf.square(diff), axis=-1) * accept_prob


def esjd_loss(x, x_proposed, accept_prob, scale=0.1):
    """`scale · mean(1/δ) − mean(δ) / scale` with δ = `expected_jump` + 1e-4 (a scalar)."""
    delta = expected_jump(x, x_proposed, accept_prob) + DELTA_FLOOR
    return scale * tf.reduce_mean(1.0 / delta) - tf.reduce_mean(delta) / scale
