import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import hmc_lib
from hmc_lib import diagnostics, scale, targets


def _run(seed, chunk_size=None, n=30):
    t = targets.get("scg")
    return hmc_lib.sample(hmc_lib.HMC(t, 0.05, 4), n, t.sample(5, 0), num_burnin_steps=7,
                          seed=seed, chunk_size=chunk_size)


def test_same_seed_same_chain_whatever_the_chunk_size():
    a, ta = _run(1)
    b, tb = _run(1, chunk_size=7)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ta["is_accepted"], tb["is_accepted"])
    c, _ = _run(2)
    assert not np.array_equal(a, c)


def test_burn_in_is_discarded_and_the_run_can_continue():
    a, ta = _run(1, chunk_size=5, n=20)
    assert a.shape == (20, 5, 2)
    more, _ = hmc_lib.sample(hmc_lib.HMC(targets.get("scg"), 0.05, 4), 10, ta["final_state"],
                             previous_kernel_results=ta["final_kernel_results"], seed=3)
    assert more.shape == (10, 5, 2)
    assert ta["seconds"] > 0 and ta["num_chunks"] >= 2


def test_bad_run_lengths_are_clear_errors():
    k = hmc_lib.HMC(targets.get("scg"), 0.05, 4)
    with pytest.raises(ValueError, match="num_results"):
        hmc_lib.sample(k, 0, tf.zeros([2, 2]))
    with pytest.raises(ValueError, match="num_burnin_steps"):
        hmc_lib.sample(k, 5, tf.zeros([2, 2]), num_burnin_steps=-1)


def _ar1(n, chains, rho, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, chains, 1))
    x[0] = rng.normal(size=(chains, 1))
    for t in range(1, n):
        x[t] = rho * x[t - 1] + np.sqrt(1 - rho**2) * rng.normal(size=(chains, 1))
    return x


@pytest.mark.statistical
@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_ess_and_autocorrelation_of_an_ar1_process(rho):
    # 64 chains x 4000 draws (N = 256000). Tolerances against the estimators' own sampling
    # error, at rho = 0.9 where it is largest: the ESS estimate's relative s.d. is about
    # sqrt(2 (2W + 1) / N) ≈ 0.04 for a truncation window W ≈ 100 lags (< 0.15 / 3.7); an
    # autocorrelation estimate's s.d. is about sqrt((1 + ρ²) / (1 − ρ²) / N) ≈ 0.006
    # (< 0.03 / 5); the known-moment ESS also carries a truncation bias of ≈ 5 %.
    n, chains = 4000, 64
    x = _ar1(n, chains, rho, seed=scale.seed(0))
    expected = n * chains * (1 - rho) / (1 + rho)
    assert abs(diagnostics.ess(x)[0] / expected - 1) < 0.15
    acf = diagnostics.autocorrelation(x, max_lag=3)[:, 0]
    np.testing.assert_allclose(acf, rho ** np.arange(4), atol=0.03)
    assert abs(diagnostics.ess_known_moments(x, [0.0], [1.0]) / ((1 - rho) / (1 + rho)) - 1) < 0.2


@pytest.mark.statistical
def test_rhat_is_one_for_agreeing_chains_and_flags_a_shifted_one():
    # 4 chains x 1000 i.i.d. N(0, 1) draws, split into 8 of 500: R̂ ≈ 1 + (χ²₇/7 − 1)/1000,
    # so R̂ > 1.01 needs χ²₇/7 > 11 (probability < 1e-12). One chain shifted by 3 sds puts
    # R̂ near √(1 + 3²·3/16) ≈ 1.6 whatever the draws; 1.3 leaves room for the rank transform.
    rng = np.random.default_rng(scale.seed(7))
    x = rng.standard_normal((1000, 4, 2))
    assert np.all(diagnostics.rhat(x) < 1.01)
    x[:, 0, 1] += 3.0
    r = diagnostics.rhat(x)
    assert r[0] < 1.01 and r[1] > 1.3
    with pytest.raises(ValueError, match="samples"):
        diagnostics.rhat(x[:, :1])


def test_summary_and_inference_data():
    samples, trace = _run(1, n=40)
    s = diagnostics.summary(samples, trace)
    for key in ("ess_min", "ess_median", "ess_max", "acceptance", "esjd", "grad_evals",
                "ess_per_grad", "ess_per_second", "divergences"):
        assert key in s
    assert s["grad_evals"] == 40 * 5 * 4
    assert s["ess_per_grad"] == pytest.approx(s["ess_min"] / s["grad_evals"])
    idata = diagnostics.to_inference_data(samples, trace)
    assert idata.posterior["x"].shape == (5, 40, 2)
    assert "diverging" in idata.sample_stats


def test_scale_setting(monkeypatch):
    monkeypatch.setenv("HMC_BOOK_SCALE", "paper")
    assert scale.get() == "paper" and scale.pick(1, 2, 3) == 3
    monkeypatch.delenv("HMC_BOOK_SCALE")
    assert scale.get() == "book"
    monkeypatch.setenv("HMC_BOOK_SCALE", "huge")
    with pytest.raises(ValueError, match="HMC_BOOK_SCALE"):
        scale.get()


def test_hmc_benchmark_runs_and_reports_every_field():
    out = subprocess.run([sys.executable, "-m", "hmc_lib.bench", "hmc", "--scale", "ci", "--json"],
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(out.stdout)
    from hmc_lib.bench import FIELDS
    assert {r["method"] for r in rows} >= {"hmc_lib.HMC", "tfp.mcmc.HamiltonianMonteCarlo"}
    for r in rows:
        assert set(FIELDS) <= set(r)
    ours, theirs = rows[0], rows[1]
    assert ours["acceptance"] == theirs["acceptance"]
