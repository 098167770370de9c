"""Input checks shared by the public functions: clear errors that name the argument."""

import numbers

import numpy as np
import tensorflow as tf


def positive_float(value, name):
    """Checks a step size or similar: every static element finite and > 0.

    Tensors whose value is unknown at trace time pass through unchecked.
    """
    static = tf.get_static_value(value) if tf.is_tensor(value) else value
    if static is None:
        return value
    try:
        arr = np.asarray(static, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be a number or array of numbers, got {value!r}") from err
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"`{name}` must be finite and > 0, got {static!r}")
    return value


def positive_int(value, name):
    """Checks a count (leapfrog steps, tree depth, ...): a Python or static integer >= 1."""
    static = tf.get_static_value(value) if tf.is_tensor(value) else value
    if static is None:
        return value
    arr = np.asarray(static)
    if arr.shape != () or not (isinstance(static, numbers.Integral) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"`{name}` must be an integer, got {value!r}")
    if int(arr) < 1:
        raise ValueError(f"`{name}` must be >= 1, got {int(arr)}")
    return value


def state_shape(x, dim, name="x"):
    """Checks that `x` has shape `[..., dim]`; returns it as a tensor."""
    x = tf.convert_to_tensor(x)
    if x.shape.rank is not None and x.shape.rank < 1:
        raise ValueError(f"`{name}` must have shape [..., {dim}], got a scalar")
    last = x.shape[-1] if x.shape.rank is not None else None
    if dim is not None and last is not None and last != dim:
        raise ValueError(f"`{name}` must have shape [..., {dim}], got {x.shape.as_list()}")
    return x


def floating(x, name="x"):
    """Converts `x` to a float tensor (float32 unless it already is floating)."""
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        if x.dtype.is_integer:
            return tf.cast(x, tf.float32)
        raise TypeError(f"`{name}` must be a floating tensor, got dtype {x.dtype.name}")
    return x


def as_dtype(value, dtype):
    """`value` as a tensor of `dtype` without a detour through float32 (`tf.cast(0.1,
    tf.float64)` rounds 0.1 to float32 first, an error of 1e-9 relative)."""
    if tf.is_tensor(value) or isinstance(value, tf.Variable):
        return tf.cast(value, dtype)
    return tf.convert_to_tensor(np.asarray(value, dtype=np.dtype(tf.as_dtype(dtype).as_numpy_dtype)))


def gradient(grad, name="target_log_prob_fn", value=None):
    """Checks that a gradient with respect to the state exists (autodiff returns None when the
    output does not depend on the input through differentiable TensorFlow operations). With
    `value` (eager), a non-finite value is named first."""
    if grad is None:
        not_finite = ""
        if value is not None and tf.executing_eagerly() and not bool(
                tf.reduce_all(tf.math.is_finite(value))):
            not_finite = "is not finite at the state, and "
        raise ValueError(
            f"`{name}` {not_finite}has no gradient with respect to the state: its value does "
            "not depend on the state through differentiable TensorFlow operations. Likely "
            "causes: NumPy "
            "or Python `math` inside the function (TensorFlow cannot differentiate them; use "
            "`tf.` operations); a rounding, integer cast, comparison or `tf.stop_gradient` on "
            "the path from the state to the log-density; or a function that ignores its "
            "argument.")
    return grad
