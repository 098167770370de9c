"""The data: scikit-learn's 8×8 handwritten digits, binarised, with a fixed split.

`load_digits()` returns 1,797 images of 64 pixels with grey levels 0..16; a pixel is 1 when
its level / 16 exceeds 0.5 (a deterministic threshold, so no binarisation seed). A fixed
permutation (seed 0, independent of `HMC_BOOK_SEED`) puts 1,497 images in the training set
and 300 in the held-out set.
"""

from typing import NamedTuple

import numpy as np

IMAGE_SHAPE = (8, 8)
DATA_DIM = 64
NUM_HELD_OUT = 300
SPLIT_SEED = 0


class Digits(NamedTuple):
    """train `[1497, 64]`, test `[300, 64]`: float32 in {0, 1}; labels alongside (0..9)."""
    train: np.ndarray
    test: np.ndarray
    train_labels: np.ndarray
    test_labels: np.ndarray


#: the image shapes the DLGM takes (8×8 digits, 28×28 MNIST), by number of pixels
SHAPES = {64: (8, 8), 784: (28, 28)}


def image_shape(data_dim):
    """(height, width) of an image of `data_dim` pixels (64 or 784)."""
    if data_dim not in SHAPES:
        raise ValueError(f"`data_dim` must be one of {sorted(SHAPES)}, got {data_dim}")
    return SHAPES[data_dim]


def check_images(x, name="x", grey=False):
    """Returns `x` as float32 `[n, D]` after checking it is a batch of binary images (or,
    with `grey=True`, of grey levels in [0, 1], for dynamic binarisation).

    Accepts `[n, D]` with D = 64 or 784, or `[n, 8, 8]` / `[n, 28, 28]`. Raises ValueError
    naming `name` for any other shape, for non-finite values, or for values other than 0
    and 1 (outside [0, 1] with `grey`).
    """
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                   or arr.dtype == bool):
        raise TypeError(f"`{name}` must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[1:] in SHAPES.values():
        arr = arr.reshape(arr.shape[0], -1)
    if arr.ndim != 2 or arr.shape[1] not in SHAPES or arr.shape[0] < 1:
        raise ValueError(f"`{name}` must have shape [n, 64], [n, 784], [n, 8, 8] or "
                         f"[n, 28, 28] with n >= 1, got {list(arr.shape)}")
    arr = arr.astype(np.float32)
    if grey:
        if not np.all((arr >= 0) & (arr <= 1)):
            bad = arr[~((arr >= 0) & (arr <= 1))].ravel()[0]
            raise ValueError(f"`{name}` must hold grey levels in [0, 1]; found {bad!r}")
    elif not np.all((arr == 0) | (arr == 1)):
        bad = arr[(arr != 0) & (arr != 1)].ravel()[0]
        raise ValueError(f"`{name}` must be binary (0 or 1); found the value {bad!r}")
    return arr


def binarise(grey, threshold=0.5):
    """Grey levels 0..16 `[n, 64]` -> float32 {0, 1}: 1 where level / 16 > `threshold`."""
    grey = np.asarray(grey, np.float64)
    if grey.ndim != 2 or grey.shape[1] != DATA_DIM:
        raise ValueError(f"`grey` must have shape [n, {DATA_DIM}], got {list(grey.shape)}")
    if np.any(grey < 0) or np.any(grey > 16):
        raise ValueError("`grey` must hold grey levels in [0, 16]")
    return (grey / 16.0 > threshold).astype(np.float32)


def load_digits():
    """The binarised digits with the book's fixed train / held-out split (a `Digits`)."""
    from sklearn.datasets import load_digits as sk_load
    bunch = sk_load()
    x = binarise(bunch.data)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    test, train = order[:NUM_HELD_OUT], order[NUM_HELD_OUT:]
    return Digits(x[train], x[test], bunch.target[train], bunch.target[test])
