"""Hamiltonian neural networks as samplers (chapter 7).

- `HNN`: the network (separable Ũ(q) + ½|p|², or Dhulipala's latent Ĥ(q, p)).
- `collect`: training data from chained true-leapfrog trajectories; `train`: Chen's
  method-4 loss; `save`/`load`: one `.npz` with a JSON config.
- `separable_leapfrog`, `implicit_leapfrog`: the HNN's reversible, volume-preserving
  integrators.
- `HNNHMC` (exact Metropolis on the true H, or Chen's ΔH̃ rule) and `HNNNUTS` (NUTS on the
  HNN with online error monitoring: the exact monitor by default, Dhulipala's with its
  cool-down as `exact=False`); `HNNPMNUTS` for pseudo-marginal targets (θ-only HNN tree,
  u-refresh, PM-NUTS fall-back with the Δ_max^lf rejection; exact switch by default), with
  its data from `collect_pm`.
- `experiments`: Dhulipala's targets, run sizes and the published numbers.
"""

from hmc_lib.hnn.data import TrainingData, collect, collect_pm
from hmc_lib.hnn.integrators import implicit_leapfrog, separable_leapfrog
from hmc_lib.hnn.io import load, save
from hmc_lib.hnn.kernel import HNNHMC, HNNNUTS
from hmc_lib.hnn.networks import HNN, ExactHamiltonian
from hmc_lib.hnn.pm_kernel import HNNPMNUTS
from hmc_lib.hnn.train import TrainResult, loss_fn, train

__all__ = ["HNN", "ExactHamiltonian", "HNNHMC", "HNNNUTS", "HNNPMNUTS", "TrainingData",
           "TrainResult", "collect", "collect_pm",
           "implicit_leapfrog", "load", "loss_fn", "save", "separable_leapfrog", "train"]
