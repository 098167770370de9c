"""GP regression with a Matérn ν = 3/2 kernel: the posterior of its hyper-parameters
(NNgHMC paper, Table 2; chapters 3 and 6).

Data: X `[n, 4]` ~ N(0, I), y = f(X) + N(0, noise_sd²) with the polynomial
f(x) = 0.5 x₀ + 0.3 x₁² − 0.4 x₂ x₃ + 0.1 x₀³ (the paper's "polynomial of X"; it does not
give one).

Model: y ~ N(0, K), K = σ_f² k(R / ℓ) + σ² I, R the Euclidean distances between inputs and
k(r) = (1 + √3 r) exp(−√3 r) (Matérn ν = 3/2). Hyper-parameters: length scale ℓ, noise
variance σ² (the paper's two) and, with `learn_amplitude=True` (the default; y is not
standardised), the signal variance σ_f². Each has a diffuse log-normal prior,
log ℓ, log σ_f², log σ² ~ N(0, prior_scale²).

The target's coordinates are the logarithms θ = (log ℓ, [log σ_f²,] log σ²), so every real θ
is a valid point; under a log-normal prior the density of log ℓ is normal (the Jacobian is
already in it), truncated to the box |θ_j| <= BOX = 12.
log π(θ) = log N(y; 0, K(θ)) + Σ log N(θ_j; 0, prior_scale²), evaluated
through the Cholesky factor of K: −½ yᵀK⁻¹y − Σ log diag(chol K) − n/2 log 2π. Each
evaluation costs O(n³) per chain: the expensive gradient. `matern32_log_marginal_likelihood`
takes the hyper-parameters in natural units and rejects non-positive ones with a ValueError.

The gradient (`gradient="analytic"`, the default) is the textbook one (Rasmussen and Williams
2006, eq. 5.9): ∂ log N(y; 0, K)/∂θ_j = ½ tr((α αᵀ − K⁻¹) ∂K/∂θ_j) with α = K⁻¹y, and for
the log hyper-parameters ∂K/∂log ℓ = σ_f² s² e^{−s} (s = √3 R/ℓ), ∂K/∂log σ_f² = σ_f² k and
∂K/∂log σ² = σ² I. It re-uses the value's Cholesky factor, needs K⁻¹ once (two triangular
solves), and costs about a third of differentiating through the factorisation
(`gradient="autodiff"`, kept for the tests and the comparison). All chains' matrices are
factorised in one batched call. A value alone (NNgHMC's Metropolis test) pays for the
factorisation only.
"""

import numpy as np
import tensorflow as tf

from hmc_lib import _checks
from hmc_lib.targets.base import Target

SQRT3 = float(np.sqrt(3.0))
#: the support of the log hyper-parameters: |θ_j| <= BOX (4 prior standard deviations at the
#: default prior_scale = 3; the posterior of the simulated data lies far inside)
BOX = 12.0


def polynomial(x):
    """The regression function f of the simulated data; `x` numpy `[n, 4]` -> `[n]`."""
    x = np.asarray(x, np.float64)
    return 0.5 * x[:, 0] + 0.3 * x[:, 1] ** 2 - 0.4 * x[:, 2] * x[:, 3] + 0.1 * x[:, 0] ** 3


