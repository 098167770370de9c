"""Benchmark: HMC vs NNgHMC (trained with the Sec. 3 schedule) on banana, icg30 and logreg.

`python -m hmc_lib.bench nnghmc --scale book`. For NNgHMC, `train_seconds` is the network
fitting time, `ess_per_second_total` charges training, gradient collection after burn-in and
probes to the run (see `hmc_lib.nnghmc.schedule.compare`), and `ess_per_grad` divides by the
true gradients spent collecting (NNgHMC's own draws spend none). `speedup` is NNgHMC's
`ess_per_second_total` over HMC's. Logistic regression runs at several data sizes
(`num_data`), on simulated data.

Every experiment runs once per seed (`settings(scale)["logreg"]["seeds"]` of them: 3 at book
scale), each seed driving HMC, the collection, the training and NNgHMC; the rows carry their
`seed`, and one summary row per experiment (method `nnghmc/hmc`) gives the median and range
(min–max) of the speed-up over seeds.
"""

from hmc_lib import bench, scale as scale_mod, targets
from hmc_lib.nnghmc import experiments as ex
from hmc_lib.nnghmc.experiments import PAPER, settings


def _rows(name, run, seed, step_size, **extra):
    h, n, (hs, ht), res = run
    hrow = bench.row("hmc", name, hs, ht, paper=PAPER.get((name, "hmc")), step_size=step_size,
                     ess_per_second_total=h["ess_per_second_total"], seed=seed, **extra)
    nrow = bench.row("nnghmc", name, res.samples, res.trace, train_seconds=n["train_seconds"],
                     paper=PAPER.get((name, "nnghmc")), step_size=step_size,
                     ess_per_second_total=n["ess_per_second_total"], seed=seed,
                     collect_draws=n["collect_draws"], final_method=n["method"],
                     speedup=n["ess_per_second_total"] / h["ess_per_second_total"], **extra)
    nrow["ess_per_grad"] = n["ess_per_grad_total"]
    nrow["grad_evals"] = n["total_grad_evals"]
    return [hrow, nrow]


def _summary(name, seed_rows, **extra):
    """One row: median and range over seeds of the speed-up (and of NNgHMC's ESS/s)."""
    nn = [r for r in seed_rows if r["method"] == "nnghmc"]
    sp = ex.spread([r["speedup"] for r in nn])
    ess = ex.spread([r["ess_per_second_total"] for r in nn])
    out = {f: None for f in bench.FIELDS}
    out.update(method="nnghmc/hmc", target=name, seeds=[r["seed"] for r in nn],
               speedup_median=sp["median"], speedup_min=sp["min"], speedup_max=sp["max"],
               nnghmc_ess_per_second_total_median=ess["median"],
               nnghmc_ess_per_second_total_min=ess["min"],
               nnghmc_ess_per_second_total_max=ess["max"],
               paper=PAPER.get((name, "nnghmc")), **extra)
    return out


def run(scale):
    cfgs = settings(scale)
    seeds = [scale_mod.seed(k) for k in range(cfgs["logreg"]["seeds"])]
    rows = []
    for name in ("banana", "icg30"):
        t, cfg = targets.get(name), cfgs[name]
        x0 = t.sample(cfg["chains"], seed=scale_mod.seed(1))
        seed_rows = []
        for s in seeds:
            seed_rows += _rows(name, ex.run_compare(t, cfg, x0, seed=10 + 100 * s), s,
                               cfg["step_size"])
        rows += seed_rows + [_summary(name, seed_rows)]
    cfg = cfgs["logreg"]
    for i, n in enumerate(cfg["sizes"]):
        runs = ex.logreg_seeds(cfg, n, [20 + i + 100 * s for s in seeds])
        seed_rows = []
        for s, r in zip(seeds, runs):
            seed_rows += _rows("logreg", (r.hmc, r.nnghmc, r.hmc_run, r.schedule), s,
                               ex.logreg_step_size(cfg, n), num_data=n, num_features=r.row["dim"])
        rows += seed_rows + [_summary("logreg", seed_rows, num_data=n)]
    return rows
