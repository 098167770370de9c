"""Benchmark `compare`: which sampler when? Every method on every target (issue 18).

`python -m hmc_lib.bench compare --scale book --json`. One row per (method, target) of
`hmc_lib.compare.run` (see `hmc_lib.compare.runner` for the protocol: every run continues
until the convergence gate passes or its budget is spent, and each row says whether it
`converged` and why it `stopped`): methods that do not apply to a target are rows with
`applicable` false, their `reason`, and None measures. Every row carries `total_seconds`,
the wall clock of the whole comparison (training and compilation included).
"""

from hmc_lib import compare as compare_mod


def to_rows(records, seconds):
    """Benchmark rows (dicts) from `compare.run`'s records and total seconds."""
    rows = []
    for r in records:
        row = r._asdict()
        row["total_seconds"] = float(seconds)
        rows.append(row)
    return rows


def run(scale):
    records, seconds = compare_mod.run(scale)
    return to_rows(records, seconds)
