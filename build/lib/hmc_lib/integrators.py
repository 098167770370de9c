"""Integrators: pure functions over tensors, reused by every kernel.

Conventions: position and momentum have shape `[..., dim]` (any leading batch shape, e.g.
`[chains]`); `step_size` is a scalar or broadcasts against `[..., dim]`; the dynamics are
those of H(x, v) = -log π(x) + ½ vᵀv, written with the gradient of **log π** (so a kick is
`v + ε/2 ∇log π(x)`). Works for float32 and float64.
"""

from typing import Any, NamedTuple

import tensorflow as tf

from hmc_lib import _checks


class LeapfrogState(NamedTuple):
    """A point of a leapfrog trajectory.

    position, momentum: `[..., dim]`; value: whatever `value_and_grad_fn` returns first at
    `position` (the log-density for HMC); grad: the vector field at `position`, `[..., dim]`.
    """
    position: Any
    momentum: Any
    value: Any
    grad: Any


def value_and_grad(fn, name="target_log_prob_fn"):
    """Wraps `fn: [..., dim] -> [...]` into `x -> (fn(x), ∇fn(x))` by autodiff. Raises
    `ValueError` (naming `name` and the likely causes) when `fn` has no gradient."""
    def value_and_grad_fn(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = fn(x)
        return value, _checks.gradient(tape.gradient(value, x), name, value)
    return value_and_grad_fn


def leapfrog_trajectory(state, value_and_grad_fn, step_size, num_steps):
    """Runs `num_steps` leapfrog steps from `state` (a `LeapfrogState`).

    `value_and_grad_fn(x) -> (value, field)`: the field drives the kicks (the true gradient of
    log π, a network, ...) and `value` rides along (e.g. log π, so that a kernel gets it at
    the end of the trajectory for free). `state.grad` must be the field at `state.position`.
    The first half kick and the last are merged with the full ones in between, as in TFP's
    integrator: one field evaluation per step. Returns the final `LeapfrogState`.
    """
    half = 0.5 * step_size
    momentum = state.momentum + half * state.grad

    def body(i, x, v, value, grad):
        x = x + step_size * v
        value, grad = value_and_grad_fn(x)
        v = v + step_size * grad
        return i + 1, x, v, value, grad

    _, x, v, value, grad = tf.while_loop(
        cond=lambda i, *_: i < num_steps,
        body=body,
        loop_vars=(tf.constant(0, tf.int32), state.position, momentum, state.value, state.grad))
    return LeapfrogState(x, v - half * grad, value, grad)


def leapfrog(position, momentum, grad_log_prob_fn, step_size, num_steps):
    """Störmer–Verlet: `num_steps` of v ← v + ε/2 g(x); x ← x + ε v; v ← v + ε/2 g(x).

    Args:
      position, momentum: `[..., dim]` float tensors of the same shape and dtype.
      grad_log_prob_fn: any vector field `[..., dim] -> [..., dim]` (∇log π, a network, ...).
      step_size: ε > 0, scalar or broadcastable to `[..., dim]`.
      num_steps: L >= 1.
    Returns:
      `(position, momentum)` after L steps. The map is reversible and volume preserving for
      any field `g` (it is a composition of shears).
    """
    _checks.positive_float(step_size, "step_size")
    _checks.positive_int(num_steps, "num_steps")
    position = _checks.floating(position, "position")
    momentum = tf.convert_to_tensor(momentum, dtype=position.dtype)
    if position.shape.is_fully_defined() and momentum.shape.is_fully_defined() \
            and position.shape != momentum.shape:
        raise ValueError(f"`momentum` must have the shape of `position` {position.shape.as_list()},"
                         f" got {momentum.shape.as_list()}")
    step_size = _checks.as_dtype(step_size, position.dtype)
    grad = grad_log_prob_fn(position)
    state = LeapfrogState(position, momentum, tf.zeros([], position.dtype), grad)
    final = leapfrog_trajectory(
        state, lambda x: (tf.zeros([], x.dtype), grad_log_prob_fn(x)), step_size, num_steps)
    return final.position, final.momentum


def euler(position, momentum, grad_log_prob_fn, step_size, num_steps):
    """Explicit Euler: x ← x + ε v, v ← v + ε g(x_old). Shown for contrast only: it neither
    preserves volume nor is reversible, and its energy error grows like O(ε).
    Same arguments and returns as `leapfrog`."""
    _checks.positive_float(step_size, "step_size")
    _checks.positive_int(num_steps, "num_steps")
    x = _checks.floating(position, "position")
    v = tf.convert_to_tensor(momentum, dtype=x.dtype)
    for _ in range(int(num_steps)):
        x, v = x + step_size * v, v + step_size * grad_log_prob_fn(x)
    return x, v


def __getattr__(name):
    # The pseudo-marginal integrator lives with its method in `hmc_lib.pm.integrator`; its
    # names stay importable from here, where `../shared/API.md` documents `pm_strang`.
    if name in ("pm_strang", "pm_trajectory", "pm_drift_rotate", "PMState"):
        from hmc_lib.pm import integrator
        return getattr(integrator, name)
    raise AttributeError(f"module 'hmc_lib.integrators' has no attribute {name!r}")
