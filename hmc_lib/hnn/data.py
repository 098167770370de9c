"""Training data for an HNN: chained leapfrog trajectories of the true Hamiltonian.

Following Dhulipala et al. (2023) (chapter 7): each chain runs `num_trajectories`
trajectories of `num_steps` leapfrog steps with the **true** gradient, no Metropolis test,
a fresh momentum p ~ N(0, I) for every trajectory, each trajectory starting where the last
ended. Every leapfrog point gives one training example: the position q, the momentum p, and
the true partial derivatives of H = −log π(q) + ½|p|², ∂H/∂q = −∇log π(q) and ∂H/∂p = p
(Chen's "method 4" targets).
"""

from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from hmc_lib import _checks, _reuse
from hmc_lib.targets import as_target
from hmc_lib.integrators import LeapfrogState, leapfrog_trajectory


class TrainingData(NamedTuple):
    """Numpy arrays `[n, dim]`: `q`, `p`, `dh_dq` (= −∇log π(q)), `dh_dp` (= p).
    `grad_evals`: true gradients spent collecting them (int). `potential`: `[n]`, the true
    potential −log π(q) (up to a constant) at each point, which the same evaluations give;
    only Chen's "potential regression" variant uses it (None if not recorded)."""
    q: Any
    p: Any
    dh_dq: Any
    dh_dp: Any
    grad_evals: int
    potential: Any = None

    def split(self, fraction, seed=0):
        """(train, held-out) random split; `fraction` of the points are held out."""
        n = self.q.shape[0]
        idx = np.random.default_rng(seed).permutation(n)
        k = int(round(fraction * n))
        pick = lambda ix: TrainingData(self.q[ix], self.p[ix], self.dh_dq[ix], self.dh_dp[ix],
                                       self.grad_evals,
                                       None if self.potential is None else self.potential[ix])
        return pick(idx[k:]), pick(idx[:k])


def _stateless(seed):
    """A `[2]` stateless seed from an int (TFP's `sanitize_seed(int)` would draw it from a
    stateful sampler, so the same int would give different momenta on a second call)."""
    return tf.constant([int(seed), 0], tf.int32)


#: compiled trajectories per (target, integrator, ε, steps, dtype): seeds and successive
#: calls share them (`hmc_lib._reuse`)
_TRAJECTORIES = _reuse.Cache(maxsize=8)


def _leapfrog_path(target, eps, num_steps):
    """Compiled `(x, v) -> (end, q, p, ∇log π, log π)`, the last four `[chains, steps, ...]`:
    one leapfrog trajectory of `num_steps` steps from (x, v)."""
    def vg(y):
        return target.log_prob(y), target.grad_log_prob(y)

    @tf.function(jit_compile=True)
    def trajectory(x, v):
        # a loop, not unrolled: XLA's compile time grows with the graph, and an unrolled
        # trajectory on an expensive log-density (an Inference Gym model) took minutes
        def step(state, _):
            return leapfrog_trajectory(state, vg, eps, 1)

        lp, g = vg(x)
        path = tf.scan(step, tf.range(num_steps), initializer=LeapfrogState(x, v, lp, g))
        swap = lambda t: tf.experimental.numpy.swapaxes(t, 0, 1)   # [steps, chains] first
        return (path.position[-1], swap(path.position), swap(path.momentum), swap(path.grad),
                swap(path.value))

    return trajectory


def _pm_path(target, h, num_steps, full=False):
    """Compiled `(θ, u, ρ, p) -> (θ_end, u_end, θs, ρs, ∇_θ log p̂)`, the last three
    `[chains, steps, theta_dim]`: one pseudo-marginal Strang trajectory. With `full` it
    also returns, each `[chains, steps, ...]`, the states' u, p, ∇_u log p̂ and log p(θ) +
    log p̂ (for `collect_pm_states`; u is `[*u_shape]` per point, so only for small N)."""
    from hmc_lib.integrators import PMState, pm_trajectory
    vg = target.value_and_grad

    @tf.function(jit_compile=True)
    def trajectory(theta, u, rho, p):
        # a loop, not unrolled (an unrolled trajectory of a large u took minutes to compile)
        path = tf.scan(lambda state, _: pm_trajectory(state, vg, h, 1), tf.range(num_steps),
                       initializer=PMState(theta, rho, u, p, *vg(theta, u)))
        stack = lambda name: tf.experimental.numpy.swapaxes(getattr(path, name), 0, 1)
        out = (path.theta[-1], path.u[-1], stack("theta"), stack("rho"), stack("grad_theta"))
        if full:
            out += (stack("u"), stack("p"), stack("grad_u"), stack("value"))
        return out

    return trajectory


