"""`Target`: a log-density with the facts the book needs about it."""

import inspect

import numpy as np
import tensorflow as tf

from hmc_lib import _checks


class Target:
    """A (possibly unnormalised) log-density over R^dim.

    Args:
      log_prob_fn: callable `[..., dim] -> [...]`; must work for float32 and float64 inputs.
      dim: Python int, the dimension.
      name: optional name.
      mean, variance: optional exact moments, arrays of shape `[dim]`.
      sample_fn: optional exact sampler `(n, seed) -> [n, dim]` or `(n, seed, dtype) -> [n, dim]`
        (`seed`: int or `[2]` int tensor).
      grad_fn: optional analytic gradient `[..., dim] -> [..., dim]` of `log_prob_fn`.
    """

    def __init__(self, log_prob_fn, dim, name=None, mean=None, variance=None,
                 sample_fn=None, grad_fn=None):
        if not callable(log_prob_fn):
            raise TypeError(f"`log_prob_fn` must be callable, got {log_prob_fn!r}")
        _checks.positive_int(dim, "dim")
        self.dim = int(dim)
        self.name = name or getattr(log_prob_fn, "__name__", "target")
        self._log_prob_fn = log_prob_fn
        self._grad_fn = grad_fn
        self._sample_fn = sample_fn
        self.mean = self._moment(mean, "mean")
        self.variance = self._moment(variance, "variance")

    def _moment(self, value, name):
        if value is None:
            return None
        value = np.asarray(value, dtype=np.float64)
        if value.shape != (self.dim,):
            raise ValueError(f"`{name}` must have shape [{self.dim}], got {list(value.shape)}")
        return value

    def __repr__(self):
        return f"Target(name={self.name!r}, dim={self.dim})"

    def __call__(self, x):
        return self.log_prob(x)

    @property
    def has_analytic_grad(self):
        return self._grad_fn is not None

    @property
    def has_sampler(self):
        return self._sample_fn is not None

    def log_prob(self, x):
        """Log-density at `x` of shape `[..., dim]`; returns shape `[...]`."""
        x = _checks.floating(_checks.state_shape(x, self.dim), "x")
        return self._log_prob_fn(x)

    def autodiff_grad_log_prob(self, x):
        """Gradient of `log_prob` by automatic differentiation; shape `[..., dim]`."""
        x = _checks.floating(_checks.state_shape(x, self.dim), "x")
        with tf.GradientTape() as tape:
            tape.watch(x)
            lp = self._log_prob_fn(x)
        return tape.gradient(lp, x)

    def grad_log_prob(self, x):
        """Gradient of `log_prob`: the analytic one where given, else autodiff. Shape `[..., dim]`."""
        if self._grad_fn is None:
            return self.autodiff_grad_log_prob(x)
        x = _checks.floating(_checks.state_shape(x, self.dim), "x")
        return self._grad_fn(x)

    def sample(self, n, seed, dtype=tf.float32):
        """`n` exact draws, shape `[n, dim]`, where the target has an exact sampler."""
        if self._sample_fn is None:
            raise NotImplementedError(f"target {self.name!r} has no exact sampler")
        _checks.positive_int(n, "n")
        if _takes_dtype(self._sample_fn):
            draws = self._sample_fn(int(n), seed, dtype)
        else:
            draws = self._sample_fn(int(n), seed)
        draws = tf.cast(draws, dtype)
        if draws.shape != (int(n), self.dim):
            raise ValueError(f"`sample_fn` must return shape [{int(n)}, {self.dim}], "
                             f"got {draws.shape.as_list()}")
        return draws


def _takes_dtype(fn):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params)


def as_target(target, dim=None, name="target"):
    """A `Target` from what a reader has: a `Target` (returned as is), an `hmc_lib.Model` or
    a TFP joint distribution (its flat, unconstrained log-density), or a callable
    `[..., dim] -> [...]` together with `dim`. Anything else raises a `TypeError` naming the
    argument `name` and what it accepts."""
    if isinstance(target, Target):
        return target
    from hmc_lib.model import as_model
    model = as_model(target)
    if model is not None:
        return Target(model.log_prob, model.dim, name=name)
    if hasattr(target, "log_prob") and hasattr(target, "dim"):
        return Target(target.log_prob, target.dim, name=getattr(target, "name", name))
    if callable(target):
        if dim is None:
            raise TypeError(f"`{name}` is a plain callable: pass `dim=` (its dimension) too, "
                            "or an `hmc_lib.targets.Target`")
        return Target(target, dim, name=getattr(target, "__name__", name))
    raise TypeError(f"`{name}` must be an `hmc_lib.targets.Target`, an `hmc_lib.Model`, a TFP "
                    f"joint distribution or a callable with `dim=`; got {type(target).__name__}")
