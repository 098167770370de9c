"""Benchmark: the NNgHMC paper's GARCH(2,1) row (its Table 1) at the paper's size.

`python -m hmc_lib.bench garch_headline --scale paper --json`. The GARCH part of
`bench expensive` alone: `hmc_lib.nnghmc.expensive.settings(scale)["garch"]` (at `paper`
scale the paper's 1,000 observations, ε = 0.002, L = 15, 10,000 draws after 1,000 of
burn-in, collection on draws 1,000-2,000), HMC against scheduled NNgHMC (switch test:
projected ESS per second, training charged), once per seed; rows as `bench expensive`'s,
each with `wall_seconds` (the seed's HMC and NNgHMC runs, compilation included), then one
summary row (method `nnghmc/hmc`) with the median and range of the speed-up against the
paper's 4.98×. Its recorded `paper`-scale output is
`hmc_lib/nnghmc/recorded/garch_paper.json`, rendered by chapter 6.
"""

import time

import numpy as np

from hmc_lib import bench, scale as scale_mod, targets
from hmc_lib.bench.expensive import _bench_row
from hmc_lib.nnghmc import expensive as ex


def run(scale):
    cfg = ex.settings(scale)["garch"]
    t = targets.get("garch", **cfg["target"])
    rows = []
    for k in range(cfg["seeds"]):
        s = scale_mod.seed(100 + k)        # the seeds of `bench expensive`
        t0 = time.perf_counter()
        table, _, _ = ex.schedule_table(t, "garch", cfg, s)
        wall = time.perf_counter() - t0
        rows += [dict(_bench_row("garch", r, ex.PAPER["garch"][r["method"].lower()]),
                      wall_seconds=wall, num_results=cfg["num_results"]) for r in table]
    sp = [r["speedup"] for r in rows if r["method"] == "NNgHMC"]
    summary = {f: None for f in bench.FIELDS}
    summary.update(method="nnghmc/hmc", target="garch", speedup_median=float(np.median(sp)),
                   speedup_min=float(np.min(sp)), speedup_max=float(np.max(sp)),
                   seeds=len(sp), paper=dict(speedup=ex.PAPER["garch"]["speedup"]))
    return rows + [summary]
