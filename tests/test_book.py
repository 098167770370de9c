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
    assert book.med_range([0.12345, 2.345, 1.0], digits=2) == "1 (0.12–2.3)"
    assert book.med_range([0.12345], digits=2) == "0.12"
    with pytest.raises(ValueError, match="`digits`"):
        book.med_range([1.0], digits=0)


def test_words_reprs_as_its_text():
    assert repr(book.Words("the short end")) == "the short end"


import pathlib
import re


def test_verdicts_draw_only_on_converged_cells(monkeypatch):
    import myst_nb
    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: glued.update({name: value}))
    calls = []
    say = lambda: calls.append(1) or "A beats B"
    assert book.glue_verdict("x-verdict", [True, {"converged": True}], say) == "A beats B"
    gate_no = type("G", (), {"converged": False})()
    text = book.glue_verdict("y-verdict", [True, gate_no], say)
    assert text.startswith("no verdict: 1 of 2") and len(calls) == 1   # `say` not called
    assert glued == {"x-verdict": "A beats B", "y-verdict": text}
    assert book.verdict([False], say, otherwise="unconverged") == "unconverged"
    with pytest.raises(ValueError, match="cells"):
        book.verdict([], say)
    with pytest.raises(book.UnconvergedVerdict, match="ratio"):
        book.require_converged([True, False], "ratio")
    book.require_converged([True], "ratio")


def test_gated_table_marks_unconverged_rows_and_columns():
    import pandas as pd
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}, index=["x", "y"])
    html = book.gated_table(frame, [True, False]).to_html()
    assert f"y {book.UNCONVERGED_MARK}" in html and f"x {book.UNCONVERGED_MARK}" not in html
    assert "italic" in html
    html = book.gated_table(frame, [False, True], axis=1).to_html()
    assert f"a {book.UNCONVERGED_MARK}" in html
    with pytest.raises(ValueError, match="converged"):
        book.gated_table(frame, [True])
    assert "R̂ > 1.01" in book.gate_note()
    cols = book.gate_columns({"rhat_max": 1.2, "ess_bulk_min": 5.0, "ess_tail_min": 4.0,
                              "converged": False})
    assert cols["converged"] == f"no {book.UNCONVERGED_MARK}" and cols["R̂"] == 1.2


def test_every_glued_verdict_in_the_chapters_goes_through_the_gate():
    """A glued name ending in '-verdict' is a sentence that compares; it must be glued by
    `glue_verdict`, which draws only on converged cells."""
    chapters = sorted((pathlib.Path(__file__).parent.parent / "book").glob("*.md"))
    plain = re.compile(r"""(?<![\w.])glue\(\s*f?["']([^"']*-verdict)["']""")
    offenders = [(p.name, m.group(1)) for p in chapters
                 for m in plain.finditer(p.read_text(encoding="utf-8"))]
    assert not offenders, f"verdicts glued without the gate: {offenders}"


def test_nothing_cites_a_file_outside_this_repository():
    """Docstrings and chapters cite the papers and the book's chapters, never the project's
    private spec (`PAPERS.md`, which a reader of the repository does not have)."""
    root = pathlib.Path(__file__).parent.parent
    files = [*root.glob("hmc_lib/**/*.py"), *root.glob("book/*.md"), *root.glob("tools/*.py")]
    offenders = [str(p.relative_to(root)) for p in files
                 if "PAPERS" + ".md" in p.read_text(encoding="utf-8")]
    assert not offenders, f"cite PAPERS.md: {offenders}"


def test_the_api_reference_covers_every_public_name_of_hmc_lib():
    """book/api.md renders hmc_lib's top-level names and every public package; each name in
    `hmc_lib.__all__` is documented there, directly or through its package's `__all__`."""
    import importlib
    import hmc_lib
    api = (pathlib.Path(__file__).parent.parent / "book" / "api.md").read_text(encoding="utf-8")
    modules = re.findall(r"\.\. automodule:: (\S+)", api)
    direct = set(re.findall(r"\.\. auto(?:function|class):: hmc_lib\.(\w+)", api))
    via_packages = {n for m in modules for n in getattr(importlib.import_module(m), "__all__", [])}
    submodules = {"diagnostics", "integrators", "scale", "targets", "__version__"}
    missing = [n for n in hmc_lib.__all__
               if n not in submodules and n not in direct and n not in via_packages]
    assert not missing, f"not in the API reference: {missing}"
    for name in ("diagnostics", "integrators", "scale", "targets"):
        assert f"hmc_lib.{name}" in modules, name
    for package in ("l2hmc", "nnghmc", "pm", "hnn", "dlgm", "records", "book", "properties"):
        assert f"hmc_lib.{package}" in modules, package


