"""Pseudo-marginal targets: an importance-sampling estimate of an intractable likelihood.

A `PseudoMarginalTarget` holds a prior on θ and log importance weights `w_ti(θ, u)` driven by
standard-normal auxiliaries `u` (chapter 4). The estimator is

    log p̂(y | θ, u) = Σ_t (logsumexp_i w_ti − log N),

so p̂ is unbiased for p(y | θ) = Π_t ∫ p(y_t | X, θ) p(X | θ) dX. Two problems live here:

- `glmm`: the Bernoulli GLMM with a two-component Gaussian-mixture random effect of
  Alenlöv, Doucet & Lindsten (2021, Sec. 4) and Chen (2025, Part II), with a hand-derived
  gradient (`glmm_grad_manual`) written independently of autodiff;
- `gaussian_random_effects`: Gaussian random effects with Gaussian observations, where
  p(y | θ) is Gaussian in closed form, so the exact likelihood and (by quadrature over the
  2-d θ) the exact posterior moments are known: the test bed for unbiasedness and invariance.

Every normalising constant is kept in the weights (1/√(2π) of each Gaussian, the importance
density's 1/3), so log p̂ estimates the true log-likelihood, not a shifted one.
"""

import math

import numpy as np
import tensorflow as tf

from hmc_lib import _checks

_LOG_2PI = math.log(2.0 * math.pi)


