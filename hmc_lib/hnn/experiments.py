"""Dhulipala et al.'s targets, the run sizes of chapter 7 and its benchmark, and the
published numbers (chapter 7); also the chapter's other experiments: `run_glmm`
(HNN-PM-NUTS against PM-NUTS on the GLMM), `compare_variants` (Chen's HNN variants) and
`run_conditional` (Chen's §8.2 data-conditioned HNN).

The targets are defined here, with the method, for now (not in `hmc_lib.targets`):

- ``gmm1d``: ½N(−1, 0.35²) + ½N(1, 0.35²) (Chen's replication).
- ``icg5``: N(0, diag(10^linspace(−2, 2, 5))), the 5-d ill-conditioned Gaussian.
- ``funnel2d``: Neal's funnel, v ~ N(0, 3²), x | v ~ N(0, e^v); state (v, x).
- ``rosenbrock3d``: log π = −Σ_i [100 (x_{i+1} − x_i²)² + (1 − x_i)²] / 20 (Dhulipala's
  scaling); exact draws and moments through its factorisation (`rosenbrock3d_moments`,
  `rosenbrock3d_to_normal`).
"""

import functools
import math

import numpy as np
import tensorflow as tf

from hmc_lib import _reuse, scale as scale_mod
from hmc_lib.diagnostics import uniform_scores
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


#: Rosenbrock 3-d, log π = −Σ_i [100 (x_{i+1} − x_i²)² + (1 − x_i)²] / 20, factorises as
#: x₃ | x₂ ~ N(x₂², 1/10), x₂ | x₁ ~ N((10 x₁² + 0.1)/10.1, 1/10.1) and
#: p(x₁) ∝ exp(−(1 − x₁)²/20 − (x₁² − 1)²/20.2) (integrate x₃, then x₂: a Gaussian
#: convolution). So it has an exact sampler (x₁ by inverse CDF on a fine grid) and moments
#: by 1-d quadrature, and the Rosenblatt map below takes it to N(0, I).
ROSEN_PREC2 = 10.1     # precision of x₂ | x₁
ROSEN_PREC3 = 10.0     # precision of x₃ | x₂


def _rosen_x2_mean(x1):
    return (10.0 * x1 * x1 + 0.1) / ROSEN_PREC2


_ROSEN_GRID = {}


def _rosen_grid():
    """(grid, density, cdf) of x₁ on [−8, 8] (400,001 points; the density is < e⁻¹⁷⁰ at
    the ends), cached."""
    if not _ROSEN_GRID:
        x = np.linspace(-8.0, 8.0, 400001)
        logp = -(1.0 - x) ** 2 / 20.0 - (x * x - 1.0) ** 2 / (2.0 * ROSEN_PREC2)
        w = np.exp(logp - logp.max())
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]) * np.diff(x))])
        w, cdf = w / cdf[-1], cdf / cdf[-1]
        _ROSEN_GRID.update(x=x, density=w, cdf=cdf)
    return _ROSEN_GRID["x"], _ROSEN_GRID["density"], _ROSEN_GRID["cdf"]


def rosenbrock3d_moments():
    """Exact mean and variance `[3]` each of the 3-d Rosenbrock target (1-d quadrature)."""
    x, w, _ = _rosen_grid()
    dx = x[1] - x[0]
    e = lambda f: float(np.sum(f * w) * dx)
    m, s2 = _rosen_x2_mean(x), 1.0 / ROSEN_PREC2
    ex2_2 = m * m + s2                                   # E[x₂² | x₁]
    ex2_4 = m ** 4 + 6 * m * m * s2 + 3 * s2 * s2        # E[x₂⁴ | x₁]
    mean = np.array([e(x), e(m), e(ex2_2)])
    second = np.array([e(x * x), e(ex2_2), e(ex2_4) + 1.0 / ROSEN_PREC3])
    return mean, second - mean ** 2


def rosenbrock3d_to_normal(x):
    """The Rosenblatt map of the 3-d Rosenbrock target to N(0, I): numpy `[..., 3]` ->
    `[..., 3]` (z₁ = Φ⁻¹(F(x₁)), z₂, z₃ the standardised conditionals)."""
    from scipy import special
    x = np.asarray(x, np.float64)
    grid, _, cdf = _rosen_grid()
    u1 = np.clip(np.interp(x[..., 0], grid, cdf), 1e-300, 1.0 - 1e-16)
    z1 = special.ndtri(u1)
    z2 = (x[..., 1] - _rosen_x2_mean(x[..., 0])) * np.sqrt(ROSEN_PREC2)
    z3 = (x[..., 2] - x[..., 1] ** 2) * np.sqrt(ROSEN_PREC3)
    return np.stack([z1, z2, z3], -1)


def _rosenbrock3d():
    def log_prob(x):
        a, b = x[..., :-1], x[..., 1:]
        return -tf.reduce_sum(100.0 * tf.square(b - a * a) + tf.square(1.0 - a), -1) / 20.0

    def sample(n, seed, dtype=tf.float32):
        rng = np.random.default_rng(int(seed))
        grid, _, cdf = _rosen_grid()
        x1 = np.interp(rng.uniform(size=n), cdf, grid)
        x2 = _rosen_x2_mean(x1) + rng.standard_normal(n) / np.sqrt(ROSEN_PREC2)
        x3 = x2 * x2 + rng.standard_normal(n) / np.sqrt(ROSEN_PREC3)
        return tf.constant(np.stack([x1, x2, x3], -1), dtype)

    mean, var = rosenbrock3d_moments()
    return Target(log_prob, 3, "rosenbrock3d", mean=mean, variance=var, sample_fn=sample)


_TARGETS = {"gmm1d": _gmm1d, "icg5": _icg5, "funnel2d": _funnel2d,
            "rosenbrock3d": _rosenbrock3d}
TARGETS = tuple(_TARGETS)


#: targets built so far: each is built once per process (targets are immutable), so the
#: training seeds on a target share its compiled graphs (`hmc_lib._reuse`)
_BUILT = _reuse.memo(lambda name: _TARGETS[name]())
#: the samplers' kernels per (target, method, settings, network architecture)
_KERNELS = _reuse.Cache(maxsize=16)


