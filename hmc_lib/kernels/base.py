"""`Kernel`: what every kernel of the library shares besides the Metropolis step.

A kernel keeps its constructor arguments in `self._parameters` (TFP's convention); they are
readable as attributes (`kernel.step_size`, `kernel.num_leapfrog_steps`, ...). Every kernel of
the library is calibrated: it includes its own Metropolis correction.
"""

import tensorflow_probability as tfp


class Kernel(tfp.mcmc.TransitionKernel):
    """Base class: `parameters`, attribute access to them, and `is_calibrated = True`."""

    _parameters: dict = {}

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
