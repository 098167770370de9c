"""Runs a recorded long run (`hmc_lib.records`) and writes its record, which a chapter renders.

Usage: `python tools/record.py NAME [--scale paper] [--workdir DIR] [--threads 1]`; `--list`
lists the runs.
A run killed midway resumes where it stopped when started again with the same arguments
(the work folder, default `_build/records/NAME-SCALE`, keeps finished units and checkpoints).
Each entry of `RUNS` names a function `fn(workdir, scale) -> record` in the method's package;
it writes the record to the file the chapter reads.
"""

import argparse
import importlib
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: run name -> "module:function" (the function writes the record where its chapter reads it)
RUNS = {
    "dlgm_mnist": "hmc_lib.dlgm.experiments:record",
    "pm_glmm": "hmc_lib.pm.experiments:record_long_run",
    "nnghmc-gp": "hmc_lib.nnghmc.long_runs:gp_paper",
    "nnghmc-garch": "hmc_lib.nnghmc.long_runs:garch_paper",
    "nnghmc-logreg": "hmc_lib.nnghmc.long_runs:logreg_paper",
    "nnghmc-table4": "hmc_lib.nnghmc.long_runs:table4_paper",
    "l2hmc_toys": "hmc_lib.l2hmc.long_runs:toys",
    "l2hmc_gap": "hmc_lib.l2hmc.long_runs:gap",
    "compare_grid": "hmc_lib.compare.record:record",
    "hnn_goal": "hmc_lib.hnn.long_runs:record_goal",
    "hnn_glmm": "hmc_lib.hnn.long_runs:record_glmm",
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", nargs="?", choices=sorted(RUNS), metavar="NAME")
    parser.add_argument("--scale", default="paper")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--threads", type=int, default=1,
                        help="TensorFlow threads (default 1: a long run leaves the other "
                             "cores free)")
    parser.add_argument("--list", action="store_true", help="list the runs and exit")
    args = parser.parse_args(argv)
    if args.list or not args.name:
        for name, target in sorted(RUNS.items()):
            print(f"{name:28} {target}")
        return 0
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    module, fn = RUNS[args.name].split(":")
    workdir = args.workdir or str(ROOT / "_build" / "records" / f"{args.name}-{args.scale}")
    os.makedirs(workdir, exist_ok=True)
    start = time.perf_counter()
    rec = getattr(importlib.import_module(module), fn)(workdir, args.scale)
    print(f"{args.name}: record written ({time.perf_counter() - start:.0f} s in this process, "
          f"{rec['wall_seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
