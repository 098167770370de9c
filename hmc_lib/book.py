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


def med_range(x):
    """'median (min–max)' of a sequence of numbers at 3 significant digits, or the one number
    when there is one (a statistic over training seeds)."""
    x = np.asarray(x, float).ravel()
    if x.size == 0:
        raise ValueError("`x` must hold at least one number")
    if x.size == 1:
        return f"{x[0]:.3g}"
    return f"{np.median(x):.3g} ({x.min():.3g}–{x.max():.3g})"


def med_range_finite(x, none):
    """`med_range` over the finite values of `x`; the string `none` where there are none."""
    x = np.asarray(x, float).ravel()
    return med_range(x[np.isfinite(x)]) if np.isfinite(x).any() else none
