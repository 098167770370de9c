"""Chen's preferred-habitat term-premium model (chapter 8): simulator and posterior.

The model, on an Euler–Maruyama grid of step Δt (years), with the short rate r, the
arbitrageurs' wealth W and the log prices p^τ of zero-coupon bonds of the nine maturities
τ ∈ {¼, 1, 2, 5, 7, 10, 15, 20, 30}:

    r_{k+1} = r_k + κ (r̄ − r_k) Δt + σ^r √Δt ε^r_k,
    W_{k+1} = W_k + ω Δt + σ^W √Δt ε^W_k,
    p^τ_{k+1} = p^τ_k + (r_k + π^τ_k − ½ (σ^τ)²) Δt − σ^τ √Δt ε^r_k + σ^e √Δt ε^τ_k,
    π^τ_k = (γ / W_k) σ^τ Σ_s X^s σ^s Δ^s = γ (σ^s)² M τ / W_k,   σ^τ = σ^s τ,

with ε ~ N(0, 1) independent. Our reading of Chen's sketch (stated in chapter 8):

- The short rate mean-reverts: κ (r̄ − r) dt (Chen writes κ (r − r̄), explosive for κ > 0).
- σ^s is the yield volatility: a τ-year zero has duration τ, so its log-price volatility is
  σ^τ = σ^s τ, and every bond loads on the short-rate shock (one factor; a rate rise is a
  price fall). π^τ is the mean-variance arbitrageur's premium on bond τ: risk aversion γ over
  wealth W, times the covariance of bond τ with the arbitrageurs' portfolio, which holds the
  habitat supply X^s (a known hump over maturities) in buckets of width Δ^s;
  M = Σ_s X^s s Δ^s is the supply's mean duration.
- σ^e (known, small) are bond-specific pricing shocks. Without them the nine price increments
  and the rate increment share one shock: their Euler–Maruyama density is singular (it lives
  on a line), σ^s and the premium's drift are fixed exactly by two observations, and there is
  no posterior to sample. With them the transition density is a proper Gaussian.

With every state observed the Euler–Maruyama transition density is Gaussian, so the
likelihood of the discretised model is exact and cheap (`log_likelihood`): the likelihood is
*not* intractable. It becomes intractable when a state is latent: with W unobserved the
premium depends on 1/W_k along a latent path, and `latent_wealth` gives the unbiased
importance-sampling estimate that pseudo-marginal HMC needs (`term_premium_latent_wealth`).

Parameters are sampled in unconstrained, roughly unit-scale coordinates
φ = (log γ, log σ^s, log κ, log σ^r, 100 ω, log σ^W, 100 r̄) (`to_natural`,
`to_unconstrained`), with independent normal priors on φ (`PRIOR_MEAN`, `PRIOR_SD`), stated
once in this parameterisation. Everything is float64: rates are of order 1e-2 and the
log-likelihood sums thousands of terms.
"""

import math

import numpy as np
import tensorflow as tf

from hmc_lib import _checks
from hmc_lib.targets.base import Target

_LOG_2PI = math.log(2.0 * math.pi)

#: the nine maturities, years
MATURITIES = np.array([0.25, 1.0, 2.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0])
#: parameter names, in the order of θ and φ
NAMES = ("gamma", "sigma_s", "kappa", "sigma_r", "omega", "sigma_w", "r_bar")
#: symbols for tables
SYMBOLS = ("γ", "σ^s", "κ", "σ^r", "ω", "σ^W", "r̄")
#: true parameters of the book's main data set (natural units: rates and volatilities per year)
TRUE_THETA = np.array([1.0, 0.009, 0.25, 0.012, 0.02, 0.06, 0.035])
#: prior on φ: independent normals (prior medians of θ: γ 1, σ^s 1%, κ 0.3, σ^r 1%, ω 3%,
#: σ^W 5%, r̄ 3%)
PRIOR_MEAN = np.array([0.0, math.log(0.01), math.log(0.3), math.log(0.01), 3.0,
                       math.log(0.05), 3.0])
