"""Saving and loading trained dynamics: one `.npz` file with the weights and a JSON config."""

from hmc_lib import saving
from hmc_lib.l2hmc.dynamics import Dynamics


def save(dynamics, path):
    """Writes `dynamics` (weights + configuration) to `path` (`.npz` is appended if missing).

    Returns the path written.
    """
    return saving.save(dynamics, path, Dynamics, "dynamics")


def load(path, dtype=None):
    """Reads dynamics written by `save`; `dtype` overrides the stored variable dtype."""
    return saving.load(path, Dynamics, "L2HMC dynamics", dtype)
