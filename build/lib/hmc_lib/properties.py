"""Numerical checks of an integrator's geometry, shared by the tests and the chapters.

A *flow* here is any map `(x, v) -> (x', v')` on `[chains, dim]` tensors (L leapfrog steps,
an L2HMC trajectory, a pseudo-marginal splitting, ...).
"""

import numpy as np
import tensorflow as tf


def reversibility_error(flow, x, v):
    """max abs(start − F(flip(F(start)))) over chains: run, negate the momentum, run, negate.

    Returns `(position_error, momentum_error)` as floats (0 for an exactly reversible flow,
    round-off in practice).
    """
    x1, v1 = flow(x, v)
    x2, v2 = flow(x1, -v1)
    return float(tf.reduce_max(tf.abs(x2 - x))), float(tf.reduce_max(tf.abs(-v2 - v)))


def log_abs_det_jacobian(flow, x, v):
    """log|det ∂(x', v')/∂(x, v)| of `flow` at each chain's `(x, v)`, by autodiff.

    Args: x, v `[chains, dim]` (use float64). Returns numpy `[chains]`.
    """
    d = x.shape[-1]
    out = []
    for c in range(x.shape[0]):
        z = tf.concat([x[c], v[c]], 0)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(z)
            x1, v1 = flow(z[None, :d], z[None, d:])
            z1 = tf.concat([x1[0], v1[0]], 0)
        jac = tape.jacobian(z1, z, experimental_use_pfor=False)
        out.append(np.linalg.slogdet(jac.numpy())[1])
    return np.array(out)


def energy_error(log_prob_fn, flow, x, v):
    """H(F(x, v)) − H(x, v) per chain, H = −log π(x) + ½|v|²; numpy `[chains]`."""
    def energy(x, v):
        return -log_prob_fn(x) + 0.5 * tf.reduce_sum(v**2, -1)
    x1, v1 = flow(x, v)
    return (energy(x1, v1) - energy(x, v)).numpy()
