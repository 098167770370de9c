"""Four posteriors of the TFP team's Inference Gym (`inference-gym==0.0.5`) as `Target`s.

Ground truth that nobody here wrote: each Inference Gym model ships reference posterior means
and standard deviations (computed by its authors from long NUTS runs) for its `identity`
sample transformation, i.e. in the model's own (constrained) coordinates.

- ``gym_eight_schools``: `EightSchools` (10-d: average effect, log sd, eight school effects;
  centred parameterisation, a funnel in (log sd, effects));
- ``gym_brownian``: `BrownianMotionMissingMiddleObservations` (30-d latent Brownian path,
  the middle ten observations missing);
- ``gym_funnel``: `NealsFunnel` (10-d);
- ``gym_icg``: `IllConditionedGaussian` (100-d, dense covariance, eigenvalues spread over
  orders of magnitude).

The samplers work in unconstrained space: the target's log-density is that of
z = b⁻¹(x) with b the model's `default_event_space_bijector`,
log π(z) = log p(b(z)) + log|det ∂b/∂z|, and `constrain(z)` maps draws back to x, where the
ground truth lives. For these four models b is the identity (checked when the target is
built), so z = x and the target's `mean`/`variance` are the gym's; `reference_mean` and
`reference_sd` always hold the gym's numbers in x coordinates.

One evaluation differs from the gym's code, not from its density: `IllConditionedGaussian`
evaluates its multivariate normal with a triangular solve by its Cholesky factor L at every
call, which XLA compiles, inside the NUTS trees of HNN-NUTS, to code about 20 times slower
than a matrix-vector product. Here L⁻¹ is computed once (float64), and
log π(x) = −½‖L⁻¹(x − μ)‖² − Σ log L_ii − (d/2) log 2π; a test checks it against the
gym's.
"""

import numpy as np
import tensorflow as tf

from hmc_lib.targets.base import Target

#: registry name -> Inference Gym model class name
MODELS = {
    "gym_eight_schools": "EightSchools",
    "gym_brownian": "BrownianMotionMissingMiddleObservations",
    "gym_funnel": "NealsFunnel",
    "gym_icg": "IllConditionedGaussian",
}


def _gym():
    try:
        from inference_gym import using_tensorflow as gym
    except ImportError as err:  # pragma: no cover - pinned in requirements.txt
        raise ImportError("the Inference Gym targets need `inference-gym==0.0.5` "
                          "(pip install -r requirements.txt)") from err
    return gym


class GymTarget(Target):
    """A `Target` over the unconstrained coordinates z of an Inference Gym model.

    Extra attributes:
      model: the gym's flattened `VectorModel` (event shape `[dim]`, float32).
      bijector: its default event-space bijector b (x = b(z)).
      is_identity: whether b is the identity (then z = x and `mean`/`variance` are set).
      reference_mean, reference_sd: numpy `[dim]`, the gym's ground-truth posterior mean and
        standard deviation of x (identity sample transformation).
    """

    def __init__(self, model_name, name):
        gym = _gym()
        raw = getattr(gym.targets, model_name)()
        model = gym.targets.VectorModel(raw, flatten_sample_transformations=True)
        dim = int(model.event_shape[-1])
        bijector = model.default_event_space_bijector
        ident = model.sample_transformations["identity"]
        mean = np.asarray(ident.ground_truth_mean, np.float64)
        sd = np.asarray(ident.ground_truth_standard_deviation, np.float64)
        self.model, self.bijector = model, bijector
        self.reference_mean, self.reference_sd = mean, sd
        self.is_identity = _is_identity(bijector, dim)
        model_dtype = model.dtype
        whiten = _dense_gaussian(raw, dim)

        def log_prob_fn(z):
            dtype = z.dtype
            z32 = tf.cast(z, model_dtype)
            if whiten is not None:
                loc, inv_l, const = (tf.constant(a, model_dtype) for a in whiten)
                y = tf.linalg.matvec(inv_l, z32 - loc)
                lp = -0.5 * tf.reduce_sum(tf.square(y), -1) + const
            elif self.is_identity:
                lp = model.unnormalized_log_prob(z32)
            else:
                lp = (model.unnormalized_log_prob(bijector.forward(z32))
                      + bijector.forward_log_det_jacobian(z32, event_ndims=1))
            return tf.cast(lp, dtype)

        super().__init__(log_prob_fn, dim, name=name,
                         mean=mean if self.is_identity else None,
                         variance=sd ** 2 if self.is_identity else None)

    def constrain(self, z):
        """Maps draws `[..., dim]` of z to the model's coordinates x = b(z) (numpy float64)."""
        z = np.asarray(z, np.float64)
        if z.shape[-1:] != (self.dim,):
            raise ValueError(f"`z` must have shape [..., {self.dim}], got {list(z.shape)}")
        if self.is_identity:
            return z
        x = self.bijector.forward(tf.constant(z, self.model.dtype))
        return np.asarray(x, np.float64)


def _dense_gaussian(raw, dim):
    """`(μ, L⁻¹, −Σ log L_ii − (d/2) log 2π)` (numpy) of a gym model that is one
    `MultivariateNormalTriL` over its whole event (`IllConditionedGaussian`), else None."""
    import tensorflow_probability as tfp
    g = getattr(raw, "_gaussian", None)
    if not isinstance(g, tfp.distributions.MultivariateNormalTriL):
        return None
    tril = np.asarray(g.scale.to_dense(), np.float64)
    loc = np.broadcast_to(np.asarray(g.loc, np.float64), (dim,))
    const = -np.sum(np.log(np.diag(tril))) - 0.5 * dim * np.log(2.0 * np.pi)
    return loc, np.linalg.inv(tril), np.asarray(const)


def _is_identity(bijector, dim):
    """True when `bijector` maps points to themselves with zero log-det Jacobian."""
    z = tf.constant(np.linspace(-1.5, 1.5, dim), tf.float32)
    x = bijector.forward(z)
    ldj = bijector.forward_log_det_jacobian(z, event_ndims=1)
    return bool(np.allclose(x.numpy(), z.numpy(), rtol=0, atol=1e-6)
                and abs(float(ldj)) < 1e-6)


def _factory(name):
    def make():
        return GymTarget(MODELS[name], name)
    make.__name__ = name
    make.__doc__ = f"The Inference Gym's `{MODELS[name]}` posterior (module docstring)."
    return make


FACTORIES = {name: _factory(name) for name in MODELS}
