"""Targets of the book: a `Target` class and a registry of named targets.

`get(name, **overrides)` builds a named target. The registry maps each name to the module that
defines it, so modules are imported only when asked for; a module lists its factories in a
`FACTORIES` dict (name -> callable returning a `Target`).
"""

import importlib

from hmc_lib.targets.base import Target, as_target

# name -> module (under hmc_lib.targets) that defines its factory.
_MODULE_OF = {
    # L2HMC toy targets and NNgHMC's analytic targets
    "icg50": "analytic",
    "scg": "analytic",
    "mog": "analytic",
    "rough_well": "analytic",
    "banana": "analytic",
    "icg30": "analytic",
    "gaussian": "analytic",
    # regression targets (NNgHMC)
    "logreg": "regression",
    "garch": "garch",
    "gp_matern": "gp",
    # pseudo-marginal targets
    "glmm": "pseudo_marginal",
    "gaussian_random_effects": "pseudo_marginal",
    # finance (Chen Part VII)
    "term_premium": "term_premium",
    "term_premium_latent_wealth": "term_premium",
    # the TFP team's Inference Gym (ground truth shipped with `inference-gym`)
    "gym_eight_schools": "gym",
    "gym_brownian": "gym",
    "gym_funnel": "gym",
    "gym_icg": "gym",
}


def names():
    """The names `get` knows (some may belong to modules not written yet)."""
    return sorted(_MODULE_OF)


def get(name, **overrides):
    """Builds the named target; `overrides` are passed to its factory (e.g. `dim=`, `seed=`)."""
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a string, got {name!r}")
    if name not in _MODULE_OF:
        raise ValueError(f"unknown target `name` {name!r}; known: {', '.join(names())}")
    try:
        module = importlib.import_module(f"hmc_lib.targets.{_MODULE_OF[name]}")
    except ModuleNotFoundError as err:
        raise ValueError(f"target {name!r} is not implemented yet ({err})") from err
    factories = getattr(module, "FACTORIES", {})
    if name not in factories:
        raise ValueError(f"target {name!r} is not implemented yet")
    return factories[name](**overrides)


def __getattr__(attr):
    # `from hmc_lib.targets import PseudoMarginalTarget` without importing TF-heavy modules eagerly.
    if attr == "PseudoMarginalTarget":
        return importlib.import_module("hmc_lib.targets.pseudo_marginal").PseudoMarginalTarget
    raise AttributeError(f"module 'hmc_lib.targets' has no attribute {attr!r}")


__all__ = ["Target", "as_target", "get", "names", "PseudoMarginalTarget"]
