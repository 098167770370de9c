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
- `experiments`: the run sizes per scale and the paper's numbers that the chapter and the
  benchmark share.
"""

from hmc_lib.nnghmc.kernel import NNgHMC, NNgHMCResults, RecordingHMC, recording_trajectory, swap_prior
from hmc_lib.nnghmc.networks import GradientNet, fit
from hmc_lib.nnghmc.schedule import collect_gradients, compare, run_schedule

__all__ = ["NNgHMC", "NNgHMCResults", "RecordingHMC", "recording_trajectory", "swap_prior",
           "GradientNet", "fit", "collect_gradients", "compare", "run_schedule"]
