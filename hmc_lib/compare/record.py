"""The recorded long run of the comparison grid (`hmc_lib.records`), which chapter 9 renders
beside its `book` run; the build never re-runs it.

`python tools/record.py compare_grid --threads 1` (scale `paper` by default) runs every target
of `grid.targets_at(scale)` with `grid.settings(scale)`: each sampling run continues until
the convergence gate passes or its budget is spent (`runner`), so every cell of the record
has passed the gate or is marked "did not converge within B". Units (resumable, `LongRun`):
per target, `<target>` (the warm-up and the untrained or pseudo-marginal cells) and
`<target>-seed<k>` (the learned cells of training seed k, after the same warm-up, run
again: it is deterministic). Inside a unit every sampling run checkpoints
(`sample_until(checkpoint=...)`), so a unit killed midway resumes from its last chunk.
After every finished unit the record is written with the targets finished so far, so a
chapter can render a run still in progress (the record's `complete` says whether it is).
"""

import os
import pathlib

from hmc_lib import records
from hmc_lib.compare import grid, runner

#: where the record of scale `{scale}` lives (package data)
RECORD_DIR = pathlib.Path(__file__).resolve().parent / "recorded"
NAME = "compare_grid"


def record_path(scale="paper"):
    """The path of the grid's record at `scale`."""
    return RECORD_DIR / f"grid_{scale}.json"


def load(scale="paper"):
    """The record at `scale` (`records.load`), or None if it has not been recorded."""
    path = record_path(scale)
    return records.load(path) if path.exists() else None


def rows_of(rec):
    """The record's rows as `runner.Record`s."""
    return [runner.Record(**r) for r in rec["rows"]]


def _unit_dir(run, key):
    path = run.checkpoint(key, suffix="")
    os.makedirs(path, exist_ok=True)
    return path


def _run_target(run, cfg, methods, name, seed):
    """Runs (or resumes) target `name`'s units of `run`; returns its rows (dicts)."""
    applicable = [m for m in methods if grid.applies(m, name)[0]]
    target = runner._load_target(name, cfg)

    def untrained(_):
        ckpt = _unit_dir(run, name)
        if name in grid.PM_TARGETS:
            done = runner.pm_cells(name, target, cfg, applicable, seed, ckpt)
        else:
            p = runner.prepare(name, target, cfg, seed)
            done = runner.untrained_cells(p, cfg, applicable, seed, ckpt)
        return {m: r._asdict() for m, r in done.items()}

    done = {m: runner.Record(**r) for m, r in run.unit(name, untrained).items()}
    if any(m in grid.LEARNED for m in applicable):
        per_seed = []
        for j in range(cfg["training_seeds"]):
            key = f"{name}-seed{j}"

            def learned(_, j=j, key=key):
                p = runner.prepare(name, target, cfg, seed)
                cells = runner.learned_cells(p, cfg, applicable,
                                             runner.training_seed(seed, j),
                                             _unit_dir(run, key))
                return {m: r._asdict() for m, r in cells.items()}

            per_seed.append({m: runner.Record(**r) for m, r in run.unit(key, learned).items()})
        for m in per_seed[0]:
            done[m] = [s[m] for s in per_seed]
    return [r._asdict() for r in runner.finish(name, methods, done)]


def record(workdir, scale="paper", target_names=None, out=None, methods=None):
    """Runs (or resumes) the grid at `scale` and writes its record to `out` (default
    `record_path(scale)`); returns the record. `target_names`, `methods`: subsets (default
    all; a subset of methods is for tests: the rows are those methods')."""
    names = tuple(grid.targets_at(scale) if target_names is None else target_names)
    seeds = runner.target_seeds(names)
    # the pseudo-marginal targets (the costliest at the paper's size) run last; rows are
    # written in `names` order
    order = sorted(range(len(names)), key=lambda k: names[k] in grid.PM_TARGETS)
    cfg = grid.settings(scale)
    methods = runner.check_methods(methods)
    run = records.LongRun(NAME, workdir, scale, seeds,
                          settings=dict(cfg, targets=list(names), methods=list(methods)))
    out = record_path(scale) if out is None else out
    # targets an earlier run of these settings finished are taken from its record (a run
    # whose work folder was lost resumes there; their units keep their commit and machine)
    prior = run.prior(out)
    rows = {}
    for done_count, k in enumerate(order, start=1):
        name, seed = names[k], seeds[k]
        if prior is not None and name in prior.get("targets_done", ()):
            rows[name] = [r for r in prior["rows"] if r["target"] == name]
            run.adopt(prior, [u["key"] for u in prior["units"]
                              if u["key"] == name or u["key"].startswith(name + "-seed")])
        else:
            rows[name] = _run_target(run, cfg, methods, name, seed)
        rec = run.write(out, [r for n in names if n in rows for r in rows[n]],
                        complete=done_count == len(names),
                        targets_done=[n for n in names if n in rows])
    return rec