PRIOR_SD = np.array([0.5, 0.3, 0.5, 0.3, 1.0, 0.3, 1.0])
_LOG = np.array([True, True, True, True, False, True, False])   # log-transformed coordinates
_UNIT = np.where(_LOG, 1.0, 100.0)                                # 100ω, 100r̄
DIM = 7


def bucket_widths(maturities=MATURITIES):
    """Δ^s: the width of each maturity's bucket (edges halfway between neighbours, 0 and the
    longest maturity at the ends). `[9]` years."""
    m = np.asarray(maturities, np.float64)
    edges = np.concatenate([[0.0], 0.5 * (m[1:] + m[:-1]), [m[-1]]])
    return np.diff(edges)


def habitat_supply(maturities=MATURITIES, peak=8.0):
    """X^s: the arbitrageurs' holdings, a hump s·exp(−s/peak) normalised so Σ X^s Δ^s = 1."""
    m = np.asarray(maturities, np.float64)
    x = m * np.exp(-m / peak)
    return x / np.sum(x * bucket_widths(m))


def supply_duration(maturities=MATURITIES):
    """M = Σ_s X^s s Δ^s, the mean maturity of the supply (years)."""
    m = np.asarray(maturities, np.float64)
    return float(np.sum(habitat_supply(m) * m * bucket_widths(m)))


# ----------------------------------------------------------------------------------------
# parameter transforms

def to_natural(phi):
    """φ `[..., 7]` -> θ = (γ, σ^s, κ, σ^r, ω, σ^W, r̄) `[..., 7]` (numpy or TF)."""
    if tf.is_tensor(phi):
        log = tf.constant(_LOG)
        unit = tf.constant(_UNIT, phi.dtype)
        return tf.where(log, tf.exp(phi), phi / unit)
    phi = np.asarray(phi, np.float64)
    return np.where(_LOG, np.exp(phi), phi / _UNIT)


def to_unconstrained(theta):
    """θ `[..., 7]` (γ, σ^s, κ, σ^r, σ^W > 0) -> φ `[..., 7]` (numpy)."""
    theta = np.asarray(theta, np.float64)
    check_theta(theta)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(_LOG, np.log(np.where(_LOG, theta, 1.0)), theta * _UNIT)


def check_theta(theta, name="theta"):
    """Checks natural parameters `[..., 7]`: finite, and γ, σ^s, κ, σ^r, σ^W > 0."""
    theta = np.asarray(theta, np.float64)
    if theta.ndim < 1 or theta.shape[-1] != DIM:
        raise ValueError(f"`{name}` must have shape [..., {DIM}] ({', '.join(NAMES)}), "
                         f"got {list(theta.shape)}")
    if not np.all(np.isfinite(theta)):
        raise ValueError(f"`{name}` must be finite")
    bad = [NAMES[i] for i in range(DIM) if _LOG[i] and np.any(theta[..., i] <= 0)]
    if bad:
        raise ValueError(f"`{name}`: {', '.join(bad)} must be > 0")
    return theta


def log_prior(phi):
    """log p(φ), independent normals `PRIOR_MEAN`, `PRIOR_SD`: `[..., 7] -> [...]`."""
    mean = tf.constant(PRIOR_MEAN, phi.dtype)
    sd = tf.constant(PRIOR_SD, phi.dtype)
    z = (phi - mean) / sd
    return tf.reduce_sum(-0.5 * tf.square(z) - tf.math.log(sd) - 0.5 * _LOG_2PI, -1)


def sample_prior(n, seed=0):
    """`n` draws of θ from the prior (natural units), numpy `[n, 7]`."""
    _checks.positive_int(n, "n")
    rng = np.random.default_rng(seed)
    return to_natural(PRIOR_MEAN + PRIOR_SD * rng.standard_normal((int(n), DIM)))


# ----------------------------------------------------------------------------------------
# yields

