"""Dhulipala et al.'s targets, the run sizes of chapter 7 and its benchmark, and the
published numbers (PAPERS.md §3.4).

The targets are defined here, with the method, for now (not in `hmc_lib.targets`):

- ``gmm1d``: ½N(−1, 0.35²) + ½N(1, 0.35²) (Chen's replication).
- ``icg5``: N(0, diag(10^linspace(−2, 2, 5))), the 5-d ill-conditioned Gaussian.
- ``funnel2d``: Neal's funnel, v ~ N(0, 3²), x | v ~ N(0, e^v); state (v, x).
- ``rosenbrock3d``: log π = −Σ_i [100 (x_{i+1} − x_i²)² + (1 − x_i)²] / 20 (Dhulipala's
  scaling); no exact sampler or moments.
"""

import math

import numpy as np
import tensorflow as tf

from hmc_lib import scale as scale_mod
from hmc_lib.targets.base import Target

SIGMA_GMM = 0.35
ICG5_VARIANCES = 10.0 ** np.linspace(-2.0, 2.0, 5)


def _gmm1d():
    s = SIGMA_GMM

    def log_prob(x):
        x = x[..., 0]
        a = -0.5 * tf.square((x - 1.0) / s)
        b = -0.5 * tf.square((x + 1.0) / s)
        return tf.reduce_logsumexp(tf.stack([a, b], 0), 0) - math.log(2.0 * s) \
            - 0.5 * math.log(2.0 * math.pi)

    def sample(n, seed, dtype=tf.float32):
        rng = np.random.default_rng(int(seed))
        sign = rng.choice([-1.0, 1.0], size=(n, 1))
        return tf.constant(sign + s * rng.standard_normal((n, 1)), dtype)

    return Target(log_prob, 1, "gmm1d", mean=[0.0], variance=[1.0 + s * s], sample_fn=sample)


def _icg5():
    var = ICG5_VARIANCES

    def log_prob(x):
        return -0.5 * tf.reduce_sum(tf.square(x) / tf.constant(var, x.dtype), -1)

    def grad(x):
        return -x / tf.constant(var, x.dtype)

    def sample(n, seed, dtype=tf.float32):
        rng = np.random.default_rng(int(seed))
        return tf.constant(rng.standard_normal((n, 5)) * np.sqrt(var), dtype)

    return Target(log_prob, 5, "icg5", mean=np.zeros(5), variance=var, sample_fn=sample,
                  grad_fn=grad)


def _funnel2d():
    def log_prob(z):
        v, x = z[..., 0], z[..., 1]
        return -0.5 * tf.square(v / 3.0) - 0.5 * tf.square(x) * tf.exp(-v) - 0.5 * v

    def sample(n, seed, dtype=tf.float32):
        rng = np.random.default_rng(int(seed))
        v = 3.0 * rng.standard_normal(n)
        x = np.exp(v / 2.0) * rng.standard_normal(n)
        return tf.constant(np.stack([v, x], -1), dtype)

    return Target(log_prob, 2, "funnel2d", mean=[0.0, 0.0], variance=[9.0, math.exp(4.5)],
                  sample_fn=sample)


def _rosenbrock3d():
    def log_prob(x):
        a, b = x[..., :-1], x[..., 1:]
        return -tf.reduce_sum(100.0 * tf.square(b - a * a) + tf.square(1.0 - a), -1) / 20.0

    return Target(log_prob, 3, "rosenbrock3d")


_TARGETS = {"gmm1d": _gmm1d, "icg5": _icg5, "funnel2d": _funnel2d,
            "rosenbrock3d": _rosenbrock3d}
TARGETS = tuple(_TARGETS)


def get(name):
    """One of Dhulipala's targets (module docstring) as a `Target`."""
    if name not in _TARGETS:
        raise ValueError(f"`name` must be one of {TARGETS}, got {name!r}")
    return _TARGETS[name]()


#: Chen's first replication report (Dec 2024): ESS per true gradient (PAPERS.md §3.4)
PAPER = {key: dict(ess_per_grad=value) for key, value in {
    ("gmm1d", "hmc"): 9.30e-5, ("gmm1d", "nuts"): 4.03e-4,
    ("gmm1d", "hnn_hmc"): 5.87e-3, ("gmm1d", "hnn_nuts"): 4.02e-3,
    ("icg5", "nuts"): 1.39e-3, ("icg5", "hnn_nuts"): 2.95e-2,
    ("funnel2d", "nuts"): 4.4e-5, ("funnel2d", "hnn_nuts"): 8.0e-4,
}.items()}


def settings(scale=None):
    """Run sizes per scale: data, training, sampling, and per-target step sizes."""
    pick = lambda ci, book, paper: scale_mod.pick(ci, book, paper, scale)
    return dict(
        training_seeds=pick([0], [0, 1, 2], [0, 1, 2, 3, 4]),
        data=dict(chains=pick(8, 16, 32), num_trajectories=pick(10, 20, 40),
                  num_steps=pick(20, 25, 50)),
        train=dict(num_steps=pick(300, 1000, 5000), batch_size=pick(256, 512, 1000),
                   hidden=pick((32, 32), (64, 64), (100, 100, 100, 100)),
                   learning_rate=5e-3),
        targets=pick(("gmm1d", "icg5"), ("gmm1d", "icg5", "funnel2d"), TARGETS),
        sample=dict(chains=16, num_results=pick(200, 500, 5000), burnin=pick(50, 100, 1000)),
        step_size={"gmm1d": 0.1, "icg5": 0.05, "funnel2d": 0.05, "rosenbrock3d": 0.05},
        data_step_size={"gmm1d": 0.05, "icg5": 0.02, "funnel2d": 0.02,
                        "rosenbrock3d": 0.02},
        hmc_steps={"gmm1d": 20, "icg5": 40, "funnel2d": 30, "rosenbrock3d": 30},
        max_tree_depth=pick(6, 8, 10),
        max_hnn_error=10.0, cool_down=20,
    )


