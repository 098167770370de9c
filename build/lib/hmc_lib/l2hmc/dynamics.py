"""L2HMC's learned leapfrog-like operator on the augmented state ξ = (x, v, d).

One step t of direction d = +1 (Levy et al. 2018, eqs. 2-4; ε the step size, m_t a fixed
binary mask with half the coordinates, m̄_t = 1 − m_t, g = ∇log π = −∇U):

    v  ← v ⊙ exp(ε/2 S_v(ζ₁)) + ε/2 (g(x) ⊙ exp(ε Q_v(ζ₁)) − T_v(ζ₁)),   ζ₁ = (x, g(x), t)
    x  ← m̄ ⊙ x + m ⊙ [x ⊙ exp(ε S_x(ζ₂)) + ε (v ⊙ exp(ε Q_x(ζ₂)) + T_x(ζ₂))],  ζ₂ = (m̄ ⊙ x, v, t)
    x  ← m ⊙ x + m̄ ⊙ [x ⊙ exp(ε S_x(ζ₃)) + ε (v ⊙ exp(ε Q_x(ζ₃)) + T_x(ζ₃))],  ζ₃ = (m ⊙ x, v, t)
    v  ← the first line again at the new x.

Each sub-update changes one block of variables by an elementwise affine map whose
coefficients depend only on the other block, so it is invertible in closed form and its
Jacobian is triangular: log|det| = Σ ε/2 S_v for a v-update, Σ m ⊙ ε S_x for an x-update.
Direction d = −1 applies the inverses in reverse order, with the step index running M−1 … 0,
so it is the exact inverse of d = +1 (log-Jacobian negated). With S = Q = T = 0 a step is one
leapfrog step. The time t enters the networks as (cos 2πt/M, sin 2πt/M).

Shapes: x, v `[chains, dim]`; d `[chains]` (±1, any dtype); everything float32 or float64.
"""

import json
import math
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from hmc_lib import _checks
from hmc_lib.l2hmc.networks import Network


class Trajectory(NamedTuple):
    """End of an L2HMC trajectory (before the flip of d).

    position, momentum: `[chains, dim]`; value, grad: log π and ∇log π at `position`;
    log_det_jacobian: `[chains]`, log|det ∂(x', v')/∂(x, v)| of the whole M-step map.
    """
    position: Any
    momentum: Any
    value: Any
    grad: Any
    log_det_jacobian: Any


def flip(direction):
    """The momentum-direction flip F: d → −d (makes F·L an involution)."""
    return -direction


def _broadcast_direction(direction, x):
    d = tf.convert_to_tensor(direction)
    d = tf.cast(d, x.dtype) if not d.dtype.is_bool else tf.where(d, 1.0, -1.0)
    d = tf.cast(d, x.dtype)
    return tf.broadcast_to(d, tf.shape(x)[:-1])