def model_yields(theta, r, w, maturities=MATURITIES):
    """The model's yield curve at state (r, W), numpy, `[..., len(maturities)]`.

    y^τ = r̄ + (r − r̄)(1 − e^{−κτ})/(κτ) + γ (σ^s)² M τ / (2W) − (σ^s)² τ² / 6:
    expected average short rate (the expectations part), plus the average premium earned
    over the bond's life, ∫₀^τ π^s ds / τ with π^s = γ(σ^s)² M s / W, minus the Jensen
    (convexity) term ∫₀^τ ½(σ^s s)² ds / τ, holding W at its current value.
    theta `[..., 7]` natural; r, w broadcastable to `[...]`.
    """
    theta = np.asarray(theta, np.float64)
    g, ss, k, _, _, _, rb = (theta[..., i, None] for i in range(DIM))
    tau = np.asarray(maturities, np.float64)
    r = np.asarray(r, np.float64)[..., None]
    w = np.asarray(w, np.float64)[..., None]
    expect = rb + (r - rb) * (1.0 - np.exp(-k * tau)) / (k * tau)
    premium = g * ss**2 * supply_duration() * tau / (2.0 * w)
    convexity = ss**2 * tau**2 / 6.0
    return expect + premium - convexity


def yield_parts(theta, r, w, maturities=MATURITIES):
    """The three parts of `model_yields`, each `[..., len(maturities)]`: a dict with
    `expectations`, `premium`, `convexity` (yield = expectations + premium − convexity)."""
    theta = np.asarray(theta, np.float64)
    g, ss, k, _, _, _, rb = (theta[..., i, None] for i in range(DIM))
    tau = np.asarray(maturities, np.float64)
    r = np.asarray(r, np.float64)[..., None]
    w = np.asarray(w, np.float64)[..., None]
    return dict(expectations=rb + (r - rb) * (1.0 - np.exp(-k * tau)) / (k * tau),
                premium=g * ss**2 * supply_duration() * tau / (2.0 * w),
                convexity=ss**2 * tau**2 / 6.0 + 0.0 * r)


# ----------------------------------------------------------------------------------------
# simulator

def simulate(theta, num_steps, seed=0, dt=1.0 / 12.0, r0=0.05, w0=1.0, sigma_e=0.01,
             maturities=MATURITIES, min_wealth=0.2):
    """Simulates the Euler–Maruyama model for one or several data sets (numpy, float64).

    Args:
      theta: natural parameters `[7]` or `[D, 7]` (one row per data set).
      num_steps: K, the number of Euler–Maruyama steps.
      seed: int; the same seed gives the same data.
      dt: Δt in years (default monthly).
      r0, w0: initial short rate and wealth; the initial log prices are −τ·y^τ(r0, w0; θ).
      sigma_e: σ^e, the bond-specific shock volatility (known, not inferred).
      min_wealth: a data set whose wealth falls below this is an error (the premium ∝ 1/W
        is meaningless there); choose parameters (or shorter paths) that keep W positive.
    Returns:
      dict with `r` `[..., K+1]`, `w` `[..., K+1]`, `p` `[..., K+1, 9]` (log prices), `theta`,
      and the settings `dt`, `sigma_e`, `maturities`; `...` is `[]` or `[D]` like `theta`.
    """
    theta = check_theta(theta)
    _checks.positive_int(num_steps, "num_steps")
    _checks.positive_float(dt, "dt")
    _checks.positive_float(w0, "w0")
    _checks.positive_float(sigma_e, "sigma_e")
    tau = np.asarray(maturities, np.float64)
    batch = theta.shape[:-1]
    K = int(num_steps)
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal(batch + (K, 2 + tau.size))
    g, ss, kap, sr, om, sw, rb = (theta[..., i, None] for i in range(DIM))
    sig_tau = ss * tau                                                    # [..., 9]
    m = supply_duration(tau)
    r = np.empty(batch + (K + 1,))
    w = np.empty(batch + (K + 1,))
    p = np.empty(batch + (K + 1, tau.size))
    r[..., 0], w[..., 0] = r0, w0
    p[..., 0, :] = -tau * model_yields(theta, r0, w0, tau)
    h = math.sqrt(dt)
    for k in range(K):
        rk, wk = r[..., k, None], w[..., k, None]
        er, ew, ee = eps[..., k, 0, None], eps[..., k, 1, None], eps[..., k, 2:]
        r[..., k + 1] = (rk + kap * (rb - rk) * dt + sr * h * er)[..., 0]
        w[..., k + 1] = (wk + om * dt + sw * h * ew)[..., 0]
        premium = g * ss**2 * m * tau / wk                                # π^τ_k
        drift = rk + premium - 0.5 * sig_tau**2
        p[..., k + 1, :] = p[..., k, :] + drift * dt - sig_tau * h * er + sigma_e * h * ee
    if np.min(w) < min_wealth:
        raise ValueError(f"simulated wealth fell below `min_wealth`={min_wealth} "
                         f"(min {np.min(w):.3f}): choose `theta` with larger ω or smaller σ^W, "
                         f"or fewer `num_steps`")
    return dict(r=r, w=w, p=p, theta=theta, dt=float(dt), sigma_e=float(sigma_e),
                maturities=tau)


