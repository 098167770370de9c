"""Estimators of the marginal likelihood log p(x) of a latent-variable model.

- `iwae`: importance sampling with a Gaussian proposal q(z | x) (the encoder),
  log p̂_S(x) = logsumexp_s [log p(x, z_s) − log q(z_s | x)] − log S, z_s ~ q. p̂_S is
  unbiased for p(x), so E log p̂_S ≤ log p(x) (the IWAE bound, Burda et al. 2016), tight as
  S → ∞.
- `ais`: annealed importance sampling (Neal 2001) from the prior N(0, I) to the posterior
  along π_β(z) ∝ p(z) p(x | z)^β, 0 = β_0 < … < β_T = 1 (a sigmoid schedule), one HMC
  transition per temperature; log w = Σ_t (β_t − β_{t−1}) log p(x | z_{t−1}); the estimate
  logsumexp_c log w_c − log C over C chains is again unbiased in p(x).

Shapes: x `[B, D]`; `log_joint_fn(x, z)` with z `[..., B, K]` -> `[..., B]`; the prior is
N(0, I_K). Everything is nats.
"""

import logging
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from hmc_lib import _checks, integrators
from hmc_lib.dlgm import model as model_lib
from hmc_lib.kernels import metropolis


def iwae(log_joint_fn, x, proposal_mean, proposal_log_scale, num_samples, seed):
    """Importance-weighted estimate of log p(x), `[B]`, with S = `num_samples` draws of
    q = N(proposal_mean, diag exp(2·proposal_log_scale)) (each `[B, K]`)."""
    _checks.positive_int(num_samples, "num_samples")
    mean = tf.convert_to_tensor(proposal_mean)
    log_scale = tf.cast(proposal_log_scale, mean.dtype)
    eps = tf.random.stateless_normal(tf.concat([[num_samples], tf.shape(mean)], 0),
                                     seed=seed, dtype=mean.dtype)
    z = mean + tf.exp(log_scale) * eps
    log_w = log_joint_fn(tf.cast(x, mean.dtype), z) - model_lib.Encoder.log_prob(z, mean, log_scale)
    return tf.reduce_logsumexp(log_w, 0) - tf.math.log(tf.cast(num_samples, mean.dtype))


class AISResult(NamedTuple):
    """log_marginal `[B]`; log_weights `[C, B]`; acceptance: mean HMC acceptance `[B]`."""
    log_marginal: Any
    log_weights: Any
    acceptance: Any


def sigmoid_schedule(num_temperatures, rad=4.0):
    """β_0 = 0 < … < β_T = 1 (T = `num_temperatures`), dense near both ends (Grosse et al.)."""
    _checks.positive_int(num_temperatures, "num_temperatures")
    s = 1.0 / (1.0 + np.exp(-np.linspace(-rad, rad, num_temperatures + 1)))
    return (s - s[0]) / (s[-1] - s[0])


def ais(log_joint_fn, x, latent_dim, num_temperatures, num_chains, seed, step_size=0.1,
        num_leapfrog_steps=5, adapt=True, dtype=tf.float32):
    """AIS estimate of log p(x) for each data point, `AISResult`.

    Args:
      x: `[B, D]`. latent_dim: K. num_temperatures: T annealing steps. num_chains: C per
      data point. seed: `[2]` int stateless seed or an int.
      step_size, num_leapfrog_steps: the HMC transition at each temperature.
      adapt: multiply each data point's step size by exp(0.5 (a − 0.65)) after every
        temperature (a its chains' acceptance), so it follows the narrowing posterior;
        with `adapt=False` the step size is fixed (the weights are then exactly unbiased).
    """
    return make_ais(log_joint_fn, latent_dim, num_temperatures, num_chains, step_size,
                    num_leapfrog_steps, adapt, dtype)(x, seed)


def make_ais(log_joint_fn, latent_dim, num_temperatures, num_chains, step_size=0.1,
             num_leapfrog_steps=5, adapt=True, dtype=tf.float32):
    """`ais` with everything but the data and the seed fixed: returns `run(x, seed)` ->
    `AISResult`, whose graph is traced once per shape of `x` (tracing costs about a second,
    more than a small run). `log_joint_fn` is read when the graph is traced: pass one whose
    variables change (a model whose weights are copied in), not a new function per call."""
    _checks.positive_int(latent_dim, "latent_dim")
    _checks.positive_int(num_chains, "num_chains")
    _checks.positive_int(num_leapfrog_steps, "num_leapfrog_steps")
    _checks.positive_float(step_size, "step_size")
    betas = tf.constant(sigmoid_schedule(num_temperatures), dtype)

    def log_lik(xs, z):
        return log_joint_fn(xs, z) - model_lib.standard_normal_log_prob(z)

    def tempered(xs, beta):
        return lambda z: model_lib.standard_normal_log_prob(z) + beta * log_lik(xs, z)

    @tf.function(autograph=False)
    def anneal(x, seed):
        batch = tf.shape(x)[0]
        seeds = tf.random.experimental.stateless_split(seed, num_temperatures + 1)
        z = tf.random.stateless_normal([num_chains, batch, latent_dim], seed=seeds[0],
                                       dtype=dtype)
        xs = tf.broadcast_to(x, tf.concat([[num_chains], tf.shape(x)], 0))

        def body(t, z, log_w, eps, acc_sum):
            beta_prev, beta = betas[t - 1], betas[t]
            log_w = log_w + (beta - beta_prev) * log_lik(xs, z)
            fn = integrators.value_and_grad(tempered(xs, beta))
            value, grad = fn(z)
            v_seed, a_seed = tf.unstack(tf.random.experimental.stateless_split(seeds[t], 2))
            v = tf.random.stateless_normal(tf.shape(z), seed=v_seed, dtype=dtype)
            end = integrators.leapfrog_trajectory(
                integrators.LeapfrogState(z, v, value, grad), fn, eps[:, None],
                num_leapfrog_steps)
            lar = (end.value - value + metropolis.kinetic_energy(v)
                   - metropolis.kinetic_energy(end.momentum))
            decision = metropolis.decide(lar, a_seed, end.position)
            z = metropolis.choose(decision.is_accepted, end.position, z)
            acc = tf.reduce_mean(tf.cast(decision.is_accepted, dtype), 0)   # [B]
            if adapt:
                eps = eps * tf.exp(0.5 * (acc - 0.65))
            return t + 1, z, log_w, eps, acc_sum + acc

        eps0 = tf.fill([batch], tf.constant(step_size, dtype))
        _, z, log_w, _, acc_sum = tf.while_loop(
            lambda t, *_: t <= num_temperatures, body,
            (tf.constant(1), z, tf.zeros([num_chains, batch], dtype), eps0,
             tf.zeros([batch], dtype)))
        return log_w, acc_sum

    def run(x, seed):
        x = tf.cast(x, dtype)
        seed = tf.constant([int(seed), 0], tf.int32) if np.ndim(seed) == 0 else seed
        # a fresh `make_ais` per call retraces; keep TF's "frequent retracing" warning quiet
        logger = tf.get_logger()
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            log_w, acc_sum = anneal(x, tf.convert_to_tensor(seed, tf.int32))
        finally:
            logger.setLevel(level)
        log_marginal = (tf.reduce_logsumexp(log_w, 0)
                        - tf.math.log(tf.cast(num_chains, dtype)))
        return AISResult(log_marginal, log_w, acc_sum / num_temperatures)

    return run
