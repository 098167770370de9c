"""NNgHMC (Li, Holbrook, Shahbaba & Baldi 2019): HMC whose leapfrog kicks with a learned field.

`NNgHMC` runs the leapfrog integrator with any vector field `grad_fn` (a network trained on
∇log π, or anything else) and then applies the shared Metropolis test with the **true**
Hamiltonian H = −log π + ½|v|². Leapfrog with any field is reversible and volume preserving,
so the chain leaves π invariant whatever `grad_fn` is; a poor field only lowers acceptance.
Cost per step: L evaluations of `grad_fn`, one of log π, no true gradient.

`RecordingHMC` is standard HMC that also returns every leapfrog point of its trajectory with
the true gradient there: the training pairs (q, ∇log π(q)) of the paper's Sec. 3, taken from
every leapfrog step, accepted or not.

`swap_prior` re-uses a field trained under one prior for another (the paper's Sec. 4.2).
"""

from typing import NamedTuple

import tensorflow as tf

from hmc_lib import _checks
from hmc_lib.integrators import LeapfrogState, leapfrog_trajectory, value_and_grad
from hmc_lib.kernels import metropolis
from hmc_lib.kernels.hmc import HMC, check_initial, draw_momentum, log_accept_ratio, unpack_target
from hmc_lib.kernels.base import Kernel


class NNgHMCResults(NamedTuple):
    """Kernel results of `NNgHMC`; `[chains]` unless stated.

    target_log_prob: log π at the current state (true log-density).
    field: `grad_fn` at the current state, `[chains, dim]` (not the true gradient).
    step_size: ε in use (read by TFP's step-size adaptation).
    is_accepted, log_accept_ratio, is_divergent: the last Metropolis test.
    grad_evals: int32, true-gradient evaluations of the last step (always 0).
    potential_evals: int32, true log π evaluations of the last step (1: the Metropolis test).
    """
    target_log_prob: tf.Tensor
    field: tf.Tensor
    step_size: tf.Tensor
    is_accepted: tf.Tensor
    log_accept_ratio: tf.Tensor
    is_divergent: tf.Tensor
    grad_evals: tf.Tensor
    potential_evals: tf.Tensor


def _check_field(field, x):
    if field.shape.is_fully_defined() and x.shape.is_fully_defined() and field.shape != x.shape:
        raise ValueError(f"`grad_fn` must map [chains, dim] to [chains, dim]: for a state of shape "
                         f"{x.shape.as_list()} it returned {field.shape.as_list()}")
    if field.dtype != x.dtype:
        raise TypeError(f"`grad_fn` returned dtype {field.dtype.name} for a state of dtype "
                        f"{x.dtype.name}")


class NNgHMC(Kernel):
    """HMC with a surrogate gradient field in the leapfrog and the true H in the Metropolis test.

    Args:
      target_log_prob_fn: `[chains, dim] -> [chains]` (true log π), or a `Target`.
      grad_fn: any callable `[chains, dim] -> [chains, dim]` approximating ∇log π (= −∇U),
        e.g. a `hmc_lib.nnghmc.GradientNet`; it is traced into the compiled sampler.
      step_size: ε > 0 (scalar or `[dim]`).
      num_leapfrog_steps: L >= 1.
      max_energy_error: energy errors above this count as divergences.
    The random numbers are drawn as in `HMC`, so with `grad_fn` = the true gradient the two
    kernels give the same chain from the same seed (up to float rounding).
    """

    learned = True

    #: extra per-step result fields `hmc_lib.sample` traces
    trace_fields = ("potential_evals",)

    def __init__(self, target_log_prob_fn, grad_fn, step_size, num_leapfrog_steps,
                 max_energy_error=metropolis.MAX_ENERGY_ERROR, name="nnghmc"):
        self._log_prob_fn, self._dim = unpack_target(target_log_prob_fn)
        if not callable(grad_fn):
            raise TypeError(f"`grad_fn` must be callable, got {grad_fn!r}")
        _checks.positive_float(step_size, "step_size")
        _checks.positive_int(num_leapfrog_steps, "num_leapfrog_steps")
        _checks.positive_float(max_energy_error, "max_energy_error")
        self._grad_fn = grad_fn
        self._parameters = dict(target_log_prob_fn=target_log_prob_fn, grad_fn=grad_fn,
                                step_size=step_size, num_leapfrog_steps=num_leapfrog_steps,
                                max_energy_error=max_energy_error, name=name)


    @property
    def grad_fn(self):
        return self._grad_fn

    def bootstrap_results(self, init_state):
        x = _checks.floating(init_state, "current_state")
        _checks.state_shape(x, self._dim, "current_state")
        lp = self._log_prob_fn(x)
        x = check_initial(x, lp, self._dim)
        field = tf.convert_to_tensor(self._grad_fn(x))
        _check_field(field, x)
        zeros = tf.zeros_like(lp)
        return NNgHMCResults(
            target_log_prob=lp, field=field, step_size=_checks.as_dtype(self.step_size, x.dtype),
            is_accepted=tf.zeros_like(lp, tf.bool), log_accept_ratio=zeros,
            is_divergent=tf.zeros_like(lp, tf.bool), grad_evals=tf.zeros_like(lp, tf.int32),
            potential_evals=tf.zeros_like(lp, tf.int32))

    def one_step(self, current_state, previous_kernel_results, seed=None):
        x, prev = current_state, previous_kernel_results
        v0, accept_seed = draw_momentum(x, seed)
        dummy = tf.zeros_like(prev.target_log_prob)
        start = LeapfrogState(x, v0, dummy, prev.field)
        end = leapfrog_trajectory(start, lambda y: (dummy, self._grad_fn(y)), prev.step_size,
                                  self.num_leapfrog_steps)
        lp_new = self._log_prob_fn(end.position)   # the one true evaluation of this step
        decision = metropolis.decide(log_accept_ratio(lp_new, prev.target_log_prob, v0, end.momentum),
                                     accept_seed, end.position, self._parameters["max_energy_error"])
        new_x, lp, field = metropolis.choose(decision.is_accepted, (end.position, lp_new, end.grad),
                                             (x, prev.target_log_prob, prev.field))
        ones = tf.ones_like(lp, tf.int32)
        return new_x, prev._replace(
            target_log_prob=lp, field=field, is_accepted=decision.is_accepted,
            log_accept_ratio=decision.log_accept_ratio, is_divergent=decision.is_divergent,
            grad_evals=0 * ones, potential_evals=ones)


