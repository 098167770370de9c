"""Hamiltonian Monte Carlo: leapfrog proposal + the shared Metropolis step."""

from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

from hmc_lib import _checks
from hmc_lib.integrators import LeapfrogState, leapfrog_trajectory, value_and_grad
from hmc_lib.kernels import metropolis
from hmc_lib.kernels.base import Kernel, check_mass, check_mass_against_state


class HMCResults(NamedTuple):
    """Kernel results of `HMC`; `[chains]` unless stated.

    target_log_prob, grad_target_log_prob (`[chains, dim]`): at the current state.
    step_size: the step size in use (read by TFP's step-size adaptation).
    is_accepted, log_accept_ratio, is_divergent: the last Metropolis test.
    grad_evals: int32, true-gradient evaluations spent by the last step.
    """
    target_log_prob: tf.Tensor
    grad_target_log_prob: tf.Tensor
    step_size: tf.Tensor
    is_accepted: tf.Tensor
    log_accept_ratio: tf.Tensor
    is_divergent: tf.Tensor
    grad_evals: tf.Tensor


def unpack_target(target_log_prob_fn):
    """Accepts a callable, a `Target`-like object (`log_prob` and `dim`: a `Target`, a
    `hmc_lib.Model`) or a TFP joint distribution (made a `Model`: flat, unconstrained);
    returns `(log_prob_fn, dim or None)`."""
    from hmc_lib.model import as_model
    model = as_model(target_log_prob_fn)
    if model is not None:
        return model.log_prob, model.dim
    if hasattr(target_log_prob_fn, "log_prob") and hasattr(target_log_prob_fn, "dim"):
        return target_log_prob_fn.log_prob, target_log_prob_fn.dim
    if not callable(target_log_prob_fn):
        raise TypeError(f"`target_log_prob_fn` must be callable, got {target_log_prob_fn!r}")
    return target_log_prob_fn, None


def check_initial(x, log_prob, dim, name="current_state", grad=None):
    """Validates a state `[chains, dim]`, its log-density `[chains]` and, if given, the
    gradient there `[chains, dim]` (eagerly, if it can): all finite."""
    x = _checks.floating(x, name)
    if x.shape.rank is not None and x.shape.rank < 1:
        raise ValueError(f"`{name}` must have shape [chains, dim], got a scalar")
    _checks.state_shape(x, dim, name)
    if log_prob.shape.rank is not None and x.shape.rank is not None \
            and log_prob.shape.rank != x.shape.rank - 1:
        raise ValueError(f"`target_log_prob_fn` must map [..., dim] to [...]: for `{name}` of "
                         f"shape {x.shape.as_list()} it returned {log_prob.shape.as_list()}")
    if tf.executing_eagerly() and not bool(tf.reduce_all(tf.math.is_finite(log_prob))):
        raise ValueError(f"`target_log_prob_fn` is not finite at `{name}` (chains "
                         f"{tf.where(~tf.math.is_finite(log_prob))[:, 0].numpy().tolist()})")
    if grad is not None and tf.executing_eagerly():
        bad = ~tf.reduce_all(tf.math.is_finite(grad), axis=-1)
        if bool(tf.reduce_any(bad)):
            raise ValueError(f"the gradient of `target_log_prob_fn` is not finite at `{name}` "
                             f"(chains {tf.where(bad)[:, 0].numpy().tolist()}), where the "
                             "log-density itself is finite: the dynamics cannot start there")
    return x


def draw_momentum(x, seed):
    """v ~ N(0, I) shaped like `x`, and the acceptance seed, split from `seed` exactly as
    `tfp.mcmc.HamiltonianMonteCarlo` splits it (so equal seeds give equal chains)."""
    seed = tfp.random.sanitize_seed(seed)
    proposal_seed, accept_seed = tfp.random.split_seed(seed)
    (momentum_seed,) = tfp.random.split_seed(tfp.random.sanitize_seed(proposal_seed), n=1)
    return tf.random.stateless_normal(tf.shape(x), seed=momentum_seed, dtype=x.dtype), accept_seed


def mass_leapfrog(state, value_and_grad_fn, step_size, num_steps, inverse_mass):
    """Leapfrog for H = −log π(x) + ½ pᵀM⁻¹p with diagonal M: as `leapfrog_trajectory`, but
    the drift is x ← x + ε M⁻¹p. `inverse_mass` broadcasts against `[chains, dim]`."""
    half = 0.5 * step_size
    momentum = state.momentum + half * state.grad

    def body(i, x, p, value, grad):
        x = x + step_size * (inverse_mass * p)
        value, grad = value_and_grad_fn(x)
        return i + 1, x, p + step_size * grad, value, grad

    _, x, p, value, grad = tf.while_loop(
        cond=lambda i, *_: i < num_steps, body=body,
        loop_vars=(tf.constant(0, tf.int32), state.position, momentum, state.value, state.grad))
    return LeapfrogState(x, p - half * grad, value, grad)


def mass_tensors(mass, dtype):
    """`(M, M⁻¹)` as tensors of `dtype` (converted without a float32 detour)."""
    m = _checks.as_dtype(mass, dtype)
    return m, 1.0 / m


