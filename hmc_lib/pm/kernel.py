"""Pseudo-marginal HMC and NUTS (Alenlöv, Doucet & Lindsten 2021; Chen 2025).

Both sample the extended target π(θ, u) ∝ p(θ) p̂(y | θ, u) N(u; 0, I), whose θ-marginal is the
exact posterior because p̂ is unbiased. The Hamiltonian is

    H(θ, ρ, u, p) = −log p(θ) − log p̂(y | θ, u) + ½(ρᵀρ/m + uᵀu + pᵀp),

integrated by the Strang splitting of `integrators.pm_trajectory` (kicks with the gradient of
log p̂, an exact drift of θ and an exact rotation of (u, p)); (ρ, p) are refreshed every
iteration. The state is the list `[theta [chains, theta_dim], u [chains, *u_shape]]`.
`grad_evals` counts evaluations of the gradient of log p̂ (each also yields log p̂).
"""

from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

from hmc_lib import _checks
from hmc_lib.pm.integrator import PMState, pm_trajectory
from hmc_lib.kernels import metropolis
from hmc_lib.kernels.nuts import Phase, check_tree_depth, nuts_transition
from hmc_lib.kernels.base import Kernel, check_mass, check_mass_against_state


class PMResults(NamedTuple):
    """Kernel results of `PMHMC` and `PMNUTS`; `[chains]` unless stated.

    target_log_prob: log p(θ) + log p̂(y | θ, u) at the current state.
    grad_theta `[chains, theta_dim]`, grad_u `[chains, *u_shape]`: its gradients.
    step_size; is_accepted; log_accept_ratio (PM-NUTS: log of the mean acceptance statistic);
    is_divergent; grad_evals (int32); tree_depth (int32; 0 for PM-HMC).
    """
    target_log_prob: tf.Tensor
    grad_theta: tf.Tensor
    grad_u: tf.Tensor
    step_size: tf.Tensor
    is_accepted: tf.Tensor
    log_accept_ratio: tf.Tensor
    is_divergent: tf.Tensor
    grad_evals: tf.Tensor
    tree_depth: tf.Tensor


def _sum_event(x):
    return tf.reduce_sum(x, axis=list(range(1, len(x.shape))))


def check_state(target, state):
    """`(theta, u)` of a pseudo-marginal state `[theta [chains, theta_dim], u [chains,
    *u_shape]]` for `target` (a `targets.pseudo_marginal` target), as tensors of theta's
    float dtype; a `ValueError` naming the part that has the wrong shape."""
    if not isinstance(state, (list, tuple)) or len(state) != 2:
        raise ValueError("`current_state` must be the list [theta [chains, theta_dim], "
                         f"u [chains, *u_shape]], got {type(state).__name__}")
    theta = _checks.floating(state[0], "current_state[0]")
    u = tf.convert_to_tensor(state[1], dtype=theta.dtype)
    t = target
    if theta.shape.rank != 2 or theta.shape[-1] != t.theta_dim:
        raise ValueError(f"`current_state[0]` (theta) must have shape [chains, {t.theta_dim}],"
                         f" got {theta.shape.as_list()}")
    if u.shape.rank != 1 + len(t.u_shape) or tuple(u.shape[1:]) != t.u_shape \
            or u.shape[0] != theta.shape[0]:
        raise ValueError(f"`current_state[1]` (u) must have shape [{theta.shape[0]}, "
                         f"{', '.join(map(str, t.u_shape))}], got {u.shape.as_list()}")
    return theta, u