# ----------------------------------------------------------------------------------------
# likelihood

def log_likelihood(phi, data):
    """Exact log-density of the observed path under the Euler–Maruyama model, given the
    initial state: Σ_k log N(Δr) + log N(ΔW) + Σ_τ log N(Δp^τ | Δr).

    The rate, wealth and price shocks are jointly Gaussian; we factor the density as
    p(Δr) p(ΔW) Π_τ p(Δp^τ | Δr): given Δr the rate shock ε^r is known, and the price
    increments are independent N(m^τ − σ^τ √Δt ε^r, (σ^e)² Δt).

    Args:
      phi: `[..., 7]` unconstrained parameters; with D data sets, `[..., D, 7]` where the
        D axis lines up with the data's leading axis.
      data: dict of TF tensors or numpy arrays from `simulate` (`r`, `w`, `p`, `dt`,
        `sigma_e`, `maturities`).
    Returns:
      `[...]` (or `[..., D]`).
    """
    dt_ = phi.dtype
    r = tf.cast(data["r"], dt_)
    w = tf.cast(data["w"], dt_)
    p = tf.cast(data["p"], dt_)
    tau = tf.constant(data["maturities"], dt_)
    dt = tf.constant(data["dt"], dt_)
    se = tf.constant(data["sigma_e"], dt_)
    m = tf.constant(supply_duration(data["maturities"]), dt_)
    theta = to_natural(phi)
    g, ss, kap, sr, om, sw, rb = (theta[..., i, None] for i in range(DIM))   # [..., 1]
    h = tf.sqrt(dt)
    rk, wk = r[..., :-1], w[..., :-1]                                       # [..., K]
    dr, dw = r[..., 1:] - rk, w[..., 1:] - wk
    eps_r = (dr - kap * (rb - rk) * dt) / (sr * h)                            # [..., K]
    eps_w = (dw - om * dt) / (sw * h)
    sig_tau = (ss * tau)[..., None, :]                                       # [..., 1, 9]
    premium = (g * tf.square(ss) * m)[..., None] * tau / wk[..., None]       # [..., K, 9]
    drift = rk[..., None] + premium - 0.5 * tf.square(sig_tau)
    resid = (p[..., 1:, :] - p[..., :-1, :] - drift * dt
             + sig_tau * h * eps_r[..., None]) / (se * h)                     # [..., K, 9]
    num_steps = tf.cast(tf.shape(dr)[-1], dt_)
    nbonds = tf.cast(tf.shape(tau)[0], dt_)
    log_norm = -0.5 * _LOG_2PI - tf.math.log(h)
    ll_r = (tf.reduce_sum(-0.5 * tf.square(eps_r), -1)
            + num_steps * (log_norm - tf.math.log(sr[..., 0])))
    ll_w = (tf.reduce_sum(-0.5 * tf.square(eps_w), -1)
            + num_steps * (log_norm - tf.math.log(sw[..., 0])))
    ll_p = (tf.reduce_sum(-0.5 * tf.square(resid), [-2, -1])
            + num_steps * nbonds * (log_norm - tf.math.log(se)))
    return ll_r + ll_w + ll_p


