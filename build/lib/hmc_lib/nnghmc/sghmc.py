"""Stochastic-gradient HMC (Chen, Fox & Guestrin 2014), the first competitor of NNgHMC in
the paper's Table 3 (chapters 3 and 6).

`SGHMC(target_log_prob_fn, stochastic_grad_fn, step_size, num_leapfrog_steps, friction,
metropolis=False)`, state `[chains, dim]`, one kernel step = one outer iteration of Chen et
al.'s Algorithm 2 with identity mass and B̂ = 0:

    r ~ N(0, I);  repeat L times:
        θ ← θ + ε r
        r ← r + ε ĝ(θ) − ε C r + N(0, 2 C ε I)

where ĝ is a mini-batch estimate of ∇log π, a fresh mini-batch at every inner step. Without
`metropolis` there is no accept/reject step: the chain is biased by the discretisation (bias
O(ε)) and, for mini-batches, by the gradient noise that B̂ = 0 ignores. A proposal with a
non-finite coordinate is still refused (a counted divergence) so no NaN enters the chain.

With `metropolis=True` the MH correction uses the **full-data** energy H = −log π(θ) + ½|r|²
(one evaluation of the true log-density per step, on all data), and the trajectory is
L leapfrog steps with the field ĝ(·; b) of **one** mini-batch b drawn for the whole trajectory,
without friction or injected noise. Given b, the leapfrog is reversible and volume preserving,
and b is drawn independently of the state, so the kernel is exact for any batch size (the
argument of NNgHMC with a random field). The friction and the noise are dropped here because
they are neither: with the momentum fully refreshed at every step they are not needed for
invariance. A mini-batch MH test (the energy estimated on the batch) would not be exact and
is not offered.

Costs in the results: `grad_evals` counts full-data gradients (L per step, or L + 1 with
`metropolis`, only when the batch is the whole data set; 0 otherwise), and
`stochastic_grad_evals` the mini-batch gradients, so ESS per unit of data touched is
`stochastic_grad_evals · batch_size / num_data`.

`minibatch_grad_fn` builds ĝ from per-row likelihood gradients; `logreg_minibatch_grad` does so
for the `logreg` targets (either prior).
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from hmc_lib import _checks
from hmc_lib.integrators import LeapfrogState, leapfrog_trajectory, value_and_grad
from hmc_lib.kernels import metropolis
from hmc_lib.kernels.base import Kernel
from hmc_lib.kernels.hmc import check_initial, log_accept_ratio, unpack_target


class SGHMCResults(NamedTuple):
    """Kernel results of `SGHMC`; `[chains]` unless stated.

    target_log_prob: log π at the current state with `metropolis` (else 0: not evaluated).
    step_size: ε. is_accepted, log_accept_ratio, is_divergent: the last MH test (without
    `metropolis`: accepted unless the proposal is not finite; log_accept_ratio 0).
    grad_evals: int32, full-data gradients spent (see the module docstring).
    stochastic_grad_evals: int32, mini-batch gradients spent.
    """
    target_log_prob: tf.Tensor
    step_size: tf.Tensor
    is_accepted: tf.Tensor
    log_accept_ratio: tf.Tensor
    is_divergent: tf.Tensor
    grad_evals: tf.Tensor
    stochastic_grad_evals: tf.Tensor


class SGHMC(Kernel):
    """SGHMC with friction, with or without a full-data Metropolis correction.

    Args:
      target_log_prob_fn: `[chains, dim] -> [chains]` (true log π), or a `Target`; evaluated
        only with `metropolis=True`.
      stochastic_grad_fn: `(x [chains, dim], seed [2] int32) -> [chains, dim]`, an unbiased
        estimate of ∇log π(x) (e.g. from `minibatch_grad_fn`); deterministic given the seed.
      step_size: ε > 0. num_leapfrog_steps: L >= 1 inner steps per kernel step.
      friction: C >= 0 (ignored with `metropolis`).
      metropolis: add the full-data MH test (module docstring).
      full_batch: tell the kernel that `stochastic_grad_fn` is the full-data gradient, so its
        evaluations count as `grad_evals`.
    """

    trace_fields = ("stochastic_grad_evals",)

    def __init__(self, target_log_prob_fn, stochastic_grad_fn, step_size, num_leapfrog_steps,
                 friction=1.0, metropolis=False, full_batch=False,
                 max_energy_error=metropolis.MAX_ENERGY_ERROR, name="sghmc"):
        self._log_prob_fn, self._dim = unpack_target(target_log_prob_fn)
        if not callable(stochastic_grad_fn):
            raise TypeError(f"`stochastic_grad_fn` must be callable, got {stochastic_grad_fn!r}")
        _checks.positive_float(step_size, "step_size")
        _checks.positive_int(num_leapfrog_steps, "num_leapfrog_steps")
        f = np.asarray(friction, np.float64)
        if f.shape != () or not np.isfinite(f) or f < 0:
            raise ValueError(f"`friction` must be a finite number >= 0, got {friction!r}")
        self._sgrad = stochastic_grad_fn
        self._parameters = dict(target_log_prob_fn=target_log_prob_fn,
                                stochastic_grad_fn=stochastic_grad_fn, step_size=step_size,
                                num_leapfrog_steps=num_leapfrog_steps, friction=float(friction),
                                metropolis=bool(metropolis), full_batch=bool(full_batch),
                                max_energy_error=max_energy_error, name=name)

    @property
    def is_calibrated(self):
        return self._parameters["metropolis"]

    def bootstrap_results(self, init_state):
        x = _checks.floating(init_state, "current_state")
        _checks.state_shape(x, self._dim, "current_state")
        if self.metropolis:
            lp = self._log_prob_fn(x)
            x = check_initial(x, lp, self._dim)
        else:
            lp = tf.zeros(tf.shape(x)[:-1], x.dtype)
            if tf.executing_eagerly() and not bool(tf.reduce_all(tf.math.is_finite(x))):
                raise ValueError("`current_state` must be finite")
        zeros_i = tf.zeros_like(lp, tf.int32)
        return SGHMCResults(lp, _checks.as_dtype(self.step_size, x.dtype),
                            tf.zeros_like(lp, tf.bool), tf.zeros_like(lp),
                            tf.zeros_like(lp, tf.bool), zeros_i, zeros_i)

    def one_step(self, current_state, previous_kernel_results, seed=None):
        x, prev = current_state, previous_kernel_results
        seed = tfp.random.sanitize_seed(seed)
        momentum_seed, accept_seed, batch_seed = tfp.random.split_seed(seed, n=3)
        r0 = tf.random.stateless_normal(tf.shape(x), seed=momentum_seed, dtype=x.dtype)
        eps = prev.step_size
        L = self.num_leapfrog_steps
        ones = tf.ones_like(prev.target_log_prob, tf.int32)
        if self.metropolis:
            field = lambda y: self._sgrad(y, batch_seed)
            dummy = tf.zeros_like(prev.target_log_prob)
            start = LeapfrogState(x, r0, dummy, field(x))
            end = leapfrog_trajectory(start, lambda y: (dummy, field(y)), eps, L)
            lp_new = self._log_prob_fn(end.position)
            decision = metropolis.decide(
                log_accept_ratio(lp_new, prev.target_log_prob, r0, end.momentum), accept_seed,
                end.position, self._parameters["max_energy_error"])
            new_x, lp = metropolis.choose(decision.is_accepted, (end.position, lp_new),
                                          (x, prev.target_log_prob))
            evals = (L + 1) * ones
        else:
            c = tf.cast(self.friction, x.dtype)
            noise_sd = tf.sqrt(2.0 * c * eps)
            seeds = tf.random.experimental.stateless_split(batch_seed, L)

            def body(i, th, r):
                s_batch, s_noise = tf.unstack(tf.random.experimental.stateless_split(seeds[i], 2))
                th = th + eps * r
                xi = tf.random.stateless_normal(tf.shape(r), seed=s_noise, dtype=r.dtype)
                r = r + eps * self._sgrad(th, s_batch) - eps * c * r + noise_sd * xi
                return i + 1, th, r

            _, proposal, _ = tf.while_loop(lambda i, *_: i < L, body, (tf.constant(0), x, r0))
            finite = metropolis.all_finite(proposal)
            new_x = metropolis.choose(finite, proposal, x)
            lp = prev.target_log_prob
            decision = metropolis.Decision(finite, tf.zeros_like(lp), ~finite)
            evals = L * ones
        grad_evals = evals if self.full_batch else 0 * ones
        return new_x, prev._replace(
            target_log_prob=lp, is_accepted=decision.is_accepted,
            log_accept_ratio=decision.log_accept_ratio, is_divergent=decision.is_divergent,
            grad_evals=grad_evals, stochastic_grad_evals=evals)


def minibatch_grad_fn(grad_log_prior_fn, grad_log_lik_rows_fn, num_data, batch_size):
    """ĝ(x, seed) = ∇log p(x) + (N / B) Σ_{i ∈ batch} ∇log p(y_i | x), an unbiased estimate.

    Args:
      grad_log_prior_fn: `[chains, dim] -> [chains, dim]`.
      grad_log_lik_rows_fn: `(x [chains, dim], idx [B] int32) -> [chains, dim]`, the sum over
        the rows `idx` of the per-row likelihood gradients.
      num_data: N. batch_size: B; the batch is B rows drawn uniformly with replacement
        (shared by the chains); with B >= N, all rows (the full gradient, deterministic).
    Returns:
      `(x, seed) -> [chains, dim]`.
    """
    _checks.positive_int(num_data, "num_data")
    _checks.positive_int(batch_size, "batch_size")
    n, b = int(num_data), min(int(batch_size), int(num_data))

    def grad(x, seed):
        if b == n:
            idx = tf.range(n, dtype=tf.int32)
        else:
            idx = tf.random.stateless_uniform([b], seed=seed, minval=0, maxval=n, dtype=tf.int32)
        return grad_log_prior_fn(x) + tf.cast(n / b, x.dtype) * grad_log_lik_rows_fn(x, idx)

    return grad


def logreg_minibatch_grad(target, batch_size):
    """`minibatch_grad_fn` for a `logreg` target (uses `target.data` and `target.log_prior_fn`).

    Per-row gradient of the logistic log-likelihood: (y_i − σ(x_iᵀβ)) x_i.
    """
    if not hasattr(target, "data") or not hasattr(target, "log_prior_fn"):
        raise TypeError(f"`target` must be a `logreg` target, got {target!r}")
    x_np, y_np = target.data
    tensors = {dt: (tf.constant(x_np, dt), tf.constant(y_np, dt)) for dt in (tf.float32, tf.float64)}
    prior_grad = value_and_grad(target.log_prior_fn)

    def rows(beta, idx):
        x, y = tensors[beta.dtype]
        xb, yb = tf.gather(x, idx), tf.gather(y, idx)
        resid = yb - tf.math.sigmoid(tf.einsum("nd,...d->...n", xb, beta))
        return tf.einsum("...n,nd->...d", resid, xb)

    return minibatch_grad_fn(lambda b: prior_grad(b)[1], rows, x_np.shape[0], batch_size)


def stationary_variance(variance, step_size, num_leapfrog_steps, friction):
    """The exact stationary variance of θ under SGHMC without MH, full-batch gradient, on
    N(0, variance) in one dimension (each coordinate of a diagonal Gaussian separately).

    The inner step is linear, z' = A z + w with z = (θ, r),
    A = [[1, ε], [−ε/σ², 1 − εC − ε²/σ²]], w ~ N(0, diag(0, 2Cε)); starting a step from
    Var θ = V and a fresh r ~ N(0, 1), Var θ after L steps is a V + b, so the stationary
    V = b / (1 − a) (requires a < 1). This is the discretisation bias that the chapter and the
    tests measure (V = σ² would be no bias). Returns a numpy array shaped like `variance`.
    """
    var = np.asarray(variance, np.float64)
    eps, c = float(step_size), float(friction)

    def after(v0, s2):
        a = np.array([[1.0, eps], [-eps / s2, 1.0 - eps * c - eps ** 2 / s2]])
        q = np.diag([0.0, 2.0 * c * eps])
        s = np.diag([v0, 1.0])
        for _ in range(int(num_leapfrog_steps)):
            s = a @ s @ a.T + q
        return s[0, 0]

    out = []
    for s2 in var.ravel():
        b = after(0.0, s2)
        slope = after(1.0, s2) - b
        if not slope < 1.0:
            raise ValueError(f"SGHMC is unstable at step_size={step_size} for variance {s2}")
        out.append(b / (1.0 - slope))
    return np.asarray(out).reshape(var.shape)
