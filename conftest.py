"""pytest setup: chapters run at `ci` scale, and every jupytext chapter `book/*.md` is run
by nbval (lax: errors and failed assertions fail, outputs are not compared). The MyST source
is converted in memory by jupytext, so no `.ipynb` is ever written or committed."""

import os
import pathlib

os.environ.setdefault("HMC_BOOK_SCALE", "ci")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")


def _threads_per_worker():
    """TensorFlow threads for one pytest-xdist worker: the cores shared among the workers.

    Every worker, the chapters' kernels it starts and the processes those start inherit
    this, so N workers on N cores run N busy threads, not N times TensorFlow's default of
    one per core: oversubscribed, TensorFlow's thread pools spin and wait (a test that takes
    8 s alone took 59 s in the suite)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, (os.cpu_count() or 1) // max(1, workers))


if "PYTEST_XDIST_WORKER" in os.environ:   # set before any test imports TensorFlow
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(_threads_per_worker()))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", str(_threads_per_worker()))

ROOT = pathlib.Path(__file__).parent


def _is_chapter(path):
    if path.suffix != ".md" or path.parent != ROOT / "book":
        return False
    head = path.read_text(encoding="utf-8")[:600]
    return "jupytext" in head and "kernelspec" in head


def pytest_collect_file(parent, file_path):
    if not _is_chapter(file_path):
        return None
    from nbval.plugin import IPyNbFile

    class JupytextChapter(IPyNbFile):
        """nbval's notebook file, reading the notebook from a jupytext MyST source."""

        def collect(self):
            import jupytext
            import nbval.plugin as nbval_plugin

            original = nbval_plugin.nbformat.read
            nbval_plugin.nbformat.read = lambda path, as_version: jupytext.read(path)
            try:
                yield from super().collect()
            finally:
                nbval_plugin.nbformat.read = original

    return JupytextChapter.from_parent(parent, path=file_path)
