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
