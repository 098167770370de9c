"""Benchmark: the NNgHMC paper's headline row, logistic regression at its largest size.

`python -m hmc_lib.bench nnghmc_headline --scale paper --json`. The largest of
`hmc_lib.nnghmc.experiments.settings(scale)["logreg"]["sizes"]` (50,000 × 200 at `paper`
scale, the paper's problem), HMC against NNgHMC whose schedule switches to the network when
the *projected ESS per second* of a probe, training charged, beats HMC's
(`run_schedule(criterion="ess_per_second")`), not when its acceptance matches HMC's: the
paper ran NNgHMC at acceptance ≈ 0.6 against HMC's ≈ 0.8 and still reported 4.5× ESS per
second. Three seeds (the same data; each seed drives HMC, collection, training and
sampling); rows as in `bench nnghmc`, plus `wall_seconds` per seed (everything, compilation
included) and one summary row (method `nnghmc/hmc`) with the median and range of the
speed-up. Its recorded `paper`-scale output is `book/data/nnghmc_headline_paper.json`,
rendered by chapter 3.
"""

import time

from hmc_lib import scale as scale_mod
from hmc_lib.bench.nnghmc import _rows, _summary
from hmc_lib.nnghmc import experiments as ex

#: seeds of the headline row (the book's rule: a learned sampler's headline over >= 3)
NUM_SEEDS = 3


def run(scale):
    cfg = dict(ex.settings(scale)["logreg"])
    n = max(cfg["sizes"])
    seeds = [scale_mod.seed(k) for k in range(NUM_SEEDS)]
    rows, seed_rows = [], []
    for s in seeds:
        t0 = time.perf_counter()
        (r,) = ex.logreg_seeds(cfg, n, [50 + 100 * s], criterion="ess_per_second")
        wall = time.perf_counter() - t0
        seed_rows += _rows("logreg", (r.hmc, r.nnghmc, r.hmc_run, r.schedule), s,
                           ex.logreg_step_size(cfg, n), num_data=n,
                           num_features=r.row["dim"], wall_seconds=wall,
                           criterion="ess_per_second")
    rows += seed_rows + [_summary("logreg", seed_rows, num_data=n)]
    return rows
