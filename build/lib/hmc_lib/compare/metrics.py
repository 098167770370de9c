"""Measures of the comparison: bias against ground truth, break-even, amortised ESS per second;
and the guidance built on them that must hold for every training seed (`worst`, `converged`,
`amortised_range`, `winner`, `paired`). A cell counts only if it passed the convergence gate
(`hmc_lib.diagnostics.convergence`; a learned cell at every training seed): its `converged`
field."""

from typing import NamedTuple

import numpy as np


class Bias(NamedTuple):
    """Errors of a run's moments against the ground truth, in posterior standard deviations.

    mean_error: max over coordinates of |x̄_i − μ_i| / σ_i.
    sd_error: max over coordinates of |ŝ_i / σ_i − 1| (relative error of the sd).
    mcse: 1 / √ESS_min, the Monte Carlo error expected of `mean_error` (same units) even
      for an exact sampler; errors many times larger than it are bias.
    """
    mean_error: float
    sd_error: float
    mcse: float


def bias(samples, mean, sd, ess_min):
    """`Bias` of draws `[draws, chains, dim]` against true `mean`, `sd` (`[dim]`, sd > 0)."""
    x = np.asarray(samples, np.float64)
    if x.ndim != 3:
        raise ValueError(f"`samples` must have shape [draws, chains, dim], got {x.shape}")
    mean = np.asarray(mean, np.float64)
    sd = np.asarray(sd, np.float64)
    if mean.shape != (x.shape[-1],) or sd.shape != (x.shape[-1],):
        raise ValueError(f"`mean` and `sd` must have shape [{x.shape[-1]}], got "
                         f"{mean.shape} and {sd.shape}")
    if not np.all(sd > 0):
        raise ValueError("`sd` must be > 0 everywhere")
    if not ess_min > 0:
        raise ValueError(f"`ess_min` must be > 0, got {ess_min!r}")
    flat = x.reshape(-1, x.shape[-1])
    m = np.abs(flat.mean(0) - mean) / sd
    s = np.abs(flat.std(0, ddof=1) / sd - 1.0)
    return Bias(float(np.max(m)), float(np.max(s)), float(1.0 / np.sqrt(ess_min)))


def break_even(train_seconds, ess_per_second, reference_ess_per_second):
    """Effective draws N after which training + sampling beats the reference in wall clock.

    Solves `train_seconds + N / r = N / r_ref`: N = train_seconds / (1/r_ref − 1/r). Zero when
    there is no training; infinite when the trained sampler is not faster per second.
    """
    if train_seconds < 0:
        raise ValueError(f"`train_seconds` must be >= 0, got {train_seconds!r}")
    if not (ess_per_second > 0 and reference_ess_per_second > 0):
        raise ValueError("`ess_per_second` and `reference_ess_per_second` must be > 0, got "
                         f"{ess_per_second!r} and {reference_ess_per_second!r}")
    if train_seconds == 0:
        return 0.0
    gain = 1.0 / reference_ess_per_second - 1.0 / ess_per_second
    return float(train_seconds / gain) if gain > 0 else float("inf")


def amortised_rate(ess_wanted, ess_per_second, train_seconds):
    """ESS per second when `ess_wanted` effective draws are wanted and training is charged:
    N / (train_seconds + N / r). `ess_wanted` scalar or array; returns the same shape."""
    n = np.asarray(ess_wanted, np.float64)
    if np.any(n <= 0):
        raise ValueError("`ess_wanted` must be > 0")
    if not ess_per_second > 0:
        raise ValueError(f"`ess_per_second` must be > 0, got {ess_per_second!r}")
    return n / (float(train_seconds) + n / float(ess_per_second))


# ------------------------------------------------------------ guidance that holds for every seed

def _field(record, name):
    """`record[name]` for a dict (a record read back from JSON), else the attribute."""
    return record[name] if isinstance(record, dict) else getattr(record, name)


def worst(record, field, high=True):
    """`field` of a cell at its worst training seed: the top of its range over seeds when
    `high` (e.g. R̂, break-even), the bottom otherwise (e.g. ESS); the value itself for an
    untrained cell (no `spread`, or no range for `field`)."""
    spread = _field(record, "spread")
    if not spread or spread.get(field) is None:
        return _field(record, field)
    return spread[field][1 if high else 0]


def converged(records):
    """The applicable records that passed the convergence gate (learned ones at every
    training seed: the record's `converged`)."""
    return [r for r in records if _field(r, "applicable") and bool(_field(r, "converged"))]


def paired(records, a, b, field):
    """`{target: (record_a, record_b)}` for every target on which methods `a` and `b` both
    passed the gate, in the records' target order: the pairs a comparison of `field` (for
    instance `ess_per_second`) may draw on. Raises `ValueError` for an unknown `field`."""
    records = list(records)
    if records and field not in (records[0] if isinstance(records[0], dict)
                                 else records[0]._fields):
        raise ValueError(f"unknown `field` {field!r}")
    ok = {(_field(r, "target"), _field(r, "method")): r for r in converged(records)}
    targets = list(dict.fromkeys(_field(r, "target") for r in records))
    return {t: (ok[t, a], ok[t, b]) for t in targets if (t, a) in ok and (t, b) in ok}


def amortised_range(record, ess_wanted):
    """`(lowest, median, highest)` ESS per second when `ess_wanted` effective draws are wanted
    and training is charged (`amortised_rate`): the lowest pairs the slowest seed's sampling
    with the slowest seed's training, the highest the fastest with the fastest; all three
    equal for an untrained cell."""
    med = float(amortised_rate(ess_wanted, _field(record, "ess_per_second"),
                               _field(record, "train_seconds")))
    spread = _field(record, "spread")
    if not spread:
        return med, med, med
    (e_lo, e_hi), (t_lo, t_hi) = spread["ess_per_second"], spread["train_seconds"]
    return (float(amortised_rate(ess_wanted, e_lo, t_hi)), med,
            float(amortised_rate(ess_wanted, e_hi, t_lo)))


class Winner(NamedTuple):
    """`winner`'s answer: `record` (None if there were no candidates), and `sure`: whether its
    lowest score beats every other candidate's highest (it wins for every training seed)."""
    record: object
    sure: bool


def winner(candidates, score):
    """The candidate with the highest median score, where `score(record)` gives
    `(lowest, median, highest)` over training seeds (`amortised_range`, or `(worst(r, f,
    high=False), r[f], worst(r, f))`). Ties go to the first. Returns a `Winner`."""
    candidates = list(candidates)
    if not candidates:
        return Winner(None, False)
    scores = [score(r) for r in candidates]
    k = max(range(len(candidates)), key=lambda i: scores[i][1])
    sure = all(scores[k][0] >= s[2] for i, s in enumerate(scores) if i != k)
    return Winner(candidates[k], sure)