# ----------------------------------------------------------------------------------------
# Laplace approximation and whitening

def initial_estimates(data):
    """Quick regression estimates of θ from a data set (or a batch): the starting point of
    `laplace`. Numpy, natural units, `[7]` or `[D, 7]`.

    κ, r̄, σ^r from the regression of Δr on r; ω, σ^W from the mean and sd of ΔW; σ^s from
    the regression of each Δp^τ on the rate residual (slope −σ^s τ / σ^r); γ from the
    regression of what is left of the price drift on (σ^s)² M τ / W. κ and γ are clipped
    to positive values (short samples can give any sign).
    """
    r, w, p = (np.asarray(data[k], np.float64) for k in ("r", "w", "p"))
    dt, tau = data["dt"], np.asarray(data["maturities"])
    h = math.sqrt(dt)
    rk, dr, dw = r[..., :-1], np.diff(r, axis=-1), np.diff(w, axis=-1)
    rc = rk - rk.mean(-1, keepdims=True)
    b = np.sum(rc * dr, -1) / np.sum(rc * rc, -1)
    a = dr.mean(-1) - b * rk.mean(-1)
    kappa = np.clip(-b / dt, 0.02, 5.0)
    r_bar = np.clip(a / (kappa * dt), -0.1, 0.2)
    e = dr - kappa[..., None] * (r_bar[..., None] - rk) * dt
    sigma_r = e.std(-1) / h
    omega = dw.mean(-1) / dt
    sigma_w = dw.std(-1) / h
    dp = np.diff(p, axis=-2)                                          # [..., K, 9]
    ec = e - e.mean(-1, keepdims=True)
    slope = np.einsum("...k,...kt->...t", ec, dp) / np.sum(ec * ec, -1)[..., None]
    sigma_s = np.clip(np.mean(-slope * sigma_r[..., None] / tau, -1), 1e-4, 1.0)
    sig_tau = sigma_s[..., None] * tau
    left = (dp - rk[..., None] * dt + 0.5 * sig_tau[..., None, :] ** 2 * dt
            + sig_tau[..., None, :] * e[..., None] / sigma_r[..., None, None])
    x = (sigma_s**2)[..., None, None] * supply_duration(tau) * tau / w[..., :-1, None] * dt
    gamma = np.clip(np.sum(x * left, (-2, -1)) / np.sum(x * x, (-2, -1)), 0.05, 50.0)
    return np.stack([gamma, sigma_s, kappa, sigma_r, omega, sigma_w, r_bar], -1)


