"""The one scale setting that sizes every chapter and benchmark.

Read from the environment variable ``HMC_BOOK_SCALE``:

- ``ci``: the test suite's size (each chapter in under 2 minutes on 2 cores);
- ``book`` (default): a reader's full build (the whole book in under 20 minutes on 2 cores);
- ``paper``: the papers' own sizes (a long night or a GPU).

Every table in the book prints the scale that produced it.
"""

import os

ENV_VAR = "HMC_BOOK_SCALE"
SCALES = ("ci", "book", "paper")
DEFAULT = "book"


def get():
    """Returns the current scale name, one of ``SCALES``."""
    value = os.environ.get(ENV_VAR, DEFAULT).strip().lower() or DEFAULT
    if value not in SCALES:
        raise ValueError(f"{ENV_VAR} must be one of {SCALES}, got {value!r}")
    return value


def pick(ci, book, paper, scale=None):
    """Returns the argument named by ``scale`` (the current scale by default).

    Example: ``num_results = scale.pick(ci=200, book=2000, paper=10000)``.
    """
    scale = get() if scale is None else scale
    if scale not in SCALES:
        raise ValueError(f"`scale` must be one of {SCALES}, got {scale!r}")
    return {"ci": ci, "book": book, "paper": paper}[scale]


SEED_ENV_VAR = "HMC_BOOK_SEED"


def seed_offset():
    """The seed sweep's offset, read from ``HMC_BOOK_SEED`` (default 0: the book's seeds)."""
    value = os.environ.get(SEED_ENV_VAR, "0").strip() or "0"
    try:
        offset = int(value)
    except ValueError:
        raise ValueError(f"{SEED_ENV_VAR} must be an integer, got {value!r}") from None
    if offset < 0:
        raise ValueError(f"{SEED_ENV_VAR} must be >= 0, got {offset}")
    return offset


def seed(base):
    """The seed to use where the book or a test would use ``base``.

    With ``HMC_BOOK_SEED`` unset (or 0) this is ``base`` itself, so the book's runs are the
    documented ones; the seed sweep (``tools/seed_sweep.py``) sets ``HMC_BOOK_SEED=k`` to
    re-run every statistical assertion on fresh random numbers: ``base + 100003 * k``.
    """
    base = int(base)
    if base < 0:
        raise ValueError(f"`base` must be >= 0, got {base}")
    return base + 100003 * seed_offset()
