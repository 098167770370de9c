"""NNgHMC (Li, Holbrook, Shahbaba & Baldi 2019): HMC whose leapfrog uses a network fitted to
the gradient of the log-density, with the Metropolis test on the true energy (exact for any
network).

- `NNgHMC(target_log_prob_fn, grad_fn, step_size, num_leapfrog_steps)`: the kernel, and
  `RecordingHMC` (HMC that records every leapfrog position and gradient), `swap_prior`
  (`kernel.py`);
- `GradientNet`, `fit(positions, grads, ...)`: the gradient network and its trainer
  (`networks.py`);
- `collect_gradients`, `run_schedule`, `compare`: the paper's training schedule with its
  fall-back to HMC (`schedule.py`);
- `SGHMC` (`sghmc.py`, Chen, Fox & Guestrin 2014, with an optional full-data Metropolis
  test) and `GPSurrogate` (`gp_surrogate.py`, an SE-kernel GP of log π whose mean's gradient
  drives the leapfrog): the paper's two competitors (Tables 3 and 4);
- `experiments`, `expensive`: the run sizes per scale and the paper's numbers that the chapter and the
  benchmark share;
- `long_runs`: the recorded paper-size runs (GP regression, GARCH, logistic regression,
  Table 4), resumable, run by `tools/record.py` and rendered by chapters 3 and 6.
"""

from hmc_lib.nnghmc.kernel import NNgHMC, NNgHMCResults, RecordingHMC, recording_trajectory, swap_prior
from hmc_lib.nnghmc.networks import GradientNet, fit
from hmc_lib.nnghmc.schedule import collect_gradients, compare, run_schedule
from hmc_lib.nnghmc.sghmc import SGHMC, SGHMCResults
from hmc_lib.nnghmc.gp_surrogate import GPSurrogate

__all__ = ["NNgHMC", "NNgHMCResults", "RecordingHMC", "recording_trajectory", "swap_prior",
           "GradientNet", "fit", "collect_gradients", "compare", "run_schedule", "SGHMC",
           "SGHMCResults", "GPSurrogate"]
