"""Networks and their trainers (learning layer): the NNgHMC gradient network."""

from hmc_lib.nets.gradient import GradientNet, fit

__all__ = ["GradientNet", "fit"]
