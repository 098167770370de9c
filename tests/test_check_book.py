"""tools/check_book.py: the DOM checks on tiny pages (no browser), and one offline page in
headless Chromium when it is installed."""

import base64
import importlib.util
import pathlib
import shutil
import struct
import zlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_book", ROOT / "tools" / "check_book.py")
check_book = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_book)


def _png(width=2, height=2):
    """A valid RGB PNG, built by hand."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    raw = b"".join(b"\0" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


RENDERED = """<html><head><script>window.MathJax = {tex: {macros: {E: "\\\\mathbb{E}"}}}
</script></head><body><div class="document">
<p>Energy <span class="math notranslate nohighlight"><mjx-container class="MathJax">
<mjx-math></mjx-math></mjx-container></span> is conserved.</p>
<pre>code with \\( and $$ is fine</pre>
<div class="cell_output docutils container"><div class="output text_plain">
<pre>   energy error  0.01</pre></div></div>
<img src="fig.png" alt="a figure">
</div></body></html>"""


def test_a_good_page_passes(tmp_path):
    (tmp_path / "fig.png").write_bytes(_png())
    page = tmp_path / "page.html"
    page.write_text(RENDERED)
    report = check_book.check_dom(RENDERED, page)
    assert report.problems == []
    assert (report.equations, report.images_ok, report.outputs) == (1, 1, 1)


def test_a_broken_page_fails(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    html = """<html><body><div class="document">
    <p>Raw \\(x\\) left in text, and <span class="math notranslate nohighlight">\\[y\\]</span>.</p>
    <mjx-container><mjx-merror data-mjx-error="Undefined control sequence \\foo">
    </mjx-merror></mjx-container>
    <img src="missing.png"><img src="broken.png"><img src="https://example.org/x.png">
    <div class="cell_output"><div class="output traceback"><pre>boom</pre></div></div>
    <div class="cell_output"><div class="output stream"><pre>Traceback (most recent call last):
    ValueError: `step_size` must be positive</pre></div></div>
    <div class="cell_output"><div class="output stream"><pre>sampling:  40%|####  | 4/10 [00:01<00:02, 3.1it/s]</pre></div></div>
    <div class="cell_output"><div class="output stderr"><pre>E0000 00:00:1 cuda_dnn.cc] x</pre></div></div>
    <script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>
    </div></body></html>"""
    page = tmp_path / "page.html"
    report = check_book.check_dom(html, page)
    text = "\n".join(report.problems)
    for expected in ["raw TeX in text", "unrendered equation", "MathJax error",
                     "missing image missing.png", "broken image broken.png", "remote image",
                     "error output", "traceback in a cell output", "exception in a cell output",
                     "progress bar", "stderr output", "remote script"]:
        assert expected in text, (expected, text)
    assert report.images_ok == 0


def test_data_images_and_browser_state():
    good = "data:image/png;base64," + base64.b64encode(_png()).decode()
    html = f'<html><body><img src="{good}"><img src="data:image/png;base64,AAAA"></body></html>'
    report = check_book.check_dom(html, None, {"images": [{"src": good, "width": 2,
                                                           "complete": True}]})
    assert report.images_ok == 1 and len(report.problems) == 1
    assert "undecodable" in report.problems[0]
    # The browser could not display an image whose file looked fine: naturalWidth 0.
    report = check_book.check_dom(f'<img src="{good}">', None,
                                  {"images": [{"src": good, "width": 0, "complete": True}]})
    assert "naturalWidth 0" in report.problems[0]


@pytest.mark.skipif(check_book.find_chromium() is None, reason="chromium not installed")
def test_offline_page_in_chromium(tmp_path):
    """A page whose MathJax comes from a CDN leaves its TeX raw offline; a missing image
    fails in the browser too."""
    (tmp_path / "fig.png").write_bytes(_png())
    page = tmp_path / "page.html"
    page.write_text("""<html><head>
    <script defer src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>
    </head><body><p class="math">\\(x^2\\)</p><img src="fig.png"><img src="gone.png">
    </body></html>""")
    dom, info = check_book.render(page, check_book.find_chromium(), budget_ms=3000)
    assert info is not None, dom[-500:]
    report = check_book.check_dom(dom, page, info)
    text = "\n".join(report.problems)
    assert "unrendered equation" in text and "missing image gone.png" in text
    assert "remote script" in text
    assert report.images_ok == 1 and report.equations == 0


def test_redirect_pages(tmp_path):
    page = tmp_path / "index.html"
    page.write_text('<meta http-equiv="Refresh" content="0; url=book/intro.html" />')
    assert check_book.redirect_target(page) == "book/intro.html"
    page.write_text("<html><body><p>text</p></body></html>")
    assert check_book.redirect_target(page) is None


def test_tables_and_outputs_wider_than_the_column_fail():
    info = {"images": [], "column_width": 740,
            "wide": [{"what": "table", "width": 1173, "text": "Every method on every target"}]}
    report = check_book.check_dom(RENDERED.replace('<img src="fig.png" alt="a figure">', ""),
                                  None, info)
    assert len(report.problems) == 1
    assert "table wider than the text column (1173 px > 740 px)" in report.problems[0]
    ok = check_book.check_dom(RENDERED.replace('<img src="fig.png" alt="a figure">', ""),
                              None, {"images": [], "column_width": 740, "wide": []})
    assert ok.problems == []


@pytest.mark.skipif(check_book.find_chromium() is None, reason="chromium not installed")
def test_chromium_measures_tables_wider_than_the_column(tmp_path):
    cells = "".join(f"<td>column number {i}</td>" for i in range(30))
    page = tmp_path / "page.html"
    page.write_text(f"""<html><body><article class="bd-article" style="width: 740px">
    <table><caption>too wide</caption><tr>{cells}</tr></table>
    <table><tr><td>narrow</td></tr></table>
    <div class="cell_output"><pre>{"x" * 400}</pre></div>
    </article></body></html>""")
    dom, info = check_book.render(page, check_book.find_chromium(), budget_ms=2000)
    assert info is not None and info["column_width"] == 740
    assert [w["what"] for w in info["wide"]] == ["table", "output"]
    assert info["wide"][0]["text"] == "too wide"
