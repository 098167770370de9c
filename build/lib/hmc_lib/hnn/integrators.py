"""The HNN's integrators: exact-structure maps (reversible, volume preserving) for H̃.

- Separable H̃ = Ũ(q) + ½|p|²: the standard leapfrog `hmc_lib.integrators.leapfrog` with the
  field −∇Ũ (`separable_leapfrog`, a thin wrapper).
- Non-separable H̃(q, p) (the latent HNN): the implicit, generalised leapfrog
  (Hairer, Lubich & Wanner, §VI.3; Leimkuhler & Reich), one step of size ε:

      p½ = p − ε/2 ∂_q H̃(q, p½)                      (implicit in p½)
      q' = q + ε/2 [∂_p H̃(q, p½) + ∂_p H̃(q', p½)]   (implicit in q')
      p' = p½ − ε/2 ∂_q H̃(q', p½)                     (explicit)

  It is symplectic (so volume preserving) and symmetric; with H̃ even in p it is reversible
  under momentum flip. The two implicit equations are solved by fixed-point iteration
  until the largest update is below `tol` (absolute, per coordinate) or `max_iter`
  iterations; a chain whose iteration has not converged (or is not finite) is reported as
  not converged, which the kernels count as a divergence (a rejected proposal).
"""

from typing import Any, NamedTuple

import tensorflow as tf

from hmc_lib import _checks, integrators


class ImplicitResult(NamedTuple):
    """`position`, `momentum` `[chains, dim]`; `converged` `[chains]` bool (all steps);
    `iterations` `[chains]` int32, fixed-point iterations spent (both equations, all steps)."""
    position: Any
    momentum: Any
    converged: Any
    iterations: Any


def separable_leapfrog(position, momentum, hnn, step_size, num_steps):
    """Leapfrog for a separable HNN: `hmc_lib.integrators.leapfrog` with the field −∇Ũ."""
    if hnn.kind != "separable":
        raise ValueError("`hnn` must be a separable HNN (kind='separable')")
    return integrators.leapfrog(position, momentum, hnn.field, step_size, num_steps)


def _fixed_point(fn, init, tol, max_iter):
    """Iterates z ← fn(z) from `init` `[chains, dim]`; returns (z, converged [chains], its)."""
    chains = tf.shape(init)[0]

    def body(i, z, done, its):
        new = fn(z)
        err = tf.reduce_max(tf.abs(new - z), axis=-1)
        z = tf.where(done[:, None], z, new)
        its = its + tf.cast(~done, tf.int32)
        done = done | (err < tol)
        return i + 1, z, done, its

    _, z, done, its = tf.while_loop(
        lambda i, z, done, its: (i < max_iter) & ~tf.reduce_all(done), body,
        (tf.constant(0), init, tf.zeros([chains], tf.bool), tf.zeros([chains], tf.int32)))
    finite = tf.reduce_all(tf.math.is_finite(z), axis=-1)
    return z, done & finite, its


def implicit_step(hnn, q, p, eps, tol, max_iter):
    """One generalised-leapfrog step of size `eps` (scalar or `[chains, 1]`) for H̃ = `hnn`.

    Returns `(q', p', converged [chains], iterations [chains])`.
    """
    half = 0.5 * eps
    p_half, ok1, it1 = _fixed_point(lambda z: p - half * hnn.grads(q, z)[0], p, tol, max_iter)
    v0 = hnn.grads(q, p_half)[1]
    q_new, ok2, it2 = _fixed_point(lambda z: q + half * (v0 + hnn.grads(z, p_half)[1]),
                                   q + eps * v0, tol, max_iter)
    p_new = p_half - half * hnn.grads(q_new, p_half)[0]
    return q_new, p_new, ok1 & ok2, it1 + it2


def implicit_leapfrog(position, momentum, hnn, step_size, num_steps, tol=1e-8, max_iter=100):
    """`num_steps` generalised-leapfrog steps for any H̃ (module docstring).

    Args:
      position, momentum: `[chains, dim]` float tensors.
      hnn: any object with `grads(q, p) -> (∂H̃/∂q, ∂H̃/∂p)` (an `HNN`, or an analytic H).
      step_size: ε > 0 (scalar, or `[chains, 1]` signed steps inside NUTS).
      num_steps: L >= 1.
      tol: fixed-point tolerance (max-abs update); use ~1e-12 in float64 for checks.
      max_iter: iterations per implicit equation before declaring non-convergence.
    Returns:
      `ImplicitResult`.
    """
    _checks.positive_int(num_steps, "num_steps")
    _checks.positive_float(tol, "tol")
    _checks.positive_int(max_iter, "max_iter")
    q = _checks.floating(position, "position")
    p = tf.convert_to_tensor(momentum, dtype=q.dtype)
    if q.shape.is_fully_defined() and p.shape.is_fully_defined() and q.shape != p.shape:
        raise ValueError(f"`momentum` must have the shape of `position` {q.shape.as_list()}, "
                         f"got {p.shape.as_list()}")
    eps = tf.cast(step_size, q.dtype)
    chains = tf.shape(q)[0]

    def body(i, q, p, ok, its):
        q, p, ok_i, it_i = implicit_step(hnn, q, p, eps, tol, max_iter)
        return i + 1, q, p, ok & ok_i, its + it_i

    _, q, p, ok, its = tf.while_loop(
        lambda i, *_: i < num_steps, body,
        (tf.constant(0), q, p, tf.ones([chains], tf.bool), tf.zeros([chains], tf.int32)))
    return ImplicitResult(q, p, ok, its)
