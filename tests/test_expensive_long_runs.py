"""`hmc_lib.nnghmc.long_runs`: the recorded paper-size runs (a toy of one, run twice), the
error estimate that sets HMC's length, and the checks on reading a record."""

import copy
import dataclasses
import json
import os

import numpy as np
import pytest

from hmc_lib.nnghmc import long_runs

# a record small enough for a test: GP regression on 20 points, three seeds
TOY = dataclasses.replace(
    long_runs.gp_settings("ci"), target_kwargs=(("num_data", 20),), burnin=10, hmc_chunk=20,
    hmc_max_draws=40, collect_until=20, retrain_every=10, collect_chunk=10, probe_steps=4,
    nnghmc_draws=40, nnghmc_max_draws=40, nnghmc_chunk=20, timing_draws_hmc=3,
    timing_draws_nnghmc=5)
PAPER = dict(hmc_rate=3.14, nnghmc_rate=123.4, hmc_acceptance=0.83, nnghmc_acceptance=0.84,
             speedup=39.3)
DETERMINISTIC = ("ess_min", "ess_median", "ess_max", "acceptance", "draws", "gate",
                 "final_method", "events", "collect_draws", "stopped")


def _ar1(rng, phi, draws, chains):
    z = rng.standard_normal((draws, chains, 1))
    x = np.empty_like(z)
    x[0] = z[0] / np.sqrt(1 - phi ** 2)
    for t in range(1, draws):
        x[t] = phi * x[t - 1] + z[t]
    return x


@pytest.mark.statistical
def test_rate_error_is_a_conservative_error_of_the_ess():
    """On AR(1) chains (ESS per draw (1 − φ)/(1 + φ)) the predicted relative error of the
    ESS is at least the spread of the estimates over 200 replicate runs, and at most twice
    it (measured: 1.25–1.4 times). The spread's own relative error over 200 replicates is
    about 5 %, far inside both bounds."""
    rng = np.random.default_rng()
    est, err = [], []
    for _ in range(200):
        e, r = long_runs.rate_error(_ar1(rng, 0.5, 1000, 4))
        est.append(e)
        err.append(r)
    est = np.asarray(est)
    spread = est.std(ddof=1) / est.mean()
    assert abs(est.mean() - 1 / 3) < 0.02                      # the ESS itself is right
    assert 1.0 <= np.mean(err) / spread <= 2.0, (np.mean(err), spread)


def test_rate_error_bad_input():
    with pytest.raises(ValueError, match="samples"):
        long_runs.rate_error(np.zeros((3, 2, 1)))
    with pytest.raises(ValueError, match="statistic"):
        long_runs.rate_error(np.random.default_rng(1).normal(size=(50, 2, 2)), "max")
    with pytest.raises(ValueError, match="scale"):
        long_runs.gp_settings("huge")


def test_a_toy_record_runs_resumes_and_reads_back(tmp_path):
    rec = long_runs.scheduled_record(TOY, tmp_path / "run", "ci")
    rows = rec["rows"]
    assert [r["method"] for r in rows] == ["HMC", "NNgHMC", "NNgHMC", "NNgHMC", "nnghmc/hmc"]
    hmc, seeds = rows[0], rows[1:4]
    assert hmc["stopped"] in ("converged", "max_draws") and hmc["cpu_seconds_per_draw"] > 0
    for r in seeds:
        # everything charged: collection at HMC's price, training, probes, draws
        assert r["cpu_seconds_total"] > r["draws"] * r["cpu_seconds_per_draw"] > 0
        np.testing.assert_allclose(r["speedup"], r["ess_median_per_second"]
                                   / hmc["ess_median_per_second"])
        assert r["sampling_speedup"] > r["speedup"]
    view = long_runs.record_view(rec, PAPER)
    assert list(view.table.columns) == ["HMC", "HMC (paper)", "seed 0", "seed 1", "seed 2",
                                        "NNgHMC (paper)"]
    assert len(view.converged) == 6 and view.outcome in ("every", "median", "best", "none")

    # a run killed inside a seed's final draws resumes from the unit's checkpoint: drop
    # that unit's stored result, run again, and the draws are the same
    os.remove(tmp_path / "run" / "units" / "final-1.json")
    again = long_runs.scheduled_record(TOY, tmp_path / "run", "ci")["rows"]
    for key in DETERMINISTIC:
        assert again[2].get(key) == rows[2].get(key), key
    assert again[1] == rows[1] and again[0] == rows[0]       # finished units are read back

    with pytest.raises(ValueError, match="other settings"):
        long_runs.scheduled_record(dataclasses.replace(TOY, burnin=11), tmp_path / "run", "ci")


def test_record_view_refuses_an_edited_record(tmp_path):
    rows = [dict(method="HMC", ess_per_second=2.0, gate=dict(converged=True)),
            *[dict(method="NNgHMC", seed=k, ess_per_second=4.0 + k, speedup=(4.0 + k) / 2.0,
                   final_method="nnghmc", gate=dict(converged=True)) for k in range(3)],
            dict(method="nnghmc/hmc", speedup_median=2.5, speedup_min=2.0, speedup_max=3.0)]
    rec = dict(rows=rows)
    view = long_runs.record_view(rec, PAPER)
    assert view.outcome == "none" and view.converged == [True] * 6
    bad = copy.deepcopy(rec)
    bad["rows"][1]["speedup"] = 9.0
    with pytest.raises(ValueError, match="speed-up"):
        long_runs.record_view(bad, PAPER)
    bad = copy.deepcopy(rec)
    bad["rows"][-1]["speedup_max"] = 9.0
    with pytest.raises(ValueError, match="speedup_max"):
        long_runs.record_view(bad, PAPER)
    with pytest.raises(ValueError, match="3 seeds"):
        long_runs.record_view(dict(rows=rows[:2] + rows[-1:]), PAPER)
