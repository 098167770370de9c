import numpy as np
import pytest
import tensorflow as tf

ANALYTIC = ["icg50", "scg", "mog", "rough_well", "banana", "icg30"]


@pytest.fixture(params=ANALYTIC)
def target_name(request):
    return request.param


def within_mc_error(samples, mean, variance, z=4.5, method="identity"):
    """Checks per-coordinate sample mean and variance against the truth, using the ESS.

    Mean: |x̄ − μ| ≤ z·sqrt(σ²/ESS(x)). Variance: |s² − σ²| ≤ z·sqrt(Var((x−μ)²)/ESS((x−μ)²)).
    Returns the two arrays of standardised errors (asserted here, returned for messages).
    """
    from hmc_lib import diagnostics
    x = np.asarray(samples, np.float64)
    mean = np.asarray(mean, np.float64)
    variance = np.asarray(variance, np.float64)
    ess_x = diagnostics.ess(x, method=method)
    z_mean = (x.mean(axis=(0, 1)) - mean) / np.sqrt(variance / ess_x)
    sq = (x - mean) ** 2
    ess_sq = diagnostics.ess(sq, method=method)
    z_var = (sq.mean(axis=(0, 1)) - variance) / np.sqrt(sq.var(axis=(0, 1)) / ess_sq)
    assert np.all(np.abs(z_mean) < z), f"mean off by {np.max(np.abs(z_mean)):.2f} MC s.e."
    assert np.all(np.abs(z_var) < z), f"variance off by {np.max(np.abs(z_var)):.2f} MC s.e."
    return z_mean, z_var


@pytest.fixture
def mc_check():
    return within_mc_error
