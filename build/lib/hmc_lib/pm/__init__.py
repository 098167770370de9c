"""Pseudo-marginal HMC and NUTS (Alenlöv, Doucet & Lindsten 2021; Chen 2025).

- `pm_strang`, `pm_trajectory`, `PMState`: the Strang splitting of the extended Hamiltonian
  (`integrator.py`; also importable from `hmc_lib.integrators`);
- `PMHMC`, `PMNUTS`: the kernels on a `targets.PseudoMarginalTarget` (`kernel.py`);
- `experiments` (imported on its own): chapter 4's settings per scale, Chen's start and
  means, the runs to the convergence gate and the recorded long run.
"""

from hmc_lib.pm.integrator import PMState, pm_drift_rotate, pm_strang, pm_trajectory
from hmc_lib.pm.kernel import PMHMC, PMNUTS, PMResults

__all__ = ["PMState", "pm_drift_rotate", "pm_strang", "pm_trajectory", "PMHMC", "PMNUTS",
           "PMResults"]
