"""Recorded long runs of chapter 2 (`tools/record.py`; the book renders their records and
never re-runs them).

- `toys(workdir, scale)`: the paper's four toys at the paper's size (5,000 training steps,
  batch 200, 3 training seeds), each trained sampler run until the convergence gate passes
  or the budget is spent, and HMC at every step size of its grid likewise (the baseline is
  the best converged one); written to `recorded/toys_<scale>.json`.

Each (target, seed) and each target's HMC baseline is one resumable unit (`records.LongRun`):
training checkpoints its weights, Adam state and chains (`train(checkpoint=...)`), sampling
its draws (`sample_until(checkpoint=...)`), so a killed run resumes where it stopped.
"""

import dataclasses
import pathlib

import numpy as np

from hmc_lib import records
from hmc_lib.l2hmc import experiments as toy

RECORDED = pathlib.Path(__file__).resolve().parent / "recorded"


def record_path(name, scale="paper"):
    """Where the record `name` at `scale` lives (package data)."""
    return RECORDED / f"{name}_{scale}.json"


def _curve(values, blocks=20):
    """Means of `values` over `blocks` equal blocks (a training curve in a few numbers)."""
    values = np.asarray(values, np.float64)
    return [float(b.mean()) for b in np.array_split(values, min(blocks, values.size))]


def seed_unit(name, seed, scale, checkpoint, **overrides):
    """Trains one seed (resumably) and runs its sampler through the gate; returns the JSON
    fields of `chains_row("l2hmc", ...)`, `trained_row` and the training curves."""
    trained = toy.train_toy(name, seed, scale=scale,
                            checkpoint=checkpoint.replace(".npz", "-train.npz"), **overrides)
    chains = toy.run_l2hmc(trained, scale=scale,
                           checkpoint=checkpoint.replace(".npz", "-chains.npz"), **overrides)
    target = overrides.get("target") or toy._target(name)
    out = dict(toy.chains_row("l2hmc", chains, target), **toy.trained_row(trained))
    out.update(seed=int(seed), mode_switch_rate=toy.mode_switch_rate(chains.samples),
               esjd_curve=_curve(trained.history["esjd"]),
               acceptance_curve=_curve(trained.history["acceptance"]),
               loss_curve=_curve(trained.history["loss"]))
    return out


def hmc_unit(name, seed, scale, checkpoint, **overrides):
    """HMC at every step size of the grid, each run until the gate passes or the budget is
    spent (resumably); the baseline is the converged step size with the largest ESS per step
    (the largest of all when none converged). Returns the baseline's `chains_row("hmc", ...)`
    with its step size, and `grid`: every step size's row."""
    settings, _, _ = toy._options(name, scale, overrides)
    target = overrides.get("target") or toy._target(name)
    grid = {}
    for eps in settings.hmc_step_sizes:
        chains = toy.run_hmc(name, eps, seed, scale=scale,
                             checkpoint=checkpoint.replace(".npz", f"-eps{eps}.npz"),
                             **overrides)
        grid[str(eps)] = dict(toy.chains_row("hmc", chains, target),
                              mode_switch_rate=toy.mode_switch_rate(chains.samples))
    ok = [k for k, r in grid.items() if r["hmc_converged"]] or list(grid)
    best = max(ok, key=lambda k: grid[k]["hmc_ess_per_step"])
    return dict(grid[best], hmc_step_size=float(best), grid=grid)


def toys(workdir, scale="paper"):
    """The four toys at `scale`, 3 training seeds each; writes and returns the record."""
    seeds = toy.training_seeds(scale)
    settings = {name: dict(settings=dataclasses.asdict(toy.SETTINGS[name]),
                           sizes=dataclasses.asdict(toy.sizes(scale, name)))
                for name in toy.TARGETS}
    settings.update(num_leapfrog_steps=toy.NUM_LEAPFROG_STEPS, gate_max_draws=toy.GATE_MAX_DRAWS)
    run = records.LongRun("l2hmc_toys", workdir, scale, seeds, settings)
    rows, hmc_rows = [], {}
    for name in ("scg", "rough_well", "mog", "icg50"):   # the cheapest first
        hmc = run.unit(f"{name}-hmc", lambda ck, name=name: hmc_unit(name, seeds[0], scale, ck))
        hmc_rows[name] = hmc
        for i, seed in enumerate(seeds):
            l2 = run.unit(f"{name}-seed{seed}",
                          lambda ck, name=name, seed=seed: seed_unit(name, seed, scale, ck))
            keep = {k: v for k, v in hmc.items() if k.startswith("hmc_")}
            rows.append(dict(toy.ratio_row(name, l2, keep), seed_index=i,
                             hmc_mode_switch_rate=hmc["mode_switch_rate"]))
    return run.write(record_path("toys", scale), rows,
                     hmc={k: v["grid"] for k, v in hmc_rows.items()})


