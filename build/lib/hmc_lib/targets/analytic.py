"""Analytic targets: Gaussians, a Gaussian mixture, the rough well and the banana.

Each factory returns a `Target` with its analytic gradient and, where they exist in closed
form, exact moments and an exact sampler (the papers' settings: chapters 2, 3 and 6).
"""

import math

import numpy as np
import tensorflow as tf

from hmc_lib import _checks
from hmc_lib.targets.base import Target

_LOG_2PI = math.log(2.0 * math.pi)


def _seed(seed):
    """A stateless seed tensor from an int or an int pair."""
    if isinstance(seed, (int, np.integer)):
        return tf.constant([int(seed), 0], tf.int32)
    return tf.cast(seed, tf.int32)


def gaussian(mean=None, covariance=None, variance=None, dim=None, name="gaussian"):
    """Multivariate normal N(mean, covariance), normalised.

    Give `covariance` `[dim, dim]`, or `variance` `[dim]` for a diagonal one, or only `dim`
    for N(0, I). Gradient: -P (x - mean), P the precision.
    """
    if covariance is None and variance is None:
        if dim is None:
            raise ValueError("give `covariance`, `variance` or `dim`")
        variance = np.ones(int(dim))
    if covariance is not None:
        cov = np.asarray(covariance, np.float64)
        if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
            raise ValueError(f"`covariance` must be square, got shape {cov.shape}")
    else:
        var = np.asarray(variance, np.float64)
        if var.ndim != 1 or np.any(var <= 0):
            raise ValueError("`variance` must be a vector of positive numbers")
        cov = np.diag(var)
    d = cov.shape[0]
    mu = np.zeros(d) if mean is None else np.asarray(mean, np.float64)
    if mu.shape != (d,):
        raise ValueError(f"`mean` must have shape [{d}], got {mu.shape}")
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError as err:
        raise ValueError("`covariance` must be positive definite") from err
    prec = np.linalg.inv(cov)
    prec = 0.5 * (prec + prec.T)
    diagonal = np.allclose(cov, np.diag(np.diag(cov)))
    log_norm = -0.5 * d * _LOG_2PI - np.sum(np.log(np.diag(chol)))

    def grad_fn(x):
        dx = x - tf.cast(mu, x.dtype)
        if diagonal:
            return -dx * tf.cast(np.diag(prec), x.dtype)
        return -tf.linalg.matvec(tf.cast(prec, x.dtype), dx)

    def log_prob_fn(x):
        dx = x - tf.cast(mu, x.dtype)
        return 0.5 * tf.reduce_sum(dx * grad_fn(x), axis=-1) + tf.cast(log_norm, x.dtype)

    def sample_fn(n, seed, dtype):
        z = tf.random.stateless_normal([n, d], seed=_seed(seed), dtype=tf.float64)
        x = tf.cast(mu, tf.float64) + tf.linalg.matvec(tf.constant(chol), z)
        return tf.cast(x, dtype)

    return Target(log_prob_fn, d, name=name, mean=mu, variance=np.diag(cov),
                  sample_fn=sample_fn, grad_fn=grad_fn)


def icg50(dim=50, min_variance=1e-2, max_variance=1e2):
    """L2HMC's ill-conditioned Gaussian: diagonal variances log-spaced in [1e-2, 1e2]."""
    var = np.logspace(math.log10(min_variance), math.log10(max_variance), dim)
    return gaussian(variance=var, name="icg50" if dim == 50 else f"icg{dim}")


def scg(variances=(1e2, 1e-2), angle=math.pi / 4):
    """L2HMC's strongly correlated 2-d Gaussian: variances [1e2, 1e-2] rotated by `angle`."""
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    cov = rot @ np.diag(variances) @ rot.T
    return gaussian(covariance=cov, name="scg")


def icg30(dim=30, min_variance=0.1, max_variance=1000.0, low=1.0, high=100.0, seed=0):
    """NNgHMC's ill-conditioned Gaussian: diagonal, one variance 0.1, one 1000, the rest U(1, 100).

    Variances are sorted ascending, so coordinate 0 has 0.1 and coordinate dim-1 has 1000.
    """
    rest = np.random.default_rng(seed).uniform(low, high, size=dim - 2)
    var = np.concatenate([[min_variance], np.sort(rest), [max_variance]])
    return gaussian(variance=var, name="icg30" if dim == 30 else f"icg{dim}")


def mog(distance=4.0, variance=0.1, weights=(0.5, 0.5)):
    """Two isotropic 2-d Gaussians with variance `variance`, means (±distance/2, 0)."""
    means = np.array([[-distance / 2, 0.0], [distance / 2, 0.0]])
    w = np.asarray(weights, np.float64)
    if w.shape != (2,) or np.any(w <= 0):
        raise ValueError("`weights` must be two positive numbers")
    w = w / w.sum()
    log_w = np.log(w) - _LOG_2PI - math.log(variance)

    def component_logits(x):
        dx = x[..., None, :] - tf.cast(means, x.dtype)  # [..., 2, 2]
        return tf.cast(log_w, x.dtype) - 0.5 * tf.reduce_sum(dx**2, -1) / variance

    def log_prob_fn(x):
        return tf.reduce_logsumexp(component_logits(x), axis=-1)

    def grad_fn(x):
        resp = tf.nn.softmax(component_logits(x), axis=-1)  # [..., 2]
        dx = x[..., None, :] - tf.cast(means, x.dtype)
        return -tf.reduce_sum(resp[..., None] * dx, axis=-2) / variance

    mean = w @ means
    second = w @ (means**2) + variance
    var = second - mean**2

    def sample_fn(n, seed, dtype):
        s1, s2 = tf.unstack(tf.random.experimental.stateless_split(_seed(seed), 2))
        comp = tf.cast(tf.random.stateless_uniform([n], seed=s1, dtype=tf.float64) < w[1], tf.int32)
        z = tf.random.stateless_normal([n, 2], seed=s2, dtype=tf.float64)
        x = tf.gather(tf.constant(means), comp) + math.sqrt(variance) * z
        return tf.cast(x, dtype)

    return Target(log_prob_fn, 2, name="mog", mean=mean, variance=var,
                  sample_fn=sample_fn, grad_fn=grad_fn)


