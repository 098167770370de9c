"""hmc_lib.book: the chapters' shared display helpers."""

import numpy as np
import pytest

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


def test_med_range_formats_median_and_range_or_the_one_number():
    assert book.med_range([3.0, 1.0, 2.0]) == "2 (1–3)"
    assert book.med_range([0.12345]) == "0.123"
    assert book.med_range_finite([np.inf, 4.0, np.nan, 2.0], "none") == "3 (2–4)"
    assert book.med_range_finite([np.nan, np.inf], "none") == "none"
    with pytest.raises(ValueError, match="`x`"):
        book.med_range([])
