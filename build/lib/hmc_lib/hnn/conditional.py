"""Chen's §8.2 proposal: an HNN that also takes the data as input, H̃(θ, ρ | y), trained once
across simulated data sets and used on a new data set without retraining (chapter 7).

Worked on the Gaussian random-effects model (`targets.pseudo_marginal.
gaussian_random_effects`: X_t ~ N(μ, σ_x²), y_tj | X_t ~ N(X_t, σ_y²), θ = (μ, log σ_x)),
whose likelihood depends on the data only through three summaries,
s(y) = (mean of y, mean of y², mean over t of ȳ_t²) for fixed T, n and σ_y, so a network
Ũ(θ, s) can represent every data set's posterior. (For the GLMM no such small summary exists;
the network would have to read the T × n responses and covariates, Chen's open problem.)

- `summary(y)`: s(y), `[3]`.
- `ConditionalHNN`: a separable Ũ(θ, s) + ½|ρ|²; `bind(s)` gives an object with the `HNN`
  interface (`kind`, `dim`, `potential`, `hamiltonian`, `field`, `grads`) for one data set,
  usable by `HNNHMC`, `HNNNUTS` and `HNNPMNUTS`.
- `simulate_sets`, `collect_sets`: data sets with random (μ, log σ_x) and, on each, training
  points θ around its posterior with the exact gradient of log p(θ) + log p(y | θ) (the
  N → ∞ limit of Chen's large-N pseudo-marginal labels).
- `train_conditional`: Chen's method-4 loss (θ-gradients) over all sets.
"""

import time
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from hmc_lib import _checks
from hmc_lib.hnn.train import _Adam


def summary(y):
    """s(y) for responses `y` `[T, n]`: (mean y, mean y², mean_t ȳ_t²) as float64 `[3]`."""
    y = np.asarray(y, np.float64)
    if y.ndim != 2:
        raise ValueError(f"`y` must have shape [T, n], got {list(y.shape)}")
    return np.array([y.mean(), (y ** 2).mean(), (y.mean(-1) ** 2).mean()])


class ConditionalHNN(tf.Module):
    """Ũ(θ, s): an MLP of the standardised (θ, s) with a scalar output; H̃ = Ũ + ½|ρ|².

    Args:
      dim: dimension of θ; summary_dim: dimension of s.
      hidden: hidden widths; activation: "tanh" or "softplus"; seed: int.
    """

    def __init__(self, dim, summary_dim, hidden=(64, 64), activation="tanh", seed=0,
                 dtype=tf.float32, name="conditional_hnn"):
        super().__init__(name=name)
        _checks.positive_int(dim, "dim")
        _checks.positive_int(summary_dim, "summary_dim")
        acts = {"tanh": tf.math.tanh, "softplus": tf.math.softplus}
        if activation not in acts:
            raise ValueError(f"`activation` must be one of {sorted(acts)}, got {activation!r}")
        self.dim, self.summary_dim, self.dtype = int(dim), int(summary_dim), tf.as_dtype(dtype)
        self._act = acts[activation]
        sizes = [self.dim + self.summary_dim] + [int(h) for h in hidden] + [1]
        rng = np.random.default_rng(int(seed))
        self.w = [tf.Variable(rng.uniform(-1, 1, (a, b)) * np.sqrt(6.0 / (a + b)),
                              dtype=self.dtype) for a, b in zip(sizes[:-1], sizes[1:])]
        self.b = [tf.Variable(np.zeros(b), dtype=self.dtype) for b in sizes[1:]]
        n_in = self.dim + self.summary_dim
        self.shift = tf.Variable(np.zeros(n_in), dtype=self.dtype, trainable=False)
        self.scale = tf.Variable(np.ones(n_in), dtype=self.dtype, trainable=False)

    def potential(self, q, s):
        """Ũ(θ, s): `q` `[..., dim]`, `s` `[..., summary_dim]` (broadcast) -> `[...]`."""
        in_dtype = q.dtype
        q = tf.cast(q, self.dtype)
        s = tf.cast(tf.broadcast_to(tf.cast(s, self.dtype),
                                    tf.concat([tf.shape(q)[:-1], [self.summary_dim]], 0)),
                    self.dtype)
        z = (tf.concat([q, s], -1) - self.shift) / self.scale
        lead = tf.shape(z)[:-1]
        z = tf.reshape(z, [-1, self.dim + self.summary_dim])
        for w, b in zip(self.w[:-1], self.b[:-1]):
            z = self._act(tf.matmul(z, w) + b)
        out = tf.matmul(z, self.w[-1])[:, 0] + self.b[-1][0]
        return tf.cast(tf.reshape(out, lead), in_dtype)

    def field(self, q, s):
        """−∇_θ Ũ(θ, s), shaped like `q`."""
        q = tf.convert_to_tensor(q)
        with tf.GradientTape() as tape:
            tape.watch(q)
            u = self.potential(q, s)
        return -tape.gradient(u, q)

    def bind(self, s):
        """The HNN of one data set with summary `s` `[summary_dim]`."""
        return _Bound(self, np.asarray(s, np.float64))


