"""Sphinx extension for the hmc-book build (loaded by `_config.yml`, `sphinx: local_extensions`).

1. **Quiet TensorFlow.** Sets ``TF_CPP_MIN_LOG_LEVEL=3`` (unless already set) in the build
   process's environment before any chapter runs; the notebook kernels inherit it. Some
   start-up lines ignore it (absl's "All log messages before absl::InitializeLog()", the
   cuDNN/cuBLAS factory registrations, XLA's service lines): they are written by C++ straight
   to file descriptor 2, which ipykernel copies into the build log. So the kernels of the
   build get an IPython start-up file (``IPYTHONDIR=_build/.ipython``) that points their
   descriptor 2 at ``_build/kernel-stderr.log`` instead: nothing is lost, the log stays
   readable. Python-level stderr (warnings) still reaches the notebook, and `_config.yml`
   removes stderr from the pages; cell errors and tracebacks are reported as usual.

2. **An execution cache that knows the scale.** jupyter-cache, behind
   ``execute_notebooks: cache``, keys a chapter on its code cells only: a chapter executed
   at ``HMC_BOOK_SCALE=ci`` would be reused, unchanged, by a build at ``book`` scale, and a
   change to `hmc_lib` would not re-execute anything. This extension therefore points the
   cache (unless `_config.yml` names one with ``execute: cache:``) at

       _build/.jupyter_cache/<scale>-seed<HMC_BOOK_SEED>-<hash of hmc_lib, its recorded runs and requirements.txt>

   Builds at different scales keep separate caches (switching back is free); a library
   change starts a fresh cache for that scale and seed, and the superseded one is deleted.

3. **The introduction follows the chapters.** Its "results at a glance" table pastes values
   glued by the chapters (``{glue:text}`chapter.md::key```), which Sphinx resolves when it
   writes the page; a chapter re-read (edited or re-executed) therefore marks the
   introduction for re-reading too, so its table never shows a superseded run.

4. **Chapters execute side by side.** myst-nb executes one notebook at a time while Sphinx
   reads the pages, and a chapter keeps about 1.3 cores busy on average. Before the read,
   this extension executes every chapter that is to be read and is not in the cache,
   ``HMC_BOOK_BUILD_JOBS`` at a time (default: one per core, at most 2), each in its own
   kernel in ``book/`` exactly as myst-nb would, and stores the results in the cache, where
   the read finds them. It starts the slowest first (the seconds of the last build at this
   scale, else `SLOWEST_FIRST`) and prints one "executed <chapter> in N s" line per chapter.
   A chapter that fails here is left out of the cache, so myst-nb executes it again and
   reports its error as usual. ``HMC_BOOK_BUILD_JOBS=1`` turns this off.
"""

import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import pathlib
import shutil
import time

from sphinx.util import logging

LOGGER = logging.getLogger(__name__)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def library_hash(root):
    """First 12 hex digits of a SHA-256 over `hmc_lib/**/*.py`, the recorded runs that the
    chapters render (`hmc_lib/**/recorded/*.json`: a new record must re-execute the chapter
    that shows it) and `requirements.txt`."""
    root = pathlib.Path(root)
    digest = hashlib.sha256()
    files = (sorted((root / "hmc_lib").rglob("*.py"))
             + sorted((root / "hmc_lib").rglob("recorded/*.json")) + [root / "requirements.txt"])
    for path in files:
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(b"\0")
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()[:12]


def cache_key(root, environ=os.environ):
    """`<scale>-seed<k>-<library hash>`: what, besides a chapter's code, its outputs depend on."""
    scale = (environ.get("HMC_BOOK_SCALE", "book").strip().lower() or "book")
    seed = environ.get("HMC_BOOK_SEED", "0").strip() or "0"
    return f"{scale}-seed{seed}-{library_hash(root)}"


_STARTUP = """\
# Written by tools/sphinx_hmc_book.py for the book build's kernels: C-level stderr
# (TensorFlow/XLA start-up lines) goes to a log file, not into the build log.
import os as _os

_path = _os.environ.get("HMC_BOOK_KERNEL_STDERR")
if _path:
    _fd = _os.open(_path, _os.O_WRONLY | _os.O_CREAT | _os.O_APPEND, 0o644)
    _os.dup2(_fd, 2)
    _os.close(_fd)
del _os, _path
"""


def _quiet_kernels(build_dir):
    """Kernels started by this build write their descriptor 2 to `kernel-stderr.log`."""
    ipython_dir = build_dir / ".ipython"
    startup = ipython_dir / "profile_default" / "startup" / "00-hmc-book-stderr.py"
    startup.parent.mkdir(parents=True, exist_ok=True)
    if not startup.is_file() or startup.read_text() != _STARTUP:
        startup.write_text(_STARTUP)
    os.environ["IPYTHONDIR"] = str(ipython_dir.resolve())
    os.environ["HMC_BOOK_KERNEL_STDERR"] = str((build_dir / "kernel-stderr.log").resolve())


def _set_cache_path(app, config):
    build_dir = pathlib.Path(app.outdir).parent
    _quiet_kernels(build_dir)
    if config.nb_execution_cache_path:
        return  # named explicitly in _config.yml: respect it
    cache_root = build_dir / ".jupyter_cache"
    key = cache_key(app.srcdir)
    prefix = key.rsplit("-", 1)[0] + "-"
    if cache_root.is_dir():
        for old in cache_root.iterdir():
            if old.is_dir() and old.name.startswith(prefix) and old.name != key:
                shutil.rmtree(old, ignore_errors=True)
    config.nb_execution_cache_path = str((cache_root / key).resolve())
    LOGGER.info(f"hmc-book: execution cache for {key}")


