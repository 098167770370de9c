"""Training data for an HNN: chained leapfrog trajectories of the true Hamiltonian.

Following Dhulipala et al. (2023) (PAPERS.md §3.4): each chain runs `num_trajectories`
trajectories of `num_steps` leapfrog steps with the **true** gradient, no Metropolis test,
a fresh momentum p ~ N(0, I) for every trajectory, each trajectory starting where the last
ended. Every leapfrog point gives one training example: the position q, the momentum p, and
the true partial derivatives of H = −log π(q) + ½|p|², ∂H/∂q = −∇log π(q) and ∂H/∂p = p
(Chen's "method 4" targets).
"""

from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from hmc_lib import _checks
from hmc_lib.integrators import LeapfrogState, leapfrog_trajectory


class TrainingData(NamedTuple):
    """Numpy arrays `[n, dim]`: `q`, `p`, `dh_dq` (= −∇log π(q)), `dh_dp` (= p).
    `grad_evals`: true gradients spent collecting them (int)."""
    q: Any
    p: Any
    dh_dq: Any
    dh_dp: Any
    grad_evals: int

    def split(self, fraction, seed=0):
        """(train, held-out) random split; `fraction` of the points are held out."""
        n = self.q.shape[0]
        idx = np.random.default_rng(seed).permutation(n)
        k = int(round(fraction * n))
        pick = lambda ix: TrainingData(self.q[ix], self.p[ix], self.dh_dq[ix], self.dh_dp[ix],
                                       self.grad_evals)
        return pick(idx[k:]), pick(idx[:k])


def collect(target, initial, num_trajectories, num_steps, step_size, seed):
    """Runs the chained trajectories and returns their points as `TrainingData`.

    Args:
      target: a `Target` (its `log_prob` and `grad_log_prob` are used).
      initial: `[chains, dim]` starting positions (e.g. exact draws, or a guess).
      num_trajectories: trajectories per chain.
      num_steps: leapfrog steps per trajectory (Dhulipala: trajectory length / dt).
      step_size: ε (Dhulipala: dt = 0.02 ... 0.05).
      seed: int, for the momenta.
    Returns:
      `TrainingData` with chains·num_trajectories·num_steps points, float64 arrays.
    """
    _checks.positive_int(num_trajectories, "num_trajectories")
    _checks.positive_int(num_steps, "num_steps")
    _checks.positive_float(step_size, "step_size")
    x = _checks.floating(initial, "initial")
    _checks.state_shape(x, target.dim, "initial")
    eps = tf.cast(step_size, x.dtype)

    def vg(y):
        return target.log_prob(y), target.grad_log_prob(y)

    @tf.function(jit_compile=True)
    def trajectory(x, v):
        lp, g = vg(x)
        state = LeapfrogState(x, v, lp, g)
        qs, ps, gs = [], [], []
        for _ in range(int(num_steps)):       # short: unrolled, one point per step
            state = leapfrog_trajectory(state, vg, eps, 1)
            qs.append(state.position)
            ps.append(state.momentum)
            gs.append(state.grad)
        return state.position, tf.stack(qs, 1), tf.stack(ps, 1), tf.stack(gs, 1)

    seeds = tf.random.experimental.stateless_split(tfp.random.sanitize_seed(int(seed)),
                                                   int(num_trajectories))
    qs, ps, gs = [], [], []
    for k in range(int(num_trajectories)):
        v = tf.random.stateless_normal(tf.shape(x), seed=seeds[k], dtype=x.dtype)
        x, q, p, g = trajectory(x, v)
        ok = np.all(np.isfinite(q.numpy()), axis=(1, 2)) & np.all(np.isfinite(g.numpy()),
                                                                   axis=(1, 2))
        qs.append(q.numpy()[ok])
        ps.append(p.numpy()[ok])
        gs.append(g.numpy()[ok])
    d = target.dim
    q = np.concatenate(qs).reshape(-1, d).astype(np.float64)
    p = np.concatenate(ps).reshape(-1, d).astype(np.float64)
    g = np.concatenate(gs).reshape(-1, d).astype(np.float64)
    chains = int(x.shape[0])
    return TrainingData(q, p, -g, p.copy(), chains * int(num_trajectories) * (int(num_steps) + 1))