class PseudoMarginalTarget:
    """Prior × importance-sampling likelihood estimate over (θ, u).

    Args:
      log_prior_fn: `[..., theta_dim] -> [...]`, log p(θ) (normalised or not).
      log_weights_fn: `(theta [..., theta_dim], u [..., *u_shape]) -> [..., T, N]`, the log
        importance weights; `u ~ N(0, I)` by construction.
      theta_dim: int, dimension of θ.
      u_shape: tuple of ints, the shape of one chain's u (e.g. `(T, N)`); its last axis is N.
      name: optional name.
      value_and_grad_fn: optional hand-derived `(theta, u) -> (log_joint, ∇_θ, ∇_u)`; without
        it `value_and_grad` uses autodiff.
      true_theta: optional `[theta_dim]` parameters that generated the data.
      data: optional dict of the data (numpy arrays).
      exact_log_likelihood: optional callable `theta [..., theta_dim] -> [...]`, the exact
        log p(y | θ) where it is known.
      posterior_mean, posterior_variance: optional exact posterior moments `[theta_dim]`.
    """

    def __init__(self, log_prior_fn, log_weights_fn, theta_dim, u_shape, name=None,
                 value_and_grad_fn=None, true_theta=None, data=None,
                 exact_log_likelihood=None, posterior_mean=None, posterior_variance=None):
        for fn, arg in ((log_prior_fn, "log_prior_fn"), (log_weights_fn, "log_weights_fn")):
            if not callable(fn):
                raise TypeError(f"`{arg}` must be callable, got {fn!r}")
        if value_and_grad_fn is not None and not callable(value_and_grad_fn):
            raise TypeError(f"`value_and_grad_fn` must be callable, got {value_and_grad_fn!r}")
        _checks.positive_int(theta_dim, "theta_dim")
        try:
            u_shape = tuple(int(s) for s in u_shape)
        except TypeError as err:
            raise TypeError(f"`u_shape` must be a tuple of ints, got {u_shape!r}") from err
        if not u_shape or any(s < 1 for s in u_shape):
            raise ValueError(f"`u_shape` must be a non-empty tuple of positive ints, got {u_shape}")
        self.theta_dim = int(theta_dim)
        self.u_shape = u_shape
        self.name = name or "pseudo_marginal"
        self._log_prior_fn = log_prior_fn
        self._log_weights_fn = log_weights_fn
        self._manual = value_and_grad_fn
        self.true_theta = None if true_theta is None else np.asarray(true_theta, np.float64)
        self.data = data
        self.exact_log_likelihood = exact_log_likelihood
        self.posterior_mean = posterior_mean
        self.posterior_variance = posterior_variance

    def __repr__(self):
        return f"PseudoMarginalTarget(name={self.name!r}, theta_dim={self.theta_dim}, u_shape={self.u_shape})"

    @property
    def num_importance(self):
        """N, the number of importance draws per factor (the last axis of u)."""
        return self.u_shape[-1]

    @property
    def has_manual_grad(self):
        return self._manual is not None

    def _check(self, theta, u):
        theta = _checks.floating(_checks.state_shape(theta, self.theta_dim, "theta"), "theta")
        u = tf.convert_to_tensor(u, dtype=theta.dtype)
        k = len(self.u_shape)
        if u.shape.rank is not None:
            if u.shape.rank < k or tuple(u.shape[u.shape.rank - k:]) != self.u_shape:
                raise ValueError(f"`u` must have shape [..., {', '.join(map(str, self.u_shape))}], "
                                 f"got {u.shape.as_list()}")
        return theta, u

    def log_prior(self, theta):
        """log p(θ): `[..., theta_dim] -> [...]`."""
        theta = _checks.floating(_checks.state_shape(theta, self.theta_dim, "theta"), "theta")
        return self._log_prior_fn(theta)

    def log_weights(self, theta, u):
        """Log importance weights `[..., T, N]`."""
        theta, u = self._check(theta, u)
        return self._log_weights_fn(theta, u)

    def log_likelihood_hat(self, theta, u):
        """log p̂(y | θ, u) = Σ_t (logsumexp_i w_ti − log N): `[...]`."""
        lw = self.log_weights(theta, u)
        n = tf.cast(tf.shape(lw)[-1], lw.dtype)
        return tf.reduce_sum(tf.reduce_logsumexp(lw, axis=-1) - tf.math.log(n), axis=-1)

    def log_joint(self, theta, u):
        """log p(θ) + log p̂(y | θ, u): `[...]` (the N(0, I) density of u is not included)."""
        return self.log_prior(theta) + self.log_likelihood_hat(theta, u)

    def autodiff_value_and_grad(self, theta, u):
        """`(log_joint, ∇_θ, ∇_u)` by automatic differentiation."""
        theta, u = self._check(theta, u)
        with tf.GradientTape() as tape:
            tape.watch([theta, u])
            value = self.log_joint(theta, u)
        g_theta, g_u = tape.gradient(value, [theta, u])
        return value, g_theta, g_u

    def value_and_grad(self, theta, u):
        """`(log_joint, ∇_θ log_joint, ∇_u log_joint)`: hand-derived where given, else autodiff."""
        if self._manual is None:
            return self.autodiff_value_and_grad(theta, u)
        theta, u = self._check(theta, u)
        return self._manual(theta, u)

    def grad(self, theta, u):
        """`(∇_θ, ∇_u)` of `log_joint` (the `grad_fn` that `pm_strang` takes)."""
        _, g_theta, g_u = self.value_and_grad(theta, u)
        return g_theta, g_u


def _normal_log_prior(scale):
    var = float(scale) ** 2

    def log_prior(theta):
        return tf.reduce_sum(-0.5 * tf.square(theta) / var - 0.5 * (_LOG_2PI + math.log(var)), -1)

    return log_prior


def _split(theta, p):
    """θ = (β [p], μ₁, μ₂, log λ₁, log λ₂, logit w₁) -> pieces; scalars shaped [..., 1, 1]."""
    beta = theta[..., :p]
    rest = [theta[..., p + k][..., None, None] for k in range(5)]
    return (beta, *rest)


# ----------------------------------------------------------------------------------------
# GLMM (Alenlöv et al. 2021 Sec. 4.1-4.2; Chen 2025 Part II)

