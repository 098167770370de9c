"""NNgHMC where gradients are expensive: the settings and drivers of the paper's Tables 1–5,
shared by the chapters `book/06_nnghmc_expensive.md` (Tables 1, 2) and
`book/06b_nnghmc_competitors.md` (Tables 3-5) and by `python -m hmc_lib.bench expensive`.

Numbers in `PAPER` are typed from Li et al. (2019) (chapters 3 and 6). Every driver takes its
seed explicitly (pass it through `hmc_lib.scale.seed`).

- `settings(scale)`: run sizes per scale;
- `schedule_table(target, cfg, seed)`: HMC against scheduled NNgHMC (Tables 1, 2, 5),
  training, collection and probes charged, one row per method;
- `surrogate_grid(cfg, seed)`: acceptance of NNgHMC driven by a GP surrogate and by a network
  on N(0, I_d) (Table 4);
- `sghmc_runs(target, cfg, seed)`: SGHMC without MH at several step sizes and with the
  full-data MH test (Table 3, Figs 9–10);
- `cover_type_target`, `table5_target`: simulated data of the real data sets' shapes.
"""

import os

import numpy as np
import tensorflow as tf

from hmc_lib import diagnostics, scale as scale_mod, targets
from hmc_lib.nnghmc.gp_surrogate import GPSurrogate
from hmc_lib.nnghmc.kernel import NNgHMC
from hmc_lib.nnghmc.networks import fit
from hmc_lib.nnghmc.schedule import compare
from hmc_lib.nnghmc.sghmc import SGHMC, logreg_minibatch_grad
from hmc_lib.kernels.hmc import HMC
from hmc_lib.sampling import sample

#: the recorded output of `python -m hmc_lib.bench garch_headline --scale paper --json`
GARCH_HEADLINE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recorded",
                                   "garch_paper.json")

PAPER = {
    "garch": dict(hmc=dict(acceptance=0.72, ess=(99, 261, 424), seconds=436,
                           ess_median_per_second=0.60),
                  nnghmc=dict(acceptance=0.70, ess=(116, 176, 303), seconds=59,
                              ess_median_per_second=2.98), speedup=4.98),
    "gp_matern": dict(hmc=dict(acceptance=0.83, ess=(5135, 5754, 7635), seconds=1834,
                               ess_median_per_second=3.14),
                      nnghmc=dict(acceptance=0.84, ess=(4606, 6172, 7741), seconds=50,
                                  ess_median_per_second=123.4), speedup=39.3),
    "cover_type": dict(hmc=dict(acceptance=0.80, ess=(73, 143, 10000), seconds=3147,
                                ess_median_per_second=0.05),
                       nnghmc=dict(acceptance=0.67, ess=(57, 186, 7174), seconds=710,
                                   ess_median_per_second=0.26, speedup=5.77),
                       sghmc=dict(acceptance=0.33, ess=(49, 59, 246), seconds=357,
                                  ess_median_per_second=0.17, speedup=3.64)),
    # Table 4: acceptance, rows d, columns n
    "surrogate": dict(gp={10: (.65, .61, .57), 20: (.64, .65, .62), 40: (.31, .32, .32)},
                      nn={10: (.95, .96, .97), 20: (.82, .87, .91), 40: (.61, .75, .87)},
                      n=(500, 1000, 2000)),
    # Table 5: HMC ESS/s and NNgHMC speed-up at 10 % training (only these are transcribed)
    "table5": {"online_news": dict(shape=(39797, 44), hmc_ess_per_second=0.66, speedup=4.27),
               "census": dict(shape=(48842, 123), speedup=2.04),
               "dota2": dict(shape=(102944, 116), speedup=5.44)},
}

COVER_TYPE_SHAPE = (581012, 54)


