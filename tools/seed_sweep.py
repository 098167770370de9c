"""The seed sweep: re-runs every statistical assertion under many seeds and counts failures.

Every assertion on random output in `tests/` (marked ``@pytest.mark.statistical``) and in the
chapters (each chapter's cells, run by nbval at `ci` scale) takes its seeds from
`hmc_lib.scale.seed`, which shifts them by ``HMC_BOOK_SEED``. This script runs pytest once
per seed k = 1..N with ``HMC_BOOK_SEED=k`` and prints, per assertion (test or chapter cell),
how many of the N runs failed. Each assertion is designed to fail with probability < 1e-3
when the code is right, so any failure here is a defect to explain, not noise to re-roll.

Usage (from the repository root, in the project's virtual environment)::

    python tools/seed_sweep.py                    # 20 seeds, statistical tests + chapters
    python tools/seed_sweep.py --seeds 25 --first 101 tests/test_hmc.py book/01_hmc.md

Exit status 1 if any run failed. Not part of the default `pytest` run (it takes N times as
long as the selected tests).
"""

import argparse
import collections
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _results(junit_path):
    """`{test id: passed?}` from a JUnit XML report."""
    out = {}
    for case in ET.parse(junit_path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
        if case.find("skipped") is not None:
            continue
        out[name] = case.find("failure") is None and case.find("error") is None
    return out


def _chapter_items(paths):
    return [p for p in paths if p.startswith("book")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="number of seeds (default 20)")
    parser.add_argument("--first", type=int, default=1, help="first HMC_BOOK_SEED (default 1)")
    parser.add_argument("paths", nargs="*", default=["tests", "book"],
                        help="pytest paths (default: tests book)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")

    runs = collections.Counter()
    fails = collections.Counter()
    seeds_failed = collections.defaultdict(list)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="seed_sweep_"))
    start = time.time()
    for k in range(args.first, args.first + args.seeds):
        env = dict(os.environ, HMC_BOOK_SEED=str(k), HMC_BOOK_SCALE=os.environ.get("HMC_BOOK_SCALE", "ci"))
        unit = [p for p in args.paths if not p.startswith("book")]
        chapters = _chapter_items(args.paths)
        groups = []
        if unit:
            groups.append(unit + ["-m", "statistical"])
        if chapters:
            groups.append(chapters)
        results = {}
        for i, group in enumerate(groups):
            junit_i = tmp / f"seed_{k}_{i}.xml"
            cmd = [sys.executable, "-m", "pytest", "-q",
                   f"--junitxml={junit_i}", *group]
            subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if junit_i.exists():
                results.update(_results(junit_i))
            else:
                results[f"<pytest did not run: {' '.join(group)}>"] = False
        for name, ok in results.items():
            runs[name] += 1
            if not ok:
                fails[name] += 1
                seeds_failed[name].append(k)
        print(f"seed {k}: {len(results)} assertions, {sum(not ok for ok in results.values())} failed "
              f"({time.time() - start:.0f} s so far)", flush=True)

    width = max((len(n) for n in runs), default=10)
    print(f"\nSeed sweep: HMC_BOOK_SEED = {args.first}..{args.first + args.seeds - 1}, "
          f"scale {os.environ.get('HMC_BOOK_SCALE', 'ci')}, {time.time() - start:.0f} s")
    print(f"{'assertion'.ljust(width)}  runs  failures")
    for name in sorted(runs):
        note = f"  (seeds {seeds_failed[name]})" if fails[name] else ""
        print(f"{name.ljust(width)}  {runs[name]:4d}  {fails[name]:8d}{note}")
    total = sum(fails.values())
    print(f"total: {len(runs)} assertions x {args.seeds} seeds, {total} failures")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
