"""Browser check of the built book: every page, offline, in headless Chromium.

Opens each page `_build/html/**/*.html` in headless Chromium with the network cut off (a
dead proxy and a host resolver that resolves nothing), lets MathJax typeset, and reads back
the rendered DOM. A page fails if

- an equation is left unrendered: a ``.math`` element without MathJax output, raw ``\\(``,
  ``\\[``, ``$$`` or ``\\begin{`` in the text outside code, or a MathJax error node;
- an ``<img>`` is missing or broken: a local file that is absent or not a decodable image,
  a remote address (the book must read offline), or ``naturalWidth == 0`` in the browser;
- a cell output shows an error: a traceback or error output, a stderr block, a Python
  exception line (``ValueError: ...``), TensorFlow/absl log lines or a progress bar;
- the page needs the network: a remote ``<script>``, stylesheet or ``<iframe>``;
- a table or a cell output is wider than the text column (at a 1280-pixel window): the
  reader would have to scroll sideways or would miss its right-hand side.

It prints, per page, the equations rendered, the images OK and the outputs checked, every
problem found, and a total line; exit status 1 if any page failed.

Usage (from the repository root, after ``jupyter-book build .``; needs Debian's
``chromium``, e.g. ``apt-get install -y chromium``)::

    python tools/check_book.py                      # every page of _build/html
    python tools/check_book.py --screenshot _build/shots   # also a PNG per page
    python tools/check_book.py _build/html/book/01_hmc.html

The parsing (`check_dom`) needs no browser; `tests/test_check_book.py` tests it.
"""

import argparse
import base64
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from typing import NamedTuple

from bs4 import BeautifulSoup

ROOT = pathlib.Path(__file__).resolve().parent.parent
MARKER_ID = "hmc-book-check"

