"""Benchmark: NNgHMC where gradients are expensive (the paper's Tables 1–4).

`python -m hmc_lib.bench expensive --scale book`. GARCH(2,1) and GP regression: HMC against
scheduled NNgHMC (switch test: projected ESS per second, training charged), once per seed
(`settings(scale)[...]["seeds"]`), each row with `ess_median_per_second` where NNgHMC's
seconds include collection after burn-in, training and probes; one summary row per target
(method `nnghmc/hmc`) gives the median and range of the speed-up over seeds against the
paper's 4.98× (GARCH) and 39.3× (GP). Then Cover-Type-shaped logistic regression with HMC,
NNgHMC and SGHMC (Table 3) and the GP-surrogate grid (Table 4).
"""

import numpy as np

from hmc_lib import bench, scale as scale_mod, targets
from hmc_lib.nnghmc import expensive as ex


def _bench_row(name, r, paper):
    out = {f: None for f in bench.FIELDS}
    out.update(r)
    out.update(target=name, ess_per_second=r["ess_median_per_second"], paper=paper,
               ess_per_grad=None, grad_evals=None)
    return out


def run(scale):
    cfgs = ex.settings(scale)
    rows = []
    for name in ("garch", "gp_matern"):
        cfg = cfgs[name]
        t = targets.get(name, **cfg["target"])
        seed_rows = []
        for k in range(cfg["seeds"]):
            s = scale_mod.seed(100 + k)
            table, _, _ = ex.schedule_table(t, name, cfg, s)
            seed_rows += [_bench_row(name, r, ex.PAPER[name][r["method"].lower()])
                          for r in table]
        rows += seed_rows
        sp = [r["speedup"] for r in seed_rows if r["method"] == "NNgHMC"]
        summary = {f: None for f in bench.FIELDS}
        summary.update(method="nnghmc/hmc", target=name, speedup_median=float(np.median(sp)),
                       speedup_min=float(np.min(sp)), speedup_max=float(np.max(sp)),
                       seeds=len(sp), paper=dict(speedup=ex.PAPER[name]["speedup"]))
        rows.append(summary)
    cfg = cfgs["cover_type"]
    t = ex.cover_type_target(cfg)
    table, _, _ = ex.schedule_table(t, "cover_type", cfg, scale_mod.seed(7))
    rows += [_bench_row("cover_type", r, ex.PAPER["cover_type"][r["method"].lower()])
             for r in table]
    for label, (_, s) in ex.sghmc_runs(t, cfg, scale_mod.seed(8)).items():
        r = dict(method=label, acceptance=s["acceptance"], ess_min=s["ess_min"],
                 ess_median=s["ess_median"], seconds=s["seconds"], train_seconds=0.0,
                 ess_median_per_second=s["ess_median_per_second"])
        rows.append(_bench_row("cover_type", r, ex.PAPER["cover_type"]["sghmc"]))
    for r in ex.surrogate_grid(cfgs["surrogate"], scale_mod.seed(9)):
        row = {f: None for f in bench.FIELDS}
        row.update(method="gp_surrogate/nn", target=f"gaussian_d{r['d']}_n{r['n']}", **r)
        rows.append(row)
    return rows
