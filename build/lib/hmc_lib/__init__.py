"""hmc_lib: the library behind the hmc-book.

Targets and integrators are the ground floor; kernels (all `tfp.mcmc.TransitionKernel`s)
build on them; `sample` and `diagnostics` run and measure chains. See ../README.md.
"""

import importlib
import os

# Before TensorFlow is first imported (hmc_lib's modules import it): no C++ start-up lines
# (oneDNN, CPU features, missing CUDA drivers). Set TF_CPP_MIN_LOG_LEVEL to 0 to see them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from hmc_lib._version import __version__
from hmc_lib import diagnostics, integrators, scale, targets
from hmc_lib.model import Model
from hmc_lib.kernels.hmc import HMC
from hmc_lib.sampling import sample, sample_until

# Kernels (and the warm-up) that live in their own modules, imported on first use.
_LAZY = {
    "NUTS": "hmc_lib.kernels.nuts",
    "NNgHMC": "hmc_lib.nnghmc",
    "L2HMC": "hmc_lib.l2hmc",
    "PMHMC": "hmc_lib.pm",
    "PMNUTS": "hmc_lib.pm",
    "HNNHMC": "hmc_lib.hnn",
    "HNNNUTS": "hmc_lib.hnn",
    "HNNPMNUTS": "hmc_lib.hnn",
    "warmup": "hmc_lib.kernels.warmup",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hmc_lib' has no attribute {name!r}")


__all__ = ["__version__", "Model", "HMC", "sample", "sample_until", "diagnostics", "integrators", "scale", "targets", *_LAZY]
