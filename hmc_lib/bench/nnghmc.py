"""Benchmark: HMC vs NNgHMC (trained with the Sec. 3 schedule) on banana, icg30 and logreg.

`python -m hmc_lib.bench nnghmc --scale book`. For NNgHMC, `train_seconds` is the network
fitting time, `ess_per_second_total` charges training, gradient collection after burn-in and
probes to the run (see `hmc_lib.nnghmc.schedule.compare`), and `ess_per_grad` divides by the
true gradients spent collecting (NNgHMC's own draws spend none). `speedup` is NNgHMC's
`ess_per_second_total` over HMC's. Logistic regression runs at several data sizes
(`num_data`), on simulated data.
"""

import numpy as np
import tensorflow as tf

from hmc_lib import bench, scale as scale_mod, targets
from hmc_lib.nnghmc.experiments import PAPER, settings
from hmc_lib.nnghmc.schedule import compare


def _rows(name, target, cfg, x0, seed, step_size=None, **extra):
    eps = cfg["step_size"] if step_size is None else step_size
    h, n, (hs, ht), res = compare(
        target, x0, eps, cfg["L"], cfg["num_results"], num_burnin_steps=cfg["burnin"], seed=seed,
        collect_until=cfg["burnin"] + cfg["collect"], retrain_every=cfg["collect"] // 2,
        probe_steps=20, tolerance=0.15, net_kwargs=cfg["net"])
    hrow = bench.row("hmc", name, hs, ht, paper=PAPER.get((name, "hmc")), step_size=eps,
                     ess_per_second_total=h["ess_per_second_total"], **extra)
    nrow = bench.row("nnghmc", name, res.samples, res.trace, train_seconds=n["train_seconds"],
                     paper=PAPER.get((name, "nnghmc")), step_size=eps,
                     ess_per_second_total=n["ess_per_second_total"],
                     collect_draws=n["collect_draws"], final_method=n["method"],
                     speedup=n["ess_per_second_total"] / h["ess_per_second_total"], **extra)
    nrow["ess_per_grad"] = n["ess_per_grad_total"]
    nrow["grad_evals"] = n["total_grad_evals"]
    return [hrow, nrow]


def run(scale):
    cfgs = settings(scale)
    rows = []
    for name in ("banana", "icg30"):
        t = targets.get(name)
        x0 = t.sample(cfgs[name]["chains"], seed=1)
        rows += _rows(name, t, cfgs[name], x0, seed=10)
    cfg = cfgs["logreg"]
    for i, n in enumerate(cfg["sizes"]):
        t = targets.get("logreg", num_data=n, seed=0, **cfg["target"])
        x0 = tf.constant(np.tile(t.true_beta, (cfg["chains"], 1)), tf.float32)
        # posterior sd shrinks like n^-1/2: scale ε from the reference size (the first)
        eps = cfg["step_size"] * float(np.sqrt(cfg["sizes"][1] / n))
        rows += _rows("logreg", t, cfg, x0, seed=20 + i, step_size=eps, num_data=n,
                      num_features=t.dim)
    return rows