def settings(scale):
    """Run sizes per experiment at `scale` ("ci", "book" or "paper").

    GARCH: the paper's ε = 0.002, L = 15 and 1000 observations (300 at ci); GP: the paper's
    ε = 0.05, L = 20 and 500 × 4 inputs (100 at ci, 150 at book: each gradient is a Cholesky
    of n × n per chain). `collect`: HMC draws whose gradients train the network after
    `burnin` (the paper: draws 1000–2000 for GARCH, the first 1000 for GP). Table 4: the
    paper's grid at paper and book scale, its GP (an O(n³) maximum-likelihood fit) only at
    n = 500 at book scale (the full grid is recorded: `long_runs.table4_paper`). Table 3:
    Cover-Type-shaped simulated data, fewer rows below paper scale. Table 5: the three
    shapes divided by `shrink` below paper scale, and below it only the 10 % fraction, the
    one the paper's text gives numbers for (15 and 20 % cost chapter 6 a third of its time, before it was split,
    at book scale). At ci scale (the chapter in under 2
    minutes, mostly XLA compilation): one network fit per schedule (`fits`), Table 4 on
    d = 10, 40 × n = 250, two SGHMC step sizes, Table 5 on one shape and the 10 % fraction.
    """
    p = lambda **kw: scale_mod.pick(scale=scale, **kw)
    return dict(
        garch=dict(target=dict(num_obs=p(ci=300, book=1000, paper=1000)), step_size=0.002, L=15,
                   chains=4, num_results=p(ci=150, book=500, paper=10000),
                   burnin=p(ci=50, book=100, paper=1000), collect=p(ci=100, book=400, paper=1000),
                   net=dict(hidden=50, epochs=p(ci=20, book=50, paper=50), batch_size=64,
                            learning_rate=1e-2),
                   seeds=p(ci=1, book=3, paper=3), jit_compile=True, fits=p(ci=1, book=2, paper=2)),
        gp_matern=dict(target=dict(num_data=p(ci=100, book=150, paper=500)), step_size=0.05,
                       L=20, chains=4, num_results=p(ci=100, book=300, paper=10000),
                       max_results=p(ci=100, book=1200, paper=10000),
                       burnin=p(ci=30, book=60, paper=200),
                       collect=p(ci=60, book=150, paper=1000),
                       net=dict(hidden=100, epochs=p(ci=30, book=60, paper=100), batch_size=64,
                                learning_rate=1e-2),
                       seeds=p(ci=1, book=3, paper=3), fits=p(ci=1, book=2, paper=2),
                       # XLA's Cholesky on CPU ran 4× slower than LAPACK's at n = 500
                       jit_compile=False),
        surrogate=dict(dims=p(ci=[10, 40], book=[10, 20, 40], paper=[10, 20, 40]),
                       sizes=p(ci=[250], book=[500, 1000, 2000], paper=[500, 1000, 2000]),
                       gp_sizes=p(ci=[250], book=[500], paper=[500, 1000, 2000]),
                       step_size=0.3, L=10, chains=8, draws=p(ci=60, book=200, paper=1000),
                       # the paper's 100 hidden units and 10 epochs; its batch size and
                       # learning rate are not given
                       net=dict(hidden=100, epochs=10, batch_size=16, learning_rate=1e-2),
                       # the authors' toy_example.ipynb: Keras Adam (step 1e-3), batch 20
                       authors_net=dict(hidden=100, epochs=10, batch_size=20,
                                        learning_rate=1e-3)),
        cover_type=dict(num_data=p(ci=2000, book=10000, paper=COVER_TYPE_SHAPE[0]),
                        num_features=COVER_TYPE_SHAPE[1], step_size=p(ci=0.01, book=0.003,
                                                                      paper=0.002),
                        L=p(ci=20, book=50, paper=50), chains=4,
                        num_results=p(ci=100, book=300, paper=4000), burnin=50,
                        collect=p(ci=100, book=100, paper=200),
                        net=dict(hidden=100, epochs=50, batch_size=128, learning_rate=1e-3,
                                 linear=True),
                        fits=p(ci=1, book=2, paper=2),
                        # SGHMC without MH: batches of `batch_size`, ε × `step_factors`; with
                        # MH (the paper: batch 5000, L = 10, ε = 0.001 = half HMC's):
                        # `mh_batch_size`, `mh_L`, ε × `mh_step_factor`
                        sghmc=dict(batch_size=p(ci=200, book=1000, paper=5000),
                                   step_factors=p(ci=(1.0, 0.1), book=(1.0, 0.3, 0.1),
                                                  paper=(1.0, 0.3, 0.1)), friction=1.0,
                                   mh_batch_size=p(ci=1000, book=5000, paper=5000), mh_L=10,
                                   mh_step_factor=0.5)),
        table5=dict(shrink=p(ci=40, book=20, paper=1), fits=1,
                    fractions=p(ci=(0.10,), book=(0.10,), paper=(0.10, 0.15, 0.20)),
                    names=p(ci=("online_news",), book=("online_news", "census", "dota2"),
                            paper=("online_news", "census", "dota2")),
                    num_results=p(ci=100, book=500, paper=10000), L=20, chains=4, burnin=50,
                    net=dict(hidden=100, epochs=50, batch_size=128, learning_rate=1e-3,
                             linear=True)),
    )