# Flags that cut Chromium off the network: every proxied request goes to a closed port,
# and every host name fails to resolve (file:// pages still load).
OFFLINE_FLAGS = [
    "--proxy-server=127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

# Appended to each page: once MathJax has typeset (or at once, if it never loaded), it
# records every image's load state in a <pre id=MARKER_ID> for the DOM dump to carry.
_PROBE = """
<script>
window.addEventListener("load", function () {
  function report() {
    var imgs = Array.prototype.map.call(document.images, function (im) {
      return {src: im.getAttribute("src"), width: im.naturalWidth,
              complete: im.complete};
    });
    var mj = window.MathJax;
    // Tables and cell outputs wider than the text column (laid out at the window's width).
    var column = document.querySelector("article.bd-article") ||
                 document.querySelector("main") || document.body;
    var style = window.getComputedStyle(column);
    var columnWidth = column.clientWidth - parseFloat(style.paddingLeft || 0) -
                      parseFloat(style.paddingRight || 0);
    var wide = [];
    column.querySelectorAll("table, .cell_output").forEach(function (el) {
      var width = Math.max(el.scrollWidth, el.getBoundingClientRect().width);
      if (el.tagName !== "TABLE") {
        el.querySelectorAll("*").forEach(function (c) {
          width = Math.max(width, c.scrollWidth);
        });
      }
      if (width > columnWidth + 2) {
        var cap = el.querySelector("caption");
        var text = (cap ? cap.textContent : el.textContent) || "";
        wide.push({what: el.tagName === "TABLE" ? "table" : "output",
                   width: Math.round(width), text: text.trim().slice(0, 70)});
      }
    });
    var info = {images: imgs, column_width: Math.round(columnWidth), wide: wide,
                mathjax: !!(mj && mj.version), mathjax_version: mj && mj.version || null};
    var pre = document.createElement("pre");
    pre.id = "%s";
    pre.textContent = JSON.stringify(info);
    document.body.appendChild(pre);
  }
  var mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) {
    mj.startup.promise.then(report, report);
  } else {
    report();
  }
});
</script>
""" % MARKER_ID

_RAW_TEX = re.compile(r"\\\(|\\\[|\$\$|\\begin\{")
_EXCEPTION_LINE = re.compile(r"^\s*(?:[\w.]+\.)?[A-Z]\w*(?:Error|Exception):", re.M)
_OUTPUT_PROBLEMS = [
    (re.compile(r"Traceback \(most recent call last\)"), "traceback"),
    (_EXCEPTION_LINE, "exception"),
    (re.compile(r"\bename\b"), "error output (ename)"),
    (re.compile(r"WARNING:(?:tensorflow|absl)|tensorflow/core/|external/local_xla|"
                r"^[IWEF]\d{4} \d\d:\d\d:\d\d", re.M), "TensorFlow/absl log"),
    (re.compile(r"\d+%\|.*\|.*(?:it/s|s/it)|\d+it \["), "progress bar"),
]
_SKIP_TEXT_PARENTS = {"script", "style", "pre", "code", "textarea", "mjx-container",
                      "mjx-assistive-mml", "math", "noscript", "title"}


class PageReport(NamedTuple):
    """What the check found on one page."""
    page: str
    equations: int          # rendered (mjx-container elements)
    images_ok: int
    outputs: int            # cell-output blocks checked
    problems: list          # human-readable strings; empty if the page passed


def _is_remote(url):
    return bool(re.match(r"^(?:[a-z][a-z0-9+.-]*:)?//", url or "", re.I)) and not (
        url.lower().startswith("file:"))


def _check_image_source(src, page_path):
    """A problem string for an image source that is absent or undecodable, else None.

    `page_path` is the page's file (relative sources resolve against its folder); None
    skips the file checks (DOM-only use).
    """
    if not src:
        return "<img> without src"
    if src.startswith("data:"):
        try:
            header, payload = src.split(",", 1)
            data = (base64.b64decode(payload) if ";base64" in header
                    else urllib.parse.unquote(payload).encode())
        except ValueError:
            return "undecodable data: image"
        return None if _decodes(data, header) else "undecodable data: image"
    if _is_remote(src):
        return f"remote image {src} (the book must read offline)"
    if page_path is None:
        return None
    rel = urllib.parse.unquote(urllib.parse.urlsplit(src).path)
    path = (pathlib.Path(page_path).parent / rel).resolve()
    if not path.is_file():
        return f"missing image {src}"
    if not _decodes(path.read_bytes(), path.suffix):
        return f"broken image {src}"
    return None


def _decodes(data, hint=""):
    if "svg" in hint.lower() or data.lstrip()[:5] in (b"<?xml", b"<svg ", b"<svg>"):
        return b"<svg" in data[:2000]
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        return len(data) > 0
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        return True
    except Exception:
        return False


def _text_outside_code(soup):
    for text in soup.find_all(string=True):
        if any(p.name in _SKIP_TEXT_PARENTS for p in text.parents):
            continue
        if any("highlight" in (p.get("class") or []) for p in text.parents):
            continue
        if type(text).__name__ in ("Comment", "Doctype", "Declaration", "Script",
                                   "Stylesheet", "TemplateString"):
            continue
        yield text


def check_dom(html, page_path=None, browser_info=None, name=None):
    """Checks one page's rendered DOM; returns a `PageReport`.

    Args:
      html: the page's HTML after MathJax ran (Chromium's DOM dump), or a static page.
      page_path: the page's file, to resolve and check local images; None skips that.
      browser_info: the probe's record (`{"images": [{"src", "width", "complete"}], ...}`),
        or None when no browser ran (then image load states are not checked).
      name: the page's name in the report.
    """
    soup = BeautifulSoup(html, "html.parser")
    marker = soup.find(id=MARKER_ID)
    if marker is not None:
        marker.decompose()
    problems = []

    # Equations.
    equations = len(soup.find_all("mjx-container"))
    for node in soup.select("mjx-merror, [data-mjx-error], .MathJax_Error"):
        problems.append("MathJax error: "
                        + (node.get("data-mjx-error") or node.get_text(" ", strip=True))[:80])
    for node in soup.select(".math"):
        if node.find("mjx-container") is None and node.name != "mjx-container":
            problems.append("unrendered equation: "
                            + " ".join(node.get_text(" ").split())[:80])
    for text in _text_outside_code(soup):
        if _RAW_TEX.search(text) and not any(
                "math" in (p.get("class") or []) for p in text.parents):
            problems.append("raw TeX in text: " + " ".join(str(text).split())[:80])

    # Images.
    images_ok = 0
    loaded = {}
    if browser_info is not None:
        for rec in browser_info.get("images", []):
            loaded.setdefault(rec.get("src"), []).append(rec)
    for img in soup.find_all("img"):
        src = img.get("src")
        problem = _check_image_source(src, page_path)
        if problem is None and browser_info is not None:
            recs = loaded.get(src) or []
            if not recs or not all(r.get("complete") and r.get("width", 0) > 0 for r in recs):
                problem = f"image not displayed by the browser (naturalWidth 0): {src}"
        if problem:
            problems.append(problem)
        else:
            images_ok += 1

    # Cell outputs.
    outputs = soup.select(".cell_output")
    for block in soup.select(".cell_output .traceback, .cell_output .error, "
                             ".output.traceback, .output.error"):
        problems.append("error output: " + block.get_text(" ", strip=True)[:80])
    for block in soup.select(".output.stderr, .cell_output .stderr"):
        problems.append("stderr output: " + block.get_text(" ", strip=True)[:80])
    for out in outputs:
        text = out.get_text("\n")
        for pattern, what in _OUTPUT_PROBLEMS:
            match = pattern.search(text)
            if match:
                line = text[match.start():].splitlines()[0] if text[match.start():] else ""
                problems.append(f"{what} in a cell output: {line.strip()[:80]}")

    # Width: the probe measured, in the browser, what overflows the text column.
    if browser_info is not None:
        column = browser_info.get("column_width")
        for rec in browser_info.get("wide", []):
            problems.append(f"{rec['what']} wider than the text column ({rec['width']} px > "
                            f"{column} px): {' '.join(str(rec.get('text', '')).split())[:60]}")

    # Network.
    for tag, attr in (("script", "src"), ("iframe", "src")):
        for node in soup.find_all(tag):
            if _is_remote(node.get(attr)):
                problems.append(f"remote {tag}: {node.get(attr)}")
    for node in soup.find_all("link"):
        if "stylesheet" in (node.get("rel") or []) and _is_remote(node.get("href")):
            problems.append(f"remote stylesheet: {node.get('href')}")

    return PageReport(name or str(page_path or "<page>"), equations, images_ok,
                      len(outputs), problems)


def redirect_target(page):
    """The local target of a page that only redirects (``<meta http-equiv=refresh>``)."""
    soup = BeautifulSoup(pathlib.Path(page).read_text(encoding="utf-8", errors="replace"),
                         "html.parser")
    meta = soup.find("meta", attrs={"http-equiv": re.compile("^refresh$", re.I)})
    if meta is None or soup.body is not None and soup.body.get_text(strip=True):
        return None
    match = re.search(r"url=([^;]+)", meta.get("content", ""), re.I)
    return urllib.parse.urlsplit(match.group(1).strip()).path if match else None


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium_cmd(chromium, profile):
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            "--allow-file-access-from-files", *OFFLINE_FLAGS]


