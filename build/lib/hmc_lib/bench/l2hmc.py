"""L2HMC vs well-tuned HMC on the paper's four toy targets (Levy et al. 2018, Fig. 1 table).

For each target and each training seed (`experiments.training_seeds`: 3 at `book` scale):
L2HMC trained at this scale, and HMC with the same number of leapfrog steps at the best step
size of a grid (by ESS per step). `ess_per_step` is the reference code's ESS (true moments,
cut at 0.05), the paper's measure; `paper` holds the published values. After the per-seed
rows of a target comes one row `l2hmc median` with the median over seeds of every numeric
field and, for each headline (`ratio_vs_hmc`, `min_ratio_vs_hmc`, `train_seconds`,
`break_even_ess`), its `_median`, `_min` and `_max` over seeds.
"""

import numpy as np

from hmc_lib import bench
from hmc_lib.l2hmc import experiments as toy

TARGETS = ("icg50", "scg", "mog", "rough_well")

#: benchmark key -> key of `experiments.seed_rows`
_HEADLINE_KEYS = {"ratio_vs_hmc": "ratio", "min_ratio_vs_hmc": "min_ratio",
                  "train_seconds": "train_seconds", "break_even_ess": "break_even_ess"}


def _median_row(name, l2_rows, table_rows):
    out = dict(method="l2hmc median", target=name, seeds=len(l2_rows))
    for key in bench.FIELDS:
        values = [r[key] for r in l2_rows]
        if all(isinstance(v, (int, float)) for v in values):
            out[key] = float(np.median(values))
        else:
            out.setdefault(key, l2_rows[0][key])
    for key, source in _HEADLINE_KEYS.items():
        med, lo, hi = toy.spread(table_rows, source)
        out.update({f"{key}_median": med, f"{key}_min": lo, f"{key}_max": hi})
    return out


def run(scale):
    rows = []
    seeds = toy.training_seeds(scale)
    runs = toy.compare_many([(name, s) for name in TARGETS for s in seeds], scale=scale)
    for k, name in enumerate(TARGETS):
        paper = toy.PAPER[name]
        comparisons = runs[k * len(seeds):(k + 1) * len(seeds)]
        table_rows = toy.seed_rows(comparisons)
        l2_rows = []
        for seed, c, t in zip(seeds, comparisons, table_rows):
            l2_samples, l2_trace = c.l2hmc
            extra = lambda s: dict(ess_per_step=toy.ess_per_step(s, c.target),
                                   mode_switch_rate=toy.mode_switch_rate(s), seed=seed)
            l2_row = bench.row(
                "l2hmc", name, l2_samples, l2_trace, train_seconds=c.train_seconds,
                paper=dict(ess_per_step=paper["l2hmc"], ratio=paper["ratio"]),
                step_size=t["learned_step_size"], ratio_vs_hmc=t["ratio"],
                min_ratio_vs_hmc=t["min_ratio"], break_even_ess=t["break_even_ess"],
                **extra(l2_samples))
            l2_rows.append(l2_row)
            rows.append(l2_row)
            eps = t["hmc_step_size"]
            h_samples, h_trace = c.hmc[eps]
            rows.append(bench.row(
                "hmc", name, h_samples, h_trace, paper=dict(ess_per_step=paper["hmc"]),
                step_size=eps, **extra(h_samples)))
        rows.append(_median_row(name, l2_rows, table_rows))
    return rows