def recorded_garch(path=GARCH_HEADLINE_FILE):
    """The recorded paper-size GARCH run (`hmc_lib.bench.garch_headline`): a dict with
    `command`, `date`, `machine`, `total_seconds`, `scale` and `rows` (per seed an `HMC` and
    an `NNgHMC` row, then the `nnghmc/hmc` summary); checked as `recorded_headline` checks."""
    from hmc_lib.nnghmc.experiments import recorded_headline
    return recorded_headline(path)


def start_state(target, name, chains):
    """`[chains, dim]` float32 starts: the simulation's true parameters (GARCH), a point of
    the bulk of the posterior (GP: log ℓ = 0.5, log σ_f² = 0.5, log σ² = −1.4)."""
    if name == "garch":
        x = np.tile(target.true_params, (chains, 1))
    elif name == "gp_matern":
        x = np.tile([0.5, 0.5, -1.4][:target.dim], (chains, 1))
    elif getattr(target, "true_beta", None) is not None:
        x = np.tile(target.true_beta, (chains, 1))
    else:
        raise ValueError(f"no start known for {name!r}")
    return tf.constant(x, tf.float32)


def _row(method, s, total_seconds, train_seconds, extra=None):
    out = dict(method=method, acceptance=s["acceptance"], ess_min=s["ess_min"],
               ess_median=s["ess_median"], ess_max=s["ess_max"], seconds=total_seconds,
               train_seconds=train_seconds,
               ess_median_per_second=s["ess_median"] / total_seconds,
               ess_min_per_second=s["ess_min"] / total_seconds, draws=s["draws"],
               sampling_seconds=s["seconds"], rhat_max=s["rhat_max"],
               ess_bulk_min=s["ess_bulk_min"], ess_tail_min=s["ess_tail_min"],
               converged=bool(s["converged"]))
    out.update(extra or {})
    return out