def render(page, chromium, budget_ms=20000, screenshot=None):
    """(DOM after MathJax, probe record or None) for one page, offline."""
    page = pathlib.Path(page).resolve()
    with tempfile.TemporaryDirectory(prefix="check_book_") as tmp:
        html = page.read_text(encoding="utf-8", errors="replace")
        base = f'<base href="{page.parent.as_uri()}/">'
        html = re.sub(r"(<head[^>]*>)", lambda m: m.group(1) + base, html, count=1,
                      flags=re.I)
        html = re.sub(r"</body>", lambda m: _PROBE + m.group(0), html, count=1, flags=re.I) \
            if re.search(r"</body>", html, re.I) else html + _PROBE
        probe_page = pathlib.Path(tmp) / page.name
        probe_page.write_text(html, encoding="utf-8")
        cmd = _chromium_cmd(chromium, pathlib.Path(tmp) / "profile")
        # A tall window: every image is in view, so none is left unloaded as "lazy"; 1280
        # pixels wide, a common laptop, at which the text column is measured.
        run = subprocess.run(
            [*cmd, "--window-size=1280,20000", f"--virtual-time-budget={budget_ms}",
             "--run-all-compositor-stages-before-draw", "--dump-dom",
             probe_page.as_uri()],
            capture_output=True, text=True, timeout=180)
        dom = run.stdout
        if screenshot is not None:
            subprocess.run(
                [*cmd, "--window-size=1280,2400", f"--virtual-time-budget={budget_ms}",
                 "--hide-scrollbars", f"--screenshot={pathlib.Path(screenshot).resolve()}",
                 probe_page.as_uri()],
                capture_output=True, text=True, timeout=180)
    info = None
    match = re.search(r'<pre id="%s"[^>]*>(.*?)</pre>' % MARKER_ID, dom, re.S)
    if match:
        import html as html_lib
        info = json.loads(html_lib.unescape(match.group(1)))
    return dom, info


