"""Saving and loading an HNN: one `.npz` file with the weights and a JSON config."""

from hmc_lib import saving
from hmc_lib.hnn.networks import HNN


def save(hnn, path):
    """Writes `hnn` (weights, standardisation, configuration) to `path` (`.npz` appended if
    missing). Returns the path written."""
    return saving.save(hnn, path, HNN, "hnn")


def load(path, dtype=None):
    """Reads an HNN written by `save`; `dtype` overrides the stored dtype."""
    return saving.load(path, HNN, "HNN", dtype)
