"""Chen's five ways to learn a Hamiltonian for pseudo-marginal HMC (chapter 7), built on
one set of pseudo-marginal trajectories and judged on held-out trajectories.

The extended state is (θ, ρ, u, p) with H = −log p(θ) − log p̂(y | θ, u) + ½(|ρ|² + |u|² +
|p|²) (unit masses). Chen numbers his variants; our reading of each (the report names them in
a line each, so the architecture and the loss's weights are ours):

1. **full-state HNN**: one network H̃(θ, ρ, u, p) of the whole extended state (our latent
   HNN over q = (θ, u), p = (ρ, p)), fitted to all four partial derivatives of H;
2. **gradient regression on (θ, u)**: a network g(θ, u) fitted to ∇_θ log p̂(y | θ, u) (plus
   the prior's gradient): a vector field with no Hamiltonian behind it;
3. **θ-only potential**: Ũ(θ) fitted to the values *and* the gradients of
   −log p(θ) − log p̂(y | θ, u) (the value term centred per batch; each term divided by its
   size on the training data, so that both count);
4. **H̃(θ, ρ)** fitted to ∂H/∂θ and ∂H/∂ρ = ρ (Chen's working method; our latent HNN over
   (θ, ρ)), and its separable form Ũ(θ) + ½|ρ|² (∂H̃/∂ρ = ρ exactly), which the book's
   samplers use ("4s");
5. **trajectory matching**: Ũ(θ) + ½|ρ|², fitted so that `match_steps` leapfrog steps of its
   dynamics from a trajectory point land on the true trajectory's point that many steps
   later (positions and momenta).

Every variant is judged by what a sampler consumes, the θ-field ∂H̃/∂θ (for 2: −g), on
held-out trajectories: its median relative error against the label ∂H/∂θ at (θ, u) (noisy:
it carries the importance sampler's error at u) and against the marginal field
−∇_θ log p(θ | y), estimated with many importance draws; and on the training points, so that
a variant that fails can be told to overfit (training error far below held-out) or to
underfit (both high).
"""

import time
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from hmc_lib import _checks
from hmc_lib.hnn.networks import HNN
from hmc_lib.hnn.train import _Adam, train
from hmc_lib.hnn.data import TrainingData


class Method(NamedTuple):
    """One of Chen's variants: `key` ("1" … "5", "4s"), `name`, `network` (what it is a
    function of) and `fits` (what it is fitted to)."""
    key: str
    name: str
    network: str
    fits: str


METHODS = (
    Method("1", "full-state HNN", "H̃(θ, ρ, u, p)", "∂H/∂θ, ∂H/∂u, ρ, p"),
    Method("2", "gradient regression", "g(θ, u)", "∇θ log p̂(y | θ, u)"),
    Method("3", "θ-only potential", "Ũ(θ)", "values and ∂H/∂θ"),
    Method("4", "H̃(θ, ρ)", "H̃(θ, ρ)", "∂H/∂θ, ρ"),
    Method("4s", "H̃(θ, ρ), separable", "Ũ(θ) + ½|ρ|²", "∂H/∂θ"),
    Method("5", "trajectory matching", "Ũ(θ) + ½|ρ|²", "trajectory points"),
)
KEYS = tuple(m.key for m in METHODS)


class TrainSettings(NamedTuple):
    """The shared training settings: hidden widths, Adam steps, batch size, learning rate,
    and the leapfrog steps method 5 matches over."""
    hidden: tuple = (64, 64)
    num_steps: int = 1000
    batch_size: int = 256
    learning_rate: float = 5e-3
    match_steps: int = 4


class Fitted(NamedTuple):
    """A trained variant: `field(θ, ρ, u, p) -> ∂H̃/∂θ` (numpy in, numpy out), `seconds` of
    training, `inputs` (the network's input width) and `history` (training losses)."""
    field: object
    seconds: float
    inputs: int
    history: np.ndarray


class _VectorNet(tf.Module):
    """An MLP `[n, d_in] -> [n, d_out]` (tanh), inputs standardised: method 2's g."""

    def __init__(self, d_in, d_out, hidden, shift, scale, seed):
        super().__init__()
        rng = np.random.default_rng(int(seed))
        sizes = [int(d_in), *[int(h) for h in hidden], int(d_out)]
        self.w = [tf.Variable(rng.uniform(-1, 1, (a, b)) * np.sqrt(6.0 / (a + b)), dtype=tf.float32)
                  for a, b in zip(sizes[:-1], sizes[1:])]
        self.b = [tf.Variable(np.zeros(b), dtype=tf.float32) for b in sizes[1:]]
        self.shift = tf.constant(shift, tf.float32)
        self.scale = tf.constant(scale, tf.float32)

    def __call__(self, x):
        z = (x - self.shift) / self.scale
        for w, b in zip(self.w[:-1], self.b[:-1]):
            z = tf.tanh(z @ w + b)
        return z @ self.w[-1] + self.b[-1]


