"""`python -m hmc_lib.compare._worker JOB.pkl OUT.pkl`: one target of the comparison in a
process of its own (see `hmc_lib.compare.runner.run`)."""

import sys

from hmc_lib.compare import runner

if __name__ == "__main__":
    runner._worker_main(*sys.argv[1:3])
