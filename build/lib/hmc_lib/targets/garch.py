"""GARCH(2,1) posterior on simulated returns (NNgHMC paper, Table 1; chapters 3 and 6).

Model (Bollerslev's GARCH(p=2, q=1): two lags of the conditional variance, one of the squared
return), returns y_0 … y_{T−1}:

    y_t = sqrt(h_t) · ε_t,   ε_t ~ N(0, 1),
    h_t = ω + α y²_{t−1} + β₁ h_{t−1} + β₂ h_{t−2}        (t ≥ 2),
    h_0 = h_1 = s² (the sample variance of y, a fixed start of the recursion).

Parameters θ = (ω, α, β₁, β₂) in their natural units. Prior, as in the paper: independent
N(0, prior_scale²) truncated to the covariance-stationary region

    S = {ω > 0, α ≥ 0, β₁ ≥ 0, β₂ ≥ 0, α + β₁ + β₂ < 1}.

log π(θ) = Σ_{t=2}^{T−1} −½[log 2π + log h_t + y_t² / h_t] − |θ|² / (2 prior_scale²) on S and
−inf off S. Off S the recursion is evaluated at a fixed point of S, so value and gradient are
never NaN: the value is −inf (an HMC trajectory that leaves S is a rejected, counted
divergence) and the gradient there is 0. A chain started off S is refused with a ValueError
by every kernel (its log-density is not finite). The likelihood is a recursion over T steps:
each gradient costs a sequential pass over the data, which is what makes the gradient
expensive.
"""

import numpy as np
import tensorflow as tf

from hmc_lib import _checks
from hmc_lib.targets.base import Target

#: the parameters of the simulated data (ω, α, β₁, β₂); α + β₁ + β₂ = 0.8
TRUE_PARAMS = (0.1, 0.15, 0.35, 0.3)
PARAM_NAMES = ("omega", "alpha", "beta1", "beta2")


def stationary(params):
    """numpy bool `[...]`: θ `[..., 4]` lies in the stationary region S (module docstring)."""
    p = np.asarray(params, np.float64)
    if p.shape[-1:] != (4,):
        raise ValueError(f"`params` must have shape [..., 4], got {list(p.shape)}")
    return ((p[..., 0] > 0) & np.all(p[..., 1:] >= 0, -1) & (p[..., 1:].sum(-1) < 1)
            & np.all(np.isfinite(p), -1))


def simulate_garch(num_obs=1000, params=TRUE_PARAMS, seed=0, burn=200):
    """Simulates `num_obs` returns of the GARCH(2,1) above (numpy float64 `[num_obs]`).

    Starts at the unconditional variance ω / (1 − α − β₁ − β₂) and discards `burn` steps.
    """
    _checks.positive_int(num_obs, "num_obs")
    if not bool(stationary(params)):
        raise ValueError(f"`params` {tuple(params)} are not in the stationary region "
                         "(ω > 0, α, β₁, β₂ ≥ 0, α + β₁ + β₂ < 1)")
    omega, alpha, b1, b2 = (float(v) for v in params)
    rng = np.random.default_rng(seed)
    n = int(num_obs) + int(burn)
    eps = rng.standard_normal(n)
    h = np.full(n, omega / (1.0 - alpha - b1 - b2))
    y = np.zeros(n)
    y[:2] = np.sqrt(h[:2]) * eps[:2]
    for t in range(2, n):
        h[t] = omega + alpha * y[t - 1] ** 2 + b1 * h[t - 1] + b2 * h[t - 2]
        y[t] = np.sqrt(h[t]) * eps[t]
    return y[int(burn):]


