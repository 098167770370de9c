"""The deep latent Gaussian model: prior, Bernoulli decoder, Gaussian encoder.

    z ~ N(0, I_K),   x | z ~ Π_d Bernoulli(x_d; sigmoid(f_φ(z)_d)),
    q_ψ(z | x) = N(z; μ_ψ(x), diag σ_ψ(x)²)

with f_φ and (μ_ψ, log σ_ψ) small ReLU MLPs. Every log-density takes a batch of images
x `[..., B, D]` and latents z `[..., B, K]` (extra leading axes broadcast, e.g. importance
samples `[S, B, K]`) and returns `[..., B]` in nats.

`LinearGaussian` is the tiny model whose marginal likelihood and posterior are analytic
(z ~ N(0, I), x | z ~ N(Wz + b, σ² I) ⇒ x ~ N(b, WWᵀ + σ² I)); the tests check the
estimators and samplers against it.
"""

import math

import numpy as np
import tensorflow as tf

from hmc_lib import _checks

LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_log_prob(z):
    """log N(z; 0, I) summed over the last axis: `[..., K] -> [...]`."""
    return -0.5 * tf.reduce_sum(tf.square(z), -1) - 0.5 * tf.cast(tf.shape(z)[-1], z.dtype) * LOG_2PI


class MLP(tf.Module):
    """ReLU layers then a linear output: `[..., in] -> [..., out]` (He-normal initialisation)."""

    def __init__(self, sizes, seed, name=None):
        super().__init__(name=name)
        rng = np.random.default_rng(seed)
        self.layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            gain = 2.0 if i < len(sizes) - 2 else 1.0
            w = rng.normal(0.0, math.sqrt(gain / a), size=(a, b)).astype(np.float32)
            self.layers.append((tf.Variable(w, name=f"w{i}"),
                                tf.Variable(np.zeros(b, np.float32), name=f"b{i}")))

    def __call__(self, h):
        for i, (w, b) in enumerate(self.layers):
            h = tf.tensordot(h, w, [[-1], [0]]) + b
            if i < len(self.layers) - 1:
                h = tf.nn.relu(h)
        return h


class Decoder(tf.Module):
    """Bernoulli decoder p_φ(x | z): `logits(z)` `[..., K] -> [..., D]`."""

    def __init__(self, latent_dim, data_dim, hidden_units=(64, 64), seed=0):
        super().__init__(name="decoder")
        self.latent_dim, self.data_dim = int(latent_dim), int(data_dim)
        self.net = MLP([self.latent_dim, *hidden_units, self.data_dim], seed=[seed, 11])

    def logits(self, z):
        return self.net(z)

    def mean(self, z):
        """The decoder mean image E[x | z] = sigmoid(logits), `[..., D]`."""
        return tf.sigmoid(self.logits(z))

    def log_likelihood(self, x, z):
        """log p_φ(x | z) = Σ_d x_d ℓ_d − softplus(ℓ_d), ℓ = logits(z): `[..., B]`."""
        logits = self.logits(z)
        return tf.reduce_sum(x * logits - tf.nn.softplus(logits), -1)

    def log_joint(self, x, z):
        """log p(z) + log p_φ(x | z), `[..., B]`."""
        return standard_normal_log_prob(z) + self.log_likelihood(x, z)


class Encoder(tf.Module):
    """Gaussian encoder q_ψ(z | x) = N(μ(x), diag σ(x)²)."""

    def __init__(self, latent_dim, data_dim, hidden_units=(64, 64), seed=0):
        super().__init__(name="encoder")
        self.latent_dim, self.data_dim = int(latent_dim), int(data_dim)
        self.net = MLP([self.data_dim, *hidden_units, 2 * self.latent_dim], seed=[seed, 12])

    def __call__(self, x):
        """`(mean, log_scale)`, each `[B, K]`."""
        out = self.net(x)
        return out[..., : self.latent_dim], tf.clip_by_value(out[..., self.latent_dim:], -8.0, 4.0)

    def sample(self, x, seed, num_samples=None):
        """Reparameterised draws: `[B, K]`, or `[num_samples, B, K]`; and their log q."""
        mean, log_scale = self(x)
        shape = tf.shape(mean) if num_samples is None else tf.concat(
            [[num_samples], tf.shape(mean)], 0)
        eps = tf.random.stateless_normal(shape, seed=seed, dtype=mean.dtype)
        z = mean + tf.exp(log_scale) * eps
        return z, self.log_prob(z, mean, log_scale)

    @staticmethod
    def log_prob(z, mean, log_scale):
        """log N(z; mean, diag exp(2 log_scale)) over the last axis."""
        u = (z - mean) * tf.exp(-log_scale)
        return (-0.5 * tf.reduce_sum(tf.square(u), -1) - tf.reduce_sum(log_scale, -1)
                - 0.5 * tf.cast(tf.shape(z)[-1], z.dtype) * LOG_2PI)


class LinearGaussian:
    """z ~ N(0, I_K), x | z ~ N(Wz + b, σ² I_D): analytic marginal and posterior (float64).

    Args: weight `[D, K]`, bias `[D]`, noise_scale σ > 0.
    """

    def __init__(self, weight, bias, noise_scale):
        self.weight = np.asarray(weight, np.float64)
        self.bias = np.asarray(bias, np.float64)
        _checks.positive_float(noise_scale, "noise_scale")
        if self.weight.ndim != 2 or self.bias.shape != (self.weight.shape[0],):
            raise ValueError("`weight` must be [D, K] and `bias` [D]")
        self.noise_scale = float(noise_scale)
        self.data_dim, self.latent_dim = self.weight.shape

    def log_joint(self, x, z):
        """log p(z) + log N(x; Wz + b, σ² I), `[..., B]`."""
        w = tf.constant(self.weight, z.dtype)
        mean = tf.tensordot(z, tf.transpose(w), [[-1], [0]]) + tf.constant(self.bias, z.dtype)
        r = (tf.cast(x, z.dtype) - mean) / self.noise_scale
        log_lik = (-0.5 * tf.reduce_sum(tf.square(r), -1)
                   - self.data_dim * (math.log(self.noise_scale) + 0.5 * LOG_2PI))
        return standard_normal_log_prob(z) + log_lik

    def log_marginal(self, x):
        """Exact log p(x) = log N(x; b, WWᵀ + σ² I), `[B]` numpy."""
        x = np.asarray(x, np.float64)
        cov = self.weight @ self.weight.T + self.noise_scale ** 2 * np.eye(self.data_dim)
        chol = np.linalg.cholesky(cov)
        r = np.linalg.solve(chol, (x - self.bias).T)
        return (-0.5 * np.sum(r ** 2, 0) - np.sum(np.log(np.diag(chol)))
                - 0.5 * self.data_dim * LOG_2PI)

    def posterior(self, x):
        """Exact p(z | x) = N(m, Σ): `(m [B, K], Σ [K, K])` numpy, Σ = (I + WᵀW/σ²)⁻¹."""
        x = np.asarray(x, np.float64)
        s2 = self.noise_scale ** 2
        cov = np.linalg.inv(np.eye(self.latent_dim) + self.weight.T @ self.weight / s2)
        mean = (x - self.bias) @ self.weight @ cov / s2
        return mean, cov

    def sample(self, n, seed):
        """Exact draws of x `[n, D]` (numpy)."""
        rng = np.random.default_rng(seed)
        z = rng.normal(size=(n, self.latent_dim))
        return z @ self.weight.T + self.bias + self.noise_scale * rng.normal(size=(n, self.data_dim))