def get(name):
    """One of Dhulipala's targets (module docstring) as a `Target` (the same object on every
    call in a process)."""
    if name not in _TARGETS:
        raise ValueError(f"`name` must be one of {TARGETS}, got {name!r}")
    return _BUILT(name)


@functools.lru_cache(maxsize=4)
def _glmm(num_individuals, num_importance, seed, covariate_scale):
    """The GLMM of chapter 4 with this data seed, built once per process (see `_BUILT`)."""
    from hmc_lib.targets import pseudo_marginal as pmt
    return pmt.glmm(num_individuals=num_individuals, num_importance=num_importance, seed=seed,
                    covariate_scale=covariate_scale)


#: Chen's first replication report (Dec 2024): ESS per true gradient (chapter 7)
PAPER = {key: dict(ess_per_grad=value) for key, value in {
    ("gmm1d", "hmc"): 9.30e-5, ("gmm1d", "nuts"): 4.03e-4,
    ("gmm1d", "hnn_hmc"): 5.87e-3, ("gmm1d", "hnn_nuts"): 4.02e-3,
    ("icg5", "nuts"): 1.39e-3, ("icg5", "hnn_nuts"): 2.95e-2,
    ("funnel2d", "nuts"): 4.4e-5, ("funnel2d", "hnn_nuts"): 8.0e-4,
    # Rosenbrock: 1.76e-3 / 2.17e-3 / 4.86e-3 with 160k / 240k / 400k training gradients
    ("rosenbrock3d", "nuts"): 1.37e-4, ("rosenbrock3d", "hnn_nuts"): 1.76e-3,
}.items()}


#: the chapter's goal (Dhulipala's headline): HNN-NUTS spends at least this many times fewer
#: true gradients per effective sample than NUTS, for every training seed
GOAL_RATIO = 10.0


def goal_verdict(ratios, goal=GOAL_RATIO, converged=None):
    """The targets on which the goal is met for every training seed, as prose: "on A and B
    but not on C", "on A and B" (all met) or "on no target"; targets whose cells did not
    pass the convergence gate get no verdict: "...; no verdict on D (not converged)".

    Args:
      ratios: dict target name -> per-seed ratios (NUTS's true gradients per ESS over
        HNN-NUTS's: above 1 favours HNN-NUTS), in the order to name them. A NaN ratio
        does not meet the goal.
      goal: the ratio every seed must reach.
      converged: optional dict target name -> bool, whether every cell behind the target's
        ratios (each seed's run and the baseline) passed the gate (default: all did).
    """
    if not ratios:
        raise ValueError("`ratios` must name at least one target")
    converged = {n: True for n in ratios} if converged is None else converged
    missing = [n for n in ratios if n not in converged]
    if missing:
        raise ValueError(f"`converged` lacks the targets {missing}")
    say = lambda names: ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1]
    judged = [n for n in ratios if converged[n]]
    open_ = [n for n in ratios if not converged[n]]
    ok = {n: bool(np.size(ratios[n]) > 0 and np.all(np.asarray(ratios[n], float) >= goal))
          for n in judged}
    met = [n for n in judged if ok[n]]
    missed = [n for n in judged if not ok[n]]
    if not judged:
        text = "on no target that passed the convergence gate"
    elif not met:
        text = "on no target"
    else:
        text = f"on {say(met)}" + (f" but not on {say(missed)}" if missed else "")
    if open_:
        text += f"; no verdict on {say(open_)} (not converged)"
    return text