def schedule_table(target, name, cfg, seed, criterion="ess_per_second", collect=None):
    """HMC and scheduled NNgHMC from the same start (`schedule.compare`), one row each.

    NNgHMC's `seconds` charge its training, its collection draws after burn-in and its probes
    (compare's `total_seconds`). `criterion` is the schedule's switch test (default: the
    projected ESS per second, training charged). `collect`: override `cfg["collect"]`. With
    `cfg["max_results"]` both final runs continue in chunks of `cfg["num_results"]` until
    the convergence gate passes or that many draws are kept.
    Returns `(rows, (hmc_samples, nnghmc_samples), schedule_result)`; the rows carry the
    gate's reading (`rhat_max`, `ess_bulk_min`, `ess_tail_min`, `converged`), `draws` per
    chain, and `speedup` (median ESS per second, NNgHMC over HMC) on the NNgHMC row.
    """
    collect = int(cfg["collect"] if collect is None else collect)
    x0 = start_state(target, name, cfg["chains"])
    h, n, (hs, _), res = compare(
        target, x0, cfg["step_size"], cfg["L"], cfg["num_results"],
        num_burnin_steps=cfg["burnin"], seed=int(seed), collect_until=cfg["burnin"] + collect,
        retrain_every=max(2, collect // cfg.get("fits", 2)), probe_steps=20, tolerance=0.15,
        net_kwargs=cfg["net"], jit_compile=cfg.get("jit_compile", True), criterion=criterion,
        max_results=cfg.get("max_results"))
    rows = [_row("HMC", h, h["total_seconds"], 0.0, dict(seed=int(seed))),
            _row("NNgHMC", n, n["total_seconds"], n["train_seconds"],
                 dict(seed=int(seed), final_method=n["method"], collect_draws=n["collect_draws"]))]
    rows[1]["speedup"] = rows[1]["ess_median_per_second"] / rows[0]["ess_median_per_second"]
    return rows, (hs, res.samples), res


def surrogate_cell(cfg, d, n, seed, fit_gp=True):
    """One cell of Table 4 (`surrogate_grid`): dimension `d`, `n` training points.

    Returns a dict `d`, `n`, `gp` (NaN when `fit_gp` is false), `nn`, `nn_authors`, `hmc`,
    `gp_fit_seconds`, `nn_fit_seconds`: acceptance rates of NNgHMC driven by each field, and
    of HMC, over `cfg["draws"]` iterations of `cfg["chains"]` chains started at exact draws.
    """
    t = targets.get("gaussian", variance=np.ones(d))
    x0 = t.sample(cfg["chains"], seed=int(seed) + d)
    _, ht = sample(HMC(t, cfg["step_size"], cfg["L"]), cfg["draws"], x0, seed=int(seed) + 1)
    q = t.sample(n, seed=int(seed) + 1000 * d + n, dtype=tf.float64)
    fields = {}
    if fit_gp:
        fields["gp"] = GPSurrogate.fit(q, t.log_prob(q))
    fields["nn"], hist = fit(q, t.grad_log_prob(q), seed=int(seed), **cfg["net"])
    fields["nn_authors"], _ = fit(q, t.grad_log_prob(q), seed=int(seed),
                                  **cfg["authors_net"])
    out = dict(d=d, n=n, gp=float("nan"), hmc=float(np.mean(ht["is_accepted"])),
               gp_fit_seconds=fields["gp"].fit_seconds if fit_gp else float("nan"),
               nn_fit_seconds=hist["seconds"])
    for key, field in fields.items():
        _, tr = sample(NNgHMC(t, field, cfg["step_size"], cfg["L"]), cfg["draws"], x0,
                       seed=int(seed) + 2)
        out[key] = float(np.mean(tr["is_accepted"]))
    return out


def surrogate_grid(cfg, seed):
    """Table 4: acceptance of NNgHMC driven by a GP surrogate (SE kernel, ML hyper-parameters,
    gradient of its mean) and by a one-hidden-layer network, on N(0, I_d).

    For each d in `cfg["dims"]` and n in `cfg["sizes"]`: n exact draws of N(0, I_d) are the
    training inputs (log π values for the GP, gradients for the networks); each field then
    drives `cfg["chains"]` NNgHMC chains from exact draws for `cfg["draws"]` iterations
    (ε, L of `cfg`); HMC's acceptance is listed for reference. Two networks: ours
    (`cfg["net"]`) and one trained as the authors' code trains its toy network
    (`cfg["authors_net"]`: Keras's Adam at its default step 1e-3, batches of 20, 10 epochs).
    The GP, whose maximum-likelihood fit costs O(n³) per iteration, is fitted only for n in
    `cfg["gp_sizes"]`. Returns a list of `surrogate_cell` dicts.
    """
    return [surrogate_cell(cfg, d, n, seed, fit_gp=n in cfg["gp_sizes"])
            for d in cfg["dims"] for n in cfg["sizes"]]


def cover_type_target(cfg):
    """Logistic regression with a Laplace prior on simulated data of Cover Type's shape
    (`cfg["num_data"]` × 54; the UCI file is not reachable offline)."""
    return targets.get("logreg", num_data=cfg["num_data"], num_features=cfg["num_features"],
                       seed=0, prior="laplace", prior_variance=10.0)


def sghmc_runs(target, cfg, seed):
    """SGHMC on `target` (a `logreg` target): without MH at ε × `step_factors`, and with the
    full-data MH test at ε; mini-batches of `cfg["sghmc"]["batch_size"]` rows.

    Returns a dict label -> `(samples, summary)` (`diagnostics.summary`, its `seconds` the
    sampling wall-clock, compilation excluded).
    """
    sg = cfg["sghmc"]
    x0 = start_state(target, "logreg", cfg["chains"])
    grad = logreg_minibatch_grad(target, sg["batch_size"])
    out = {}
    for k, factor in enumerate(sg["step_factors"]):
        eps = cfg["step_size"] * factor
        kern = SGHMC(target, grad, eps, cfg["L"], friction=sg["friction"])
        s, tr = sample(kern, cfg["num_results"], x0, num_burnin_steps=cfg["burnin"],
                       seed=int(seed) + k)
        out[f"SGHMC ε={eps:.2g}"] = (s, diagnostics.summary(s, tr))
    eps = cfg["step_size"] * sg["mh_step_factor"]
    kern = SGHMC(target, logreg_minibatch_grad(target, sg["mh_batch_size"]), eps, sg["mh_L"],
                 metropolis=True, full_batch=sg["mh_batch_size"] >= target.data[0].shape[0])
    s, tr = sample(kern, cfg["num_results"], x0, num_burnin_steps=cfg["burnin"],
                   seed=int(seed) + 10)
    out[f"SGHMC+MH ε={eps:.2g}, L={sg['mh_L']}"] = (s, diagnostics.summary(s, tr))
    return out


def table5_target(name, cfg):
    """Logistic regression on simulated data of the shape of `PAPER["table5"][name]`, rows
    divided by `cfg["shrink"]` (Gaussian prior, variance 10)."""
    rows, cols = PAPER["table5"][name]["shape"]
    return targets.get("logreg", num_data=max(rows // cfg["shrink"], 2 * cols),
                       num_features=cols, seed=0)


def table5_step_size(target):
    """ε for `table5_target`: 0.25 × the smallest posterior standard deviation of the
    Laplace approximation, so that L = 20 keeps HMC's acceptance high at every shape."""
    from hmc_lib.targets.regression import logreg_laplace
    _, cov = logreg_laplace(target)
    return float(0.25 * np.sqrt(np.min(np.diag(cov))))
