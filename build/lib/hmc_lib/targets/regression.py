"""Regression posteriors of the NNgHMC paper (chapters 3 and 6).

`logreg`: Bayesian logistic regression on simulated data, the setting of the paper's Sec. 4.2
(X of shape 50,000 × 200 at paper scale), with a Gaussian or (Cover-Type model of the
paper's Table 3) a Laplace prior. GARCH and GP regression: `garch.py`, `gp.py`.
"""

import numpy as np
import tensorflow as tf

from hmc_lib import _checks
from hmc_lib.targets.base import Target


def simulate_logreg_data(num_data, num_features, seed=0):
    """X ~ N(0, I) `[num_data, num_features]`, β ~ U(−1, 1)ⁱⁱᵈ, y ~ Bern(logistic(Xβ)).

    Returns numpy float64 `(X, y, beta)`; the same seed gives the same data.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((num_data, num_features))
    beta = rng.uniform(-1.0, 1.0, size=num_features)
    p = 1.0 / (1.0 + np.exp(-(x @ beta)))
    y = (rng.uniform(size=num_data) < p).astype(np.float64)
    return x, y, beta


def logreg(num_data=2000, num_features=20, prior_variance=10.0, seed=0, data=None,
           prior="gaussian"):
    """Posterior of β in y_i ~ Bern(logistic(x_iᵀβ)), β ~ N(0, prior_variance · I).

    With `prior="laplace"`: β_j ~ Laplace(0, b) iid with b = sqrt(prior_variance / 2) (the same
    variance), log p(β) = −Σ|β_j| / b, gradient −sign(β) / b (the paper's Cover-Type model).

    log π(β) = Σ_i [y_i x_iᵀβ − softplus(x_iᵀβ)] − ‖β‖² / (2 prior_variance)  (+ const),
    ∇log π(β) = Xᵀ(y − σ(Xβ)) − β / prior_variance (the analytic gradient).

    Args:
      num_data, num_features: shape of X (the paper's 50,000 × 200 at paper scale).
      prior_variance: variance of the Gaussian prior (the paper's 10; its prior swap uses 0.1).
      seed: seed of the simulated data.
      data: optional `(X, y)` to use instead of simulated data (then `num_data`,
        `num_features` and `seed` are ignored).
    Returns:
      A `Target` of dimension `num_features` (unnormalised), with extra attributes `data`
      (`(X, y)` numpy), `true_beta` (or None), `prior_variance`, `log_prior_fn` and
      `log_likelihood_fn` (each `[..., dim] -> [...]`).
    """
    _checks.positive_float(prior_variance, "prior_variance")
    if prior not in ("gaussian", "laplace"):
        raise ValueError(f"`prior` must be 'gaussian' or 'laplace', got {prior!r}")
    if data is None:
        _checks.positive_int(num_data, "num_data")
        _checks.positive_int(num_features, "num_features")
        x_np, y_np, beta = simulate_logreg_data(int(num_data), int(num_features), seed)
    else:
        x_np, y_np = (np.asarray(a, np.float64) for a in data)
        if x_np.ndim != 2 or y_np.shape != (x_np.shape[0],):
            raise ValueError(f"`data` must be (X [n, d], y [n]), got shapes {x_np.shape}, {y_np.shape}")
        if not np.all((y_np == 0) | (y_np == 1)):
            raise ValueError("`data`: y must be 0 or 1")
        beta = None
    dim = x_np.shape[1]
    prior_variance = float(prior_variance)
    # Eager tensors in both dtypes: captured by tf.function as inputs, never embedded.
    tensors = {dt: (tf.constant(x_np, dt), tf.constant(y_np, dt)) for dt in (tf.float32, tf.float64)}

    def logits(b):
        x, _ = tensors[b.dtype]
        return tf.einsum("nd,...d->...n", x, b)

    def log_likelihood_fn(b):
        _, y = tensors[b.dtype]
        z = logits(b)
        return tf.reduce_sum(y * z - tf.math.softplus(z), axis=-1)

    laplace_scale = float(np.sqrt(prior_variance / 2.0))

    def log_prior_fn(b):
        if prior == "laplace":
            return -tf.reduce_sum(tf.abs(b), axis=-1) / laplace_scale
        return -0.5 * tf.reduce_sum(tf.square(b), axis=-1) / prior_variance

    def grad_log_prior(b):
        if prior == "laplace":
            return -tf.sign(b) / laplace_scale
        return -b / prior_variance

    def log_prob_fn(b):
        return log_likelihood_fn(b) + log_prior_fn(b)

    def grad_fn(b):
        x, y = tensors[b.dtype]
        resid = y - tf.math.sigmoid(logits(b))            # [..., n]
        return tf.einsum("...n,nd->...d", resid, x) + grad_log_prior(b)

    target = Target(log_prob_fn, dim, name="logreg", grad_fn=grad_fn)
    target.prior = prior
    target.data = (x_np, y_np)
    target.true_beta = beta
    target.prior_variance = prior_variance
    target.log_prior_fn = log_prior_fn
    target.log_likelihood_fn = log_likelihood_fn
    return target


def logreg_laplace(target, iterations=50, tol=1e-10):
    """Laplace approximation of a `logreg` posterior: its mode and the inverse Hessian there.

    Newton's method on log π in float64, from β = 0 (log π is strictly concave).

    Args:
      target: a target made by `logreg` (uses `target.data` and `target.prior_variance`).
      iterations: at most this many Newton steps; tol: stop when the step's norm is below it.
    Returns:
      numpy `(mode [dim], covariance [dim, dim])`.
    """
    if not hasattr(target, "data") or not hasattr(target, "prior_variance"):
        raise TypeError(f"`target` must be a `logreg` target, got {target!r}")
    if getattr(target, "prior", "gaussian") != "gaussian":
        raise TypeError("`target` must have the Gaussian prior (Newton needs a smooth log π)")
    _checks.positive_int(iterations, "iterations")
    x, y = target.data
    precision = np.eye(x.shape[1]) / target.prior_variance
    beta = np.zeros(x.shape[1])
    for _ in range(int(iterations)):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        grad = x.T @ (y - p) - precision @ beta
        hess = (x * (p * (1.0 - p))[:, None]).T @ x + precision
        step = np.linalg.solve(hess, grad)
        beta = beta + step
        if np.linalg.norm(step) < tol:
            break
    p = 1.0 / (1.0 + np.exp(-(x @ beta)))
    hess = (x * (p * (1.0 - p))[:, None]).T @ x + precision
    return beta, np.linalg.inv(hess)


FACTORIES = {"logreg": logreg}