class _PMBase(Kernel):
    """Shared parts: target checks, state checks, bootstrap, momenta and the energy."""

    trace_fields = ("tree_depth",)

    def __init__(self, target, step_size, mass, max_energy_error, use_manual_grad):
        for attr in ("theta_dim", "u_shape", "value_and_grad", "log_joint"):
            if not hasattr(target, attr):
                raise TypeError(f"`target` must be a PseudoMarginalTarget (lacks `{attr}`), got {target!r}")
        _checks.positive_float(step_size, "step_size")
        check_mass(mass, target.theta_dim)
        _checks.positive_float(max_energy_error, "max_energy_error")
        self._target = target
        self._vg = (target.value_and_grad if use_manual_grad
                    else target.autodiff_value_and_grad)

    @property
    def target(self):
        return self._target

    def bootstrap_results(self, init_state):
        theta, u = check_state(self._target, init_state)
        check_mass_against_state(self.mass, theta)
        value, g_theta, g_u = self._vg(theta, u)
        if tf.executing_eagerly() and not bool(tf.reduce_all(tf.math.is_finite(value))):
            raise ValueError("`target.log_joint` is not finite at `current_state`")
        return PMResults(
            target_log_prob=value, grad_theta=g_theta, grad_u=g_u,
            step_size=_checks.as_dtype(self.step_size, theta.dtype),
            is_accepted=tf.zeros_like(value, tf.bool), log_accept_ratio=tf.zeros_like(value),
            is_divergent=tf.zeros_like(value, tf.bool), grad_evals=tf.zeros_like(value, tf.int32),
            tree_depth=tf.zeros_like(value, tf.int32))

    def _start(self, current_state, seed):
        """Unpacks the state `[theta, u]` and draws fresh momenta (ρ ~ N(0, m I), p ~ N(0, I)).

        Returns `(theta, u, rho, p, seed)`, the last a second seed for the rest of the step."""
        theta, u = current_state
        momentum_seed, rest_seed = tfp.random.split_seed(tfp.random.sanitize_seed(seed))
        rho_seed, p_seed = tfp.random.split_seed(momentum_seed)
        mass = _checks.as_dtype(self.mass, theta.dtype)
        rho = tf.sqrt(mass) * tf.random.stateless_normal(tf.shape(theta), rho_seed, dtype=theta.dtype)
        p = tf.random.stateless_normal(tf.shape(u), p_seed, dtype=u.dtype)
        return theta, u, rho, p, rest_seed

    def energy(self, theta, rho, u, p, value):
        """H(θ, ρ, u, p) with `value` = log_joint(θ, u): `[chains]`."""
        mass = _checks.as_dtype(self.mass, theta.dtype)
        return (-value + 0.5 * tf.reduce_sum(tf.square(rho) / mass, -1)
                + 0.5 * _sum_event(tf.square(u)) + 0.5 * _sum_event(tf.square(p)))


class PMHMC(_PMBase):
    """Pseudo-marginal HMC: L Strang steps on the extended Hamiltonian, then Metropolis.

    Args:
      target: a `PseudoMarginalTarget`.
      step_size: h > 0 (scalar). num_leapfrog_steps: L >= 1. mass: the diagonal
        of θ's mass matrix M, > 0: a scalar, `[theta_dim]` or `[chains, theta_dim]`; ρ ~ N(0, M),
        kinetic energy ½ρᵀM⁻¹ρ (`hmc_lib.warmup` estimates it).
      max_energy_error: energy errors above this are divergences.
      use_manual_grad: use the target's hand-derived gradient where it has one (else autodiff).
    """

    def __init__(self, target, step_size, num_leapfrog_steps, mass=1.0,
                 max_energy_error=metropolis.MAX_ENERGY_ERROR, use_manual_grad=True, name="pmhmc"):
        super().__init__(target, step_size, mass, max_energy_error, use_manual_grad)
        _checks.positive_int(num_leapfrog_steps, "num_leapfrog_steps")
        self._parameters = dict(target=target, step_size=step_size,
                                num_leapfrog_steps=num_leapfrog_steps, mass=mass,
                                max_energy_error=max_energy_error,
                                use_manual_grad=use_manual_grad, name=name)

    def one_step(self, current_state, previous_kernel_results, seed=None):
        prev = previous_kernel_results
        theta, u, rho, p, accept_seed = self._start(current_state, seed)
        start = PMState(theta, rho, u, p, prev.target_log_prob, prev.grad_theta, prev.grad_u)
        end = pm_trajectory(start, self._vg, prev.step_size, self.num_leapfrog_steps,
                            _checks.as_dtype(self.mass, theta.dtype))
        h0 = self.energy(theta, rho, u, p, prev.target_log_prob)
        h1 = self.energy(end.theta, end.rho, end.u, end.p, end.value)
        decision = metropolis.decide(h0 - h1, accept_seed, [end.theta, end.u],
                                     self._parameters["max_energy_error"])
        new = metropolis.choose(decision.is_accepted,
                                (end.theta, end.u, end.value, end.grad_theta, end.grad_u),
                                (theta, u, prev.target_log_prob, prev.grad_theta, prev.grad_u))
        results = prev._replace(
            target_log_prob=new[2], grad_theta=new[3], grad_u=new[4],
            is_accepted=decision.is_accepted, log_accept_ratio=decision.log_accept_ratio,
            is_divergent=decision.is_divergent,
            grad_evals=tf.fill(tf.shape(new[2]), tf.constant(self.num_leapfrog_steps, tf.int32)))
        return [new[0], new[1]], results


