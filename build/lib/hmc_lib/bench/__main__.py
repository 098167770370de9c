"""Command line of the benchmarks.

    python -m hmc_lib.bench                     # list the benchmarks
    python -m hmc_lib.bench NAME --help         # what NAME runs, and how long it takes
    python -m hmc_lib.bench NAME [--scale S]    # a table of its main measures (100 columns)
    python -m hmc_lib.bench NAME --json         # every field of every row, as one JSON list

While a benchmark runs, the elapsed time shows on stderr (a tqdm bar without a total); the
table or JSON goes to stdout.
"""

import argparse
import json
import sys
import textwrap
import threading
import time

from hmc_lib import bench, scale as scale_mod

#: columns of the default table: (row key, heading, width, format)
COLUMNS = (("method", "method", 18, "s"), ("target", "target", 14, "s"),
           ("ess_min", "ESS min", 8, ".4g"), ("ess_per_grad", "ESS/grad", 9, ".3g"),
           ("ess_per_second", "ESS/s", 9, ".4g"), ("acceptance", "accept", 6, ".2f"),
           ("seconds", "sample s", 8, ".3g"), ("train_seconds", "train s", 7, ".3g"))


def _cell(value, width, spec):
    if value is None or value == "":
        text = "-"
    elif isinstance(value, (int, float)) and spec != "s":
        text = format(float(value), spec)
    else:
        text = str(value)
    return text if len(text) <= width else text[:width - 1] + "…"


def table(rows):
    """The default table: `COLUMNS` only, each row at most 100 characters."""
    lines = [" ".join(h.ljust(w) if s == "s" else h.rjust(w) for _, h, w, s in COLUMNS)]
    for r in rows:
        lines.append(" ".join(
            _cell(r.get(k), w, s).ljust(w) if s == "s" else _cell(r.get(k), w, s).rjust(w)
            for k, _, w, s in COLUMNS))
    return "\n".join(line.rstrip() for line in lines)


def _listing():
    out = ["benchmarks (python -m hmc_lib.bench NAME --help for one):"]
    for name in bench.available():
        out.append(f"  {name:16} {bench.summary(name)}")
    return "\n".join(out)


class _Elapsed:
    """A tqdm bar without a total on stderr, ticking once a second while the benchmark runs."""

    def __init__(self, desc):
        from tqdm.auto import tqdm
        self.bar = tqdm(desc=desc, bar_format="{desc}: {elapsed} elapsed", file=sys.stderr)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._tick, daemon=True)

    def _tick(self):
        while not self.stop.wait(1.0):
            self.bar.refresh()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.bar.close()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    names = bench.available()
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n\n" + _listing())
        return 0
    name = argv[0]
    if name not in names:
        print(f"unknown benchmark {name!r}\n\n" + _listing(), file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(
        prog=f"python -m hmc_lib.bench {name}", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=bench.describe(name))
    parser.add_argument("--scale", choices=scale_mod.SCALES, default=None,
                        help=f"run size (default: ${scale_mod.ENV_VAR} or '{scale_mod.DEFAULT}')")
    parser.add_argument("--json", action="store_true",
                        help="print every field of every row as one JSON list (default: a "
                             "table of the main measures)")
    parser.add_argument("--quiet", action="store_true", help="no elapsed time on stderr")
    args = parser.parse_args(argv[1:])
    scale = args.scale or scale_mod.get()
    start = time.perf_counter()
    if args.quiet:
        rows = bench.run(name, scale)
    else:
        with _Elapsed(f"{name} ({scale} scale)"):
            rows = bench.run(name, scale)
    if args.json:
        json.dump(rows, sys.stdout, indent=1, default=float)
        print()
    else:
        print(table(rows))
        print(f"({len(rows)} rows, {time.perf_counter() - start:.0f} s; every field with --json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