def rough_well(dim=2, eta=1e-2, period=None):
    """U(x) = ½ xᵀx + η Σ cos(x_i/p) with p = `period`, by default η (the paper's formula).

    The official L2HMC code uses p = η² unless its 'easy' flag is set: the same amplitude η,
    but a gradient perturbation of amplitude η/p = 1/η instead of 1. The density factorises
    over coordinates, so moments and draws come from a 1-d quadrature grid (spacing 2e-5,
    about 30 points per period even at p = 1e-4, where the trapezoid rule is exact to
    rounding for a periodic integrand); they are exact to that grid.
    """
    period = eta if period is None else period
    _checks.positive_float(period, "period")
    grid = np.linspace(-12.0, 12.0, 1_200_001)
    log_dens = -(0.5 * grid**2 + eta * np.cos(grid / period))
    dens = np.exp(log_dens - log_dens.max())
    dens /= np.trapezoid(dens, grid) if hasattr(np, "trapezoid") else np.trapz(dens, grid)
    dx = grid[1] - grid[0]
    var1 = float(np.sum(grid**2 * dens) * dx)
    cdf = np.cumsum(dens) * dx
    cdf /= cdf[-1]

    def log_prob_fn(x):
        return -tf.reduce_sum(0.5 * x**2 + eta * tf.cos(x / period), axis=-1)

    def grad_fn(x):
        return -x + (eta / period) * tf.sin(x / period)

    def sample_fn(n, seed, dtype):
        u = tf.random.stateless_uniform([n, dim], seed=_seed(seed), dtype=tf.float64).numpy()
        return tf.constant(np.interp(u, cdf, grid), dtype=dtype)

    name = "rough_well" if period == eta else "rough_well_official"
    return Target(log_prob_fn, dim, name=name, mean=np.zeros(dim),
                  variance=np.full(dim, var1), sample_fn=sample_fn, grad_fn=grad_fn)


def banana(a=1.0, b=0.1, c=1.0):
    """NNgHMC's banana: log f = −(a x1)²/200 − ½(c x2 + b (a x1)² − 100 b)².

    a x1 ~ N(0, 100) and c x2 + b (a x1)² − 100 b ~ N(0, 1), so the mean is 0,
    Var x1 = 100/a², Var x2 = (1 + 2·10⁴ b²)/c². Normalised.
    """
    log_norm = -_LOG_2PI - 0.5 * math.log(100.0) + math.log(abs(a * c))

    def residual(x):
        ax1 = a * x[..., 0]
        return ax1, c * x[..., 1] + b * ax1**2 - 100.0 * b

    def log_prob_fn(x):
        ax1, r = residual(x)
        return -(ax1**2) / 200.0 - 0.5 * r**2 + tf.cast(log_norm, x.dtype)

    def grad_fn(x):
        ax1, r = residual(x)
        g1 = -a * ax1 / 100.0 - r * 2.0 * b * ax1 * a
        g2 = -r * c
        return tf.stack([g1, g2], axis=-1)

    def sample_fn(n, seed, dtype):
        z = tf.random.stateless_normal([n, 2], seed=_seed(seed), dtype=tf.float64)
        ax1 = 10.0 * z[:, 0]
        x2 = (z[:, 1] - b * ax1**2 + 100.0 * b) / c
        return tf.cast(tf.stack([ax1 / a, x2], axis=-1), dtype)

    var = np.array([100.0 / a**2, (1.0 + 2e4 * b**2) / c**2])
    return Target(log_prob_fn, 2, name="banana", mean=np.zeros(2), variance=var,
                  sample_fn=sample_fn, grad_fn=grad_fn)


def banana_to_normal(x, a=1.0, b=0.1, c=1.0):
    """The map that takes the banana (`banana(a, b, c)`) to N(0, I).

    z1 = a x1 / 10 and z2 = c x2 + b (a x1)² − 100 b are independent standard normals when x
    follows the banana. `x`: `[..., 2]` array; returns a float64 array of the same shape.
    """
    x = np.asarray(x, np.float64)
    ax1 = a * x[..., 0]
    return np.stack([ax1 / 10.0, c * x[..., 1] + b * ax1**2 - 100.0 * b], -1)


def diagonal_to_normal(variance):
    """The map `x -> x / sqrt(variance)` that takes N(0, diag(variance)) to N(0, I)."""
    sd = np.sqrt(np.asarray(variance, np.float64))
    return lambda x: np.asarray(x, np.float64) / sd


FACTORIES = {
    "gaussian": gaussian,
    "icg50": icg50,
    "scg": scg,
    "icg30": icg30,
    "mog": mog,
    "rough_well": rough_well,
    "banana": banana,
}