def ratio_table(frame, method, base="nuts"):
    """Per target and training seed, `method`'s rows of `frame` (a DataFrame of `run_hnn`
    and `run_baselines` rows) against `base`'s on the same target: `ratio` (ESS per true
    gradient, training charged, over the base's), `sampling` (training not charged),
    `potential` (ESS per log π evaluation over the base's), `hnn_fraction`,
    `fallback_rate`, `fallback_rejected`, the method's gate reading (`rhat_max`,
    `ess_bulk_min`, `ess_tail_min`) and `converged`: the method's cell and the base's both
    passed the gate. Index (target, seed)."""
    import pandas as pd
    out = []
    for (name, seed), h in frame[frame.method == method].groupby(["target", "seed"],
                                                                 sort=False):
        b = frame[(frame.target == name) & (frame.method == base)].iloc[0]
        h = h.iloc[0]
        out.append(dict(
            target=name, seed=int(seed), ratio=h.ess_per_grad / b.ess_per_grad,
            sampling=h.ess_per_sample_grad / b.ess_per_grad,
            potential=h.ess_per_potential / b.ess_per_potential,
            hnn_fraction=h.get("hnn_fraction", np.nan),
            fallback_rate=h.get("fallback_rate", np.nan),
            fallback_rejected=h.get("fallback_rejected", np.nan),
            rhat_max=h.rhat_max, ess_bulk_min=h.ess_bulk_min, ess_tail_min=h.ess_tail_min,
            converged=bool(h.converged) and bool(b.converged)))
    return pd.DataFrame(out).set_index(["target", "seed"])


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
        targets=pick(("gmm1d", "rosenbrock3d"), TARGETS, TARGETS),
        # run lengths by the answer: every sampler runs `sampling.sample_until` in chunks of
        # `chunk_draws` kept draws per chain until the convergence gate passes (R̂ <= 1.01,
        # bulk and tail ESS >= 100, all 16 chains) or `max_draws` per chain are spent; the
        # recorded long run (`hmc_lib.hnn.long_runs`) continues the same chains (same seeds
        # and chunks) to `long_max_draws`
        sample=dict(chains=16, chunk_draws=100, max_draws=pick(100, 300, 5000),
                    burnin=pick(50, 100, 1000), long_max_draws=12000),
        step_size={"gmm1d": 0.1, "icg5": 0.05, "funnel2d": 0.05, "rosenbrock3d": 0.05},
        data_step_size={"gmm1d": 0.05, "icg5": 0.02, "funnel2d": 0.02,
                        "rosenbrock3d": 0.02},
        hmc_steps={"gmm1d": 20, "icg5": 40, "funnel2d": 30, "rosenbrock3d": 30},
        max_tree_depth=pick(6, 8, 10),
        # Dhulipala's monitor: Δ_max^hnn = 10 and a cool-down of N_lf = 20 true-gradient
        # transitions after each fall-back; `run_hnn` also runs the exact monitor
        # (`HNNNUTS(exact=True)`, no cool-down) at its default threshold, the true tree's
        # 1000 (for it the threshold sets cost and mixing, not exactness). Chosen at `book`
        # scale, 3 training seeds, ratio of true gradients per ESS to NUTS's, training
        # charged, at thresholds 10 / 100 / 1000: gmm1d 15-36 / - / 15-43, icg5 32-60 / - /
        # 75-82, funnel2d 2.3-16 / 3.2-11 / 6.6-51, rosenbrock3d 0.73-0.87 / 1.2-1.4 /
        # 1.8-2.6. At `paper` scale (Rosenbrock only, 2 seeds) the chain of one training seed
        # was sticky at all three (ESS 12 / 12 / 16 of 80,000 draws), and the other's ESS
        # fell from 211 at 10 to 45 at 100 and 12 at 1000.
        max_hnn_error=10.0, cool_down=20, exact_max_hnn_error=1000.0,
        # per-target changes to `data` and `train`. The 1-d mixture needs few data (at `book`
        # scale its training gradients otherwise outweigh its sampling gradients); the ICG
        # and the funnel need longer fits (at 1,000 Adam steps the monitor fell back on about
        # 2 % of the transitions); the Rosenbrock's curved tails need more trajectories and a
        # longer fit (Chen used 160k-400k training gradients there)
        data_by_target={"gmm1d": pick({}, dict(chains=8, num_trajectories=10, num_steps=20),
                                      {}),
                        "rosenbrock3d": dict(num_trajectories=pick(10, 40, 80),
                                             num_steps=pick(20, 50, 50))},
        train_by_target={"gmm1d": dict(num_steps=pick(300, 1500, 5000)),
                         "icg5": dict(num_steps=pick(300, 3000, 5000)),
                         "funnel2d": dict(num_steps=pick(300, 3000, 5000)),
                         "rosenbrock3d": dict(num_steps=pick(300, 3000, 10000))},
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
    d = {**cfg["data"], **cfg["data_by_target"].get(name, {})}
    x0 = initial_state(t, d["chains"], seed + 1000, tf.float64)
    data = collect(t, x0, d["num_trajectories"], d["num_steps"], cfg["data_step_size"][name],
                   seed=seed + 2000)
    train_data, held_out = data.split(0.1, seed=seed)
    tr = {**cfg["train"], **cfg["train_by_target"].get(name, {})}
    res = train(train_data, kind=kind, hidden=tr["hidden"], num_steps=tr["num_steps"],
                batch_size=tr["batch_size"], learning_rate=tr["learning_rate"],
                held_out=held_out, seed=seed, progress=progress,
                activation="tanh" if kind == "separable" else "sin")
    return res, held_out


def _gate_fields(summary):
    """The convergence gate's reading from a `diagnostics.summary`: R̂ (max over
    coordinates), min bulk and tail ESS and whether the cell passed."""
    return {k: summary[k] for k in ("rhat_max", "ess_bulk_min", "ess_tail_min", "converged")}


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
               ess_per_second=s["ess_per_second"], paper=PAPER.get((name, method)),
               **_gate_fields(s))
    out["ess_per_sample_grad"] = s["ess_min"] / grads if grads > 0 else float("inf")
    out["draws"] = int(np.shape(samples)[0])
    out["stopped"] = trace.get("stopped", "fixed length")
    out["grads_per_transition"] = grads / np.size(trace["grad_evals"])
    if "fell_back" in trace:
        out["fallback_rate"] = float(np.mean(trace["fell_back"]))
        out["hnn_fraction"] = float(np.mean(trace["used_hnn"]))
        # true gradients per transition that ran a true tree (a fall-back or the cool-down)
        true_trees = float(np.sum(~np.asarray(trace["used_hnn"], bool)))
        out["grads_per_true_tree"] = grads / true_trees if true_trees > 0 else float("nan")
        # exact monitor: fall-backs whose true draw the check tree rejected
        fell = float(np.sum(trace["fell_back"]))
        out["fallback_rejected"] = (float(np.sum(trace["fallback_rejected"])) / fell
                                    if fell > 0 else 0.0)
    return out


def to_uniform(name, x):
    """Uniform scores of draws `[..., dim]` of target `name`: each coordinate's conditional
    CDF given the ones before it (the Rosenblatt map), so that under the target they are
    independent U(0, 1) (mean 1/2, variance 1/12): bounded statistics whose chain averages
    keep the between-chain check's level on heavy-tailed targets."""
    from scipy import special
    x = np.asarray(x, np.float64)
    if name == "gmm1d":
        s = SIGMA_GMM
        return 0.5 * (special.ndtr((x + 1.0) / s) + special.ndtr((x - 1.0) / s))
    if name == "icg5":
        return special.ndtr(x / np.sqrt(ICG5_VARIANCES))
    if name == "funnel2d":
        v, z = x[..., 0], x[..., 1]
        return special.ndtr(np.stack([v / 3.0, z * np.exp(-v / 2.0)], -1))
    if name == "rosenbrock3d":
        return uniform_scores(x, rosenbrock3d_to_normal)
    raise ValueError(f"`name` must be one of {TARGETS}, got {name!r}")


#: the per-cell level of the uniform scores' check: a chapter asserting it on up to 50 cells
#: (targets × training seeds) fails with probability below 1e-3 when every sampler is exact
SCORE_ALPHA = 2e-5