def radius_diagnosis(chains, sd):
    """Whether chains flip signs without moving in radius, as a sampler that learned
    x -> -x would: its squared jump (what L2HMC's loss rewards) is large and the paper's ESS
    of the first moment, which sums the negative autocorrelation, is high, yet each chain
    keeps its own |x_i| and the rank-normalised R̂ (which folds the draws) fails.

    Args:
      chains: draws `[draws, chains, dim]` of a target with mean 0.
      sd: the target's standard deviations `[dim]`.
    Returns a dict: `rhat_max` (rank-normalised), `worst` (its coordinate), `radius_min` and
    `radius_max` (the smallest and largest per-chain mean of |x_i| / sd_i in that
    coordinate), `radius_exact` (√(2/π), a Gaussian's), `lag1_widest` (lag-1
    autocorrelation of the widest coordinate, averaged over chains).
    """
    from hmc_lib import diagnostics
    x = np.asarray(chains, np.float64)
    if x.ndim != 3:
        raise ValueError(f"`chains` must be [draws, chains, dim], got shape {x.shape}")
    sd = np.asarray(sd, np.float64)
    rhat = np.asarray(diagnostics.rhat(x))
    worst = int(np.argmax(rhat))
    radius = np.mean(np.abs(x[..., worst]), axis=0) / sd[worst]
    w = int(np.argmax(sd))
    lag1 = np.mean([np.corrcoef(x[:-1, c, w], x[1:, c, w])[0, 1] for c in range(x.shape[1])])
    return dict(rhat_max=float(rhat[worst]), worst=worst, radius_min=float(radius.min()),
                radius_max=float(radius.max()), radius_exact=float(np.sqrt(2 / np.pi)),
                lag1_widest=float(lag1))


#: the variants of the gap study (`gap`): key -> (toy whose settings are used, target
#: factory keywords, settings overrides, whether L2HMC is trained on it)
GAP_VARIANTS = {
    # the paper's rough well, HMC on a fine grid: which step size gives the paper's HMC
    # figure, and where ESS per step and the jumped distance (what the loss rewards) peak
    "rough_well-fine": ("rough_well", {},
                        dict(hmc_step_sizes=(0.05, 0.06, 0.07, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3)),
                        False),
    # the official code's default rough well, cos(x/η²)
    "rough_well_official": ("rough_well", dict(period=1e-4),
                            dict(hmc_step_sizes=(0.002, 0.005, 0.01, 0.02, 0.05)), True),
    # the reference notebook's SCG: variances 100 and 0.1 (the paper says 0.01); its stable
    # leapfrog steps reach 2σ_min = 0.63
    "scg_reference": ("scg", dict(variances=(1e2, 1e-1)),
                      dict(hmc_step_sizes=(0.15, 0.3, 0.45, 0.55, 0.6)), True),
    # the control: the rough well without its roughness, a standard 2-d Gaussian, trained
    # and sampled exactly as the rough well
    "gaussian2": ("rough_well", dict(name="gaussian", variance=(1.0, 1.0)),
                  dict(hmc_step_sizes=(0.1, 0.15, 0.2)), True),
}

#: the step-size gradient study (`gap`): targets (as above) and step sizes, and the batches
GRADIENT_TARGETS = {"rough_well": {}, "gaussian2": dict(name="gaussian", variance=(1.0, 1.0))}
GRADIENT_STEP_SIZES = (0.1, 0.15, 0.2)
GRADIENT_BATCHES, GRADIENT_BATCH_SIZE = 200, 200


def _make_target(name, kw):
    from hmc_lib import targets
    kw = dict(kw)
    return targets.get(kw.pop("name", name), **kw)


def gap(workdir, scale="paper"):
    """The gap study of chapter 2 at `scale`: for each of `GAP_VARIANTS`, HMC at every step
    size of its grid through the gate and, where asked, L2HMC trained with 3 seeds as in
    `toys`; writes and returns the record `recorded/gap_<scale>.json` (rows: one per HMC
    step size, `kind` "hmc", and one per L2HMC seed, `kind` "l2hmc")."""
    seeds = toy.training_seeds(scale)
    settings = {key: dict(toy=name, target=kw, overrides=dict(ov), l2hmc=train_it,
                          sizes=dataclasses.asdict(toy.sizes(scale, name)))
                for key, (name, kw, ov, train_it) in GAP_VARIANTS.items()}
    settings["step_size_gradients"] = dict(
        targets=GRADIENT_TARGETS, step_sizes=GRADIENT_STEP_SIZES, batches=GRADIENT_BATCHES,
        batch_size=GRADIENT_BATCH_SIZE)
    run = records.LongRun("l2hmc_gap", workdir, scale, seeds, settings)
    rows = []
    for key, (name, kw, ov, train_it) in GAP_VARIANTS.items():
        target = _make_target(name, kw)
        hmc = run.unit(f"{key}-hmc", lambda ck, name=name, target=target, ov=ov: hmc_unit(
            name, seeds[0], scale, ck, target=target, **ov))
        for eps, r in hmc["grid"].items():
            rows.append(dict(r, variant=key, kind="hmc", hmc_step_size=float(eps),
                             best=float(eps) == hmc["hmc_step_size"]))
        if not train_it:
            continue
        keep = {k: v for k, v in hmc.items() if k.startswith("hmc_")}
        for i, seed in enumerate(seeds):
            l2 = run.unit(f"{key}-seed{seed}",
                          lambda ck, name=name, seed=seed, target=target, ov=ov: seed_unit(
                              name, seed, scale, ck, target=target, **ov))
            rows.append(dict(toy.ratio_row(name, l2, keep), variant=key, kind="l2hmc",
                             seed_index=i))

    def gradients(_):
        out = []
        for key, kw in GRADIENT_TARGETS.items():
            for eps in GRADIENT_STEP_SIZES:
                g = toy.step_size_gradients(_make_target("rough_well", kw), eps,
                                            GRADIENT_BATCHES, GRADIENT_BATCH_SIZE, seed=seeds[0])
                out.append(dict(target=key, step_size=eps, mean=float(g.mean()),
                                sd=float(g.std(ddof=1)), snr=float(g.mean() / g.std(ddof=1)),
                                batches=int(g.size)))
        return dict(rows=out)

    grads = run.unit("step-size-gradients", gradients)
    return run.write(record_path("gap", scale), rows, step_size_gradients=grads["rows"])