def simulate_gp_data(num_data=500, num_features=4, noise_sd=0.5, seed=0):
    """numpy float64 `(X [n, d], y [n])`: X ~ N(0, I), y = f(X) + N(0, noise_sd²).

    f uses the first four inputs (`num_features` must be >= 4)."""
    _checks.positive_int(num_data, "num_data")
    _checks.positive_int(num_features, "num_features")
    if num_features < 4:
        raise ValueError(f"`num_features` must be >= 4, got {num_features}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((int(num_data), int(num_features)))
    return x, polynomial(x) + noise_sd * rng.standard_normal(int(num_data))


def pairwise_distances(x):
    """Euclidean distances `[n, n]` between the rows of numpy `x` `[n, d]` (float64)."""
    x = np.asarray(x, np.float64)
    sq = np.sum(x ** 2, 1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(d2)


def matern32(r):
    """Matérn ν = 3/2 correlation of a scaled distance `r` >= 0 (tensor): (1 + √3 r) e^{−√3 r}."""
    s = SQRT3 * r
    return (1.0 + s) * tf.exp(-s)


def _log_marginal(dist, y, length_scale, amplitude, noise_variance):
    """log N(y; 0, K) for hyper-parameter tensors of shape `[...]`; dist `[n, n]`, y `[n]`."""
    n = y.shape[-1]
    ls = length_scale[..., None, None]
    k = amplitude[..., None, None] * matern32(dist / ls)
    k = k + noise_variance[..., None, None] * tf.eye(n, dtype=y.dtype)
    chol = tf.linalg.cholesky(k)
    batch = tf.shape(chol)[:-2]
    rhs = tf.broadcast_to(y[:, None], tf.concat([batch, [n, 1]], 0))
    alpha = tf.linalg.triangular_solve(chol, rhs, lower=True)[..., 0]
    log_det_half = tf.reduce_sum(tf.math.log(tf.linalg.diag_part(chol)), -1)
    return -0.5 * tf.reduce_sum(alpha ** 2, -1) - log_det_half - 0.5 * n * np.log(2 * np.pi)


def _log_marginal_analytic(dist, y, learn_amplitude):
    """`theta [..., dim] (float64) -> log N(y; 0, K(θ)) [...]` with the analytic gradient
    (module docstring) through `tf.custom_gradient`; dist `[n, n]`, y `[n]`."""
    n = y.shape[-1]
    eye = tf.eye(n, dtype=y.dtype)

    @tf.custom_gradient
    def log_marginal(theta):
        e = tf.exp(theta)[..., None, None]
        ls, noise = e[..., 0, :, :], e[..., -1, :, :]
        amp = e[..., 1, :, :] if learn_amplitude else tf.ones_like(ls)
        s = SQRT3 * dist / ls
        decay = tf.exp(-s)
        k_signal = amp * (1.0 + s) * decay                       # σ_f² k(R/ℓ)
        chol = tf.linalg.cholesky(k_signal + noise * eye)
        batch = tf.shape(chol)[:-2]
        rhs = tf.broadcast_to(y[:, None], tf.concat([batch, [n, 1]], 0))
        alpha = tf.linalg.cholesky_solve(chol, rhs)                # [..., n, 1]
        value = (-0.5 * tf.reduce_sum(alpha[..., 0] * y, -1)
                 - tf.reduce_sum(tf.math.log(tf.linalg.diag_part(chol)), -1)
                 - 0.5 * n * np.log(2 * np.pi))

        def grad(upstream):
            k_inv = tf.linalg.cholesky_solve(
                chol, tf.broadcast_to(eye, tf.concat([batch, [n, n]], 0)))
            w = alpha * tf.linalg.matrix_transpose(alpha) - k_inv  # α αᵀ − K⁻¹
            half_tr = lambda dk: 0.5 * tf.reduce_sum(w * dk, [-2, -1])
            parts = [half_tr(amp * s * s * decay)]                  # ∂/∂ log ℓ
            if learn_amplitude:
                parts.append(half_tr(k_signal))                      # ∂/∂ log σ_f²
            parts.append(0.5 * noise[..., 0, 0] * tf.linalg.trace(w))  # ∂/∂ log σ²
            return upstream[..., None] * tf.stack(parts, -1)

        return value, grad

    return log_marginal


def matern32_log_marginal_likelihood(x, y, length_scale, amplitude, noise_variance):
    """log N(y; 0, σ_f² k(R/ℓ) + σ² I) in float64 for one set of hyper-parameters.

    Args:
      x: `[n, d]` inputs; y: `[n]` outputs.
      length_scale, amplitude, noise_variance: ℓ, σ_f², σ², each a finite number > 0
        (ValueError naming the argument otherwise).
    Returns:
      A Python float.
    """
    for v, name in ((length_scale, "length_scale"), (amplitude, "amplitude"),
                    (noise_variance, "noise_variance")):
        _checks.positive_float(v, name)
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"`x` must be [n, d] and `y` [n], got shapes {x.shape}, {y.shape}")
    c = lambda v: tf.constant(float(v), tf.float64)
    return float(_log_marginal(tf.constant(pairwise_distances(x)), tf.constant(y),
                               c(length_scale), c(amplitude), c(noise_variance)))


def gp_matern(num_data=500, num_features=4, noise_sd=0.5, prior_scale=3.0,
              learn_amplitude=True, seed=0, data=None, gradient="analytic"):
    """The posterior of the GP's log hyper-parameters (module docstring) as a `Target`.

    Args:
      num_data, num_features: shape of X (the paper's 500 × 4).
      noise_sd: standard deviation of the simulated noise.
      prior_scale: standard deviation of the normal prior of each log hyper-parameter.
      learn_amplitude: sample log σ_f² too (dim 3); otherwise σ_f² = 1 (dim 2).
      seed: seed of the simulated data.
      data: optional `(X [n, d], y [n])` instead of simulated data.
      gradient: "analytic" (the default: ½ tr((ααᵀ − K⁻¹) ∂K), module docstring) or
        "autodiff" (differentiates through the Cholesky factorisation; about 3 times the
        cost). The two agree to rounding; the value is the same computation.
    Returns:
      A `Target` with extra attributes `data` (`(X, y)` numpy), `param_names`,
      `log_likelihood_fn` (`[..., dim] -> [...]`) and `to_natural` (numpy: θ -> (ℓ, σ_f², σ²)).
    """
    _checks.positive_float(prior_scale, "prior_scale")
    _checks.positive_float(noise_sd, "noise_sd")
    if gradient not in ("analytic", "autodiff"):
        raise ValueError(f"`gradient` must be 'analytic' or 'autodiff', got {gradient!r}")
    if data is None:
        x_np, y_np = simulate_gp_data(num_data, num_features, noise_sd, seed)
    else:
        x_np, y_np = (np.asarray(a, np.float64) for a in data)
        if x_np.ndim != 2 or y_np.shape != (x_np.shape[0],):
            raise ValueError(f"`data` must be (X [n, d], y [n]), got shapes {x_np.shape}, "
                             f"{y_np.shape}")
    dist = pairwise_distances(x_np)
    consts = {dt: (tf.constant(dist, dt), tf.constant(y_np, dt)) for dt in (tf.float32, tf.float64)}
    dim = 3 if learn_amplitude else 2
    names = (("log_length_scale", "log_amplitude", "log_noise_variance") if learn_amplitude
             else ("log_length_scale", "log_noise_variance"))
    prior_var = float(prior_scale) ** 2
    analytic = _log_marginal_analytic(*consts[tf.float64], learn_amplitude)

    def natural(theta):
        e = tf.exp(theta)
        if learn_amplitude:
            return e[..., 0], e[..., 1], e[..., 2]
        return e[..., 0], tf.ones_like(e[..., 0]), e[..., 1]

    def log_likelihood_fn(theta):
        # In float64 whatever the chain's dtype (a float32 Cholesky fails for noise/amplitude
        # ratios that the prior still allows); off the box |θ_j| <= BOX the value is −inf
        # (evaluated at a safe point, so the gradient stays finite): a trajectory that gets
        # there is a rejected divergence, never an exception or a NaN.
        d, y = consts[tf.float64]
        ok = tf.reduce_all(tf.abs(theta) <= BOX, -1)
        safe = tf.where(ok[..., None], theta, tf.zeros_like(theta))
        safe = tf.cast(safe, tf.float64)
        ll = analytic(safe) if gradient == "analytic" else _log_marginal(d, y, *natural(safe))
        return tf.where(ok, tf.cast(ll, theta.dtype), tf.constant(-np.inf, theta.dtype))

    def log_prob_fn(theta):
        prior = -0.5 * tf.reduce_sum(tf.square(theta), -1) / prior_var \
            - 0.5 * dim * np.log(2 * np.pi * prior_var)
        return log_likelihood_fn(theta) + prior

    def to_natural(theta):
        e = np.exp(np.asarray(theta, np.float64))
        if learn_amplitude:
            return e
        return np.stack([e[..., 0], np.ones_like(e[..., 0]), e[..., 1]], -1)

    target = Target(log_prob_fn, dim, name="gp_matern")
    target.data = (x_np, y_np)
    target.param_names = names
    target.log_likelihood_fn = log_likelihood_fn
    target.to_natural = to_natural
    target.prior_scale = float(prior_scale)
    return target


FACTORIES = {"gp_matern": gp_matern}
