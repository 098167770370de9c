"""L2HMC vs well-tuned HMC on the paper's four toy targets (Levy et al. 2018, Fig. 1 table).

For each target: L2HMC trained at this scale, and HMC with the same number of leapfrog steps
at the best step size of a grid (by ESS per step). `ess_per_step` is the reference code's
ESS (true moments, cut at 0.05), the paper's measure; `paper` holds the published values.
"""

from hmc_lib import bench
from hmc_lib.l2hmc import experiments as toy

TARGETS = ("icg50", "scg", "mog", "rough_well")


def run(scale):
    rows = []
    for name in TARGETS:
        c = toy.compare(name, scale=scale)
        t = toy.table(c)
        paper = toy.PAPER[name]
        l2_samples, l2_trace = c.l2hmc
        extra = lambda s: dict(ess_per_step=toy.ess_per_step(s, c.target),
                               mode_switch_rate=toy.mode_switch_rate(s))
        rows.append(bench.row(
            "l2hmc", name, l2_samples, l2_trace, train_seconds=c.train_seconds,
            paper=dict(ess_per_step=paper["l2hmc"], ratio=paper["ratio"]),
            step_size=t["learned_step_size"], ratio_vs_hmc=t["ratio"],
            break_even_ess=t["break_even_ess"], **extra(l2_samples)))
        eps = t["hmc_step_size"]
        h_samples, h_trace = c.hmc[eps]
        rows.append(bench.row(
            "hmc", name, h_samples, h_trace, paper=dict(ess_per_step=paper["hmc"]),
            step_size=eps, **extra(h_samples)))
    return rows
