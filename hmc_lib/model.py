"""Models as users write them: a structured state, or a TFP joint distribution, seen by every
kernel as one flat vector on ℝⁿ.

The kernels of `hmc_lib` work on a flat state `[chains, dim]`. A reader's model usually has
several named variables of their own shapes, some of them constrained (a scale > 0, a
probability in (0, 1)). `Model` is the one layer between the two:

- `Model(log_prob_fn, example, bijectors=None)` wraps a log-density over a structured state
  (a list, tuple, dict or namedtuple of tensors; `log_prob_fn(*parts)` for a list or tuple,
  `log_prob_fn(**parts)` for a dict, as TFP's kernels call it), with optional bijectors from
  ℝ onto each variable's support;
- `Model.from_joint_distribution(jd, **observed)` takes a `tfd.JointDistribution`, pins the
  observed variables, and maps the others to ℝⁿ with TFP's default event-space bijectors,
  as TFP's `windowed_adaptive_nuts` does.

Its `log_prob(z)` and `dim` are those of the flat unconstrained vector z, log π(x(z)) +
log abs(det ∂x/∂z), so a `Model` goes wherever a `Target` goes (every kernel, `warmup`, the
learned samplers' training). `hmc_lib.sample` and `hmc_lib.warmup` take a state in the
model's own structure and constrained space, and give draws back the same way.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfb = tfp.bijectors
tfd = tfp.distributions


def _parts(structure):
    """`(names, leaves)` of a list, tuple, dict or namedtuple structure."""
    if hasattr(structure, "_asdict"):
        d = structure._asdict()
        return list(d), list(d.values())
    if isinstance(structure, dict):
        return list(structure), list(structure.values())
    if isinstance(structure, (list, tuple)):
        return [f"x{i}" for i in range(len(structure))], list(structure)
    raise TypeError("a model's state must be a list, tuple, dict or namedtuple of tensors, "
                    f"got {type(structure).__name__}")


def _rebuild(like, leaves):
    """`leaves` in the structure of `like` (list, tuple, dict or namedtuple)."""
    if hasattr(like, "_asdict"):
        return type(like)(*leaves)
    if isinstance(like, dict):
        return dict(zip(like, leaves))
    return type(like)(leaves) if isinstance(like, tuple) else list(leaves)


class Model:
    """A log-density over a structured, possibly constrained state, flattened to ℝⁿ.

    Args:
      log_prob_fn: the log-density of the structured state: `log_prob_fn(*parts)` for a list
        or tuple state, `log_prob_fn(**parts)` for a dict, `log_prob_fn(state)` for a
        namedtuple; each part has a leading batch shape (e.g. `[chains]`).
      example: one point of the state (no batch dimension): its structure, shapes and dtype
        fix the flattening. Values are not used.
      bijectors: optional, the same structure of `tfp.bijectors.Bijector`s mapping ℝ^k onto
        each variable's support (None entries: identity), e.g. `tfb.Exp()` for a scale.
      names: optional variable names (default: a dict's keys, a namedtuple's fields, or
        `x0, x1, ...`).
      name: the model's name.

    Attributes: `dim` (the flat size), `names`, `event_shapes` (constrained, per variable),
    `dtype`.
    """

    def __init__(self, log_prob_fn, example, bijectors=None, names=None, name="model",
                 _call=None):
        if not callable(log_prob_fn):
            raise TypeError(f"`log_prob_fn` must be callable, got {log_prob_fn!r}")
        default_names, leaves = _parts(example)
        if not leaves:
            raise ValueError("`example` must hold at least one variable")
        self._like = example
        self.names = list(names) if names is not None else default_names
        if len(self.names) != len(leaves):
            raise ValueError(f"`names` must name the {len(leaves)} variables, got {self.names}")
        leaves = [tf.convert_to_tensor(x) for x in leaves]
        self.dtype = leaves[0].dtype
        if not self.dtype.is_floating:
            raise TypeError(f"`example` must hold floating tensors, got {self.dtype.name}")
        self.event_shapes = [x.shape for x in leaves]
        if bijectors is None:
            bijectors = [None] * len(leaves)
        else:
            _, bijectors = _parts(bijectors)
            if len(bijectors) != len(leaves):
                raise ValueError(f"`bijectors` must have one entry per variable "
                                 f"({len(leaves)}), got {len(bijectors)}")
        self._bijectors = [b if b is not None else tfb.Identity() for b in bijectors]
        for b, n in zip(self._bijectors, self.names):
            if not isinstance(b, tfb.Bijector):
                raise TypeError(f"bijector of `{n}` must be a tfp.bijectors.Bijector, got {b!r}")
        self._unconstrained_shapes = [
            tf.TensorShape(b.inverse_event_shape(s)) for b, s in zip(self._bijectors,
                                                                      self.event_shapes)]
        self._sizes = [int(np.prod(s, dtype=np.int64)) for s in self._unconstrained_shapes]
        self.dim = int(sum(self._sizes))
        self.name = name
        self._fn = log_prob_fn
        self._call = _call or self._default_call

    # -- the constructor for TFP joint distributions

    @classmethod
    def from_joint_distribution(cls, jd, name=None, **observed):
        """A `Model` of the posterior of `jd` given `observed` (variable name -> value).

        Constrained variables are mapped to ℝⁿ by `jd`'s default event-space bijectors (after
        pinning), and `log_prob` adds their log-Jacobian, as TFP's `windowed_adaptive_nuts`
        does. `jd` may already be pinned (`jd.experimental_pin(...)`); then give no
        `observed`.
        """
        if not _is_joint(jd):
            raise TypeError(f"`jd` must be a tfd.JointDistribution, got {type(jd).__name__}")
        pinned = jd.experimental_pin(**observed) if observed else jd
        bij = pinned.experimental_default_event_space_bijector()
        draw = (pinned.sample_unpinned if hasattr(pinned, "sample_unpinned")
                else pinned.sample)(seed=(0, 0))
        example = tf.nest.map_structure(lambda t: tf.zeros(t.shape, t.dtype), draw)
        names = None
        if not (hasattr(example, "_asdict") or isinstance(example, dict)):
            try:
                names = [n for n in pinned.distribution._flat_resolve_names()
                         if n not in observed]
                if len(names) != len(_parts(example)[1]):
                    names = None
            except Exception:
                names = None
        model = cls(lambda *_: None, example, names=names,
                    name=name or getattr(jd, "name", None) or "joint_distribution",
                    _call=lambda state: pinned.unnormalized_log_prob(state))
        model._joint = (pinned, bij)
        model._unconstrained_shapes = [tf.TensorShape(s) for s in tf.nest.flatten(
            bij.inverse_event_shape(pinned.event_shape))]
        model._sizes = [int(np.prod(s, dtype=np.int64)) for s in model._unconstrained_shapes]
        model.dim = int(sum(model._sizes))
        return model

    # -- flattening

    def _default_call(self, state):
        if hasattr(state, "_asdict"):
            return self._fn(state)
        if isinstance(state, dict):
            return self._fn(**state)
        return self._fn(*state)

    def _split(self, z):
        """Flat unconstrained `[..., dim]` -> list of unconstrained parts `[..., *shape]`."""
        z = tf.convert_to_tensor(z)
        if z.shape.rank is not None and z.shape[-1] is not None and z.shape[-1] != self.dim:
            raise ValueError(f"the flat state must have shape [..., {self.dim}], got "
                             f"{z.shape.as_list()}")
        batch = tf.shape(z)[:-1]
        pieces = tf.split(z, self._sizes, axis=-1)
        return [tf.reshape(p, tf.concat([batch, tf.constant(s.as_list(), tf.int32)], 0))
                for p, s in zip(pieces, self._unconstrained_shapes)]

    def _constrain(self, parts):
        """Unconstrained parts -> `(structure of constrained parts, log|det J| [...])`."""
        joint = getattr(self, "_joint", None)
        if joint is not None:
            _, bij = joint
            like = bij.inverse_event_shape(joint[0].event_shape)
            u = tf.nest.pack_sequence_as(like, parts)
            return bij.forward(u), bij.forward_log_det_jacobian(u)
        xs, ldj = [], 0.0
        for b, p, s in zip(self._bijectors, parts, self._unconstrained_shapes):
            xs.append(b.forward(p))
            ldj = ldj + b.forward_log_det_jacobian(p, event_ndims=s.rank)
        return _rebuild(self._like, xs), ldj

    def log_prob(self, z):
        """log π(x(z)) + log abs(det ∂x/∂z) at the flat unconstrained `z` `[..., dim]`: `[...]`."""
        z = tf.convert_to_tensor(z)
        x, ldj = self._constrain(self._split(tf.cast(z, self.dtype)))
        return tf.cast(self._call(x) + ldj, z.dtype)

    def __call__(self, z):
        return self.log_prob(z)

    def from_flat(self, z):
        """The state, in the model's structure and constrained space, of the flat `z`
        `[..., dim]` (numpy in, numpy out)."""
        numpy_in = isinstance(z, np.ndarray)
        x, _ = self._constrain(self._split(tf.cast(z, self.dtype)))
        return tf.nest.map_structure(lambda t: t.numpy(), x) if numpy_in else x

    def to_flat(self, state):
        """The flat unconstrained `[..., dim]` of a state in the model's structure and
        constrained space (each part with the same leading batch shape)."""
        joint = getattr(self, "_joint", None)
        if joint is not None:
            pinned, bij = joint
            try:
                state = tf.nest.pack_sequence_as(pinned.event_shape,
                                                 tf.nest.flatten(state))
            except (TypeError, ValueError) as err:
                raise ValueError(f"the state must have the structure of the model's "
                                 f"variables ({', '.join(self.names)})") from err
            parts = tf.nest.flatten(bij.inverse(tf.nest.map_structure(
                lambda t: tf.convert_to_tensor(t, self.dtype), state)))
        else:
            _, leaves = _parts(state)
            if len(leaves) != len(self._bijectors):
                raise ValueError(f"the state must hold {len(self._bijectors)} variables "
                                 f"({', '.join(self.names)}), got {len(leaves)}")
            parts = [b.inverse(tf.convert_to_tensor(x, self.dtype))
                     for b, x in zip(self._bijectors, leaves)]
        flat = []
        for p, s, n in zip(parts, self._unconstrained_shapes, self.names):
            batch_rank = p.shape.rank - s.rank
            if batch_rank < 0 or p.shape[batch_rank:] != s:
                raise ValueError(f"variable `{n}` must have shape [..., {', '.join(map(str, s))}]"
                                 f" (unconstrained), got {p.shape.as_list()}")
            flat.append(tf.reshape(p, tf.concat([tf.shape(p)[:batch_rank], [-1]], 0)))
        return tf.concat(flat, axis=-1)

    def initial_state(self, chains, seed, radius=2.0):
        """Stan's default start: z ~ Uniform(−radius, radius) on the flat unconstrained space,
        returned in the model's structure and constrained space, `chains` leading."""
        z = tf.random.stateless_uniform([int(chains), self.dim], seed=_seed(seed),
                                        minval=-radius, maxval=radius, dtype=self.dtype)
        return self.from_flat(z)

    def __repr__(self):
        return f"Model(name={self.name!r}, variables={self.names}, dim={self.dim})"


def _seed(seed):
    if isinstance(seed, (int, np.integer)):
        return tf.constant([int(seed), 0], tf.int32)
    return tfp.random.sanitize_seed(seed)


def _is_joint(obj):
    """A TFP joint distribution, pinned or not."""
    return isinstance(obj, (tfd.JointDistribution,
                            tfp.experimental.distributions.JointDistributionPinned))


def as_model(target):
    """`target` itself if it is a `Model`, a `Model` of it if it is a (pinned) TFP joint
    distribution, else None."""
    if isinstance(target, Model):
        return target
    if _is_joint(target):
        return Model.from_joint_distribution(target)
    return None


def model_of(kernel):
    """The `Model` a kernel (or a TFP wrapper around one) samples, or None."""
    k = kernel
    while k is not None:
        found = k.__dict__.get("_model") if hasattr(k, "__dict__") else None
        if found is not None:
            return found
        params = getattr(k, "parameters", None) or {}
        target = params.get("target_log_prob_fn") if isinstance(params, dict) else None
        model = as_model(target) if target is not None else None
        if model is not None:
            if hasattr(k, "__dict__"):
                k.__dict__["_model"] = model
            return model
        k = getattr(k, "inner_kernel", None)
    return None


