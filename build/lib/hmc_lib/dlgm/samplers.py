"""MCMC on the latent posterior p(z | x) ∝ p(z) p(x | z), one chain per data point.

- `hmc_transition`: one HMC transition (leapfrog + the shared Metropolis step), the
  "VAE + HMC" refinement (Hoffman 2017);
- `ConditionalDynamics`: L2HMC's learned operator (`hmc_lib.l2hmc.Dynamics`) whose x- and
  v-networks also read the data point x: x enters beside the step's time encoding, so the
  same networks serve every data point's posterior (Levy et al. 2018, Sec. 5.2);
- `l2hmc_transition`: one L2HMC transition with it.

Shapes: z `[B, K]`, x `[B, D]`; `log_joint_fn(x, z) -> [B]`. Both transitions are exact
for any step size and any network weights: the tests check invariance of the analytic
posterior of `model.LinearGaussian`.
"""

from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from hmc_lib import integrators
from hmc_lib.kernels import metropolis
from hmc_lib.l2hmc import Dynamics
from hmc_lib.l2hmc.loss import acceptance_probability


class Transition(NamedTuple):
    """One transition, each `[B]` or `[B, K]`.

    position, value, grad: the new state with log p(x, z) and its z-gradient;
    proposal: the proposed z; accept_prob: min(1, exp(log ratio)) (0 if divergent);
    is_accepted: bool.
    """
    position: Any
    value: Any
    grad: Any
    proposal: Any
    accept_prob: Any
    is_accepted: Any


def posterior_value_and_grad(log_joint_fn, x):
    """`z -> (log p(x, z), ∇_z log p(x, z))` for a fixed batch `x`."""
    return integrators.value_and_grad(lambda z: log_joint_fn(x, z))


def _finish(z, value, grad, end_z, end_value, end_grad, log_accept_ratio, seed):
    decision = metropolis.decide(log_accept_ratio, seed, end_z)
    new = metropolis.choose(decision.is_accepted, (end_z, end_value, end_grad), (z, value, grad))
    return Transition(*new, end_z, acceptance_probability(decision.log_accept_ratio),
                      decision.is_accepted)


def hmc_transition(log_joint_fn, x, z, step_size, num_leapfrog_steps, seed,
                   value=None, grad=None):
    """One HMC transition per chain; `step_size` scalar or `[B, 1]`. Returns a `Transition`."""
    fn = posterior_value_and_grad(log_joint_fn, x)
    if value is None or grad is None:
        value, grad = fn(z)
    v_seed, a_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    v = tf.random.stateless_normal(tf.shape(z), seed=v_seed, dtype=z.dtype)
    end = integrators.leapfrog_trajectory(integrators.LeapfrogState(z, v, value, grad), fn,
                                          tf.cast(step_size, z.dtype), num_leapfrog_steps)
    lar = (end.value - value + metropolis.kinetic_energy(v)
           - metropolis.kinetic_energy(end.momentum))
    return _finish(z, value, grad, end.position, end.value, end.grad, lar, a_seed)


class ConditionalDynamics(Dynamics):
    """L2HMC dynamics on a K-dim latent whose networks also take the data point `[B, D]`.

    The time encoding (cos 2πt/M, sin 2πt/M) that each network embeds is extended by the
    data point, so the networks read (a, b, t, x); everything else (masks, log ε, the exact
    inverse and log-Jacobian) is `hmc_lib.l2hmc.Dynamics` unchanged, and because x is fixed
    during a trajectory, the map is still invertible with the same Jacobian.

    Args: latent_dim K, data_dim D, and `Dynamics`' num_steps, step_size, hidden_units, seed.
    """

    def __init__(self, latent_dim, data_dim, num_steps=5, step_size=0.1,
                 hidden_units=(64, 64), seed=0, name="conditional_l2hmc"):
        super().__init__(latent_dim, num_steps=num_steps, step_size=step_size,
                         hidden_units=hidden_units, seed=seed, name=name)
        self.data_dim = int(data_dim)
        # masks alternate between two fixed halves, the same for every seed (so that models
        # of different seeds share one compiled training step)
        half = np.zeros(self.dim)
        half[: self.dim // 2] = 1.0
        self.masks = np.stack([half if t % 2 == 0 else 1.0 - half
                               for t in range(self.num_steps)])
        rng = np.random.default_rng([int(seed), 5])
        h0 = self.x_net.hidden_units[0]
        for net in (self.x_net, self.v_net):
            w = rng.normal(0.0, np.sqrt(2.0 / 3 / (2 + self.data_dim)), (2 + self.data_dim, h0))
            net.embed_t = tf.Variable(w, dtype=tf.float32, name="embed_t_and_data")
        self._context = None

    def copy(self, dtype=None):
        raise NotImplementedError("ConditionalDynamics.copy is not supported")

    def _time(self, t):
        time = super()._time(t)
        if self._context is None:
            raise ValueError("ConditionalDynamics needs `context` (the data points)")
        return tf.concat([time, tf.cast(self._context, time.dtype)], -1)

    def trajectory(self, position, momentum, direction, value_and_grad_fn, value=None,
                   grad=None, context=None):
        """`Dynamics.trajectory` with `context` `[B, D]`, the data point of each chain."""
        if context is None:
            raise ValueError("`context` (the data points, [B, D]) is required")
        context = tf.convert_to_tensor(context)
        if context.shape.rank != 2 or context.shape[-1] != self.data_dim:
            raise ValueError(f"`context` must have shape [B, {self.data_dim}], "
                             f"got {context.shape.as_list()}")
        # the networks read the context through `_time` while the loop is built
        self._context = context
        try:
            return super().trajectory(position, momentum, direction, value_and_grad_fn,
                                      value, grad)
        finally:
            self._context = None


def l2hmc_transition(dynamics, log_joint_fn, x, z, seed, value=None, grad=None):
    """One L2HMC transition per chain (v ~ N(0, I), d uniform ±1, Metropolis test).

    Returns a `Transition`; `accept_prob` is differentiable w.r.t. the dynamics' weights
    (the training loss uses it).
    """
    fn = posterior_value_and_grad(log_joint_fn, x)
    if value is None or grad is None:
        value, grad = fn(z)
    v_seed, d_seed, a_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    v = tf.random.stateless_normal(tf.shape(z), seed=v_seed, dtype=z.dtype)
    d = tf.where(tf.random.stateless_uniform(tf.shape(value), seed=d_seed) < 0.5,
                 tf.constant(-1.0, z.dtype), tf.constant(1.0, z.dtype))
    end = dynamics.trajectory(z, v, d, fn, value, grad, context=x)
    lar = (end.value - value + metropolis.kinetic_energy(v)
           - metropolis.kinetic_energy(end.momentum) + end.log_det_jacobian)
    return _finish(z, value, grad, end.position, end.value, end.grad, lar, a_seed)