def simulate_glmm(num_individuals=500, num_obs=6, num_covariates=8, seed=0,
                  mu=(0.0, 3.0), precision=(10.0, 3.0), weight=0.8, covariate_scale=None):
    """Simulates the GLMM's data: Z ~ N(0, c² I) `[T, n, p]`, β ~ N(0, I) `[p]`,
    X_t ~ w N(μ₁, 1/λ₁) + (1 − w) N(μ₂, 1/λ₂) (λ are precisions), y_tj ~ Bern(σ(X_t + Z_tjᵀβ)).

    c = `covariate_scale`, by default 1/√p (the book's earlier variant; Chen §4.2 draws
    Z ~ N(0, I), c = 1: see `glmm`). Returns `(data, true_theta)`: data = dict(Z, y, X, component); true_theta
    in the sampled parameterisation (β, μ₁, μ₂, log λ₁, log λ₂, logit w₁).
    """
    rng = np.random.default_rng(seed)
    T, n, p = int(num_individuals), int(num_obs), int(num_covariates)
    c = 1.0 / math.sqrt(p) if covariate_scale is None else float(covariate_scale)
    Z = c * rng.standard_normal((T, n, p))
    beta = rng.standard_normal(p)
    first = rng.uniform(size=T) < weight
    means = np.where(first, mu[0], mu[1])
    sds = np.where(first, 1.0 / math.sqrt(precision[0]), 1.0 / math.sqrt(precision[1]))
    X = means + sds * rng.standard_normal(T)
    eta = X[:, None] + Z @ beta
    y = (rng.uniform(size=(T, n)) < 1.0 / (1.0 + np.exp(-eta))).astype(np.float64)
    true_theta = np.concatenate([beta, [mu[0], mu[1], math.log(precision[0]),
                                        math.log(precision[1]), math.log(weight / (1 - weight))]])
    return dict(Z=Z, y=y, X=X, component=np.where(first, 0, 1)), true_theta


def glmm_relabel(theta):
    """Undoes label switching of the GLMM's mixture in draws `theta [..., p + 5]` (numpy).

    The likelihood and the N(0, σ²) prior are both invariant under swapping the components,
    (μ₁, μ₂, log λ₁, log λ₂, logit w₁) -> (μ₂, μ₁, log λ₂, log λ₁, −logit w₁), so the posterior
    is symmetric and a chain may visit either labelling. Summaries of "component 1" are only
    meaningful after choosing a labelling: here component 1 is the one with the larger weight
    (w₁ ≥ ½), as in the data-generating mixture (w₁ = 0.8). This is post-processing of draws,
    not a constraint in the model. Returns `(relabelled theta, swapped [...] bool)`.
    """
    theta = np.array(theta, dtype=np.float64, copy=True)
    swapped = theta[..., -1] < 0.0
    mix = theta[..., -5:]
    mix[swapped] = mix[swapped][:, [1, 0, 3, 2, 4]] * np.array([1.0, 1.0, 1.0, 1.0, -1.0])
    theta[..., -5:] = mix
    return theta, swapped


def _glmm_pieces(theta, u, Z, y, p, q_scale):
    """Shared forward pass of the GLMM weights; returns every intermediate the gradient needs."""
    dt = theta.dtype
    Z, y = tf.cast(Z, dt), tf.cast(y, dt)
    beta, mu1, mu2, loglam1, loglam2, a = _split(theta, p)
    zb = tf.einsum("tjp,...p->...tj", Z, beta)                      # [..., T, n]
    X = q_scale * u                                                  # [..., T, N]
    eta = X[..., :, None, :] + zb[..., :, :, None]                   # [..., T, n, N]
    # log g = Σ_j y η − softplus(η)  (Bernoulli with logit η)
    log_g = (X * tf.reduce_sum(y, -1)[:, None] + tf.reduce_sum(y * zb, -1)[..., None]
             - tf.reduce_sum(tf.math.softplus(eta), -2))
    lam1, lam2 = tf.exp(loglam1), tf.exp(loglam2)
    logw1, logw2 = -tf.math.softplus(-a), -tf.math.softplus(a)
    d1, d2 = X - mu1, X - mu2
    lp1 = logw1 + 0.5 * loglam1 - 0.5 * _LOG_2PI - 0.5 * lam1 * tf.square(d1)
    lp2 = logw2 + 0.5 * loglam2 - 0.5 * _LOG_2PI - 0.5 * lam2 * tf.square(d2)
    log_f = tf.reduce_logsumexp(tf.stack([lp1, lp2], 0), axis=0)
    # q = N(0, q_scale²) on X = q_scale·u, with its normalising constant
    log_q = -math.log(q_scale) - 0.5 * _LOG_2PI - 0.5 * tf.square(u)
    lw = log_g + log_f - log_q
    return dict(lw=lw, eta=eta, y=y, Z=Z, X=X, lam1=lam1, lam2=lam2, d1=d1, d2=d2, lp1=lp1,
                lp2=lp2, log_f=log_f, a=a)


