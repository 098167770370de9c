"""Chapter 7's recorded long runs (`hmc_lib.records`; run by `tools/record.py`, rendered by
the chapter, never re-executed by the build).

- `record_goal` ("hnn_goal"): every sampler of chapter 7's comparison (`experiments.
  run_baselines`, `experiments.run_hnn`) on every target and training seed, with the
  networks and data of the given scale, continued until the convergence gate passes or
  `long_max_draws` draws per chain are spent: the same chains as the chapter's run (same
  seeds, burn-in and chunks), only allowed to run longer.
- `record_glmm` ("hnn_glmm"): PM-NUTS against HNN-PM-NUTS on the GLMM
  (`experiments.run_glmm`), each until the gate passes on every θ coordinate or the
  record's budget is spent.

Units (`records.LongRun.unit`): one per sampler run, and one per trained network (its
weights saved with `hmc_lib.hnn.save`, so that a resumed run samples with the same network);
each sampler checkpoints its chains through `sample_until`. A run killed at any moment
resumes from its last checkpoint when started again with the same command.
"""

import os
import pathlib

from hmc_lib import records, scale as scale_mod
from hmc_lib.hnn import experiments

RECORDED = pathlib.Path(__file__).resolve().parent / "recorded"
GOAL = RECORDED / "goal.json"
GLMM = RECORDED / "glmm.json"

#: the row fields a record keeps
_KEEP = ("method", "target", "seed", "ess_min", "ess_median", "acceptance", "rhat_max",
         "ess_bulk_min", "ess_tail_min", "converged", "draws", "stopped",
         "sample_grad_evals", "train_grad_evals", "grad_evals", "potential_evals",
         "ess_per_grad", "ess_per_sample_grad", "ess_per_potential", "grads_per_transition",
         "fallback_rate", "hnn_fraction", "grads_per_true_tree", "fallback_rejected",
         "var_rel_error", "var_z", "score_z", "score_bound", "seconds", "train_seconds",
         "lf_rejected", "u_acceptance", "w1", "mu1", "mu2", "theta_mean", "theta_sd",
         "train_cost", "ess_per_sample_potential")


#: the record's phases: the goal's cells (NUTS and exact HNN-NUTS), then HNN-HMC's exactness
#: and its comparison with HMC on the mixture, then the rest (HMC on the other targets in the
#: last phase)
_PHASES = (("nuts", "hnn_nuts_exact"), ("hnn_hmc", "hmc", "hnn_hmc_chen"),
           ("hnn_nuts", "hmc"))


def slim(row):
    """The fields of a result row that a record keeps (`_KEEP`)."""
    return {k: row[k] for k in _KEEP if k in row}


def trained(run, key, train):
    """The network of unit `key`: `train() -> TrainResult` runs once, the network is saved
    in the unit's checkpoint folder, and a resumed run loads it back. Returns a
    `TrainResult` (history empty when loaded)."""
    from hmc_lib.hnn import io
    from hmc_lib.hnn.train import TrainResult
    path = run.checkpoint(key, ".hnn.npz")
    box = {}

    def fn(_):
        res = train()
        io.save(res.hnn, path)
        box["res"] = res
        return dict(grad_evals=int(res.grad_evals), seconds=float(res.seconds))

    info = run.unit(key, fn)
    if "res" in box:
        return box["res"]
    return TrainResult(io.load(path), {}, info["seconds"], info["grad_evals"])


def record_goal(workdir, scale, out=GOAL):
    """The "hnn_goal" record (module docstring); writes it to `out` and returns it."""
    cfg = experiments.settings(scale)
    budget = cfg["sample"]["long_max_draws"]
    seeds = sorted({scale_mod.seed(10), *(scale_mod.seed(20 + s)
                                           for s in cfg["training_seeds"]),
                    *cfg["training_seeds"]})
    run = records.LongRun("hnn_goal", workdir, scale, seeds,
                          dict(settings=cfg, budget_draws=budget))
    nets, rows = {}, []

    def cell(name, method):
        """The rows of `method` on target `name` (one per training seed for HNN methods)."""
        if method in experiments.BASELINES:
            return [run.unit(f"{name}-{method}", lambda ck: slim(experiments.run_baselines(
                name, scale_mod.seed(10), scale, max_draws=budget, checkpoints=lambda _: ck,
                methods=(method,))[0]))]
        out = []
        for s in cfg["training_seeds"]:
            if (name, s) not in nets:
                nets[name, s] = trained(run, f"{name}-net{s}",
                                        lambda: experiments.train_hnn(name, s, scale)[0])
            out.append(run.unit(f"{name}-{method}-{s}", lambda ck: slim(experiments.run_hnn(
                name, s, scale_mod.seed(20 + s), scale, result=nets[name, s],
                max_draws=budget, checkpoints=lambda _: ck, methods=(method,))[0][0])))
        return out

    # in phases, the cells behind the chapter's verdicts first, a record written after each
    # phase (so that a run stopped early leaves what it finished, `complete` False)
    for k, phase in enumerate(_PHASES):
        for name in cfg["targets"]:
            for method in phase:
                if method != "hmc" or name == "gmm1d" or k == len(_PHASES) - 1:
                    if not any(r["target"] == name and r["method"] == method for r in rows):
                        rows += cell(name, method)
        rec = run.write(out, rows, complete=k == len(_PHASES) - 1)
    return rec


def record_glmm(workdir, scale, out=GLMM):
    """The "hnn_glmm" record (module docstring); writes it to `out` and returns it."""
    cfg = experiments.glmm_settings(scale)
    budget = cfg["long_max_draws"]
    seeds = sorted({scale_mod.seed(50), scale_mod.seed(cfg["data_seed"]),
                    *cfg["training_seeds"]})
    run = records.LongRun("hnn_glmm", workdir, scale, seeds,
                          dict(settings=cfg, budget_draws=budget))
    rows = [run.unit("pm_nuts", lambda ck: slim(experiments.run_glmm(
        training_seeds=[], seed=scale_mod.seed(50), scale=scale, max_draws=budget,
        checkpoints=lambda _: ck)[0][0]))]
    for s in cfg["training_seeds"]:
        res = trained(run, f"net{s}", lambda s=s: experiments.train_glmm_hnn(s, scale)[0])
        rows.append(run.unit(f"hnn_pm_nuts-{s}", lambda ck, s=s: slim(experiments.run_glmm(
            training_seeds=[s], seed=scale_mod.seed(50), scale=scale, max_draws=budget,
            checkpoints=lambda _: ck, results={s: res}, baseline=False)[0][0])))
    return run.write(out, rows)


def load(path, scale="paper"):
    """A recorded run (`records.load`; one recorded at a smaller scale than `scale` comes
    back as a rehearsal, its cells unconverged), or None when it has not been recorded."""
    return records.load(path, scale=scale) if os.path.exists(path) else None