def initial_state(target, chains, seed, dtype=tf.float32):
    """`[chains, dim]` exact draws where the target has a sampler, else zeros (then the
    caller must burn in)."""
    if target.has_sampler:
        return target.sample(chains, seed, dtype)
    return tf.zeros([chains, target.dim], dtype)


def train_hnn(name, seed, scale=None, kind="separable", progress=False):
    """Collects data on target `name` and trains an HNN; returns `(TrainResult, held_out)`."""
    from hmc_lib.hnn.data import collect
    from hmc_lib.hnn.train import train
    cfg = settings(scale)
    t = get(name)
    d = cfg["data"]
    x0 = initial_state(t, d["chains"], seed + 1000, tf.float64)
    data = collect(t, x0, d["num_trajectories"], d["num_steps"], cfg["data_step_size"][name],
                   seed=seed + 2000)
    train_data, held_out = data.split(0.1, seed=seed)
    tr = cfg["train"]
    res = train(train_data, kind=kind, hidden=tr["hidden"], num_steps=tr["num_steps"],
                batch_size=tr["batch_size"], learning_rate=tr["learning_rate"],
                held_out=held_out, seed=seed, progress=progress,
                activation="tanh" if kind == "separable" else "sin")
    return res, held_out


def _row(method, name, samples, trace, train_grads=0, train_seconds=0.0, seed=None):
    from hmc_lib import diagnostics
    s = diagnostics.summary(samples, trace)
    grads = float(np.sum(trace["grad_evals"]))
    pots = float(np.sum(trace["potential_evals"])) if "potential_evals" in trace else grads
    total = grads + train_grads
    out = dict(method=method, target=name, seed=seed, ess_min=s["ess_min"],
               ess_median=s["ess_median"], acceptance=s["acceptance"],
               sample_grad_evals=grads, train_grad_evals=float(train_grads),
               grad_evals=total, potential_evals=pots,
               ess_per_grad=s["ess_min"] / total if total > 0 else float("inf"),
               ess_per_potential=s["ess_min"] / pots if pots > 0 else float("inf"),
               seconds=s["seconds"], train_seconds=float(train_seconds),
               ess_per_second=s["ess_per_second"], paper=PAPER.get((name, method)))
    if "fell_back" in trace:
        out["fallback_rate"] = float(np.mean(trace["fell_back"]))
        out["hnn_fraction"] = float(np.mean(trace["used_hnn"]))
    return out


def run_baselines(name, seed, scale=None):
    """HMC and NUTS on target `name`: rows as `run_hnn`'s."""
    from hmc_lib.kernels.hmc import HMC
    from hmc_lib.kernels.nuts import NUTS
    from hmc_lib.sampling import sample
    cfg = settings(scale)
    t, sc = get(name), cfg["sample"]
    x0 = initial_state(t, sc["chains"], seed)
    eps = cfg["step_size"][name]
    rows = []
    for method, kernel in (("hmc", HMC(t, eps, cfg["hmc_steps"][name])),
                           ("nuts", NUTS(t, eps, max_tree_depth=cfg["max_tree_depth"]))):
        samples, trace = sample(kernel, sc["num_results"], x0,
                                num_burnin_steps=sc["burnin"], seed=seed + 1)
        rows.append(_row(method, name, samples, trace, seed=seed))
    return rows


def run_hnn(name, training_seed, seed, scale=None, result=None):
    """Trains (unless `result` is given) and runs HNN-HMC (exact and Chen's rule) and
    HNN-NUTS on target `name`. The HNN methods are charged the true gradients of their
    training data (`train_grad_evals`). Returns `(rows, TrainResult, samples)`, `samples` a
    dict method -> draws `[num_results, chains, dim]`."""
    from hmc_lib.hnn.kernel import HNNHMC, HNNNUTS
    from hmc_lib.sampling import sample
    cfg = settings(scale)
    if result is None:
        result, _ = train_hnn(name, training_seed, scale)
    t, sc = get(name), cfg["sample"]
    x0 = initial_state(t, sc["chains"], seed)
    eps = cfg["step_size"][name]
    kernels = (("hnn_hmc", HNNHMC(t, result.hnn, eps, cfg["hmc_steps"][name])),
               ("hnn_hmc_chen", HNNHMC(t, result.hnn, eps, cfg["hmc_steps"][name],
                                       exact=False)),
               ("hnn_nuts", HNNNUTS(t, result.hnn, eps, max_tree_depth=cfg["max_tree_depth"],
                                    max_hnn_error=cfg["max_hnn_error"],
                                    cool_down=cfg["cool_down"])))
    rows, draws = [], {}
    for method, kernel in kernels:
        samples, trace = sample(kernel, sc["num_results"], x0,
                                num_burnin_steps=sc["burnin"], seed=seed + 1)
        row = _row(method, name, samples, trace, train_grads=result.grad_evals,
                   train_seconds=result.seconds, seed=training_seed)
        if t.mean is not None:
            x = np.asarray(samples, np.float64)
            row["var_rel_error"] = float(np.max(np.abs(x.var((0, 1)) / t.variance - 1.0)))
        rows.append(row)
        draws[method] = samples
    return rows, result, draws