def moment_fields(name, samples):
    """Exactness checks of a run on target `name` (`[draws, chains, dim]`, chains from exact
    draws): `var_rel_error`, the largest |s²/σ² − 1| over coordinates; `var_z`, the largest
    |error| of the sample variance in between-chain standard errors (heavy-tailed
    coordinates make it unreliable: shown, not asserted); `score_z`, the largest |z| of the
    uniform scores' means and variances (`to_uniform`) against 1/2 and 1/12, and
    `score_bound`, the Bonferroni bound those statistics stay below with probability
    1 − `SCORE_ALPHA` when the sampler is exact (`diagnostics.check_moments`)."""
    from hmc_lib import diagnostics
    t = get(name)
    x = np.asarray(samples, np.float64)
    var = np.asarray(t.variance, np.float64)
    raw = diagnostics.check_moments(x, t.mean, var)
    u = to_uniform(name, x)
    dim = x.shape[-1]
    sc = diagnostics.check_moments(u, np.full(dim, 0.5), np.full(dim, 1.0 / 12.0),
                                   alpha=SCORE_ALPHA)
    return dict(var_rel_error=float(np.max(np.abs(x.var((0, 1)) / var - 1.0))),
                var_z=float(np.max(np.abs(raw.z_var))),
                score_z=float(max(np.max(np.abs(sc.z_mean)), np.max(np.abs(sc.z_var)))),
                score_bound=float(sc.bound))


def run_until(kernel, x0, seed, scale=None, max_draws=None, checkpoint=None, keep_fn=None,
              gate=None, cfg=None):
    """`sampling.sample_until` with the chapter's chunks, burn-in and budget (`settings`'s
    `sample`; `max_draws` overrides the budget, e.g. `long_max_draws` for the record)."""
    from hmc_lib.sampling import sample_until
    sc = (cfg or settings(scale))["sample"]
    return sample_until(kernel, x0, seed, chunk_draws=sc["chunk_draws"],
                        max_draws=int(max_draws or sc["max_draws"]),
                        num_burnin_steps=sc["burnin"], checkpoint=checkpoint,
                        keep_fn=keep_fn, gate=gate)


#: the methods `run_baselines` and `run_hnn` run
BASELINES = ("hmc", "nuts")
HNN_METHODS = ("hnn_hmc", "hnn_hmc_chen", "hnn_nuts", "hnn_nuts_exact")


def _checkpoint(checkpoints, method):
    return None if checkpoints is None else checkpoints(method)


def run_baselines(name, seed, scale=None, max_draws=None, checkpoints=None,
                  methods=BASELINES):
    """HMC and NUTS on target `name`, each until the gate passes or the budget is spent
    (`run_until`): rows as `run_hnn`'s. `checkpoints`: optional `method -> path` for
    `sample_until`'s checkpoints (the recorded run)."""
    from hmc_lib.kernels.hmc import HMC
    from hmc_lib.kernels.nuts import NUTS
    cfg = settings(scale)
    t, sc = get(name), cfg["sample"]
    x0 = initial_state(t, sc["chains"], seed)
    eps = cfg["step_size"][name]
    build = {"hmc": lambda: HMC(t, eps, cfg["hmc_steps"][name]),
             "nuts": lambda: NUTS(t, eps, max_tree_depth=cfg["max_tree_depth"])}
    rows = []
    for method in methods:
        samples, trace = run_until(build[method](), x0, seed + 1, max_draws=max_draws,
                                   checkpoint=_checkpoint(checkpoints, method), cfg=cfg)
        row = _row(method, name, samples, trace, seed=seed)
        row.update(moment_fields(name, samples))
        rows.append(row)
    return rows


def run_hnn(name, training_seed, seed, scale=None, result=None, max_draws=None,
            checkpoints=None, methods=HNN_METHODS):
    """Trains (unless `result` is given) and runs HNN-HMC (exact and Chen's rule) and
    HNN-NUTS (Dhulipala's monitor and cool-down, ``"hnn_nuts"``, and the exact monitor
    without cool-down, ``"hnn_nuts_exact"``) on target `name`, each until the gate passes or
    the budget is spent (`run_until`; `checkpoints` as for `run_baselines`). The HNN methods
    are charged the true gradients of their training data (`train_grad_evals`). Returns
    `(rows, TrainResult, samples)`, `samples` a dict method -> draws `[draws, chains, dim]`."""
    from hmc_lib.hnn.kernel import HNNHMC, HNNNUTS
    cfg = settings(scale)
    if result is None:
        result, _ = train_hnn(name, training_seed, scale)
    t, sc = get(name), cfg["sample"]
    x0 = initial_state(t, sc["chains"], seed)
    eps = cfg["step_size"][name]
    L, depth = cfg["hmc_steps"][name], cfg["max_tree_depth"]
    builders = {
        "hnn_hmc": ((eps, L), lambda h: HNNHMC(t, h, eps, L)),
        "hnn_hmc_chen": ((eps, L), lambda h: HNNHMC(t, h, eps, L, exact=False)),
        "hnn_nuts": ((eps, depth, cfg["max_hnn_error"], cfg["cool_down"]),
                     lambda h: HNNNUTS(t, h, eps, max_tree_depth=depth,
                                       max_hnn_error=cfg["max_hnn_error"],
                                       cool_down=cfg["cool_down"], exact=False)),
        "hnn_nuts_exact": ((eps, depth, cfg["exact_max_hnn_error"]),
                           lambda h: HNNNUTS(t, h, eps, max_tree_depth=depth,
                                             max_hnn_error=cfg["exact_max_hnn_error"],
                                             exact=True))}
    rows, draws = [], {}
    for method in methods:
        settings_, build = builders[method]
        # one kernel per target and settings; each training seed's weights are copied in
        kernel = _reuse.kernel_for(_KERNELS, (t,), (method, _reuse.as_key(settings_)),
                                   result.hnn, build)
        samples, trace = run_until(kernel, x0, seed + 1, max_draws=max_draws,
                                   checkpoint=_checkpoint(checkpoints, method), cfg=cfg)
        row = _row(method, name, samples, trace, train_grads=result.grad_evals,
                   train_seconds=result.seconds, seed=training_seed)
        row.update(moment_fields(name, samples))
        rows.append(row)
        draws[method] = samples
    return rows, result, draws


# --- the GLMM: HNN-PM-NUTS against PM-NUTS (chapters 4 and 7) -----------------------------