def garch_log_likelihood_numpy(params, y):
    """The log-likelihood of one θ `[4]` by a plain loop (float64): an independent check."""
    omega, alpha, b1, b2 = (float(v) for v in params)
    y = np.asarray(y, np.float64)
    s2 = float(np.var(y))
    h_prev2, h_prev1, total = s2, s2, 0.0
    for t in range(2, len(y)):
        h = omega + alpha * y[t - 1] ** 2 + b1 * h_prev1 + b2 * h_prev2
        total += -0.5 * (np.log(2 * np.pi) + np.log(h) + y[t] ** 2 / h)
        h_prev2, h_prev1 = h_prev1, h
    return total


def garch(num_obs=1000, seed=0, prior_scale=10.0, data=None):
    """The GARCH(2,1) posterior (module docstring) as a `Target` of dimension 4.

    Args:
      num_obs: T, the number of simulated returns (the paper's 1000).
      seed: seed of the simulated returns.
      prior_scale: standard deviation of the (truncated) Gaussian prior of each parameter.
      data: optional returns `[T]` (T >= 3) to use instead of simulated ones.
    Returns:
      A `Target` with extra attributes `data` (numpy `[T]`), `true_params` (numpy `[4]` or
      None), `param_names`, `log_likelihood_fn` (`[..., 4] -> [...]`, −inf off S) and
      `in_support` (numpy check of S).
    """
    _checks.positive_float(prior_scale, "prior_scale")
    if data is None:
        y_np = simulate_garch(num_obs, seed=seed)
        true = np.asarray(TRUE_PARAMS, np.float64)
    else:
        y_np = np.asarray(data, np.float64)
        if y_np.ndim != 1 or y_np.shape[0] < 3 or not np.all(np.isfinite(y_np)):
            raise ValueError(f"`data` must be finite returns of shape [T], T >= 3, got shape "
                             f"{list(y_np.shape)}")
        true = None
    s2 = float(np.var(y_np))
    prior_var = float(prior_scale) ** 2
    consts = {dt: (tf.constant(y_np[1:-1] ** 2, dt), tf.constant(y_np[2:] ** 2, dt))
              for dt in (tf.float32, tf.float64)}
    safe_point = (0.1, 0.1, 0.1, 0.1)

    def in_region(p):
        rest = p[..., 1:]
        return ((p[..., 0] > 0) & tf.reduce_all(rest >= 0, -1)
                & (tf.reduce_sum(rest, -1) < 1) & tf.reduce_all(tf.math.is_finite(p), -1))

    def raw_log_likelihood(p):
        y_prev_sq, y_sq = consts[p.dtype]
        omega, alpha, b1, b2 = tf.unstack(p, axis=-1)
        h0 = tf.fill(tf.shape(omega), tf.constant(s2, p.dtype))

        def step(carry, obs):
            h1, h2, _ = carry                 # h_{t−1}, h_{t−2}
            prev_sq, cur_sq = obs
            h = omega + alpha * prev_sq + b1 * h1 + b2 * h2
            term = tf.math.log(h) + cur_sq / h
            return h, h1, term

        _, _, terms = tf.scan(step, (y_prev_sq, y_sq), initializer=(h0, h0, tf.zeros_like(h0)))
        n = tf.cast(y_np.shape[0] - 2, p.dtype)
        return -0.5 * (n * np.log(2 * np.pi) + tf.reduce_sum(terms, axis=0))

    def log_likelihood_fn(p):
        ok = in_region(p)
        safe = tf.where(ok[..., None], p, tf.constant(safe_point, p.dtype))
        ll = raw_log_likelihood(safe)
        return tf.where(ok, ll, tf.constant(-np.inf, p.dtype))

    def log_prob_fn(p):
        return log_likelihood_fn(p) - 0.5 * tf.reduce_sum(tf.square(p), -1) / prior_var

    target = Target(log_prob_fn, 4, name="garch")
    target.data = y_np
    target.true_params = true
    target.param_names = PARAM_NAMES
    target.log_likelihood_fn = log_likelihood_fn
    target.in_support = stationary
    target.prior_scale = float(prior_scale)
    return target


FACTORIES = {"garch": garch}