def _adam_loop(variables, loss, arrays, settings, seed):
    """Adam (`hmc_lib.hnn.train._Adam`) on `loss(*batch)`; mini-batches of rows of `arrays`
    drawn with replacement. Returns `(losses [num_steps], seconds)`."""
    opt = _Adam(variables, settings.learning_rate, settings.num_steps)
    n = arrays[0].shape[0]
    consts = [tf.constant(a, tf.float32) for a in arrays]

    @tf.function(jit_compile=True)
    def steps(indices):
        def body(i, losses):
            batch = [tf.gather(a, indices[i]) for a in consts]
            with tf.GradientTape() as tape:
                value = loss(*batch)
            opt.apply(tape.gradient(value, variables,
                                    unconnected_gradients=tf.UnconnectedGradients.ZERO))
            return i + 1, losses.write(i, value)

        k = tf.shape(indices)[0]
        _, out = tf.while_loop(lambda i, _: i < k, body,
                               (tf.constant(0), tf.TensorArray(tf.float32, k)))
        return out.stack()

    rng = np.random.default_rng(int(seed))
    batch = min(int(settings.batch_size), n)
    losses = []
    start = time.perf_counter()
    block = 100
    for done in range(0, int(settings.num_steps), block):
        k = min(block, int(settings.num_steps) - done)
        idx = rng.integers(0, n, size=(k, batch)).astype(np.int32)
        losses.extend(np.asarray(steps(tf.constant(idx))).tolist())
    return np.asarray(losses), time.perf_counter() - start


def _flat_u(a):
    return a.reshape(a.shape[0], -1)


def _hnn_field(hnn, split):
    """∂H̃/∂θ of an `HNN` as a numpy function of (θ, ρ, u, p); `split` = θ's width when the
    network also reads u (method 1)."""
    def field(theta, rho, u, p):
        if split is None:
            q, m = theta, rho
        else:
            q = np.concatenate([theta, _flat_u(u)], -1)
            m = np.concatenate([rho, _flat_u(p)], -1)
        gq, _ = hnn.grads(tf.constant(q, tf.float32), tf.constant(m, tf.float32))
        gq = np.asarray(gq, np.float64)
        return gq if split is None else gq[:, :split]
    return field


def leapfrog(hnn, q, p, step_size, num_steps):
    """`num_steps` leapfrog steps of a separable HNN's dynamics (field −∇Ũ, unit mass) from
    `(q, p)` `[n, dim]` each, unrolled so that method 5's loss can be differentiated through
    them; returns `(q, p)`."""
    h = step_size
    p = p + 0.5 * h * hnn.field(q)
    for i in range(int(num_steps)):
        q = q + h * p
        p = p + (h if i < int(num_steps) - 1 else 0.5 * h) * hnn.field(q)
    return q, p