def run_goal(names=None, training_seeds=None, scale=None, processes=None):
    """Chapter 7's goal runs: on each target, the baselines (`run_baselines`, seeded
    `scale.seed(10)`) and, for each training seed `s`, the trained HNN samplers (`run_hnn`,
    seeded `scale.seed(20 + s)`). One target per worker process
    (`hmc_lib._parallel.map_processes`; `processes=1` runs here, with the same results).

    Returns `(rows, draws, nets)`: the rows of every run, target by target in the order of
    `names`; `draws[(name, s)]`, `run_hnn`'s samples (numpy `[draws, chains, dim]` per
    method); `nets[(name, s)]`, the trained `HNN`."""
    from hmc_lib import _parallel
    cfg = settings(scale)
    names = tuple(cfg["targets"] if names is None else names)
    seeds = tuple(int(s) for s in (cfg["training_seeds"] if training_seeds is None
                                   else training_seeds))
    scale = scale_mod.get() if scale is None else scale
    parts = _parallel.map_processes(_goal_target, [(n, seeds, scale) for n in names],
                                    processes)
    from hmc_lib.hnn.networks import HNN
    rows, draws, nets = [], {}, {}
    for part_rows, part_draws, part_nets in parts:
        rows += part_rows
        draws.update(part_draws)
        for key, (config, weights) in part_nets.items():
            nets[key] = HNN(**config)
            nets[key].set_weights(weights)
    return rows, draws, nets


def _goal_target(name, seeds, scale):
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    rows, draws, nets = run_baselines(name, scale_mod.seed(10), scale=scale), {}, {}
    for s in seeds:
        r, result, d = run_hnn(name, s, scale_mod.seed(20 + s), scale=scale)
        rows += r
        draws[name, s] = {m: np.asarray(x) for m, x in d.items()}
        nets[name, s] = (result.hnn.config, result.hnn.get_weights())
    return rows, draws, nets


def glmm_settings(scale=None):
    """Run sizes of the GLMM experiment per scale: chapter 4's model with Chen's covariates
    Z ~ N(0, 1), on fewer individuals than Chen's 500. `book` (the chapter's run) is sized to
    its budget and does not converge; `paper` is the recorded run (`long_runs.record_glmm`),
    which samples until the gate passes or `long_max_draws` per chain."""
    pick = lambda ci, book, paper: scale_mod.pick(ci, book, paper, scale)
    return dict(
        num_individuals=pick(30, 40, 100), num_importance=pick(32, 32, 128),
        covariate_scale=1.0,                            # Chen: Z ~ N(0, 1)
        # both samplers run in the coordinates z of the posterior's Laplace approximation
        # (`Whitened`; from log p̂ at one fixed u with `laplace_importance` draws), where
        # unit mass suits every direction
        whiten=True, laplace_importance=pick(256, 1024, 1024),
        data_importance=pick(256, 1024, 1024),          # Chen: N = 2048 for the training data
        data=dict(chains=8, num_trajectories=pick(8, 10, 20), num_steps=20),
        data_step_size=0.05,
        train=dict(num_steps=pick(200, 600, 2000), batch_size=pick(256, 512, 1000),
                   hidden=(64, 64), learning_rate=5e-3),
        training_seeds=pick([0], [0, 1, 2], [0, 1, 2]),
        # run lengths by the answer: chunks of `chunk_draws` per chain until the gate passes
        # on the relabelled θ or `max_draws` per chain (the record: `long_max_draws`)
        chains=8, chunk_draws=pick(50, 100, 200), max_draws=pick(50, 100, 1000),
        burnin=pick(30, 50, 200), long_max_draws=5000,
        # the exact switch (`HNNPMNUTS(exact=True)`): its threshold on the spread of the
        # energy over the HNN tree is a cost setting, the PM tree's Δ_max^lf = 1000; step
        # size in the whitened coordinates
        step_size=0.2, max_tree_depth=5, max_hnn_error=1000.0,
        max_lf_error=1000.0, u_correlation=pick(0.99, 0.99, 0.95), data_seed=0,
    )


def glmm_initial_state(target, chains, seed, dtype=tf.float32):
    """`[theta, u]`: θ near the truth (jitter 0.05), fresh u ~ N(0, I)."""
    rng = np.random.default_rng(int(seed))
    theta = target.true_theta[None] + 0.05 * rng.standard_normal((chains, target.theta_dim))
    u = rng.standard_normal((chains, *target.u_shape))
    return [tf.constant(theta, dtype), tf.constant(u, dtype)]


def train_glmm_hnn(training_seed, scale=None, progress=False):
    """θ-only separable HNN for the GLMM: `collect_pm` on the same data with
    `data_importance` draws, Chen's method-4 loss. Returns `(TrainResult, held_out)`."""
    from hmc_lib.hnn.data import collect_pm
    from hmc_lib.hnn.train import train
    cfg = glmm_settings(scale)
    data_target = glmm_target(scale, cfg["data_importance"])
    d = cfg["data"]
    theta, u = glmm_initial_state(data_target, d["chains"], training_seed + 3000, tf.float64)
    data = collect_pm(data_target, theta, u, d["num_trajectories"], d["num_steps"],
                      cfg["data_step_size"], seed=training_seed + 4000)
    train_data, held_out = data.split(0.1, seed=training_seed)
    tr = cfg["train"]
    res = train(train_data, kind="separable", hidden=tr["hidden"], num_steps=tr["num_steps"],
                batch_size=tr["batch_size"], learning_rate=tr["learning_rate"],
                held_out=held_out, seed=training_seed, progress=progress)
    return res, held_out


def glmm_theta(samples, target):
    """The GLMM's θ draws `[draws, chains, 13]` (numpy) from a run's kept draws on `target`
    (mapped back from whitened coordinates), after `glmm_relabel` (the mixture's labels
    are not identified)."""
    from hmc_lib.targets import pseudo_marginal as pmt
    x = np.asarray(samples, np.float64)
    if hasattr(target, "to_theta"):
        x = target.to_theta(x)
    return pmt.glmm_relabel(x)[0]


