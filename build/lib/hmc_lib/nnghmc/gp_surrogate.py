"""A Gaussian-process surrogate of log π whose mean's gradient drives HMC: the second
competitor of NNgHMC in the paper's Table 4 (chapters 3 and 6; Rasmussen 2003's idea).

The GP models the values u_i = log π(q_i) at n training points with a constant mean c (the
average of u) and the squared-exponential kernel k(x, x') = s² exp(−|x − x'|² / (2ℓ²)) plus
noise σ² on the diagonal, plus a jitter τ s² (τ = 1e-8) that bounds the condition number of
K + (σ² + τ s²) I by 1 + n/τ, so its float64 Cholesky cannot fail however small the fitted
noise (a smooth log π, e.g. a Gaussian's quadratic, drives σ² to zero and s² up). The
hyper-parameters (ℓ, s², σ²) maximise the log marginal
likelihood (L-BFGS on their logarithms, float64). With α = (K + σ² I)⁻¹ (u − c), the mean and
its gradient are

    m(x) = c + Σ_i α_i k(x, q_i),     ∇m(x) = −Σ_i α_i k(x, q_i) (x − q_i) / ℓ²,

and `GPSurrogate(x)` returns ∇m(x), the field that `NNgHMC` kicks with (the Metropolis test
still uses the true log π, so the chain is exact whatever the fit). One field evaluation costs
O(n · dim) per chain.
"""

import time

import numpy as np
import tensorflow as tf
from scipy import optimize

from hmc_lib import _checks

JITTER = 1e-8
"""τ: the diagonal jitter relative to the amplitude s² (see the module docstring)."""


def _sq_dist(a, b):
    return (tf.reduce_sum(a ** 2, -1)[..., :, None] + tf.reduce_sum(b ** 2, -1)[None, :]
            - 2.0 * tf.einsum("...id,jd->...ij", a, b))


def _neg_log_marginal(log_params, q, u):
    """−log N(u; 0, s² exp(−D/(2ℓ²)) + σ² I) for `log_params` = (log ℓ, log s², log σ²)."""
    ls2 = tf.exp(2.0 * log_params[0])
    k = tf.exp(log_params[1]) * tf.exp(-0.5 * tf.maximum(_sq_dist(q, q), 0.0) / ls2)
    n = tf.shape(q)[0]
    k = k + (tf.exp(log_params[2]) + JITTER * tf.exp(log_params[1])) * tf.eye(n, dtype=q.dtype)
    chol = tf.linalg.cholesky(k)
    a = tf.linalg.triangular_solve(chol, u[:, None], lower=True)[:, 0]
    return (0.5 * tf.reduce_sum(a ** 2) + tf.reduce_sum(tf.math.log(tf.linalg.diag_part(chol)))
            + 0.5 * tf.cast(n, q.dtype) * np.log(2 * np.pi))