class PMNUTS(_PMBase):
    """Pseudo-marginal NUTS: the library's multinomial NUTS on the extended space.

    The no-U-turn criterion is taken on z = (θ, u) with velocities (ρ/m, p), i.e.
    (z⁺ − z⁻)·v⁻ < 0 or (z⁺ − z⁻)·v⁺ < 0, plus Chen's stability cap abs((z⁺ − z⁻)·v) > `uturn_cap`.

    Args:
      target: a `PseudoMarginalTarget`.
      step_size: h > 0. max_tree_depth: at most 2^max_tree_depth − 1 steps (<= 16).
      mass: θ's diagonal mass matrix, as PMHMC. uturn_cap: 50,000 (Chen) or None.
      max_energy_error, use_manual_grad: as PMHMC.
    """

    def __init__(self, target, step_size, max_tree_depth=10, mass=1.0, uturn_cap=50000.0,
                 max_energy_error=metropolis.MAX_ENERGY_ERROR, use_manual_grad=True, name="pmnuts"):
        super().__init__(target, step_size, mass, max_energy_error, use_manual_grad)
        max_tree_depth = check_tree_depth(max_tree_depth)
        if uturn_cap is not None:
            _checks.positive_float(uturn_cap, "uturn_cap")
        self._parameters = dict(target=target, step_size=step_size, max_tree_depth=max_tree_depth,
                                mass=mass, uturn_cap=uturn_cap, max_energy_error=max_energy_error,
                                use_manual_grad=use_manual_grad, name=name)

    def one_step(self, current_state, previous_kernel_results, seed=None):
        prev = previous_kernel_results
        theta, u, rho, p, tree_seed = self._start(current_state, seed)
        mass = _checks.as_dtype(self.mass, theta.dtype)

        def step_fn(phase, eps):
            (th, uu), (r, pp) = phase.position, phase.momentum
            s = PMState(th, r, uu, pp, phase.value, *phase.grad)
            e = pm_trajectory(s, self._vg, eps, 1, mass)
            return Phase((e.theta, e.u), (e.rho, e.p), e.value, (e.grad_theta, e.grad_u))

        def energy_fn(phase):
            (th, uu), (r, pp) = phase.position, phase.momentum
            return self.energy(th, r, uu, pp, phase.value)

        initial = Phase((theta, u), (rho, p), prev.target_log_prob, (prev.grad_theta, prev.grad_u))
        cap = self._parameters["uturn_cap"]
        new, info = nuts_transition(
            initial, tree_seed, prev.step_size, step_fn, energy_fn, self.max_tree_depth,
            self._parameters["max_energy_error"], velocity_fn=lambda m: (m[0] / mass, m[1]),
            uturn_cap=None if cap is None else tf.cast(cap, theta.dtype))
        results = prev._replace(
            target_log_prob=new.value, grad_theta=new.grad[0], grad_u=new.grad[1],
            is_accepted=info.is_accepted, log_accept_ratio=info.log_accept_ratio,
            is_divergent=info.is_divergent, grad_evals=info.grad_evals,
            tree_depth=info.tree_depth)
        return [new.position[0], new.position[1]], results
