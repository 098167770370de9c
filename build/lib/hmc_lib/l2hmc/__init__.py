"""L2HMC (Levy, Hoffman, Sohl-Dickstein 2018): learned, exactly reversible leapfrog-like dynamics.

- `Dynamics`: the augmented-state operator (networks, masks, log ε) with its exact inverse
  and log-Jacobian (`dynamics.py`, `networks.py`);
- `train(target, ...) -> (dynamics, history)`: the ESJD loss with burn-in term (`train.py`,
  `loss.py`);
- `L2HMC(target_log_prob_fn, dynamics)`: the `tfp.mcmc.TransitionKernel` (`kernel.py`);
- `save(dynamics, path)` / `load(path)`: weights + config in one `.npz` (`io.py`).
"""

from hmc_lib.l2hmc.dynamics import Dynamics, Trajectory, flip
from hmc_lib.l2hmc.io import load, save
from hmc_lib.l2hmc.kernel import L2HMC, L2HMCResults, target_value_and_grad
from hmc_lib.l2hmc.loss import esjd_loss
from hmc_lib.l2hmc.train import train

__all__ = ["Dynamics", "Trajectory", "flip", "L2HMC", "L2HMCResults", "train", "save", "load",
           "esjd_loss", "target_value_and_grad"]
