"""`L2HMC`: the learned proposal F·L of `Dynamics` + the shared Metropolis step."""

from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

from hmc_lib import _checks
from hmc_lib.integrators import value_and_grad
from hmc_lib.kernels import metropolis
from hmc_lib.kernels.base import Kernel
from hmc_lib.kernels.hmc import check_initial, unpack_target
from hmc_lib.l2hmc.dynamics import Dynamics


def target_value_and_grad(target_log_prob_fn):
    """`(x -> (log π(x), ∇log π(x)), dim or None)` for a callable or a `Target`.

    A `Target` with an analytic gradient uses it (cheaper, and twice differentiable for
    training); otherwise the gradient comes from autodiff.
    """
    log_prob_fn, dim = unpack_target(target_log_prob_fn)
    if getattr(target_log_prob_fn, "has_analytic_grad", False):
        grad_fn = target_log_prob_fn.grad_log_prob
        return (lambda x: (log_prob_fn(x), grad_fn(x))), dim
    return value_and_grad(log_prob_fn), dim


class L2HMCResults(NamedTuple):
    """Kernel results of `L2HMC`, each `[chains]` unless stated.

    target_log_prob, grad_target_log_prob (`[chains, dim]`): at the current state.
    step_size: the dynamics' learned ε (scalar, for information).
    is_accepted, log_accept_ratio, is_divergent: the last Metropolis test.
    log_det_jacobian: log|det J| of the last proposal; direction: its d (±1).
    grad_evals: int32, true-gradient evaluations of the last step (M: the gradient at the
    current state is carried in the results, one evaluation per leapfrog-like step).
    """
    target_log_prob: tf.Tensor
    grad_target_log_prob: tf.Tensor
    step_size: tf.Tensor
    is_accepted: tf.Tensor
    log_accept_ratio: tf.Tensor
    is_divergent: tf.Tensor
    grad_evals: tf.Tensor
    log_det_jacobian: tf.Tensor
    direction: tf.Tensor


class L2HMC(Kernel):
    """L2HMC (Levy, Hoffman, Sohl-Dickstein 2018) with trained `dynamics`, state `[chains, dim]`.

    Each step draws v ~ N(0, I) and d uniform on {−1, +1}, runs the M-step operator L in
    direction d (then flips d, which is resampled next step anyway), and accepts
    ξ' with probability min(1, exp(H(ξ) − H(ξ') + log|det J|)), H = −log π(x) + ½|v|².

    Args:
      target_log_prob_fn: `[chains, dim] -> [chains]`, or a `Target`.
      dynamics: a `Dynamics` (from `hmc_lib.l2hmc.train` or `load`).
      max_energy_error: larger energy errors count as divergences.
    """

    learned = True

    trace_fields = ("log_det_jacobian",)

    def __init__(self, target_log_prob_fn, dynamics, max_energy_error=metropolis.MAX_ENERGY_ERROR,
                 name="l2hmc"):
        self._value_and_grad, self._dim = target_value_and_grad(target_log_prob_fn)
        if not isinstance(dynamics, Dynamics):
            raise TypeError(f"`dynamics` must be an hmc_lib.l2hmc.Dynamics, got {type(dynamics).__name__}")
        if self._dim is not None and dynamics.dim != self._dim:
            raise ValueError(f"`dynamics` has dim {dynamics.dim} but the target has dim {self._dim}")
        _checks.positive_float(max_energy_error, "max_energy_error")
        self._dynamics = dynamics
        self._parameters = dict(target_log_prob_fn=target_log_prob_fn, dynamics=dynamics,
                                max_energy_error=max_energy_error, name=name)

    @property
    def dynamics(self):
        return self._dynamics

    @property
    def num_leapfrog_steps(self):
        return self._dynamics.num_steps

    def bootstrap_results(self, init_state):
        x = _checks.floating(init_state, "current_state")
        _checks.state_shape(x, self._dynamics.dim, "current_state")
        lp, grad = self._value_and_grad(x)
        x = check_initial(x, lp, self._dynamics.dim)
        zeros = tf.zeros_like(lp)
        return L2HMCResults(
            target_log_prob=lp, grad_target_log_prob=grad,
            step_size=tf.cast(self._dynamics.step_size, x.dtype),
            is_accepted=tf.zeros_like(lp, tf.bool), log_accept_ratio=zeros,
            is_divergent=tf.zeros_like(lp, tf.bool), grad_evals=tf.zeros_like(lp, tf.int32),
            log_det_jacobian=zeros, direction=tf.ones_like(lp))

    def one_step(self, current_state, previous_kernel_results, seed=None):
        x, prev = current_state, previous_kernel_results
        seed = tfp.random.sanitize_seed(seed)
        v_seed, d_seed, accept_seed = tfp.random.split_seed(seed, n=3)
        v0 = tf.random.stateless_normal(tf.shape(x), seed=v_seed, dtype=x.dtype)
        d = tf.where(tf.random.stateless_uniform(tf.shape(prev.target_log_prob), seed=d_seed) < 0.5,
                     tf.constant(-1.0, x.dtype), tf.constant(1.0, x.dtype))
        end = self._dynamics.trajectory(x, v0, d, self._value_and_grad,
                                        prev.target_log_prob, prev.grad_target_log_prob)
        log_accept_ratio = (end.value - prev.target_log_prob + metropolis.kinetic_energy(v0)
                            - metropolis.kinetic_energy(end.momentum) + end.log_det_jacobian)
        decision = metropolis.decide(log_accept_ratio, accept_seed, end.position,
                                     self._parameters["max_energy_error"])
        new_x, lp, grad = metropolis.choose(
            decision.is_accepted, (end.position, end.value, end.grad),
            (x, prev.target_log_prob, prev.grad_target_log_prob))
        results = prev._replace(
            target_log_prob=lp, grad_target_log_prob=grad, is_accepted=decision.is_accepted,
            log_accept_ratio=decision.log_accept_ratio, is_divergent=decision.is_divergent,
            grad_evals=tf.fill(tf.shape(lp), tf.constant(self._dynamics.num_steps, tf.int32)),
            log_det_jacobian=end.log_det_jacobian, direction=d)
        return new_x, results