def glmm_grad_manual(theta, u, Z, y, prior_scale=10.0, q_scale=3.0):
    """Hand-derived `(log_joint, ∇_θ, ∇_u)` of the GLMM (no autodiff).

    With normalised weights W_ti = softmax_i(w_ti), ∇ log p̂ = Σ_ti W_ti ∇w_ti, and for
    X = 3u, r_k the mixture responsibilities, s = σ(η):
      ∂w/∂β = Σ_j (y_j − s_j) Z_j;  ∂w/∂μ_k = r_k λ_k (X − μ_k);
      ∂w/∂log λ_k = r_k (½ − ½ λ_k (X − μ_k)²);  ∂w/∂logit w₁ = r₁ − w₁;
      ∂w/∂u = 3 [Σ_j (y_j − s_j) − r₁ λ₁ (X − μ₁) − r₂ λ₂ (X − μ₂)] + u   (the +u from −log q).
    Shapes: theta `[..., p + 5]`, u `[..., T, N]`; Z `[T, n, p]`, y `[T, n]`.
    """
    p = Z.shape[-1]
    k = _glmm_pieces(theta, u, Z, y, p, q_scale)
    lw = k["lw"]
    m = tf.reduce_logsumexp(lw, -1)                                   # [..., T]
    W = tf.exp(lw - m[..., None])                                     # [..., T, N]
    n_imp = tf.cast(tf.shape(lw)[-1], lw.dtype)
    loglik = tf.reduce_sum(m - tf.math.log(n_imp), -1)
    resid = k["y"][..., None] - tf.sigmoid(k["eta"])                  # [..., T, n, N]
    A = tf.reduce_sum(resid * W[..., :, None, :], -1)                 # [..., T, n]
    g_beta = tf.einsum("...tj,tjp->...p", A, k["Z"])
    r1 = tf.exp(k["lp1"] - k["log_f"])
    r2 = tf.exp(k["lp2"] - k["log_f"])
    w1 = tf.sigmoid(k["a"])
    sum_ti = lambda t: tf.reduce_sum(W * t, [-2, -1])
    g_mu1 = sum_ti(r1 * k["lam1"] * k["d1"])
    g_mu2 = sum_ti(r2 * k["lam2"] * k["d2"])
    g_ll1 = sum_ti(r1 * (0.5 - 0.5 * k["lam1"] * tf.square(k["d1"])))
    g_ll2 = sum_ti(r2 * (0.5 - 0.5 * k["lam2"] * tf.square(k["d2"])))
    g_a = sum_ti(r1 - w1)
    dlw_dX = (tf.reduce_sum(resid, -2) - r1 * k["lam1"] * k["d1"] - r2 * k["lam2"] * k["d2"])
    g_u = W * (q_scale * dlw_dX + u)
    var = prior_scale ** 2
    log_prior = tf.reduce_sum(-0.5 * tf.square(theta) / var - 0.5 * (_LOG_2PI + math.log(var)), -1)
    g_theta = tf.concat([g_beta, tf.stack([g_mu1, g_mu2, g_ll1, g_ll2, g_a], -1)], -1) - theta / var
    return log_prior + loglik, g_theta, g_u