class Dynamics(tf.Module):
    """Trainable L2HMC dynamics: step size (stored as log ε), x-network, v-network, masks.

    Args:
      dim: dimension of x.
      num_steps: M, leapfrog-like steps per trajectory (>= 1).
      step_size: initial ε > 0.
      hidden_units: hidden layer sizes of both networks (paper: (10, 10), (100, 100) for the
        50-d ICG).
      seed: int; fixes the masks (a random half of the coordinates per step) and the initial
        hidden weights.
      dtype: dtype of the variables (float32 for training; calls cast to the input dtype).
      train_step_size: whether ε is among `trainable_variables`.
    """

    def __init__(self, dim, num_steps=10, step_size=0.1, hidden_units=(10, 10), seed=0,
                 dtype=tf.float32, train_step_size=True, name="l2hmc_dynamics"):
        super().__init__(name=name)
        _checks.positive_int(dim, "dim")
        _checks.positive_int(num_steps, "num_steps")
        _checks.positive_float(step_size, "step_size")
        if np.ndim(step_size) != 0:
            raise ValueError(f"`step_size` must be a scalar, got shape {np.shape(step_size)}")
        self.dim, self.num_steps = int(dim), int(num_steps)
        config = dict(dim=self.dim, num_steps=self.num_steps, step_size=float(step_size),
                           hidden_units=[int(h) for h in (hidden_units if isinstance(
                               hidden_units, (list, tuple)) else (hidden_units,))],
                           seed=int(seed), train_step_size=bool(train_step_size),
                           dtype=tf.as_dtype(dtype).name)
        # kept as JSON text: tf.Module would wrap a dict attribute in a trackable wrapper
        self._config_json = json.dumps(config)
        rng = np.random.default_rng([int(seed), 1])
        masks = np.zeros((self.num_steps, self.dim))
        for t in range(self.num_steps):
            masks[t, rng.permutation(self.dim)[: self.dim // 2]] = 1.0
        # a non-trainable variable, not a constant, so that one compiled graph serves the
        # dynamics of every seed (their weights and masks copied in: `hmc_lib._reuse`)
        self._mask_values = tf.Variable(masks, dtype=dtype, trainable=False, name="masks")
        self.log_step_size = tf.Variable(math.log(step_size), dtype=dtype,
                                         trainable=bool(train_step_size), name="log_step_size")
        self.x_net = Network(dim, hidden_units, seed=[int(seed), 2], dtype=dtype, name="x_net")
        self.v_net = Network(dim, hidden_units, seed=[int(seed), 3], dtype=dtype, name="v_net")

    @property
    def masks(self):
        """numpy `[M, dim]`: 1 where step t updates a coordinate first (not trained)."""
        return self._mask_values.numpy().astype(np.float64)

    @masks.setter
    def masks(self, value):
        value = np.asarray(value, np.float64)
        if value.shape != (self.num_steps, self.dim):
            raise ValueError(f"`masks` must have shape [{self.num_steps}, {self.dim}], got "
                             f"{list(value.shape)}")
        self._mask_values.assign(value.astype(self._mask_values.dtype.as_numpy_dtype))

    @property
    def config(self):
        """The constructor arguments, a JSON-serialisable dict (`Dynamics(**config)` rebuilds)."""
        return json.loads(self._config_json)

    # ----- weights -------------------------------------------------------------------------
    def ordered_variables(self):
        """Every variable, in a fixed order: log ε, then the x- and v-networks'."""
        return [self.log_step_size] + self.x_net.ordered_variables() + self.v_net.ordered_variables()

    def trainable(self):
        """The variables the trainer updates (ε only if `train_step_size`)."""
        return [v for v in self.ordered_variables() if v.trainable]

    def get_weights(self):
        """List of numpy arrays in `ordered_variables` order."""
        return [v.numpy() for v in self.ordered_variables()]

    def set_weights(self, weights):
        """Assigns a list like `get_weights()` returns (shapes must match)."""
        variables = self.ordered_variables()
        if len(weights) != len(variables):
            raise ValueError(f"`weights` must hold {len(variables)} arrays, got {len(weights)}")
        for v, w in zip(variables, weights):
            w = np.asarray(w)
            if tuple(w.shape) != tuple(v.shape):
                raise ValueError(f"`weights` entry for {v.name} must have shape "
                                 f"{v.shape.as_list()}, got {list(w.shape)}")
            v.assign(w.astype(v.dtype.as_numpy_dtype))

    def copy(self, dtype=None):
        """A new `Dynamics` with the same configuration and weights (optionally another dtype)."""
        cfg = dict(self.config)
        cfg["dtype"] = tf.as_dtype(dtype or cfg["dtype"]).name
        new = Dynamics(**cfg)
        new.set_weights(self.get_weights())
        return new

    @property
    def step_size(self):
        """ε = exp(log ε), a scalar tensor."""
        return tf.exp(self.log_step_size)

    # ----- the operator ----------------------------------------------------------------------
    def _time(self, t):
        angle = 2.0 * math.pi * t / self.num_steps
        return tf.stack([tf.cos(angle), tf.sin(angle)], axis=-1)

    def _v_update(self, x, v, g, time, eps, forward):
        s, q, t = self.v_net(x, g, time)
        s = 0.5 * eps * s
        shift = 0.5 * eps * (g * tf.exp(eps * q) - t)
        fwd = v * tf.exp(s) + shift
        inv = (v - shift) * tf.exp(-s)
        sign = tf.where(forward, 1.0, -1.0)
        return tf.where(forward[:, None], fwd, inv), tf.cast(sign, x.dtype) * tf.reduce_sum(s, -1)

    def _x_update(self, x, v, update, time, eps, forward):
        """Updates the coordinates where `update` is 1, from the others and v."""
        keep = 1.0 - update
        s, q, t = self.x_net(keep * x, v, time)
        s = eps * s
        shift = eps * (v * tf.exp(eps * q) + t)
        fwd = x * tf.exp(s) + shift
        inv = (x - shift) * tf.exp(-s)
        new = keep * x + update * tf.where(forward[:, None], fwd, inv)
        sign = tf.cast(tf.where(forward, 1.0, -1.0), x.dtype)
        return new, sign * tf.reduce_sum(update * s, -1)

    def trajectory(self, position, momentum, direction, value_and_grad_fn, value=None, grad=None):
        """Runs the M-step operator L in each chain's direction.

        Args:
          position, momentum: `[chains, dim]` float tensors (same dtype).
          direction: `[chains]` (or scalar) ±1 or bool (True = +1); d = −1 gives L⁻¹.
          value_and_grad_fn: `x -> (log π(x) [chains], ∇log π(x) [chains, dim])`.
          value, grad: log π and its gradient at `position`, if known (saves one evaluation).
        Returns:
          A `Trajectory`. The gradient is evaluated once per step (M per trajectory when
          `grad` is given, M + 1 otherwise).
        """
        x = _checks.floating(position, "position")
        v = tf.convert_to_tensor(momentum, dtype=x.dtype)
        if x.shape.rank is not None and x.shape.rank != 2:
            raise ValueError(f"`position` must have shape [chains, {self.dim}], got {x.shape.as_list()}")
        _checks.state_shape(x, self.dim, "position")
        _checks.state_shape(v, self.dim, "momentum")
        d = _broadcast_direction(direction, x)
        forward = d > 0
        if grad is None or value is None:
            value, grad = value_and_grad_fn(x)
        eps = tf.cast(self.step_size, x.dtype)
        masks = tf.cast(self._mask_values, x.dtype)
        m_steps = self.num_steps

        def body(i, x, v, value, g, logdet):
            t = tf.where(forward, i, m_steps - 1 - i)  # [chains] step index
            time = self._time(tf.cast(t, x.dtype))
            mask = tf.gather(masks, t)
            first = tf.where(forward[:, None], mask, 1.0 - mask)
            x_, v_ = x, v
            v_, ld1 = self._v_update(x_, v_, g, time, eps, forward)
            x_, ld2 = self._x_update(x_, v_, first, time, eps, forward)
            x_, ld3 = self._x_update(x_, v_, 1.0 - first, time, eps, forward)
            value, g = value_and_grad_fn(x_)
            v_, ld4 = self._v_update(x_, v_, g, time, eps, forward)
            return i + 1, x_, v_, value, g, logdet + ld1 + ld2 + ld3 + ld4

        _, x, v, value, grad, logdet = tf.while_loop(
            lambda i, *_: i < m_steps, body,
            (tf.constant(0, tf.int32), x, v, value, grad, tf.zeros_like(d)),
            maximum_iterations=m_steps)
        return Trajectory(x, v, value, grad, logdet)

    def forward(self, position, momentum, value_and_grad_fn):
        """L applied with d = +1 to every chain; returns `(x', v', log|det J|)`."""
        out = self.trajectory(position, momentum, 1.0, value_and_grad_fn)
        return out.position, out.momentum, out.log_det_jacobian

    def inverse(self, position, momentum, value_and_grad_fn):
        """L⁻¹ (d = −1 for every chain); returns `(x, v, log|det J|)` of the inverse map."""
        out = self.trajectory(position, momentum, -1.0, value_and_grad_fn)
        return out.position, out.momentum, out.log_det_jacobian
