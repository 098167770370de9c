"""L2HMC vs well-tuned HMC on the paper's four toy targets (Levy et al. 2018, Fig. 1 table).

For each target and each training seed (`experiments.training_seeds`: 3 at `book` scale):
L2HMC trained at this scale and run until the convergence gate passes or the budget is
spent, and once per target HMC with the same number of leapfrog steps at its tuned step size
(`ToySettings.hmc_step_size`), run the same way. `ess_per_step` is the paper's ESS (true
moments, cut at 0.05); `paper` holds the published values; `converged` is the gate's
verdict. After the per-seed rows of a target come the HMC row and one row `l2hmc median`
with the median over seeds of every numeric field and, for each headline
(`ratio_vs_hmc`, `min_ratio_vs_hmc`, `train_seconds`, `break_even_ess`), its `_median`,
`_min` and `_max` over seeds.
"""

import numpy as np

from hmc_lib import bench
from hmc_lib.l2hmc import experiments as toy

TARGETS = toy.TARGETS

#: benchmark key -> key of `experiments.seed_rows`
_HEADLINE_KEYS = {"ratio_vs_hmc": "ratio", "min_ratio_vs_hmc": "min_ratio",
                  "train_seconds": "train_seconds", "break_even_ess": "break_even_ess"}


def _median_row(name, l2_rows, table_rows):
    out = dict(method="l2hmc median", target=name, seeds=len(l2_rows))
    for key in bench.FIELDS:
        values = [r[key] for r in l2_rows]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = float(np.median(values))
        else:
            out.setdefault(key, l2_rows[0][key])
    for key, source in _HEADLINE_KEYS.items():
        med, lo, hi = toy.spread(table_rows, source)
        out.update({f"{key}_median": med, f"{key}_min": lo, f"{key}_max": hi})
    out["converged"] = all(r["converged"] for r in table_rows)
    return out


def run(scale):
    rows = []
    seeds = toy.training_seeds(scale)
    for name, run_ in zip(TARGETS, toy.run_targets(TARGETS, seeds, scale=scale)):
        paper = toy.PAPER[name]
        table_rows = toy.seed_rows(run_)
        extra = lambda ch: dict(ess_per_step=toy.ess_per_step(ch.samples, run_.target),
                                mode_switch_rate=toy.mode_switch_rate(ch.samples),
                                rhat_max=ch.convergence.rhat_max,
                                converged=bool(ch.convergence.converged), stopped=ch.stopped)
        l2_rows = []
        for seed, sr, t in zip(seeds, run_.seeds, table_rows):
            l2_row = bench.row(
                "l2hmc", name, sr.chains.samples, sr.chains.trace,
                train_seconds=sr.trained.train_seconds,
                paper=dict(ess_per_step=paper["l2hmc"], ratio=paper["ratio"]),
                step_size=t["learned_step_size"], ratio_vs_hmc=t["ratio"],
                min_ratio_vs_hmc=t["min_ratio"], break_even_ess=t["break_even_ess"],
                seed=seed, **extra(sr.chains))
            l2_rows.append(l2_row)
            rows.append(l2_row)
        h = run_.hmc.chains
        rows.append(bench.row("hmc", name, h.samples, h.trace,
                              paper=dict(ess_per_step=paper["hmc"]),
                              step_size=run_.hmc.step_size, **extra(h)))
        rows.append(_median_row(name, l2_rows, table_rows))
    return rows
