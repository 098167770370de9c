"""Saving and loading trained dynamics: one `.npz` file with the weights and a JSON config."""

import json
import os

import numpy as np

from hmc_lib.l2hmc.dynamics import Dynamics

_CONFIG_KEY = "__config__"


def save(dynamics, path):
    """Writes `dynamics` (weights + configuration) to `path` (`.npz` is appended if missing).

    Returns the path written.
    """
    if not isinstance(dynamics, Dynamics):
        raise TypeError(f"`dynamics` must be a Dynamics, got {type(dynamics).__name__}")
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    arrays = {f"w{i:03d}": w for i, w in enumerate(dynamics.get_weights())}
    arrays[_CONFIG_KEY] = np.array(json.dumps(dynamics.config))
    np.savez(path, **arrays)
    return path


def load(path, dtype=None):
    """Reads dynamics written by `save`; `dtype` overrides the stored variable dtype."""
    path = os.fspath(path)
    if not os.path.exists(path) and os.path.exists(path + ".npz"):
        path += ".npz"
    with np.load(path, allow_pickle=False) as data:
        if _CONFIG_KEY not in data:
            raise ValueError(f"{path!r} is not a saved L2HMC dynamics file")
        config = json.loads(str(data[_CONFIG_KEY]))
        weights = [data[k] for k in sorted(k for k in data.files if k != _CONFIG_KEY)]
    if dtype is not None:
        import tensorflow as tf
        config["dtype"] = tf.as_dtype(dtype).name
    dynamics = Dynamics(**config)
    dynamics.set_weights(weights)
    return dynamics