def test_cross_document_glue_names_its_format():
    """myst-nb reads `{glue:text}` as `path::key:format` and splits the format at the last
    colon, so `ch.md::key` without a format looks up the key 'ch.md:' and the build fails:
    every cross-document reference ends in a format (`:s` for text)."""
    root = pathlib.Path(__file__).parent.parent
    refs = [m.group(1) for p in root.glob("book/*.md")
            for m in re.finditer(r"\{glue:text\}`([^`]*::[^`]*)`", p.read_text(encoding="utf-8"))]
    assert refs, "the introduction's results at a glance paste from the chapters"
    bad = [r for r in refs if ":" not in r.split("::", 1)[1]]
    assert not bad, f"cross-document glue without a format: {bad[:3]}"


def _build_extension():
    import importlib.util
    path = pathlib.Path(__file__).parent.parent / "tools" / "sphinx_hmc_book.py"
    spec = importlib.util.spec_from_file_location("sphinx_hmc_book", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chapters_execute_slowest_first_and_jobs_are_checked():
    """The build executes chapters side by side (`tools/sphinx_hmc_book.py`, item 4): the
    last build's seconds order them, then the fixed list, then the name; every chapter of
    `_toc.yml` is in that list; a bad HMC_BOOK_BUILD_JOBS is named."""
    ext = _build_extension()
    docs = ["book/01_hmc", "book/09_compare", "book/zz_new", "book/02_l2hmc"]
    assert ext.execution_order(docs, {}) == ["book/09_compare", "book/02_l2hmc",
                                             "book/01_hmc", "book/zz_new"]
    assert ext.execution_order(docs, {"book/01_hmc": 500.0})[0] == "book/01_hmc"
    toc = (pathlib.Path(__file__).parent.parent / "_toc.yml").read_text()
    chapters = set(re.findall(r"file: (book/\d\w*)", toc))
    assert chapters <= set(ext.SLOWEST_FIRST), chapters - set(ext.SLOWEST_FIRST)
    assert ext.build_jobs({"HMC_BOOK_BUILD_JOBS": "3"}) == 3
    assert 1 <= ext.build_jobs({}) <= 2
    for bad in ("0", "two", "-1"):
        with pytest.raises(ValueError, match="HMC_BOOK_BUILD_JOBS"):
            ext.build_jobs({"HMC_BOOK_BUILD_JOBS": bad})


def test_the_build_cache_key_follows_the_library_and_its_recorded_runs(tmp_path):
    """A chapter's cached outputs are keyed on `hmc_lib`'s code and on the recorded runs it
    renders: changing either gives a new key (else a new record would not be shown)."""
    ext = _build_extension()
    (tmp_path / "hmc_lib" / "pm" / "recorded").mkdir(parents=True)
    (tmp_path / "requirements.txt").write_text("numpy==2.0.2\n")
    (tmp_path / "hmc_lib" / "__init__.py").write_text("x = 1\n")
    record = tmp_path / "hmc_lib" / "pm" / "recorded" / "run.json"
    record.write_text('{"rows": []}')
    keys = [ext.cache_key(tmp_path, {"HMC_BOOK_SCALE": "book"})]
    record.write_text('{"rows": [1]}')
    keys.append(ext.cache_key(tmp_path, {"HMC_BOOK_SCALE": "book"}))
    (tmp_path / "hmc_lib" / "__init__.py").write_text("x = 2\n")
    keys.append(ext.cache_key(tmp_path, {"HMC_BOOK_SCALE": "book"}))
    assert len(set(keys)) == 3 and all(k.startswith("book-seed0-") for k in keys)
    assert ext.cache_key(tmp_path, {"HMC_BOOK_SCALE": "ci"}).startswith("ci-seed0-")