class GPSurrogate(tf.Module):
    """A fitted SE-kernel GP of log π; call it for the gradient of its mean.

    Use `GPSurrogate.fit(positions, values)`. Attributes: `length_scale`, `amplitude` (s²),
    `noise_variance` (σ²; the diagonal used is σ² + τ s²), `constant` (c), `num_train`,
    `fit_seconds`, `log_marginal` (at the optimum). Callable inside `tf.function`/XLA; works for float32 and float64 inputs
    (computed in float64).
    """

    def __init__(self, positions, alpha, length_scale, amplitude, noise_variance, constant,
                 log_marginal=float("nan"), fit_seconds=0.0, name="gp_surrogate"):
        super().__init__(name=name)
        self.positions = tf.constant(np.asarray(positions, np.float64))
        self.alpha = tf.constant(np.asarray(alpha, np.float64))
        self.length_scale = float(length_scale)
        self.amplitude = float(amplitude)
        self.noise_variance = float(noise_variance)
        self.constant = float(constant)
        self.log_marginal = float(log_marginal)
        self.fit_seconds = float(fit_seconds)
        self.num_train, self.dim = (int(s) for s in self.positions.shape)

    @classmethod
    def fit(cls, positions, values, init=None, max_iterations=200):
        """Fits the GP to `values [n]` = log π at `positions [n, dim]` by maximum likelihood.

        Args:
          positions: `[n, dim]`, n >= 2, finite. values: `[n]`, finite.
          init: optional starting (ℓ, s², σ²), all > 0; default (median distance, var(u),
            1e-4 var(u)).
          max_iterations: L-BFGS iterations.
        Returns:
          A `GPSurrogate`.
        """
        q = np.asarray(positions, np.float64)
        u = np.asarray(values, np.float64)
        if q.ndim != 2 or q.shape[0] < 2:
            raise ValueError(f"`positions` must have shape [n >= 2, dim], got {list(q.shape)}")
        if u.shape != (q.shape[0],):
            raise ValueError(f"`values` must have shape [{q.shape[0]}], got {list(u.shape)}")
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(u))):
            raise ValueError("`positions` and `values` must be finite")
        _checks.positive_int(max_iterations, "max_iterations")
        start = time.perf_counter()
        c = float(np.mean(u))
        uc = u - c
        if init is None:
            d = np.sqrt(np.maximum(((q[:, None] - q[None]) ** 2).sum(-1), 0)) if q.shape[0] <= 500 \
                else np.sqrt(2.0 * q.var(0).sum()) * np.ones(1)
            init = (float(np.median(d[d > 0])) if np.any(d > 0) else 1.0,
                    float(np.var(uc)) or 1.0, 1e-4 * (float(np.var(uc)) or 1.0))
        init = np.asarray(init, np.float64)
        if init.shape != (3,) or not np.all(np.isfinite(init)) or np.any(init <= 0):
            raise ValueError(f"`init` must be three numbers > 0 (ℓ, s², σ²), got {init!r}")
        qt, ut = tf.constant(q), tf.constant(uc)

        @tf.function(autograph=False)
        def loss_and_grad(p):
            with tf.GradientTape() as tape:
                tape.watch(p)
                loss = _neg_log_marginal(p, qt, ut)
            return loss, tape.gradient(loss, p)

        def fun(p):
            loss, g = loss_and_grad(tf.constant(p))
            loss, g = float(loss), g.numpy()
            if not np.isfinite(loss):
                return 1e300, np.zeros(3)
            return loss, g

        x0 = np.log(init)
        res = optimize.minimize(fun, x0, jac=True, method="L-BFGS-B",
                                bounds=[(-10, 10), (-20, 20), (-25, 10)],
                                options=dict(maxiter=int(max_iterations)))
        p = res.x
        ls, amp = np.exp(p[0]), np.exp(p[1])
        noise = np.exp(p[2])
        k = amp * np.exp(-0.5 * np.maximum(((q[:, None] - q[None]) ** 2).sum(-1), 0) / ls ** 2)
        k[np.diag_indices_from(k)] += noise + JITTER * amp
        chol = np.linalg.cholesky(k)
        alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, uc))
        return cls(q, alpha, ls, amp, noise, c, log_marginal=-float(res.fun),
                   fit_seconds=time.perf_counter() - start)

    def _kernel(self, x):
        d2 = tf.maximum(_sq_dist(x, self.positions), 0.0)
        return self.amplitude * tf.exp(-0.5 * d2 / self.length_scale ** 2)   # [..., n]

    def mean(self, x):
        """The GP mean m(x) of log π at `x [..., dim]`; returns `[...]` in the dtype of `x`."""
        x = tf.convert_to_tensor(x)
        k = self._kernel(tf.cast(x, tf.float64))
        return tf.cast(self.constant + tf.einsum("...n,n->...", k, self.alpha), x.dtype)

    def __call__(self, x):
        """∇m(x) `[..., dim]` (closed form), in the dtype of `x`: the surrogate ∇log π."""
        x = tf.convert_to_tensor(x)
        x64 = tf.cast(x, tf.float64)
        w = self._kernel(x64) * self.alpha                                   # [..., n]
        g = tf.einsum("...n,nd->...d", w, self.positions) - tf.reduce_sum(w, -1)[..., None] * x64
        return tf.cast(g / self.length_scale ** 2, x.dtype)