def pages_of(build):
    build = pathlib.Path(build)
    return sorted(p for p in build.rglob("*.html")
                  if not {"_static", "_sources", "_images"} & set(p.relative_to(build).parts))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pages", nargs="*", help="pages to check (default: every page "
                        "of --build)")
    parser.add_argument("--build", default=str(ROOT / "_build" / "html"),
                        help="the built HTML folder (default: _build/html)")
    parser.add_argument("--screenshot", metavar="DIR",
                        help="also save a PNG of each page's first 1280x2400 pixels in DIR")
    parser.add_argument("--budget-ms", type=int, default=20000,
                        help="virtual time each page gets to load and typeset (ms)")
    parser.add_argument("--max-problems", type=int, default=10,
                        help="problems listed per page (default 10; all are counted)")
    args = parser.parse_args(argv)

    chromium = find_chromium()
    if chromium is None:
        print("check_book: chromium not found (Debian: apt-get install -y chromium)",
              file=sys.stderr)
        return 2
    build = pathlib.Path(args.build)
    pages = [pathlib.Path(p) for p in args.pages] or pages_of(build)
    if not pages:
        print(f"check_book: no pages under {build} (build the book first)", file=sys.stderr)
        return 2
    shots = pathlib.Path(args.screenshot) if args.screenshot else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)

    totals = [0, 0, 0]
    failed = []
    for page in pages:
        try:
            name = str(page.resolve().relative_to(build.resolve()))
        except ValueError:
            name = str(page)
        target = redirect_target(page)
        if target is not None:
            ok = (page.parent / target).is_file()
            print(f"{'ok' if ok else 'FAIL':4}  {name}: redirects to {target}"
                  + ("" if ok else " (missing)"), flush=True)
            if not ok:
                failed.append(name)
            continue
        shot = shots / (name.replace(os.sep, "_").removesuffix(".html") + ".png") \
            if shots else None
        dom, info = render(page, chromium, args.budget_ms, shot)
        report = check_dom(dom, page, info, name)
        problems = list(report.problems)
        if info is None:
            problems.insert(0, "page did not finish loading in the browser")
        status = "FAIL" if problems else "ok"
        print(f"{status:4}  {name}: {report.equations} equations rendered, "
              f"{report.images_ok} images OK, {report.outputs} outputs checked", flush=True)
        for problem in problems[:args.max_problems]:
            print(f"        - {problem}")
        if len(problems) > args.max_problems:
            print(f"        ... and {len(problems) - args.max_problems} more problems")
        totals = [totals[0] + report.equations, totals[1] + report.images_ok,
                  totals[2] + report.outputs]
        if problems:
            failed.append(name)
    print(f"total: {len(pages)} pages, {totals[0]} equations rendered, {totals[1]} images "
          f"OK, {totals[2]} outputs checked, {len(failed)} pages failed"
          + (f" ({', '.join(failed)})" if failed else ""))
    if shots:
        print(f"screenshots in {shots}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