def fit(key, data, settings=TrainSettings(), seed=0):
    """Trains Chen's variant `key` (`KEYS`) on `data` (`hmc_lib.hnn.data.PMStates`, the
    training paths); returns `Fitted`."""
    if key not in KEYS:
        raise ValueError(f"`key` must be one of {KEYS}, got {key!r}")
    _checks.positive_int(settings.num_steps, "settings.num_steps")
    pts = {f: data.points(f) for f in ("theta", "rho", "grad_theta", "log_joint")}
    d = pts["theta"].shape[-1]
    hidden = tuple(settings.hidden)
    common = dict(hidden=hidden, num_steps=int(settings.num_steps),
                  batch_size=int(settings.batch_size),
                  learning_rate=float(settings.learning_rate), seed=seed, progress=False)
    if key in ("3", "4", "4s"):
        q, p, g = pts["theta"], pts["rho"], -pts["grad_theta"]
        td = TrainingData(q, p, g, p.copy(), data.grad_evals, -pts["log_joint"])
        if key == "3":
            w = (1.0 / np.mean(np.sum(g * g, -1)), 1.0 / np.var(td.potential))
            res = train(td, kind="separable", loss="value_gradient", weights=w, **common)
        else:
            res = train(td, kind="latent" if key == "4" else "separable",
                        activation="sin" if key == "4" else "tanh", **common)
        return Fitted(_hnn_field(res.hnn, None), res.seconds, d * (2 if key == "4" else 1),
                      res.history["loss"])
    if key == "1":
        u, pu, gu = (_flat_u(data.points(f)) for f in ("u", "p", "grad_u"))
        q = np.concatenate([pts["theta"], u], -1)
        m = np.concatenate([pts["rho"], pu], -1)
        dq = np.concatenate([-pts["grad_theta"], u - gu], -1)    # ∂H/∂u = u − ∇_u log p̂
        td = TrainingData(q, m, dq, m.copy(), data.grad_evals)
        res = train(td, kind="latent", activation="sin", latent_dim=2 * d, **common)
        return Fitted(_hnn_field(res.hnn, d), res.seconds, 2 * q.shape[-1],
                      res.history["loss"])
    if key == "2":
        x = np.concatenate([pts["theta"], _flat_u(data.points("u"))], -1)
        y = pts["grad_theta"]
        net = _VectorNet(x.shape[-1], d, hidden, x.mean(0), np.maximum(x.std(0), 1e-8), seed)
        loss = lambda xb, yb: tf.reduce_mean(tf.reduce_sum(tf.square(net(xb) - yb), -1))
        losses, secs = _adam_loop(net.trainable_variables, loss, [x, y], settings, seed)

        def field(theta, rho, u, p):
            xin = np.concatenate([theta, _flat_u(u)], -1)
            return -np.asarray(net(tf.constant(xin, tf.float32)), np.float64)
        return Fitted(field, secs, x.shape[-1], losses)
    # key == "5": trajectory matching over `match_steps` leapfrog steps
    k = int(settings.match_steps)
    steps = data.theta.shape[1]
    if steps <= k:
        raise ValueError(f"trajectories of {steps} steps cannot match {k} steps")
    hnn = HNN(d, kind="separable", hidden=hidden, activation="tanh", seed=seed)
    hnn.set_standardisation(pts["theta"].mean(0), np.maximum(pts["theta"].std(0), 1e-8))
    start_q = data.theta[:, :-k].reshape(-1, d)
    start_p = data.rho[:, :-k].reshape(-1, d)
    end_q = data.theta[:, k:].reshape(-1, d)
    end_p = data.rho[:, k:].reshape(-1, d)
    h = float(data.step_size)
    # scale of each term: the true change over k steps, so both count
    wq = 1.0 / np.mean(np.sum((end_q - start_q) ** 2, -1))
    wp = 1.0 / np.mean(np.sum((end_p - start_p) ** 2, -1))

    def loss(q0, p0, q1, p1):
        q, p = leapfrog(hnn, q0, p0, h, k)
        return (wq * tf.reduce_mean(tf.reduce_sum(tf.square(q - q1), -1))
                + wp * tf.reduce_mean(tf.reduce_sum(tf.square(p - p1), -1)))

    variables = list(hnn.trainable_variables)
    losses, secs = _adam_loop(variables, loss, [start_q, start_p, end_q, end_p], settings,
                              seed)
    return Fitted(_hnn_field(hnn, None), secs, d, losses)


def relative_error(pred, label):
    """Median over points of ‖pred − label‖ / ‖label‖ (rows `[n, d]`)."""
    pred, label = np.asarray(pred, np.float64), np.asarray(label, np.float64)
    return float(np.median(np.linalg.norm(pred - label, axis=-1)
                           / np.maximum(np.linalg.norm(label, axis=-1), 1e-12)))


def evaluate(fitted, train_data, held_out, marginal_field, max_points=2000, seed=0):
    """Field errors of a `Fitted` variant: a dict `train_error` and `held_out_error` (against
    the label ∂H/∂θ at (θ, u)) and `marginal_error` (held out, against `marginal_field`,
    `[n, theta_dim]` at the held-out points in `held_out.points` order, or None)."""
    rng = np.random.default_rng(int(seed))

    def err(data, label=None, idx=None):
        pts = [data.points(f) for f in ("theta", "rho", "u", "p")]
        n = pts[0].shape[0]
        if idx is None:
            idx = rng.permutation(n)[:max_points] if n > max_points else np.arange(n)
        pred = fitted.field(*(a[idx] for a in pts))
        lab = -data.points("grad_theta")[idx] if label is None else label[idx]
        return relative_error(pred, lab)

    out = dict(train_error=err(train_data), held_out_error=err(held_out))
    if marginal_field is not None:
        n = held_out.points("theta").shape[0]
        idx = np.arange(min(n, max_points))
        out["marginal_error"] = err(held_out, label=np.asarray(marginal_field), idx=idx)
    return out