def glmm_gate(target):
    """The convergence gate on the relabelled θ draws of a run on `target`."""
    from hmc_lib import diagnostics
    return lambda kept: diagnostics.convergence(glmm_theta(kept, target))


def _glmm_row(method, samples, trace, cfg, target, train=None, seed=None):
    """A result row of the GLMM comparison. Training is charged at its cost: each gradient
    of log p̂ on the training data (N = `data_importance` draws) counts as
    `data_importance / num_importance` gradients (and evaluations) of the sampler's log p̂."""
    from hmc_lib import diagnostics
    x = glmm_theta(samples, target)
    s = diagnostics.summary(x, trace)
    grads = float(np.sum(trace["grad_evals"]))
    pots = float(np.sum(trace["potential_evals"])) if "potential_evals" in trace else grads
    train_grads = float(train.grad_evals) if train is not None else 0.0
    train_cost = train_grads * cfg["data_importance"] / cfg["num_importance"]
    flat = x.reshape(-1, x.shape[-1])
    ess = s["ess_min"]
    out = dict(method=method, seed=seed, ess_min=ess, ess_median=s["ess_median"],
               draws=int(x.shape[0]), stopped=trace.get("stopped", "fixed length"),
               sample_grad_evals=grads, train_grad_evals=train_grads, train_cost=train_cost,
               potential_evals=pots, grad_evals=grads + train_cost,
               ess_per_grad=ess / (grads + train_cost) if grads + train_cost > 0
               else float("inf"),
               ess_per_sample_grad=ess / grads if grads > 0 else float("inf"),
               ess_per_potential=ess / (pots + train_cost),
               ess_per_sample_potential=ess / pots,
               seconds=s["seconds"], train_seconds=float(train.seconds) if train else 0.0,
               w1=float(np.mean(1.0 / (1.0 + np.exp(-flat[:, -1])))),
               mu1=float(np.mean(flat[:, -5])), mu2=float(np.mean(flat[:, -4])),
               theta_mean=flat.mean(0).tolist(), theta_sd=flat.std(0).tolist(),
               **_gate_fields(s))
    if "fell_back" in trace:
        out.update(fallback_rate=float(np.mean(trace["fell_back"])),
                   hnn_fraction=float(np.mean(trace["used_hnn"])),
                   lf_rejected=float(np.mean(trace["lf_rejected"])),
                   u_acceptance=float(np.mean(trace["u_accepted"])),
                   fallback_rejected=float(np.mean(trace["fallback_rejected"])))
    return out


class Whitened:
    """A pseudo-marginal target in whitened coordinates z, θ = mode + L z with L Lᵀ = cov
    (the Laplace approximation of the posterior): the same target (the Jacobian is
    constant), on which unit-mass samplers suit every direction. Has the
    `PseudoMarginalTarget` interface, plus `to_theta` (numpy `[..., d] -> [..., d]`)."""

    def __init__(self, base, mode, cov):
        from hmc_lib.targets.pseudo_marginal import PseudoMarginalTarget
        self.base = base
        self.mode = np.asarray(mode, np.float64)
        self.chol = np.linalg.cholesky(np.asarray(cov, np.float64))
        m, L = self.mode, self.chol

        def to_theta(z):
            return tf.cast(m, z.dtype) + tf.einsum("ij,...j->...i", tf.cast(L, z.dtype), z)

        def value_and_grad(z, u):
            v, g_theta, g_u = base.value_and_grad(to_theta(z), u)
            return v, tf.einsum("...i,ij->...j", g_theta, tf.cast(L, z.dtype)), g_u

        self._pm = PseudoMarginalTarget(
            lambda z: base.log_prior(to_theta(z)),
            lambda z, u: base.log_weights(to_theta(z), u), base.theta_dim, base.u_shape,
            name=f"{base.name}-whitened", value_and_grad_fn=value_and_grad,
            true_theta=np.linalg.solve(L, np.asarray(base.true_theta) - m),
            data=base.data)

    def __getattr__(self, name):
        return getattr(self._pm, name)

    def to_theta(self, z):
        return self.mode + np.einsum("ij,...j->...i", self.chol, np.asarray(z, np.float64))


#: the GLMM's prior sd on every θ coordinate (Chen's appendix: N(0, 10²))
_GLMM_PRIOR_SD = 10.0


@functools.lru_cache(maxsize=4)
def _glmm_laplace(num_individuals, seed, covariate_scale, num_importance, u_seed):
    from hmc_lib.targets import term_premium as tp
    big = _glmm(num_individuals, num_importance, seed, covariate_scale)
    u = tf.random.stateless_normal([1, *big.u_shape], [int(u_seed), 11], dtype=tf.float64)
    mode, cov, _ = tp.laplace(lambda th: big.log_joint(th, u), big.true_theta[None])
    # the mixture's precisions are weakly identified: along a direction where the negative
    # Hessian is flat or not positive (the Newton steps then stop short of a mode) the
    # scale is capped at the prior's sd
    prec = np.linalg.inv(cov[0])
    prec = 0.5 * (prec + prec.T)
    w, v = np.linalg.eigh(prec)
    floor = 1.0 / _GLMM_PRIOR_SD ** 2
    return mode[0], (v / np.maximum(w, floor)) @ v.T


def glmm_laplace(scale=None):
    """Mode and covariance of the Laplace approximation of the GLMM's posterior, at the
    estimate log p(θ) + log p̂(y | θ, u) with `laplace_importance` draws at one fixed u (a
    smooth stand-in for the marginal posterior; damped Newton from the data's true θ), its
    scale capped at the prior's sd along flat or non-concave directions. Used only to choose
    coordinates (`Whitened`), not as an approximation of the posterior."""
    cfg = glmm_settings(scale)
    return _glmm_laplace(cfg["num_individuals"], scale_mod.seed(cfg["data_seed"]),
                         cfg["covariate_scale"], cfg["laplace_importance"],
                         scale_mod.seed(cfg["data_seed"] + 1))