def log_accept_ratio(lp_new, lp_old, v0, v1):
    """H(x, v0) − H(x', v1) for H = −log π + ½|v|², summed in TFP's order: `[chains]`."""
    correction = 0.5 * tf.add_n([tf.reduce_sum(v0**2, -1), -tf.reduce_sum(v1**2, -1)])
    return tf.add_n([lp_new, -lp_old, correction])


class HMC(Kernel):
    """HMC with a diagonal mass matrix (identity by default), a fixed number of leapfrog steps,
    state `[chains, dim]`.

    The random numbers are drawn exactly as `tfp.mcmc.HamiltonianMonteCarlo` draws them (the
    seed splits into a momentum seed and an acceptance seed), so the two kernels give the
    same chain from the same seed.

    Args:
      target_log_prob_fn: `[chains, dim] -> [chains]`, or a `Target`.
      step_size: ε > 0 (scalar, or `[dim]` per coordinate).
      num_leapfrog_steps: L >= 1.
      max_energy_error: energy errors above this count as divergences.
      mass: the diagonal of the mass matrix M, `[dim]` (or `[chains, dim]` per chain, or a
        scalar), every element > 0; momentum p ~ N(0, M), kinetic energy ½ pᵀM⁻¹p. `None`
        (default): M = I, and then the chain is bit-identical to TFP's HMC.
    """

    _input_parameters = ("step_size", "mass")

    def __init__(self, target_log_prob_fn, step_size, num_leapfrog_steps,
                 max_energy_error=metropolis.MAX_ENERGY_ERROR, name="hmc", mass=None):
        self._log_prob_fn, self._dim = unpack_target(target_log_prob_fn)
        _checks.positive_float(step_size, "step_size")
        _checks.positive_int(num_leapfrog_steps, "num_leapfrog_steps")
        _checks.positive_float(max_energy_error, "max_energy_error")
        check_mass(mass, self._dim)
        self._parameters = dict(target_log_prob_fn=target_log_prob_fn, step_size=step_size,
                                num_leapfrog_steps=num_leapfrog_steps,
                                max_energy_error=max_energy_error, name=name, mass=mass)

    def _value_and_grad(self, x):
        return value_and_grad(self._log_prob_fn)(x)

    # Subclasses change the trajectory (and what it records) by overriding these three.
    _results_type = HMCResults

    def _integrate(self, start, step_size):
        """Runs the trajectory from `start`; returns `(end LeapfrogState, extra result fields)`."""
        return leapfrog_trajectory(start, self._value_and_grad, step_size,
                                   self.num_leapfrog_steps), {}

    def _initial_extras(self, x):
        return {}

    def bootstrap_results(self, init_state):
        x = _checks.floating(init_state, "current_state")
        _checks.state_shape(x, self._dim, "current_state")
        lp, grad = self._value_and_grad(x)
        x = check_initial(x, lp, self._dim, grad=grad)
        check_mass_against_state(self._parameters.get("mass"), x)
        return self._results_type(
            target_log_prob=lp, grad_target_log_prob=grad,
            step_size=_checks.as_dtype(self.step_size, x.dtype),
            is_accepted=tf.zeros_like(lp, tf.bool), log_accept_ratio=tf.zeros_like(lp),
            is_divergent=tf.zeros_like(lp, tf.bool),
            grad_evals=tf.zeros_like(lp, tf.int32), **self._initial_extras(x))

    def one_step(self, current_state, previous_kernel_results, seed=None):
        x, prev = current_state, previous_kernel_results
        v0, accept_seed = draw_momentum(x, seed)
        mass = self._parameters.get("mass")
        if mass is None:
            start = LeapfrogState(x, v0, prev.target_log_prob, prev.grad_target_log_prob)
            end, extras = self._integrate(start, prev.step_size)
            lar = log_accept_ratio(end.value, prev.target_log_prob, v0, end.momentum)
        else:
            m, m_inv = mass_tensors(mass, x.dtype)
            p0 = tf.sqrt(m) * v0
            start = LeapfrogState(x, p0, prev.target_log_prob, prev.grad_target_log_prob)
            end = mass_leapfrog(start, self._value_and_grad, prev.step_size,
                                self.num_leapfrog_steps, m_inv)
            extras = {}
            kinetic = lambda p: 0.5 * tf.reduce_sum(p * p * m_inv, -1)
            lar = tf.add_n([end.value, -prev.target_log_prob, kinetic(p0), -kinetic(end.momentum)])
        decision = metropolis.decide(lar, accept_seed, end.position,
                                     self._parameters["max_energy_error"])
        new_x, lp, grad = metropolis.choose(
            decision.is_accepted, (end.position, end.value, end.grad),
            (x, prev.target_log_prob, prev.grad_target_log_prob))
        results = prev._replace(
            target_log_prob=lp, grad_target_log_prob=grad, is_accepted=decision.is_accepted,
            log_accept_ratio=decision.log_accept_ratio, is_divergent=decision.is_divergent,
            grad_evals=tf.fill(tf.shape(lp), tf.constant(self.num_leapfrog_steps, tf.int32)),
            **extras)
        return new_x, results
