"""Runs a paper-size benchmark and records its rows, with when, where and how long, as JSON:
`nnghmc_headline` (default) in `hmc_lib/nnghmc/recorded/headline_paper.json` (rendered by
chapter 3), `garch_headline` in `hmc_lib/nnghmc/recorded/garch_paper.json` (chapter 6).
Usage: `python tools/record_headline.py [--bench nnghmc_headline] [--scale paper] [--out F]`."""

import argparse
import datetime
import json
import os
import platform
import time

from hmc_lib import bench
from hmc_lib.nnghmc.experiments import HEADLINE_FILE
from hmc_lib.nnghmc.expensive import GARCH_HEADLINE_FILE

#: where each benchmark's record goes by default
OUT = {"nnghmc_headline": HEADLINE_FILE, "garch_headline": GARCH_HEADLINE_FILE}


def machine():
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bench", default="nnghmc_headline", choices=sorted(OUT))
    parser.add_argument("--scale", default="paper")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    args.out = args.out or OUT[args.bench]
    t0 = time.perf_counter()
    rows = bench.run(args.bench, args.scale)
    rec = dict(command=f"python -m hmc_lib.bench {args.bench} --scale {args.scale} --json",
               date=datetime.date.today().isoformat(), machine=machine(),
               total_seconds=time.perf_counter() - t0, scale=args.scale, rows=rows)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(rec, f, indent=1, default=float)
    print(f"wrote {args.out} ({rec['total_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