def _finite_points(paths, dim):
    """Training points from trajectories: `paths` holds per trajectory the tensors
    `(q, p, g, *more)`, each `[chains, steps, ...]`. Drops every chain whose q or g is not
    finite somewhere on that trajectory; returns float64 arrays, q, p, g as `[points, dim]`
    and each of `more` as `[points]`."""
    kept = []
    for path in paths:
        arrays = [t.numpy() for t in path]
        q, g = arrays[0], arrays[2]
        ok = np.all(np.isfinite(q), axis=(1, 2)) & np.all(np.isfinite(g), axis=(1, 2))
        kept.append([a[ok] for a in arrays])
    out = [np.concatenate(parts).astype(np.float64) for parts in zip(*kept)]
    return [a.reshape(-1, dim) if i < 3 else a.reshape(-1) for i, a in enumerate(out)]


def collect(target, initial, num_trajectories, num_steps, step_size, seed, dim=None):
    """Runs the chained trajectories and returns their points as `TrainingData`.

    Args:
      target: a `Target` (its `log_prob` and `grad_log_prob` are used), an `hmc_lib.Model`,
        a TFP joint distribution, or a callable `[..., dim] -> [...]` with `dim`
        (`targets.as_target`).
      initial: `[chains, dim]` starting positions (e.g. exact draws, or a guess).
      num_trajectories: trajectories per chain.
      num_steps: leapfrog steps per trajectory (Dhulipala: trajectory length / dt).
      step_size: ε (Dhulipala: dt = 0.02 ... 0.05).
      seed: int, for the momenta.
      dim: the dimension, needed only when `target` is a plain callable.
    Returns:
      `TrainingData` with chains·num_trajectories·num_steps points, float64 arrays.
    """
    target = as_target(target, dim, "target")
    _checks.positive_int(num_trajectories, "num_trajectories")
    _checks.positive_int(num_steps, "num_steps")
    _checks.positive_float(step_size, "step_size")
    x = _checks.floating(initial, "initial")
    _checks.state_shape(x, target.dim, "initial")
    trajectory = _TRAJECTORIES.get(
        (target,), ("leapfrog", _reuse.as_key(step_size), int(num_steps), x.dtype.name),
        lambda: _leapfrog_path(target, tf.cast(step_size, x.dtype), int(num_steps)))
    seeds = tf.random.experimental.stateless_split(_stateless(seed),
                                                   int(num_trajectories))
    paths = []
    for k in range(int(num_trajectories)):
        v = tf.random.stateless_normal(tf.shape(x), seed=seeds[k], dtype=x.dtype)
        x, *path = trajectory(x, v)
        paths.append(path)
    q, p, g, val = _finite_points(paths, target.dim)
    pot = -val
    chains = int(x.shape[0])
    return TrainingData(q, p, -g, p.copy(), chains * int(num_trajectories) * (int(num_steps) + 1),
                        pot)


def _pm_inputs(target, theta, u, num_trajectories, num_steps, step_size):
    """Checks `collect_pm`'s arguments; returns `(theta, u)` as tensors of one dtype."""
    _checks.positive_int(num_trajectories, "num_trajectories")
    _checks.positive_int(num_steps, "num_steps")
    _checks.positive_float(step_size, "step_size")
    theta = _checks.floating(theta, "theta")
    if theta.shape.rank != 2 or theta.shape[-1] != target.theta_dim:
        raise ValueError(f"`theta` must have shape [chains, {target.theta_dim}], got "
                         f"{theta.shape.as_list()}")
    u = tf.convert_to_tensor(u, theta.dtype)
    if tuple(u.shape[1:]) != tuple(target.u_shape) or u.shape[0] != theta.shape[0]:
        raise ValueError(f"`u` must have shape [{theta.shape[0]}, "
                         f"{', '.join(map(str, target.u_shape))}], got {u.shape.as_list()}")
    return theta, u


