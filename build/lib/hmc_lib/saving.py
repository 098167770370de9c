"""Saving and loading a trained network: one `.npz` file holding its weights and its
configuration as JSON, so `cls(**config)` rebuilds it exactly. Shared by the method
packages (`l2hmc.save`, `hnn.save`, ...); the object needs `config` (a JSON-serialisable
dict of constructor arguments), `get_weights()` and `set_weights(weights)`."""

import json
import os

import numpy as np

CONFIG_KEY = "__config__"


def save(obj, path, cls, name):
    """Writes `obj` (an instance of `cls`) to `path` (`.npz` appended if missing).

    `name` names the argument in the error raised for an object of another type. Returns the
    path written.
    """
    if not isinstance(obj, cls):
        raise TypeError(f"`{name}` must be a {cls.__name__}, got {type(obj).__name__}")
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    arrays = {f"w{i:03d}": w for i, w in enumerate(obj.get_weights())}
    arrays[CONFIG_KEY] = np.array(json.dumps(obj.config))
    np.savez(path, **arrays)
    return path


def load(path, cls, what, dtype=None):
    """Rebuilds a `cls` written by `save`; `dtype` overrides the stored dtype.

    `what` describes the file in the error raised when `path` holds no configuration.
    """
    path = os.fspath(path)
    if not os.path.exists(path) and os.path.exists(path + ".npz"):
        path += ".npz"
    with np.load(path, allow_pickle=False) as data:
        if CONFIG_KEY not in data:
            raise ValueError(f"{path!r} is not a saved {what} file")
        config = json.loads(str(data[CONFIG_KEY]))
        weights = [data[k] for k in sorted(k for k in data.files if k != CONFIG_KEY)]
    if dtype is not None:
        import tensorflow as tf
        config["dtype"] = tf.as_dtype(dtype).name
    obj = cls(**config)
    obj.set_weights(weights)
    return obj
