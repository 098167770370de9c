"""Saving and loading an HNN: one `.npz` file with the weights and a JSON config."""

import json
import os

import numpy as np

from hmc_lib.hnn.networks import HNN

_CONFIG_KEY = "__config__"


def save(hnn, path):
    """Writes `hnn` (weights, standardisation, configuration) to `path` (`.npz` appended if
    missing). Returns the path written."""
    if not isinstance(hnn, HNN):
        raise TypeError(f"`hnn` must be an HNN, got {type(hnn).__name__}")
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    arrays = {f"w{i:03d}": w for i, w in enumerate(hnn.get_weights())}
    arrays[_CONFIG_KEY] = np.array(json.dumps(hnn.config))
    np.savez(path, **arrays)
    return path


def load(path, dtype=None):
    """Reads an HNN written by `save`; `dtype` overrides the stored dtype."""
    path = os.fspath(path)
    if not os.path.exists(path) and os.path.exists(path + ".npz"):
        path += ".npz"
    with np.load(path, allow_pickle=False) as data:
        if _CONFIG_KEY not in data:
            raise ValueError(f"{path!r} is not a saved HNN file")
        config = json.loads(str(data[_CONFIG_KEY]))
        weights = [data[k] for k in sorted(k for k in data.files if k != _CONFIG_KEY)]
    if dtype is not None:
        import tensorflow as tf
        config["dtype"] = tf.as_dtype(dtype).name
    hnn = HNN(**config)
    hnn.set_weights(weights)
    return hnn