def glmm_target(scale=None, num_importance=None, whitened=None):
    """The GLMM of `glmm_settings` (its data, N = `num_importance` or the setting's); in the
    whitened coordinates of `glmm_laplace` (`Whitened`) when `whitened` (default: the
    setting's `whiten`)."""
    cfg = glmm_settings(scale)
    base = _glmm(cfg["num_individuals"], num_importance or cfg["num_importance"],
                 scale_mod.seed(cfg["data_seed"]), cfg["covariate_scale"])
    if not (cfg["whiten"] if whitened is None else whitened):
        return base
    return _whitened(base, *(tuple(map(tuple, a)) if a.ndim == 2 else tuple(a)
                             for a in glmm_laplace(scale)))


@functools.lru_cache(maxsize=4)
def _whitened(base, mode, cov):
    return Whitened(base, np.array(mode), np.array(cov))


def run_glmm(training_seeds=None, seed=0, scale=None, max_draws=None, checkpoints=None,
             results=None, baseline=True):
    """PM-NUTS and HNN-PM-NUTS (one HNN per training seed) on the GLMM from the same start,
    each until the gate passes on the relabelled θ (`glmm_gate`) or the budget is spent
    (`max_draws` per chain overrides the setting's). `results`: optional training seed ->
    `TrainResult` (trained here otherwise); `baseline`: run PM-NUTS; `checkpoints`: optional
    `method -> path` for `sample_until`. Returns `(rows, draws)`: rows as `_glmm_row`'s
    (posterior means of w₁, μ₁, μ₂ after `glmm_relabel`, the gate's reading); draws: method
    (and seed) -> θ draws `[draws, chains, 13]`."""
    from hmc_lib.hnn.pm_kernel import HNNPMNUTS
    from hmc_lib.pm.kernel import PMNUTS
    from hmc_lib.sampling import sample_until
    cfg = glmm_settings(scale)
    seeds = cfg["training_seeds"] if training_seeds is None else training_seeds
    t = glmm_target(scale)
    x0 = glmm_initial_state(t, cfg["chains"], seed)
    h, depth = cfg["step_size"], cfg["max_tree_depth"]

    def until(kernel, method):
        return sample_until(kernel, x0, seed + 1, chunk_draws=cfg["chunk_draws"],
                            max_draws=int(max_draws or cfg["max_draws"]),
                            num_burnin_steps=cfg["burnin"], keep_fn=lambda s: s[0],
                            gate=glmm_gate(t), checkpoint=_checkpoint(checkpoints, method))

    rows, draws = [], {}
    if baseline:
        samples, trace = until(PMNUTS(t, h, max_tree_depth=depth), "pm_nuts")
        rows.append(_glmm_row("pm_nuts", samples, trace, cfg, t))
        draws["pm_nuts"] = glmm_theta(samples, t)
    for s in seeds:
        res = (results or {}).get(s) or train_glmm_hnn(s, scale)[0]
        kernel = _reuse.kernel_for(
            _KERNELS, (t,), ("hnn_pm_nuts", _reuse.as_key((h, depth, cfg["max_hnn_error"],
                                                            cfg["max_lf_error"],
                                                            cfg["u_correlation"]))),
            res.hnn, lambda net: HNNPMNUTS(
                t, net, h, max_tree_depth=depth, max_hnn_error=cfg["max_hnn_error"],
                max_lf_error=cfg["max_lf_error"], u_correlation=cfg["u_correlation"]))
        samples, trace = until(kernel, "hnn_pm_nuts")
        rows.append(_glmm_row("hnn_pm_nuts", samples, trace, cfg, t, res, seed=s))
        draws["hnn_pm_nuts", s] = glmm_theta(samples, t)
    return rows, draws


# --- Chen's five HNN methods (chapter 7; `hmc_lib.hnn.variants`) -------------------------

def gradient_error(hnn, held_out):
    """Median relative error of ∂H̃/∂q against the true ∂H/∂q on held-out points
    (`TrainingData`), and (for the latent kind) of ∂H̃/∂p against p: `(err_q, err_p)`
    (err_p = 0 for separable)."""
    q = tf.constant(held_out.q, hnn.dtype if hasattr(hnn, "dtype") else tf.float32)
    p = tf.constant(held_out.p, q.dtype)
    gq, gp = hnn.grads(q, p)
    rel = lambda a, b: float(np.median(np.linalg.norm(np.asarray(a, np.float64) - b, axis=-1)
                                       / np.maximum(np.linalg.norm(b, axis=-1), 1e-12)))
    return rel(gq, held_out.dh_dq), rel(gp, held_out.dh_dp)


def variant_settings(scale=None):
    """Sizes of the comparison of Chen's five methods: pseudo-marginal trajectories on the
    chapter's GLMM (its data, with `num_importance` draws so that u can be a network input),
    the shared training settings (`variants.TrainSettings`) and the importance draws of the
    marginal field's estimate."""
    from hmc_lib.hnn.variants import TrainSettings
    pick = lambda ci, book, paper: scale_mod.pick(ci, book, paper, scale)
    return dict(num_importance=16, chains=8, num_trajectories=pick(4, 8, 30), num_steps=20,
                step_size=0.05, held_out=0.25, marginal_importance=1024,
                train=TrainSettings(hidden=(64, 64), num_steps=pick(200, 600, 3000),
                                    batch_size=256, learning_rate=5e-3, match_steps=4),
                training_seeds=pick([0], [0, 1, 2], [0, 1, 2, 3, 4]))


def marginal_field(target, theta, seed, batch=32):
    """−∇_θ log p(θ | y) ≈ −∇_θ[log p(θ) + log p̂(y | θ, u)] at `theta` `[n, dim]` with a
    fresh u per point on `target` (many importance draws: its noise is the estimate's), in
    batches of `batch` points (u is `[batch, T, N]`)."""
    theta = np.asarray(theta, np.float64)
    out = []
    for k in range(0, theta.shape[0], batch):
        th = tf.constant(theta[k:k + batch])
        u = tf.random.stateless_normal([th.shape[0], *target.u_shape], [int(seed), k],
                                       dtype=tf.float64)
        out.append(-np.asarray(target.value_and_grad(th, u)[1], np.float64))
    return np.concatenate(out)