def laplace(log_prob_fn, init, max_iterations=100, tolerance=1e-9):
    """Mode and covariance of the Laplace approximation of a batch of posteriors.

    Damped Newton (Levenberg–Marquardt with Marquardt's diagonal scaling) on the exact
    autodiff Hessian, per problem: the posteriors are ill-conditioned (posterior sds from
    0.02 to 0.9 and correlations near ±1) and not concave far from the mode, which defeats
    L-BFGS from rough starts.

    Args:
      log_prob_fn: `[B, d] -> [B]` (B independent problems), float64.
      init: `[B, d]` starting points.
      max_iterations: Newton iterations.
      tolerance: converged when the Newton decrement gᵀ(−H)⁻¹g / 2 is below this.
    Returns:
      `(mode [B, d], cov [B, d, d], converged [B] bool)`, numpy; cov is the inverse of the
      negative Hessian at the mode.
    """
    _checks.positive_int(max_iterations, "max_iterations")
    x = np.array(init, np.float64)
    if x.ndim != 2:
        raise ValueError(f"`init` must have shape [B, d], got {list(x.shape)}")

    @tf.function(autograph=False)
    def value_grad_hess(z):
        with tf.GradientTape() as outer:
            outer.watch(z)
            with tf.GradientTape() as inner:
                inner.watch(z)
                lp = log_prob_fn(z)
            g = inner.gradient(lp, z)
        return lp, g, outer.batch_jacobian(g, z)

    def evaluate(z):
        v, g, h = (t.numpy() for t in value_grad_hess(tf.constant(z)))
        return np.where(np.isfinite(v), v, -np.inf), g, h

    v, g, h = evaluate(x)
    if not np.all(np.isfinite(v)):
        raise ValueError("`log_prob_fn` is not finite at `init`")
    lam = np.full(x.shape[0], 1e-3)
    eye = np.eye(x.shape[1])
    converged = np.zeros(x.shape[0], bool)
    for _ in range(int(max_iterations)):
        scale = np.maximum(np.abs(np.diagonal(h, axis1=-2, axis2=-1)), 1e-12)
        a = -h + lam[:, None, None] * scale[:, :, None] * eye
        step = np.linalg.solve(a, g[..., None])[..., 0]
        step = np.where(converged[:, None], 0.0, step)
        v_new, g_new, h_new = evaluate(x + step)
        better = (v_new >= v) & ~converged
        x = np.where(better[:, None], x + step, x)
        v = np.where(better, v_new, v)
        g = np.where(better[:, None], g_new, g)
        h = np.where(better[:, None, None], h_new, h)
        lam = np.clip(np.where(better, lam / 10.0, lam * 10.0), 1e-12, 1e12)
        try:
            decrement = 0.5 * np.einsum("bi,bi->b", g, np.linalg.solve(-h, g[..., None])[..., 0])
            pd = np.all(np.linalg.eigvalsh(-h) > 0, -1)
        except np.linalg.LinAlgError:
            continue
        converged |= pd & (np.abs(decrement) < tolerance)
        if np.all(converged):
            break
    cov = np.linalg.inv(-h)
    cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
    return x, cov, converged


def whiten(log_prob_fn, mode, cov):
    """The log-density of z where φ = mode + L z, L = chol(cov): `[..., B, d] -> [..., B]`.

    Under the Laplace approximation z ~ N(0, I): HMC with a unit-scale step size then suits
    every coordinate (a full-matrix preconditioner; the Jacobian |L| is constant and
    omitted). Returns `(log_prob_z, to_phi)` with `to_phi(z) = mode + L z`.
    """
    mode = tf.constant(np.asarray(mode, np.float64))
    chol = tf.constant(np.linalg.cholesky(np.asarray(cov, np.float64)))

    def to_phi(z):
        z = tf.cast(z, tf.float64)
        if len(chol.shape) == 3:
            return mode + tf.einsum("bij,...bj->...bi", chol, z)
        return mode + tf.einsum("ij,...j->...i", chol, z)

    def log_prob_z(z):
        return log_prob_fn(to_phi(z))

    return log_prob_z, to_phi


# ----------------------------------------------------------------------------------------
# latent wealth: a pseudo-marginal likelihood