INTRO = "book/intro"


def _intro_follows_chapters(app, env, added, changed, removed):
    """`env-get-outdated`: re-read the introduction whenever a chapter is re-read."""
    chapters = {d for d in (added | changed | removed) if d.startswith("book/") and d != INTRO}
    if chapters and INTRO in env.found_docs and INTRO not in added | changed:
        return [INTRO]
    return []


#: chapters, slowest first at `book` scale (measured alone, 2 cores): the execution order of
#: a build with no timings of its own yet; chapters not listed follow, in name order
SLOWEST_FIRST = ("book/09_compare", "book/03_nnghmc", "book/05_l2hmc_dlgm", "book/02_l2hmc",
                 "book/10_your_model", "book/06b_nnghmc_competitors", "book/08_finance",
                 "book/06_nnghmc_expensive", "book/04_pseudo_marginal", "book/07_hnn",
                 "book/07b_hnn_pm", "book/01_hmc")


def build_jobs(environ=os.environ):
    """How many chapters execute at once: ``HMC_BOOK_BUILD_JOBS``, else one per core, at
    most 2 (each chapter already uses more than one core part of the time)."""
    value = environ.get("HMC_BOOK_BUILD_JOBS", "").strip()
    if not value:
        return max(1, min(2, os.cpu_count() or 1))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"HMC_BOOK_BUILD_JOBS must be a positive integer, got {value!r}")
    return int(value)


def execution_order(docnames, seconds):
    """`docnames` ordered slowest first: by `seconds` (docname -> seconds of the last
    build), then by `SLOWEST_FIRST`, then by name."""
    rank = {d: k for k, d in enumerate(SLOWEST_FIRST)}
    return sorted(docnames, key=lambda d: (-seconds.get(d, -1.0), rank.get(d, len(rank)), d))


def _execute(nb_json, cwd, timeout, allow_errors):
    """Runs in a worker process: executes one notebook (JSON) as myst-nb's cache mode does;
    returns (executed notebook JSON or None, seconds, error text or None)."""
    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution
    nb = nbformat.reads(nb_json, as_version=4)
    result = single_nb_execution(nb, cwd=cwd, timeout=timeout, allow_errors=allow_errors,
                                 meta_override=True)
    if result.err is not None:
        return None, result.time, result.exc_string or repr(result.err)
    return nbformat.writes(nb), result.time, None


def _execute_side_by_side(app, env, docnames):
    """`env-before-read-docs`: executes the notebooks about to be read that the cache lacks,
    `build_jobs()` at a time, and caches them (module docstring, item 4)."""
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    from myst_nb.core.read import create_nb_reader

    nb_config = env.mystnb_config
    jobs = build_jobs()
    if nb_config.execution_mode != "cache" or jobs < 2:
        return
    cache = get_cache(nb_config.execution_cache_path)
    todo = {}
    for doc in docnames:
        path = pathlib.Path(env.doc2path(doc))
        if path.suffix != ".md":
            continue
        text = path.read_text(encoding="utf-8")
        reader = create_nb_reader(str(path), env.myst_config, nb_config, text)
        if reader is None:
            continue
        notebook = reader.read(text)
        try:
            cache.match_cache_notebook(notebook)
            continue                                  # already executed
        except KeyError:
            pass
        todo[doc] = (path, notebook, reader.read_fmt)
    if len(todo) < 2:
        return                                        # nothing to gain: myst-nb runs it
    timings = pathlib.Path(nb_config.execution_cache_path).parent / (
        cache_key(app.srcdir).rsplit("-", 1)[0] + "-seconds.json")
    seconds = json.loads(timings.read_text()) if timings.is_file() else {}
    order = execution_order(todo, seconds)
    LOGGER.info(f"hmc-book: executing {len(order)} chapters, {jobs} at a time")
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = {pool.submit(_execute, nbformat.writes(todo[d][1]), str(todo[d][0].parent),
                               nb_config.execution_timeout, nb_config.execution_allow_errors): d
                   for d in order}
        for future in concurrent.futures.as_completed(futures):
            doc = futures[future]
            path, _, read_fmt = todo[doc]
            executed, took, error = future.result()
            if error is not None:
                LOGGER.warning(f"hmc-book: {doc} failed in {took:.0f} s; it runs again "
                               f"while the book is read, which reports the error")
                continue
            stage = cache.add_nb_to_project(str(path), read_data=read_fmt)
            cache.cache_notebook_bundle(
                CacheBundleIn(nbformat.reads(executed, as_version=4), stage.uri,
                              data={"execution_seconds": took}),
                check_validity=False, overwrite=True)
            seconds[doc] = took
            timings.write_text(json.dumps(seconds, indent=1, sort_keys=True))
            LOGGER.info(f"hmc-book: executed {doc} in {took:.0f} s")
    LOGGER.info(f"hmc-book: {len(order)} chapters executed in "
                f"{time.perf_counter() - start:.0f} s, {jobs} at a time")


def setup(app):
    app.connect("env-get-outdated", _intro_follows_chapters)
    app.connect("env-before-read-docs", _execute_side_by_side)
    # After myst-nb has registered nb_execution_cache_path, before it reads it (builder-inited).
    app.connect("config-inited", _set_cache_path, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