def _random_effect_grid(theta, data, num_grid, width):
    """Quadrature pieces at fixed θ on a uniform grid x `[G]` over [−width, width]:
    log p(y_t | X = x) `[T, G]` and the two weighted mixture log-densities of x, each `[G]`."""
    theta = np.asarray(theta, np.float64)
    Z, y = data["Z"], data["y"]
    p = Z.shape[-1]
    beta, mu1, mu2, ll1, ll2, a = theta[:p], *theta[p:]
    x = np.linspace(-width, width, num_grid)
    eta = x[None, None, :] + (Z @ beta)[:, :, None]
    log_g = np.sum(y[..., None] * eta - np.logaddexp(0.0, eta), axis=1)       # [T, G]
    w1 = 1.0 / (1.0 + np.exp(-a))
    lp1 = np.log(w1) + 0.5 * ll1 - 0.5 * _LOG_2PI - 0.5 * np.exp(ll1) * (x - mu1) ** 2
    lp2 = np.log1p(-w1) + 0.5 * ll2 - 0.5 * _LOG_2PI - 0.5 * np.exp(ll2) * (x - mu2) ** 2
    return x, log_g, lp1, lp2


def glmm_exact_log_likelihood(theta, data, num_grid=2001, width=12.0):
    """log p(y | θ) of the GLMM by quadrature over each X_t (numpy, float64; for checks).

    theta: `[theta_dim]` numpy. A uniform grid over [−width, width] (the random effect lies
    well inside it for the parameters of interest) with the trapezoidal rule.
    """
    x, log_g, lp1, lp2 = _random_effect_grid(theta, data, num_grid, width)
    integrand = log_g + np.logaddexp(lp1, lp2)[None, :]
    mx = integrand.max(axis=1, keepdims=True)
    vals = np.exp(integrand - mx)
    dx = x[1] - x[0]
    integral = dx * (vals.sum(axis=1) - 0.5 * (vals[:, 0] + vals[:, -1]))
    return float(np.sum(np.log(integral) + mx[:, 0]))


