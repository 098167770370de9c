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

       _build/.jupyter_cache/<scale>-seed<HMC_BOOK_SEED>-<hash of hmc_lib and requirements.txt>

   Builds at different scales keep separate caches (switching back is free); a library
   change starts a fresh cache for that scale and seed, and the superseded one is deleted.

3. **The introduction follows the chapters.** Its "results at a glance" table pastes values
   glued by the chapters (``{glue:text}`chapter.md::key```), which Sphinx resolves when it
   writes the page; a chapter re-read (edited or re-executed) therefore marks the
   introduction for re-reading too, so its table never shows a superseded run.
"""

import hashlib
import os
import pathlib
import shutil

from sphinx.util import logging

LOGGER = logging.getLogger(__name__)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def library_hash(root):
    """First 12 hex digits of a SHA-256 over `hmc_lib/**/*.py` and `requirements.txt`."""
    root = pathlib.Path(root)
    digest = hashlib.sha256()
    files = sorted((root / "hmc_lib").rglob("*.py")) + [root / "requirements.txt"]
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


def setup(app):
    app.connect("env-get-outdated", _intro_follows_chapters)
    # After myst-nb has registered nb_execution_cache_path, before it reads it (builder-inited).
    app.connect("config-inited", _set_cache_path, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