def compare_variants(training_seeds=None, scale=None, keys=None):
    """Chen's methods (`variants.METHODS`, or `keys`) trained per training seed on the same
    pseudo-marginal trajectories of the chapter's GLMM (`variant_settings`), split by path
    into training and held-out data. Returns rows: method key, seed, the field errors of
    `variants.evaluate` (training, held-out against the label, held-out against the marginal
    field), the network's input width, training seconds, and the noise of the labels (their
    median relative distance from the marginal field)."""
    from hmc_lib.hnn import variants
    from hmc_lib.hnn.data import collect_pm_states
    vc = variant_settings(scale)
    seeds = vc["training_seeds"] if training_seeds is None else training_seeds
    keys = variants.KEYS if keys is None else keys
    t = glmm_target(scale, vc["num_importance"])
    big = glmm_target(scale, vc["marginal_importance"])
    rows = []
    for s in seeds:
        theta, u = glmm_initial_state(t, vc["chains"], scale_mod.seed(5000 + s), tf.float64)
        data = collect_pm_states(t, theta, u, vc["num_trajectories"], vc["num_steps"],
                                 vc["step_size"], seed=scale_mod.seed(6000 + s))
        train_data, held_out = data.split(vc["held_out"], seed=scale_mod.seed(7000 + s))
        n = min(held_out.points("theta").shape[0], 2000)
        marginal = marginal_field(big, held_out.points("theta")[:n],
                                  seed=scale_mod.seed(8000 + s))
        noise = variants.relative_error(-held_out.points("grad_theta")[:n], marginal)
        for key in keys:
            fitted = variants.fit(key, train_data, vc["train"], seed=scale_mod.seed(9000 + s))
            errors = variants.evaluate(fitted, train_data, held_out, marginal)
            rows.append(dict(method=key, seed=s, inputs=fitted.inputs,
                             train_seconds=fitted.seconds, label_noise=noise, **errors))
    return rows


# --- Chen §8.2: a data-conditioned HNN across simulated data sets ---------------------------

def conditional_settings(scale=None):
    pick = lambda ci, book, paper: scale_mod.pick(ci, book, paper, scale)
    return dict(num_sets=pick(6, 16, 64), points_per_set=pick(200, 400, 1000),
                train_steps=pick(800, 2500, 5000), chains=16,
                num_results=pick(100, 300, 2000), burnin=pick(30, 100, 500),
                step_size=0.25, max_tree_depth=6, u_correlation=0.9)


def run_conditional(seed=0, scale=None):
    """Chen §8.2 on the Gaussian random-effects model: one `ConditionalHNN` trained across
    `num_sets` simulated data sets, used on a new data set without retraining, against an
    HNN trained on the new set alone (same points per set, same width and steps) and
    PM-NUTS. Returns `(rows, errors)`: sampling rows (ESS per gradient of log p̂ with and
    without the training data) and the held-out field errors on the new set."""
    from hmc_lib import diagnostics
    from hmc_lib.hnn import conditional as cond
    from hmc_lib.hnn.data import TrainingData
    from hmc_lib.hnn.pm_kernel import HNNPMNUTS
    from hmc_lib.hnn.train import train
    from hmc_lib.pm.kernel import PMNUTS
    from hmc_lib.sampling import sample
    cfg = conditional_settings(scale)
    sets = cond.simulate_sets(cfg["num_sets"] + 1, seed=seed)
    train_sets, new = sets[:-1], sets[-1]
    data = cond.collect_sets(train_sets, cfg["points_per_set"], seed=seed + 1)
    res_c = cond.train_conditional(data, num_steps=cfg["train_steps"], seed=seed)
    own = cond.collect_sets([new], cfg["points_per_set"], seed=seed + 2)
    z = np.zeros_like(own.q)
    res_o = train(TrainingData(own.q, z, own.dh_dq, z, own.grad_evals), kind="separable",
                  hidden=(64, 64), num_steps=cfg["train_steps"], batch_size=512,
                  learning_rate=5e-3, seed=seed, progress=False)
    test = cond.collect_sets([new], 500, seed=seed + 3)
    bound = res_c.net.bind(cond.summary(new.data["y"]))
    errors = {"conditional (no retraining)": cond.field_error(bound, test.q, test.dh_dq),
              "trained on the new set": cond.field_error(res_o.hnn, test.q, test.dh_dq)}
    rng = np.random.default_rng(int(seed) + 4)
    theta0 = tf.constant(new.posterior_mean + np.sqrt(new.posterior_variance)
                         * rng.standard_normal((cfg["chains"], 2)), tf.float32)
    u0 = tf.constant(rng.standard_normal((cfg["chains"], *new.u_shape)), tf.float32)
    h, depth = cfg["step_size"], cfg["max_tree_depth"]
    kernels = [("pm_nuts", PMNUTS(new, h, max_tree_depth=depth), 0, 0.0)]
    for label, net, res in (("conditional", bound, res_c), ("own", res_o.hnn, res_o)):
        kernels.append((f"hnn_pm_nuts ({label})",
                        HNNPMNUTS(new, net, h, max_tree_depth=depth,
                                  u_correlation=cfg["u_correlation"]),
                        res.grad_evals, res.seconds))
    rows = []
    for label, kernel, train_grads, train_s in kernels:
        samples, trace = sample(kernel, cfg["num_results"], [theta0, u0],
                                num_burnin_steps=cfg["burnin"], seed=seed + 5,
                                keep_fn=lambda s: s[0])
        sm = diagnostics.summary(samples, trace)
        grads = float(np.sum(trace["grad_evals"]))
        row = dict(method=label, ess_min=sm["ess_min"], sample_grad_evals=grads,
                   train_grad_evals=float(train_grads), train_seconds=float(train_s),
                   ess_per_sample_grad=sm["ess_min"] / max(grads, 1.0),
                   ess_per_grad=sm["ess_min"] / max(grads + train_grads, 1.0))
        if label.startswith("hnn"):
            row["hnn_fraction"] = float(np.mean(trace["used_hnn"]))
        check = diagnostics.check_moments(samples, new.posterior_mean, new.posterior_variance)
        row["moments_ok"] = bool(check.passed)
        rows.append(row)
    return rows, errors
