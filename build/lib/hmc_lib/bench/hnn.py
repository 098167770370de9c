"""Benchmark: HMC, NUTS, HNN-HMC (exact and Chen's rule) and HNN-NUTS (Dhulipala's monitor
and cool-down, `hnn_nuts`, and the exact monitor at its threshold of 1000,
`hnn_nuts_exact`) on Dhulipala's targets
(1-d mixture, 5-d ICG, 2-d funnel, 3-d Rosenbrock at book scale; the funnel is left out at
ci).

`python -m hmc_lib.bench hnn --scale book`. One row per method, target and training seed
(the baselines once per target). The HNN rows charge the true gradients of their training
data: `grad_evals` = `train_grad_evals` + `sample_grad_evals`, and `ess_per_grad` divides the
minimum ESS by it; `ess_per_sample_grad` leaves the training data out; `ess_per_potential`
divides by the true log-density evaluations of the run; HNN-NUTS rows add
`fallback_rate`, `hnn_fraction` and `grads_per_true_tree`. Every sampler runs until its
chains pass the convergence gate or its budget is spent (`experiments.run_until`); each row
carries the gate's reading (`rhat_max`, `ess_bulk_min`, `ess_tail_min`, `converged`), the
draws per chain and why the run `stopped`, and the exactness checks of `experiments.
moment_fields`. Only converged rows may feed a verdict. The 10× goal (chapter 7) is
`ess_per_grad` (or, training left out, `ess_per_sample_grad`) of `hnn_nuts` or
`hnn_nuts_exact` over `nuts`'s `ess_per_grad` on the same target
(`hmc_lib.hnn.experiments.goal_verdict`). Settings: `hmc_lib.hnn.experiments`.
"""

from hmc_lib import scale as scale_mod
from hmc_lib.hnn import experiments


def run(scale):
    cfg = experiments.settings(scale)
    rows = []
    for name in cfg["targets"]:
        rows += experiments.run_baselines(name, scale_mod.seed(10), scale)
        for s in cfg["training_seeds"]:
            r, _, _ = experiments.run_hnn(name, s, scale_mod.seed(20 + s), scale)
            rows += r
    return rows
