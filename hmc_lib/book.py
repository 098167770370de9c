"""Helpers the book's chapters share (display only: nothing here changes a computed number)."""

import numpy as np


def glue(name, value, display=False):
    """myst-nb's `glue`, with NumPy scalars passed on as Python numbers.

    NumPy 2 reprs a scalar as `np.float64(1.5)`, which `{glue:text}` cannot format; `.item()`
    gives the Python number the chapters' format specs expect. Needs `myst_nb` (installed with
    jupyter-book), imported here so that `hmc_lib` itself does not depend on it.
    """
    from myst_nb import glue as _glue
    _glue(name, value.item() if isinstance(value, np.generic) else value, display=display)