def collect_pm(target, theta, u, num_trajectories, num_steps, step_size, seed):
    """Training data for a θ-only HNN on a pseudo-marginal target (Chen's method 4 data).

    Chained trajectories of the pseudo-marginal Strang integrator (`hmc_lib.integrators.
    pm_trajectory`, true gradients of log p̂, no Metropolis test, fresh ρ, p ~ N(0, I) per
    trajectory, u carried along as the dynamics move it). Every step gives one example:
    q = θ, p = ρ, ∂H/∂θ = −∇_θ[log p(θ) + log p̂(y | θ, u)] (a noisy estimate of
    −∇_θ log p(θ | y); use a target with many importance draws, Chen: N = 2048), ∂H/∂ρ = ρ.

    Args:
      target: a `PseudoMarginalTarget`.
      theta: `[chains, theta_dim]`; u: `[chains, *u_shape]` starting points.
      num_trajectories, num_steps, step_size: as `collect`.
      seed: int.
    Returns:
      `TrainingData` (float64) with chains·num_trajectories·num_steps points; `grad_evals`
      counts the gradients of log p̂ spent.
    """
    theta, u = _pm_inputs(target, theta, u, num_trajectories, num_steps, step_size)
    trajectory = _TRAJECTORIES.get(
        (target,), ("pm", _reuse.as_key(step_size), int(num_steps), theta.dtype.name),
        lambda: _pm_path(target, tf.cast(step_size, theta.dtype), int(num_steps)))
    seeds = tf.random.experimental.stateless_split(_stateless(seed),
                                                   2 * int(num_trajectories))
    paths = []
    for k in range(int(num_trajectories)):
        rho = tf.random.stateless_normal(tf.shape(theta), seed=seeds[2 * k], dtype=theta.dtype)
        p = tf.random.stateless_normal(tf.shape(u), seed=seeds[2 * k + 1], dtype=theta.dtype)
        theta, u, *path = trajectory(theta, u, rho, p)
        paths.append(path)
    q, p, g = _finite_points(paths, target.theta_dim)
    chains = int(theta.shape[0])
    return TrainingData(q, p, -g, p.copy(),
                        chains * int(num_trajectories) * (int(num_steps) + 1))


class PMStates(NamedTuple):
    """The whole extended state along pseudo-marginal trajectories (`collect_pm_states`),
    float64 numpy arrays with leading axes `[paths, steps]` (paths = chains × trajectories,
    steps in order along each trajectory): `theta`, `rho` `[..., theta_dim]`; `u`, `p`
    `[..., *u_shape]`; `grad_theta`, `grad_u`: ∇_θ and ∇_u of log p(θ) + log p̂(y | θ, u);
    `log_joint` `[paths, steps]`: that value. `grad_evals`: gradients of log p̂ spent.
    `step_size`: the integrator's h (trajectory matching needs it)."""
    theta: Any
    rho: Any
    u: Any
    p: Any
    grad_theta: Any
    grad_u: Any
    log_joint: Any
    grad_evals: int
    step_size: float

    def split(self, fraction, seed=0):
        """(train, held-out) split by whole paths; `fraction` of the paths are held out."""
        n = self.theta.shape[0]
        idx = np.random.default_rng(seed).permutation(n)
        k = max(1, int(round(fraction * n)))
        pick = lambda ix: self._replace(**{f: getattr(self, f)[ix] for f in (
            "theta", "rho", "u", "p", "grad_theta", "grad_u", "log_joint")})
        return pick(idx[k:]), pick(idx[:k])

    def points(self, field):
        """`field` flattened over paths and steps: `[paths·steps, ...]`."""
        a = getattr(self, field)
        return a.reshape(-1, *a.shape[2:])


def collect_pm_states(target, theta, u, num_trajectories, num_steps, step_size, seed):
    """Chained pseudo-marginal trajectories as `collect_pm` runs them, keeping the whole
    extended state (θ, ρ, u, p) and both gradients at every step: the data of Chen's
    variants that see u (`hmc_lib.hnn.variants`). u is kept per point, so use a target with
    few importance draws. Arguments as `collect_pm`; returns `PMStates`, paths whose θ or
    gradients are not finite somewhere dropped."""
    theta, u = _pm_inputs(target, theta, u, num_trajectories, num_steps, step_size)
    trajectory = _TRAJECTORIES.get(
        (target,), ("pm-full", _reuse.as_key(step_size), int(num_steps), theta.dtype.name),
        lambda: _pm_path(target, tf.cast(step_size, theta.dtype), int(num_steps), full=True))
    seeds = tf.random.experimental.stateless_split(_stateless(seed),
                                                   2 * int(num_trajectories))
    parts = []
    for k in range(int(num_trajectories)):
        rho = tf.random.stateless_normal(tf.shape(theta), seed=seeds[2 * k], dtype=theta.dtype)
        p = tf.random.stateless_normal(tf.shape(u), seed=seeds[2 * k + 1], dtype=theta.dtype)
        theta, u, *path = trajectory(theta, u, rho, p)
        arrays = [np.asarray(t, np.float64) for t in path]
        axes = lambda a: tuple(range(1, a.ndim))
        ok = (np.all(np.isfinite(arrays[0]), axis=axes(arrays[0]))
              & np.all(np.isfinite(arrays[2]), axis=axes(arrays[2]))
              & np.all(np.isfinite(arrays[5]), axis=axes(arrays[5])))
        parts.append([a[ok] for a in arrays])
    th, rh, gt, uu, pp, gu, val = (np.concatenate(a) for a in zip(*parts))
    chains = int(theta.shape[0])
    return PMStates(th, rh, uu, pp, gt, gu, val,
                    chains * int(num_trajectories) * (int(num_steps) + 1), float(step_size))
