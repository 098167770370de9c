import numpy as np
import pytest

from hmc_lib import diagnostics

ANALYTIC = ["icg50", "scg", "mog", "rough_well", "banana", "icg30"]


@pytest.fixture(params=ANALYTIC)
def target_name(request):
    return request.param


def within_mc_error(samples, mean, variance, alpha=1e-4):
    """Asserts per-coordinate sample mean and variance against the truth.

    The Monte Carlo error is the spread between independent chains
    (`hmc_lib.diagnostics.assert_moments`: t statistics with chains − 1 degrees of freedom,
    Bonferroni over the 2·dim statistics at family-wise level `alpha`), so no ESS estimate is
    involved. `samples` `[draws, chains, dim]` needs >= 16 chains started from exact draws.
    Returns the `MomentCheck`.
    """
    x = np.asarray(samples, np.float64)
    if x.ndim != 3 or x.shape[1] < 16:
        raise ValueError(f"`samples` must be [draws, >=16 chains, dim], got {x.shape}")
    return diagnostics.assert_moments(x, mean, variance, alpha=alpha)


@pytest.fixture
def mc_check():
    return within_mc_error
