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


class Words:
    """A phrase glued into the prose as it is: `{glue:text}` shows a value's repr, which for
    a `str` carries quotes; this one's repr is the text."""

    def __init__(self, text):
        self.text = str(text)

    def __repr__(self):
        return self.text


def med_range(x, digits=3):
    """'median (min–max)' of a sequence of numbers at `digits` significant digits, or the one
    number when there is one (a statistic over training seeds)."""
    x = np.asarray(x, float).ravel()
    if x.size == 0:
        raise ValueError("`x` must hold at least one number")
    if int(digits) < 1:
        raise ValueError(f"`digits` must be >= 1, got {digits}")
    f = lambda v: f"{v:.{int(digits)}g}"
    if x.size == 1:
        return f(x[0])
    return f"{f(np.median(x))} ({f(x.min())}–{f(x.max())})"


def med_range_finite(x, none):
    """`med_range` over the finite values of `x`; the string `none` where there are none."""
    x = np.asarray(x, float).ravel()
    return med_range(x[np.isfinite(x)]) if np.isfinite(x).any() else none


# ------------------------------------------------------------------ the convergence gate on the page

#: the mark of a table cell (row or column) whose chains did not pass the convergence gate
UNCONVERGED_MARK = "†"


def gate_note():
    """The caption sentence that explains `UNCONVERGED_MARK`."""
    from hmc_lib import diagnostics
    return (f"{UNCONVERGED_MARK}: not converged (R̂ > {diagnostics.RHAT_MAX} or bulk or tail "
            f"ESS < {diagnostics.ESS_MIN:.0f}); shown, but no verdict uses it.")


def is_converged(cell):
    """Whether a cell passed the gate: `cell` is a `diagnostics.Convergence`, a dict or
    record with a `converged` entry, or a bool."""
    if isinstance(cell, (bool, np.bool_)):
        return bool(cell)
    if isinstance(cell, dict):
        return bool(cell["converged"])
    return bool(getattr(cell, "converged"))


def gate_columns(gate):
    """Table columns for one cell's gate reading (a `diagnostics.Convergence` or a dict with
    its fields): `R̂`, `ESS bulk`, `ESS tail`, `converged`."""
    get = (lambda k: gate[k]) if isinstance(gate, dict) else (lambda k: getattr(gate, k))
    return {"R̂": get("rhat_max"), "ESS bulk": get("ess_bulk_min"),
            "ESS tail": get("ess_tail_min"),
            "converged": "yes" if get("converged") else f"no {UNCONVERGED_MARK}"}


def gated_table(frame, converged, axis=0):
    """A pandas `Styler` of `frame` with the cells that did not pass the gate marked: their
    labels (index for `axis=0`, columns for `axis=1`) get `UNCONVERGED_MARK` and their
    values are greyed. `converged`: one bool per row (or column), in order. Add
    `gate_note()` to the caption."""
    converged = [bool(c) for c in converged]
    n = frame.shape[axis]
    if len(converged) != n:
        raise ValueError(f"`converged` needs {n} entries (one per "
                         f"{'row' if axis == 0 else 'column'}), got {len(converged)}")
    frame = frame.copy()
    labels = [f"{lab} {UNCONVERGED_MARK}" if not ok else lab
              for lab, ok in zip(frame.axes[axis], converged)]
    if axis == 0:
        frame.index = labels
    else:
        frame.columns = labels
    grey = "color: #6b6b6b; font-style: italic"

    def style(part):
        ok = converged[list(frame.axes[axis]).index(part.name)]
        return ["" if ok else grey] * len(part)

    return frame.style.apply(style, axis=1 - axis)


class UnconvergedVerdict(ValueError):
    """A verdict was asked to draw on a cell that did not pass the convergence gate."""


def verdict(cells, say, otherwise=None):
    """The text of a verdict that may draw only on converged cells.

    Args:
      cells: the cells (see `is_converged`) the verdict compares.
      say: `() -> str`, the verdict, called only when every cell converged.
      otherwise: the text when some did not (default: 'no verdict: k of n cells did not
        pass the convergence gate at this scale').
    """
    cells = list(cells)
    if not cells:
        raise ValueError("`cells` is empty: a verdict must name the cells it draws on")
    bad = sum(not is_converged(c) for c in cells)
    if bad:
        return otherwise if otherwise is not None else (
            f"no verdict: {bad} of {len(cells)} cells did not pass the convergence gate at "
            "this scale")
    return say()


def glue_verdict(name, cells, say, otherwise=None):
    """`glue(name, verdict(cells, say, otherwise))`: the only way the chapters glue a
    sentence that compares (the test suite checks that every glued `*-verdict` goes
    through here). Returns the text."""
    text = verdict(cells, say, otherwise)
    glue(name, text)
    return text


def require_converged(cells, what):
    """Raises `UnconvergedVerdict` naming `what` unless every cell converged: for a hidden
    assertion or a number that must not be computed from noise."""
    cells = list(cells)
    bad = [i for i, c in enumerate(cells) if not is_converged(c)]
    if bad:
        raise UnconvergedVerdict(f"{what}: cells {bad} of {len(cells)} did not pass the "
                                 "convergence gate")


def glue_glance(key, claim, paper, ours_book, ours_long, converged, cells, say,
                otherwise=None, long_converged=None):
    """Glues one row of the introduction's "results at a glance" table, from a chapter.

    Each chapter calls this for its headline results; the introduction pastes the values
    (`{glue:text}` from the chapter's notebook). Glued names: `glance-<key>-claim` (what
    is measured, a few words), `-paper` (the paper's number, as text), `-book` (ours at
    `book` scale: 'median (range)' over seeds where there are seeds), `-long` (ours from
    the recorded paper-size run, or 'not recorded'), `-gate` ('converged' or 'not
    converged') and `-verdict` (one line, through `glue_verdict(cells, say, otherwise)`).
    Args `paper`, `ours_book`, `ours_long` are strings; `converged` a bool for the `book`
    cell(s) the row shows; `long_converged` (optional) the same for the recorded cells:
    False marks `ours_long` with `UNCONVERGED_MARK`.
    """
    if long_converged is False and isinstance(ours_long, str):
        ours_long = f"{ours_long} {UNCONVERGED_MARK}"
    for part, value in (("claim", claim), ("paper", paper), ("book", ours_book),
                        ("long", ours_long)):
        if not isinstance(value, str):
            raise TypeError(f"`{part if part != 'book' else 'ours_book'}` must be a str, "
                            f"got {type(value).__name__}")
        glue(f"glance-{key}-{part}", value)
    glue(f"glance-{key}-gate", "converged" if converged else f"not converged {UNCONVERGED_MARK}")
    return glue_verdict(f"glance-{key}-verdict", cells, say, otherwise)