def glmm_random_effect_posterior(theta, data, num_grid=2001, width=12.0):
    """What the data say about each random effect at fixed θ, by quadrature (numpy, float64).

    theta: `[theta_dim]`. Returns dict of `[T]` arrays: `mean` and `sd` of X_t given y_t and θ,
    and `p_second` = P(X_t came from the second mixture component | y_t, θ). Same grid as
    `glmm_exact_log_likelihood`.
    """
    x, log_g, lp1, lp2 = _random_effect_grid(theta, data, num_grid, width)
    lpost = log_g + np.logaddexp(lp1, lp2)[None, :]
    post = np.exp(lpost - lpost.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    mean = post @ x
    sd = np.sqrt(np.maximum(post @ x ** 2 - mean ** 2, 0.0))
    second = np.exp(lp2 - np.logaddexp(lp1, lp2))                            # [G]
    return dict(mean=mean, sd=sd, p_second=post @ second)


def glmm(num_individuals=500, num_obs=6, num_covariates=8, num_importance=128, seed=0,
         prior_scale=10.0, q_scale=3.0, mu=(0.0, 3.0), precision=(10.0, 3.0), weight=0.8,
         covariate_scale=None):
    """The GLMM of chapter 4 as a `PseudoMarginalTarget`.

    θ = (β [num_covariates], μ₁, μ₂, log λ₁, log λ₂, logit w₁) with λ precisions, prior
    N(0, prior_scale²) on each coordinate of this parameterisation (stated once; no Jacobian);
    importance density q = N(0, q_scale²), X = q_scale·u; u has shape `[T, N]`. The data are
    simulated from `seed`. The target's `value_and_grad` is the hand-derived gradient.

    Covariates: Z ~ N(0, covariate_scale² I). Chen (2025, §4.2; his code too) draws every
    element of Z from N(0, 1): pass `covariate_scale=1.0` for his design, which chapter 4
    and its recorded run use (`hmc_lib.pm.experiments`). The default, 1/√p, is the book's
    earlier variant, kept for the chapters that were sized on it (7 and 9) and as chapter 4's
    labelled comparison. With Z ~ N(0, I) and β ~ N(0, I), Var(Zᵀβ) ≈ |β|² ≈ p = 8, several
    times the random effect's (Var X ≈ 1.6), so each individual's six Bernoulli observations
    say less about its random effect and the mixture's posterior is wider; with 1/√p,
    Var(Zᵀβ) ≈ |β|²/p ≈ 1, comparable to Var X.
    The mixture is only identified up to swapping its labels; see `glmm_relabel`.
    """
    for v, arg in ((num_individuals, "num_individuals"), (num_obs, "num_obs"),
                   (num_covariates, "num_covariates"), (num_importance, "num_importance")):
        _checks.positive_int(v, arg)
    _checks.positive_float(prior_scale, "prior_scale")
    _checks.positive_float(q_scale, "q_scale")
    if covariate_scale is not None:
        _checks.positive_float(covariate_scale, "covariate_scale")
    data, true_theta = simulate_glmm(num_individuals, num_obs, num_covariates, seed,
                                     mu=mu, precision=precision, weight=weight,
                                     covariate_scale=covariate_scale)
    Z, y, p = data["Z"], data["y"], int(num_covariates)

    def log_weights(theta, u):
        return _glmm_pieces(theta, u, Z, y, p, q_scale)["lw"]

    def value_and_grad(theta, u):
        return glmm_grad_manual(theta, u, Z, y, prior_scale, q_scale)

    names = [f"beta{i}" for i in range(p)] + ["mu1", "mu2", "log_lambda1", "log_lambda2", "logit_w1"]
    data = dict(data, names=names)
    return PseudoMarginalTarget(
        _normal_log_prior(prior_scale), log_weights, theta_dim=p + 5,
        u_shape=(int(num_individuals), int(num_importance)), name="glmm",
        value_and_grad_fn=value_and_grad, true_theta=true_theta, data=data,
        exact_log_likelihood=lambda theta: glmm_exact_log_likelihood(theta, data))


# ----------------------------------------------------------------------------------------
# Gaussian random effects: exact likelihood and posterior

def gaussian_random_effects(num_individuals=30, num_obs=8, num_importance=8, sigma_y=1.0,
                            true_mu=1.0, true_log_sigma_x=0.0, prior_scale=10.0, seed=0,
                            inflation=2.0, grid_size=301):
    """X_t ~ N(μ, σ_x²), y_tj | X_t ~ N(X_t, σ_y²) (σ_y known), θ = (μ, log σ_x).

    Importance density: the exact conditional of X_t given y_t and θ, N(m_t, s²), with its
    standard deviation inflated by `inflation` (so the estimator is noisy but well behaved):
    X_ti = m_t(θ) + inflation·s(θ)·u_ti. Exactly, y_t ~ N(μ1, σ_y² I + σ_x² 11ᵀ): the target
    carries `exact_log_likelihood(theta)` (TF, any batch shape) and the exact posterior
    moments `posterior_mean`, `posterior_variance` (quadrature on a grid over θ). Its
    gradients are by autodiff.
    """
    for v, arg in ((num_individuals, "num_individuals"), (num_obs, "num_obs"),
                   (num_importance, "num_importance"), (grid_size, "grid_size")):
        _checks.positive_int(v, arg)
    _checks.positive_float(sigma_y, "sigma_y")
    _checks.positive_float(inflation, "inflation")
    T, n, N = int(num_individuals), int(num_obs), int(num_importance)
    rng = np.random.default_rng(seed)
    X = true_mu + math.exp(true_log_sigma_x) * rng.standard_normal(T)
    y = X[:, None] + sigma_y * rng.standard_normal((T, n))
    s2y = float(sigma_y) ** 2
    log_prior = _normal_log_prior(prior_scale)

    def log_weights(theta, u):
        yy = tf.cast(y, theta.dtype)
        mu = theta[..., 0][..., None, None]
        log_sx = theta[..., 1][..., None, None]
        prec = tf.exp(-2.0 * log_sx) + n / s2y                        # [..., 1, 1]
        m = (mu * tf.exp(-2.0 * log_sx) + tf.reduce_sum(yy, -1)[:, None] / s2y) / prec
        scale = inflation * tf.math.rsqrt(prec)
        Xs = m + scale * u                                            # [..., T, N]
        log_g = (-0.5 * n * (_LOG_2PI + math.log(s2y))
                 - 0.5 * tf.reduce_sum(tf.square(yy[..., None] - Xs[..., :, None, :]), -2) / s2y)
        log_f = -log_sx - 0.5 * _LOG_2PI - 0.5 * tf.square((Xs - mu) * tf.exp(-log_sx))
        log_q = -tf.math.log(scale) - 0.5 * _LOG_2PI - 0.5 * tf.square(u)
        return log_g + log_f - log_q

    def exact_np(mu, log_sx):
        """Exact log p(y | θ) for numpy arrays mu, log_sx of the same shape."""
        s2x = np.exp(2.0 * log_sx)[..., None]
        r = y - mu[..., None, None]                       # [..., T, n]
        sr = r.sum(-1)
        quad = ((r ** 2).sum(-1) - s2x / (s2y + n * s2x) * sr ** 2) / s2y
        logdet = (n - 1) * math.log(s2y) + np.log(s2y + n * s2x)
        return np.sum(-0.5 * n * _LOG_2PI - 0.5 * logdet - 0.5 * quad, -1)

    def exact_log_likelihood(theta):
        theta = tf.convert_to_tensor(theta)
        dt = theta.dtype if theta.dtype.is_floating else tf.float64
        theta = tf.cast(theta, dt)
        yy = tf.cast(y, dt)
        s2x = tf.exp(2.0 * theta[..., 1])[..., None]
        r = yy - theta[..., 0][..., None, None]
        sr = tf.reduce_sum(r, -1)
        quad = (tf.reduce_sum(r ** 2, -1) - s2x / (s2y + n * s2x) * sr ** 2) / s2y
        logdet = (n - 1) * math.log(s2y) + tf.math.log(s2y + n * s2x)
        return tf.reduce_sum(-0.5 * n * _LOG_2PI - 0.5 * logdet - 0.5 * quad, -1)

    # Exact posterior moments by quadrature: a coarse grid locates the mass, a fine one integrates.
    def moments(lo, hi, size):
        g0, g1 = np.linspace(lo[0], hi[0], size), np.linspace(lo[1], hi[1], size)
        M, L = np.meshgrid(g0, g1, indexing="ij")
        lp = exact_np(M, L) - 0.5 * (M ** 2 + L ** 2) / prior_scale ** 2
        w = np.exp(lp - lp.max())
        w /= w.sum()
        mean = np.array([np.sum(w * M), np.sum(w * L)])
        var = np.array([np.sum(w * (M - mean[0]) ** 2), np.sum(w * (L - mean[1]) ** 2)])
        return mean, var

    ybar = float(y.mean())
    mean, var = moments((ybar - 5.0, -10.0), (ybar + 5.0, 4.0), 401)
    sd = np.sqrt(var)
    mean, var = moments(mean - 10 * sd, mean + 10 * sd, int(grid_size))

    return PseudoMarginalTarget(
        log_prior, log_weights, theta_dim=2, u_shape=(T, N), name="gaussian_random_effects",
        true_theta=np.array([true_mu, true_log_sigma_x]),
        data=dict(y=y, X=X, sigma_y=float(sigma_y)), exact_log_likelihood=exact_log_likelihood,
        posterior_mean=mean, posterior_variance=var)


FACTORIES = {"glmm": glmm, "gaussian_random_effects": gaussian_random_effects}