def latent_wealth_log_weights(phi, u, data):
    """Log importance weights of log p(r, p | θ) with the wealth path W latent.

    Proposals are wealth paths from their own model, W_{k+1} = W_k + ωΔt + σ^W √Δt u_k
    (W_0 known), so each weight is p(r, p | W, θ): the rate block (free of W) times the price
    block, N(Δp^τ_k | m^τ_k(W_k) − σ^τ√Δt ε^r_k, (σ^e)²Δt). Paths that reach
    W ≤ `WEALTH_FLOOR` get weight 0 (the premium γ/W is meaningless there).

    The price block is linear in c_k = Δt/W_k: with A_kτ the residual without the premium
    and a_τ = γ(σ^s)²Mτ, Σ_τ (A_kτ − a_τ c_k)² = S0_k − 2 c_k S1_k + c_k² S2, so the
    per-path cost is O(K), not O(9K).

    Args:
      phi: `[..., 7]` unconstrained parameters.
      u: `[..., K − 1, N]` standard normals (N paths).
      data: one data set from `simulate` (K steps).
    Returns:
      `[..., 1, N]` log weights (one factor: the whole path).
    """
    dt_ = phi.dtype
    r = tf.cast(data["r"], dt_)
    p = tf.cast(data["p"], dt_)
    tau = tf.constant(data["maturities"], dt_)
    dt = tf.constant(data["dt"], dt_)
    se = tf.constant(data["sigma_e"], dt_)
    w0 = tf.constant(float(data["w"][..., 0]), dt_)
    m = tf.constant(supply_duration(data["maturities"]), dt_)
    theta = to_natural(phi)
    g, ss, kap, sr, om, sw, rb = (theta[..., i, None] for i in range(DIM))   # [..., 1]
    h = tf.sqrt(dt)
    rk, dr = r[:-1], r[1:] - r[:-1]                                          # [K]
    eps_r = (dr - kap * (rb - rk) * dt) / (sr * h)                             # [..., K]
    num_steps = tf.cast(tf.shape(dr)[0], dt_)
    log_norm = -0.5 * _LOG_2PI - tf.math.log(h)
    ll_r = (tf.reduce_sum(-0.5 * tf.square(eps_r), -1)
            + num_steps * (log_norm - tf.math.log(sr[..., 0])))                # [...]
    sig_tau = (ss * tau)[..., None, :]                                        # [..., 1, 9]
    a = (g * tf.square(ss) * m) * tau                                         # [..., 9]
    big_a = (p[1:] - p[:-1] - rk[:, None] * dt + 0.5 * tf.square(sig_tau) * dt
             + sig_tau * h * eps_r[..., None])                                # [..., K, 9]
    s0 = tf.reduce_sum(tf.square(big_a), -1)                                  # [..., K]
    s1 = tf.reduce_sum(a[..., None, :] * big_a, -1)                           # [..., K]
    s2 = tf.reduce_sum(tf.square(a), -1)                                      # [...]
    steps = om[..., None] * dt + sw[..., None] * h * u                         # [..., K-1, N]
    w = w0 + tf.concat([tf.zeros_like(steps[..., :1, :]), tf.cumsum(steps, axis=-2)], -2)
    ok = tf.reduce_all(w > WEALTH_FLOOR, axis=-2)                              # [..., N]
    c = dt / tf.maximum(w, WEALTH_FLOOR)                                       # [..., K, N]
    quad = s0[..., None] - 2.0 * c * s1[..., None] + tf.square(c) * s2[..., None, None]
    nbonds = tf.cast(tf.shape(tau)[0], dt_)
    ll_p = (-0.5 * tf.reduce_sum(quad, -2) / (tf.square(se) * dt)
            + num_steps * nbonds * (log_norm - tf.math.log(se)))              # [..., N]
    lw = tf.where(ok, ll_p + ll_r[..., None], tf.constant(-np.inf, dt_))
    return lw[..., None, :]


#: wealth at or below which a proposed path gets weight zero
WEALTH_FLOOR = 0.05


def latent_wealth(num_steps=120, num_importance=256, seed=0, theta=None, **simulate_kwargs):
    """Posterior of φ when the wealth path is not observed: a `PseudoMarginalTarget`.

    The data are those of `term_premium(num_steps, seed=seed, theta=theta)` without W;
    u has shape `(num_steps − 1, num_importance)` (the innovations of N wealth paths).
    Extra attributes as `term_premium`'s (`data` still holds the hidden W, for plots).
    """
    from hmc_lib.targets.pseudo_marginal import PseudoMarginalTarget
    _checks.positive_int(num_importance, "num_importance")
    _checks.positive_int(num_steps, "num_steps")
    if int(num_steps) < 2:
        raise ValueError(f"`num_steps` must be >= 2, got {num_steps}")
    observed = term_premium(num_steps=num_steps, theta=theta, seed=seed, **simulate_kwargs)
    data = observed.data

    def log_weights_fn(phi, u):
        return latent_wealth_log_weights(phi, u, data)

    target = PseudoMarginalTarget(log_prior, log_weights_fn, DIM,
                                  (int(num_steps) - 1, int(num_importance)),
                                  name="term_premium_latent_wealth",
                                  true_theta=observed.true_phi, data=data)
    target.true_theta_natural = observed.true_theta
    target.true_phi = observed.true_phi
    target.names, target.symbols = NAMES, SYMBOLS
    target.observed = observed
    return target