class _Bound:
    """`ConditionalHNN` with its data summary fixed: the separable-HNN interface."""

    kind = "separable"

    def __init__(self, net, s):
        self.net, self.s, self.dim = net, s, net.dim

    def potential(self, q):
        return self.net.potential(q, tf.constant(self.s, q.dtype))

    def hamiltonian(self, q, p):
        return self.potential(q) + 0.5 * tf.reduce_sum(tf.square(p), -1)

    def field(self, q):
        q = tf.convert_to_tensor(q)
        return self.net.field(q, tf.constant(self.s, q.dtype))

    def grads(self, q, p):
        return -self.field(q), tf.convert_to_tensor(p, q.dtype)


class SetData(NamedTuple):
    """Training points pooled over data sets (float64): `q` `[n, dim]`, `s` `[n, 3]` (the
    summary of each point's data set), `dh_dq` `[n, dim]` (−∇_θ log p(θ | y) up to the
    constant), `set_index` `[n]`; `grad_evals`: gradients spent (int)."""
    q: Any
    s: Any
    dh_dq: Any
    set_index: Any
    grad_evals: int


def simulate_sets(num_sets, seed, num_individuals=30, num_obs=8, num_importance=8):
    """`num_sets` Gaussian random-effects data sets with μ ~ U(−2, 2), log σ_x ~ U(−1, 0.7)
    (each a `PseudoMarginalTarget` with its exact posterior moments)."""
    from hmc_lib.targets.pseudo_marginal import gaussian_random_effects
    _checks.positive_int(num_sets, "num_sets")
    rng = np.random.default_rng(int(seed))
    out = []
    for k in range(int(num_sets)):
        out.append(gaussian_random_effects(
            num_individuals=num_individuals, num_obs=num_obs, num_importance=num_importance,
            true_mu=float(rng.uniform(-2, 2)), true_log_sigma_x=float(rng.uniform(-1, 0.7)),
            seed=int(rng.integers(2 ** 31)), grid_size=151))
    return out


def collect_sets(targets, points_per_set, seed, spread=3.0):
    """On each target, `points_per_set` θ ~ N(posterior mean, (spread · posterior sd)²) with
    the exact gradient of log p(θ) + log p(y | θ). Returns `SetData`."""
    _checks.positive_int(points_per_set, "points_per_set")
    rng = np.random.default_rng(int(seed))
    qs, ss, gs, idx = [], [], [], []
    for k, t in enumerate(targets):
        sd = np.sqrt(t.posterior_variance)
        q = t.posterior_mean + spread * sd * rng.standard_normal((points_per_set, 2))
        qt = tf.constant(q, tf.float64)
        with tf.GradientTape() as tape:
            tape.watch(qt)
            lp = t.log_prior(qt) + t.exact_log_likelihood(qt)
        g = tape.gradient(lp, qt).numpy()
        qs.append(q)
        ss.append(np.tile(summary(t.data["y"]), (points_per_set, 1)))
        gs.append(-g)
        idx.append(np.full(points_per_set, k))
    return SetData(np.concatenate(qs), np.concatenate(ss), np.concatenate(gs),
                   np.concatenate(idx), len(targets) * int(points_per_set))


class ConditionalResult(NamedTuple):
    """`net`: the trained `ConditionalHNN`; `loss` `[num_steps]`; `seconds`; `grad_evals`."""
    net: Any
    loss: Any
    seconds: float
    grad_evals: int


def train_conditional(data, hidden=(64, 64), num_steps=2000, batch_size=512,
                      learning_rate=5e-3, seed=0):
    """Fits a `ConditionalHNN` to `data` (a `SetData`) with the method-4 loss on θ."""
    _checks.positive_int(num_steps, "num_steps")
    _checks.positive_int(batch_size, "batch_size")
    _checks.positive_float(learning_rate, "learning_rate")
    net = ConditionalHNN(data.q.shape[1], data.s.shape[1], hidden=hidden, seed=seed)
    z = np.concatenate([data.q, data.s], -1)
    net.shift.assign(z.mean(0))
    net.scale.assign(np.maximum(z.std(0), 1e-8))
    arrays = [tf.constant(a, tf.float32) for a in (data.q, data.s, data.dh_dq)]
    variables = list(net.trainable_variables)
    opt = _Adam(variables, learning_rate, num_steps)

    @tf.function(jit_compile=True)
    def step(idx):
        q, s, target = (tf.gather(a, idx) for a in arrays)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.reduce_sum(tf.square(-net.field(q, s) - target), -1))
        opt.apply(tape.gradient(loss, variables,
                                unconnected_gradients=tf.UnconnectedGradients.ZERO))
        return loss

    rng = np.random.default_rng(int(seed))
    n = data.q.shape[0]
    start = time.perf_counter()
    losses = [float(step(tf.constant(rng.integers(0, n, min(int(batch_size), n)))))
              for _ in range(int(num_steps))]
    return ConditionalResult(net, np.asarray(losses), time.perf_counter() - start,
                             int(data.grad_evals))


def field_error(hnn, q, dh_dq):
    """Median relative error of an HNN's field −∇Ũ against −`dh_dq` at points `q`."""
    pred = np.asarray(hnn.field(tf.constant(q, tf.float32)), np.float64)
    true = -np.asarray(dh_dq)
    return float(np.median(np.linalg.norm(pred - true, axis=-1)
                           / np.maximum(np.linalg.norm(true, axis=-1), 1e-12)))
