"""Benchmarks: `python -m hmc_lib.bench NAME [--scale S] [--json]`.

Each module `hmc_lib/bench/NAME.py` (other than this package's helpers) is one benchmark: it
defines `run(scale) -> list[dict]`, one dict per method and target, built with `row(...)`.
Nothing in the library imports this package.
"""

import importlib
import pkgutil

from hmc_lib import diagnostics

#: keys of every benchmark row, in print order
FIELDS = ("method", "target", "ess_min", "ess_median", "ess_per_grad", "ess_per_second",
          "acceptance", "grad_evals", "seconds", "train_seconds", "paper")

_NOT_BENCHMARKS = {"__main__"}


def available():
    """Names of the benchmarks (modules of this package)."""
    import hmc_lib.bench as pkg
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)
                  if m.name not in _NOT_BENCHMARKS and not m.name.startswith("_"))


#: measured wall clock of each benchmark per scale, on 2 cores (shown by `--help`); a
#: benchmark missing here has not been timed
DURATIONS = {}


def _module(name):
    if name not in available():
        raise ValueError(f"unknown benchmark {name!r}; available: {', '.join(available())}")
    return importlib.import_module(f"hmc_lib.bench.{name}")


def _doc(name):
    import ast
    import pathlib
    import hmc_lib.bench as pkg
    path = pathlib.Path(pkg.__path__[0]) / f"{name}.py"
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""


def summary(name):
    """The first sentence of benchmark `name`'s docstring (read without importing it)."""
    first = " ".join(_doc(name).split("\n\n")[0].split())
    for prefix in (f"Benchmark `{name}`: ", "Benchmark: "):
        first = first.removeprefix(prefix)
    return first[:80] + ("…" if len(first) > 80 else "")


def describe(name):
    """What benchmark `name` runs (its docstring) and how long it takes at each scale."""
    times = DURATIONS.get(name)
    when = ("Measured wall clock on 2 cores: " + "; ".join(
        f"{s} {times[s]}" for s in ("ci", "book", "paper") if s in times)
        if times else "Wall clock: not measured yet.")
    return _doc(name) + "\n\n" + when


def run(name, scale):
    """Runs benchmark `name` at `scale`; returns its rows."""
    rows = _module(name).run(scale)
    for r in rows:
        missing = [f for f in FIELDS if f not in r]
        if missing:
            raise RuntimeError(f"benchmark {name!r} row lacks {missing}")
        r.setdefault("scale", scale)
    return rows


def row(method, target, samples, trace, train_seconds=0.0, paper=None, **extra):
    """One benchmark row from a run of `hmc_lib.sample` (`samples` `[draws, chains, dim]`).

    `paper`: the published figures for this method and target (a dict), or None.
    `extra`: further keys (e.g. `step_size`, `per_step_ms`).
    """
    s = diagnostics.summary(samples, trace)
    out = dict(method=method, target=target, ess_min=s["ess_min"], ess_median=s["ess_median"],
               ess_per_grad=s["ess_per_grad"], ess_per_second=s["ess_per_second"],
               acceptance=s["acceptance"], grad_evals=s["grad_evals"], seconds=s["seconds"],
               train_seconds=float(train_seconds), paper=paper)
    out.update(extra)
    return out
