"""`Kernel`: what every kernel of the library shares besides the Metropolis step.

A kernel keeps its constructor arguments in `self._parameters` (TFP's convention); they are
readable as attributes (`kernel.step_size`, `kernel.num_leapfrog_steps`, ...). Every kernel of
the library is calibrated: it includes its own Metropolis correction.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from hmc_lib import _checks


def check_mass(mass, dim=None, name="mass"):
    """Validates a diagonal mass matrix: `None` (identity), a scalar, `[dim]`, or `[chains, dim]`
    (per chain); every static element finite and > 0. A `tf.Variable` (warm-up) passes unchecked
    in value. Raises ValueError/TypeError naming `name`."""
    if mass is None:
        return None
    _checks.positive_float(mass, name)
    shape = mass.shape if hasattr(mass, "shape") else np.shape(mass)
    rank = len(shape) if shape is not None and getattr(shape, "rank", 0) is not None else None
    if rank is not None:
        if rank > 2:
            raise ValueError(f"`{name}` must be a scalar, [dim] or [chains, dim], got shape "
                             f"{list(shape)}")
        last = shape[-1] if rank else None
        if rank and dim is not None and last is not None and int(last) != int(dim):
            raise ValueError(f"`{name}` must have shape [{dim}] (or [chains, {dim}]), got "
                             f"{list(shape)}")
    return mass


def check_mass_against_state(mass, x, name="mass"):
    """At bootstrap: `mass` must broadcast against the state `x` `[chains, dim]`."""
    if mass is None:
        return
    shape = tf.TensorShape(mass.shape if hasattr(mass, "shape") else np.shape(mass))
    if shape.rank and x.shape.rank is not None:
        if shape.rank > x.shape.rank or not shape.is_compatible_with(x.shape[-shape.rank:]):
            raise ValueError(f"`{name}` of shape {shape.as_list()} does not fit the state of "
                             f"shape {x.shape.as_list()} (want [dim] or [chains, dim])")


class Kernel(tfp.mcmc.TransitionKernel):
    """Base class: `parameters`, attribute access to them, and `is_calibrated = True`.

    Compiled graphs shared across kernels: a subclass that names, in `_input_parameters`,
    the numeric parameters its graph can take as inputs (step size, mass) lets `sample` and
    `warmup` compile one graph per target and remaining settings (`graph_key`) and feed
    those numbers in (`input_values`, `with_inputs`), instead of compiling again for every
    new step size or mass matrix.
    """

    _parameters: dict = {}
    #: numeric parameters that a compiled chunk takes as inputs (none: no graph sharing)
    _input_parameters = ()
    #: a learned sampler (a trained network inside): its summaries charge the training
    learned = False

    def graph_key(self):
        """A hashable key of what fixes this kernel's compiled graph besides the values of
        `_input_parameters` (the class, the target object, every other parameter, and which
        input parameters are set, with their shapes); None when the graph cannot be shared."""
        # only a class that declares its own `_input_parameters` shares graphs: a subclass may
        # keep graph-changing state outside `_parameters` (a network, a recorder)
        if not type(self).__dict__.get("_input_parameters"):
            return None
        key = [type(self), id(self._parameters.get("target_log_prob_fn"))]
        for name, value in sorted(self._parameters.items()):
            if name == "target_log_prob_fn":
                continue
            if name in self._input_parameters:
                key.append((name, None if value is None else tuple(np.shape(value))))
                continue
            try:
                hash(value)
            except TypeError:
                return None
            key.append((name, value))
        return tuple(key)

    def input_values(self, dtype):
        """The values of the set `_input_parameters` as tensors of `dtype` (a dict)."""
        return {name: _checks.as_dtype(self._parameters[name], dtype)
                for name in self._input_parameters if self._parameters.get(name) is not None}

    def with_inputs(self, **values):
        """A copy of this kernel with some `_input_parameters` replaced (by tensors, inside
        a compiled function); everything else, the target included, is shared."""
        unknown = set(values) - set(self._input_parameters)
        if unknown:
            raise ValueError(f"not input parameters of {type(self).__name__}: {sorted(unknown)}")
        new = object.__new__(type(self))
        new.__dict__.update({k: v for k, v in self.__dict__.items() if k != "_hmc_lib_compiled"})
        new._parameters = dict(self._parameters, **values)
        return new

    @property
    def parameters(self):
        return self._parameters

    @property
    def is_calibrated(self):
        return True

    @property
    def target_log_prob_fn(self):
        """The log-density the kernel samples (a `Target`'s `log_prob` when given a `Target`)."""
        return self.__dict__.get("_log_prob_fn", self._parameters.get("target_log_prob_fn"))

    def __getattr__(self, name):
        params = self.__dict__.get("_parameters", {})
        if name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