# ----------------------------------------------------------------------------------------
# the registered target

def term_premium(num_steps=120, num_datasets=None, theta=None, seed=0, dt=1.0 / 12.0,
                 sigma_e=0.01, r0=0.05, w0=1.0):
    """Posterior of φ for simulated data of the term-premium model.

    Args:
      num_steps: K Euler–Maruyama steps per data set (default 120: ten years, monthly).
      num_datasets: None for one data set (`log_prob` maps `[..., 7] -> [...]`), or D for a
        batch of independent data sets (`log_prob` maps `[..., D, 7] -> [..., D]`).
      theta: natural parameters that generate the data: `[7]`, `[D, 7]`, None (the book's
        `TRUE_THETA` for every data set) or "prior" (one prior draw per data set, for
        calibration checks).
      seed: data seed (the prior draws use `seed + 1`).
      dt, sigma_e, r0, w0: see `simulate`.
    Returns:
      A `Target` of dimension 7 on φ (float64 recommended) with extra attributes `data`
      (from `simulate`; numpy), `true_theta` (natural), `true_phi`, `names`, `symbols`,
      `to_natural`, `to_unconstrained`, `log_prior_fn`, `log_likelihood_fn`,
      `num_datasets`.
    """
    if num_datasets is not None:
        _checks.positive_int(num_datasets, "num_datasets")
    d = 1 if num_datasets is None else int(num_datasets)
    if theta is None:
        theta = np.tile(TRUE_THETA, (d, 1))
    elif isinstance(theta, str):
        if theta != "prior":
            raise ValueError(f"`theta` must be an array, None or 'prior', got {theta!r}")
        theta = sample_prior(d, seed=seed + 1)
    else:
        theta = check_theta(theta)
        theta = np.broadcast_to(theta, (d, DIM)).copy() if theta.ndim == 1 else theta
        if theta.shape != (d, DIM):
            raise ValueError(f"`theta` must have shape [{DIM}] or [{d}, {DIM}], "
                             f"got {list(theta.shape)}")
    if num_datasets is None:
        theta = theta[0]
    data = simulate(theta, num_steps, seed=seed, dt=dt, r0=r0, w0=w0, sigma_e=sigma_e)
    tensors = {k: tf.constant(v) for k, v in data.items() if k in ("r", "w", "p")}
    tensors.update(dt=data["dt"], sigma_e=data["sigma_e"], maturities=data["maturities"])

    def log_likelihood_fn(phi):
        return log_likelihood(phi, tensors)

    def log_prob_fn(phi):
        if num_datasets is not None and phi.shape.rank is not None and (
                phi.shape.rank < 2 or phi.shape[-2] not in (None, d)):
            raise ValueError(f"`x` must have shape [..., {d}, {DIM}] (one row per data set), "
                             f"got {phi.shape.as_list()}")
        return log_prior(phi) + log_likelihood(phi, tensors)

    target = Target(log_prob_fn, DIM, name="term_premium")
    target.data = data
    target.true_theta = np.asarray(theta)
    target.true_phi = to_unconstrained(theta)
    target.names = NAMES
    target.symbols = SYMBOLS
    target.to_natural = to_natural
    target.to_unconstrained = to_unconstrained
    target.log_prior_fn = log_prior
    target.log_likelihood_fn = log_likelihood_fn
    target.num_datasets = num_datasets
    return target


FACTORIES = {"term_premium": term_premium,
             "term_premium_latent_wealth": latent_wealth}
