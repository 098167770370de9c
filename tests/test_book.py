"""hmc_lib.book: the chapters' shared display helpers."""

import numpy as np

from hmc_lib import book


def test_glue_passes_numpy_scalars_on_as_python_numbers(monkeypatch):
    import myst_nb
    seen = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: seen.append((name, value)))
    book.glue("a", np.float64(1.5))
    book.glue("b", np.int64(3))
    book.glue("c", "text")
    assert seen == [("a", 1.5), ("b", 3), ("c", "text")]
    assert type(seen[0][1]) is float and type(seen[1][1]) is int
