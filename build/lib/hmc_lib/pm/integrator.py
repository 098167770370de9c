"""The pseudo-marginal integrator (Alenlöv, Doucet & Lindsten 2021; chapter 4).

H(θ, ρ, u, p) = −log p(θ) − log p̂(y | θ, u) + ½(ρᵀM⁻¹ρ + uᵀu + pᵀp): the Strang splitting
into kicks with the gradient of log p̂ and an exact drift of θ with an exact rotation of
(u, p). Pure functions over tensors, float32 or float64, any leading batch shape.
"""

from typing import Any, NamedTuple

import tensorflow as tf

from hmc_lib import _checks


class PMState(NamedTuple):
    """A point of a pseudo-marginal trajectory.

    theta, rho: `[..., theta_dim]`; u, p: `[..., *u_shape]`; value: log_joint(θ, u) `[...]`;
    grad_theta, grad_u: its gradients at (θ, u).
    """
    theta: Any
    rho: Any
    u: Any
    p: Any
    value: Any
    grad_theta: Any
    grad_u: Any


def _expand_to(x, like):
    """Appends axes to `x` (`[...]` or scalar) so it broadcasts against `like`."""
    x = tf.convert_to_tensor(x, dtype=like.dtype)
    extra = like.shape.rank - x.shape.rank if x.shape.rank else 0
    return tf.reshape(x, tf.concat([tf.shape(x), tf.ones([extra], tf.int32)], 0)) if extra > 0 else x


def pm_drift_rotate(theta, rho, u, p, h, mass=1.0):
    """The flow of ½ρᵀρ/m + ½(uᵀu + pᵀp) for time h, exact: θ ← θ + hρ/m and the rotation
    (u, p) ← (u cos h + p sin h, p cos h − u sin h). `h` is a scalar, or `[...]` per chain
    (negative h runs it backwards). Returns `(theta, u, p)`."""
    h_theta, h_u = _expand_to(h, theta), _expand_to(h, u)
    c, s = tf.cos(h_u), tf.sin(h_u)
    return theta + h_theta * rho / mass, u * c + p * s, p * c - u * s


def pm_strang(theta, rho, u, p, grad_fn, step_size, num_steps, mass=1.0, order="ABA"):
    """Strang splitting of the extended pseudo-marginal Hamiltonian (chapter 4).

    One step (order "ABA", the papers'): drift θ and rotate (u, p) by h/2; kick
    ρ ← ρ + h ∇_θ log_joint, p ← p + h ∇_u log_joint; drift and rotate by h/2. Order "BAB"
    is the other Strang composition (kick h/2, drift/rotate h, kick h/2). Both are
    compositions of exact flows of shears and a rotation: reversible (negate ρ and p, run
    again, negate: back to the start) and volume preserving.

    Args:
      theta, rho: `[..., theta_dim]`; u, p: `[..., *u_shape]`, same dtype.
      grad_fn: `(theta, u) -> (∇_θ, ∇_u)` of log_joint = log p(θ) + log p̂(y | θ, u).
      step_size: h > 0 (scalar). num_steps: L >= 1. mass: m_ρ > 0 (scalar or `[theta_dim]`).
    Returns:
      `(theta, rho, u, p)` after L steps.
    """
    _checks.positive_float(step_size, "step_size")
    _checks.positive_int(num_steps, "num_steps")
    _checks.positive_float(mass, "mass")
    if order not in ("ABA", "BAB"):
        raise ValueError(f"`order` must be 'ABA' or 'BAB', got {order!r}")
    theta = _checks.floating(theta, "theta")
    dt = theta.dtype
    rho, u, p = (tf.convert_to_tensor(t, dtype=dt) for t in (rho, u, p))
    for a, b, name in ((theta, rho, "rho"), (u, p, "p")):
        if a.shape.is_fully_defined() and b.shape.is_fully_defined() and a.shape != b.shape:
            raise ValueError(f"`{name}` must have the shape {a.shape.as_list()}, got {b.shape.as_list()}")
    h = _checks.as_dtype(step_size, dt)
    mass = _checks.as_dtype(mass, dt)
    if order == "BAB":
        g_theta, g_u = grad_fn(theta, u)
        state = PMState(theta, rho, u, p, tf.zeros([], dt), g_theta, g_u)
        vg = lambda th, uu: (tf.zeros([], dt), *grad_fn(th, uu))
        end = pm_trajectory(state, vg, h, num_steps, mass)
        return end.theta, end.rho, end.u, end.p

    def body(i, theta, rho, u, p):
        theta, u, p = pm_drift_rotate(theta, rho, u, p, 0.5 * h, mass)
        g_theta, g_u = grad_fn(theta, u)
        rho, p = rho + h * g_theta, p + h * g_u
        theta, u, p = pm_drift_rotate(theta, rho, u, p, 0.5 * h, mass)
        return i + 1, theta, rho, u, p

    _, theta, rho, u, p = tf.while_loop(
        lambda i, *_: i < num_steps, body, (tf.constant(0, tf.int32), theta, rho, u, p))
    return theta, rho, u, p


def pm_trajectory(state, value_and_grad_fn, step_size, num_steps, mass=1.0):
    """`num_steps` of the "BAB" Strang splitting from `state` (a `PMState`), carrying the value.

    `value_and_grad_fn(theta, u) -> (log_joint, ∇_θ, ∇_u)`; `state.grad_*` must be the
    gradients at `state`. One gradient evaluation per step (the last kick of a step and the
    first of the next are merged), and log_joint at the end comes with it, so a kernel's
    Metropolis test costs no extra evaluation. `step_size` is a scalar or `[...]` per chain
    (negative runs backwards). Returns the final `PMState`.
    """
    h_theta = _expand_to(step_size, state.theta)
    h_u = _expand_to(step_size, state.u)
    rho = state.rho + 0.5 * h_theta * state.grad_theta
    p = state.p + 0.5 * h_u * state.grad_u

    def body(i, theta, rho, u, p, value, g_theta, g_u):
        theta, u, p = pm_drift_rotate(theta, rho, u, p, step_size, mass)
        value, g_theta, g_u = value_and_grad_fn(theta, u)
        return i + 1, theta, rho + h_theta * g_theta, u, p + h_u * g_u, value, g_theta, g_u

    _, theta, rho, u, p, value, g_theta, g_u = tf.while_loop(
        lambda i, *_: i < num_steps, body,
        (tf.constant(0, tf.int32), state.theta, rho, state.u, p, state.value,
         state.grad_theta, state.grad_u))
    return PMState(theta, rho - 0.5 * h_theta * g_theta, u, p - 0.5 * h_u * g_u,
                   value, g_theta, g_u)
