"""Command line: `python -m hmc_lib.bench NAME [--scale S] [--json]`."""

import argparse
import json
import sys

from hmc_lib import bench, scale as scale_mod


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    return "-" if v is None else str(v)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m hmc_lib.bench", description=__doc__)
    parser.add_argument("name", choices=bench.available())
    parser.add_argument("--scale", choices=scale_mod.SCALES, default=None,
                        help=f"run size (default: ${scale_mod.ENV_VAR} or '{scale_mod.DEFAULT}')")
    parser.add_argument("--json", action="store_true", help="print one JSON list of rows")
    args = parser.parse_args(argv)
    rows = bench.run(args.name, args.scale or scale_mod.get())
    if args.json:
        json.dump(rows, sys.stdout, indent=1, default=float)
        print()
        return
    keys = list(bench.FIELDS) + sorted({k for r in rows for k in r} - set(bench.FIELDS))
    table = [keys] + [[_fmt(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(keys))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))


if __name__ == "__main__":
    main()