class RecordingHMCResults(NamedTuple):
    """`HMCResults` fields plus the trajectory of the last step.

    trajectory_positions, trajectory_grads: `[chains, L, dim]`, the L leapfrog positions of
    the last proposal (accepted or not) and the true ∇log π at each.
    """
    target_log_prob: tf.Tensor
    grad_target_log_prob: tf.Tensor
    step_size: tf.Tensor
    is_accepted: tf.Tensor
    log_accept_ratio: tf.Tensor
    is_divergent: tf.Tensor
    grad_evals: tf.Tensor
    trajectory_positions: tf.Tensor
    trajectory_grads: tf.Tensor


def recording_trajectory(state, value_and_grad_fn, step_size, num_steps):
    """`leapfrog_trajectory` one step at a time, keeping every step's `(position, grad)`.

    Returns `(final LeapfrogState, positions [..., L, dim], grads [..., L, dim])`. The final
    state equals `leapfrog_trajectory`'s up to float rounding (half kicks are not merged).
    """
    arrays = [tf.TensorArray(state.position.dtype, size=num_steps) for _ in range(2)]

    def body(i, s, pos_ta, grad_ta):
        s = leapfrog_trajectory(s, value_and_grad_fn, step_size, 1)
        return i + 1, s, pos_ta.write(i, s.position), grad_ta.write(i, s.grad)

    _, final, pos_ta, grad_ta = tf.while_loop(lambda i, *_: i < num_steps, body,
                                              (tf.constant(0), state, *arrays))
    move = lambda t: tf.experimental.numpy.moveaxis(t, 0, -2)
    return final, move(pos_ta.stack()), move(grad_ta.stack())


class RecordingHMC(HMC):
    """Standard HMC (same random numbers as `HMC`) that records every leapfrog point.

    Each step's results carry the L positions of its trajectory and the true gradient of
    log π at each (`trajectory_positions`, `trajectory_grads`, `[chains, L, dim]`), listed in
    `trace_fields` so that `hmc_lib.sample` traces them: the training data of NNgHMC.
    Args as `HMC`; a `Target` with an analytic gradient is differentiated analytically.
    """

    trace_fields = ("trajectory_positions", "trajectory_grads")
    _results_type = RecordingHMCResults

    def __init__(self, target_log_prob_fn, step_size, num_leapfrog_steps,
                 max_energy_error=metropolis.MAX_ENERGY_ERROR, name="recording_hmc"):
        super().__init__(target_log_prob_fn, step_size, num_leapfrog_steps,
                         max_energy_error=max_energy_error, name=name)
        self._grad = (target_log_prob_fn.grad_log_prob
                      if getattr(target_log_prob_fn, "has_analytic_grad", False) else None)

    def _value_and_grad(self, x):
        if self._grad is not None:       # a Target's analytic gradient
            return self._log_prob_fn(x), self._grad(x)
        return super()._value_and_grad(x)

    def _integrate(self, start, step_size):
        end, positions, grads = recording_trajectory(start, self._value_and_grad, step_size,
                                                     self.num_leapfrog_steps)
        return end, dict(trajectory_positions=positions, trajectory_grads=grads)

    def _initial_extras(self, x):
        shape = tf.concat([tf.shape(x)[:-1], [self.num_leapfrog_steps], tf.shape(x)[-1:]], 0)
        traj = tf.zeros(shape, x.dtype)
        return dict(trajectory_positions=traj, trajectory_grads=traj)


def swap_prior(grad_fn, old_log_prior_fn, new_log_prior_fn):
    """A field for the posterior under a new prior, from one learned under the old prior.

    log π_new = log π_old − log p_old + log p_new (+ const), hence
    ∇log π_new(q) ≈ grad_fn(q) − ∇log p_old(q) + ∇log p_new(q)   (the paper's Sec. 4.2; in
    potential-energy terms ∇U_new = ∇̂U + ∇log p_old − ∇log p_new). The prior gradients are
    taken by autodiff. No retraining; NNgHMC stays exact whatever the quality of the result.

    Args:
      grad_fn: `[..., dim] -> [..., dim]`, the field learned for π_old.
      old_log_prior_fn, new_log_prior_fn: `[..., dim] -> [...]` log prior densities.
    Returns:
      The new field, a callable `[..., dim] -> [..., dim]`.
    """
    for f, name in ((grad_fn, "grad_fn"), (old_log_prior_fn, "old_log_prior_fn"),
                    (new_log_prior_fn, "new_log_prior_fn")):
        if not callable(f):
            raise TypeError(f"`{name}` must be callable, got {f!r}")
    old_grad = value_and_grad(old_log_prior_fn)
    new_grad = value_and_grad(new_log_prior_fn)

    def swapped(q):
        q = tf.convert_to_tensor(q)
        return grad_fn(q) - old_grad(q)[1] + new_grad(q)[1]

    return swapped


__all__ = ["NNgHMC", "NNgHMCResults", "RecordingHMC", "RecordingHMCResults",
           "recording_trajectory", "swap_prior", "HMCResults"]
