import numpy as np
import pytest
import tensorflow as tf

from hmc_lib import integrators, scale, targets

# step sizes that keep every target's trajectories bounded
STEP = {"icg50": 0.05, "scg": 0.05, "mog": 0.1, "rough_well": 0.005, "banana": 0.01, "icg30": 0.1}


def _start(target, chains=4, seed=0):
    x = target.sample(chains, seed, tf.float64)
    v = tf.random.stateless_normal(x.shape, [seed, 7], dtype=tf.float64)
    return x, v


def test_leapfrog_is_reversible_in_float64(target_name):
    t = targets.get(target_name)
    x, v = _start(t)
    x1, v1 = integrators.leapfrog(x, v, t.grad_log_prob, STEP[target_name], 50)
    assert np.max(np.abs(x1 - x)) > 1e-3  # it moved
    x2, v2 = integrators.leapfrog(x1, -v1, t.grad_log_prob, STEP[target_name], 50)
    np.testing.assert_allclose(x2, x, rtol=0, atol=1e-10)
    np.testing.assert_allclose(-v2, v, rtol=0, atol=1e-10)


def _log_abs_det_jacobian(fn, z):
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        out = fn(z)
    jac = tape.jacobian(out, z, experimental_use_pfor=False)
    return np.linalg.slogdet(jac.numpy())[1]


@pytest.mark.parametrize("name", ["scg", "mog", "rough_well", "banana", "icg30"])
def test_leapfrog_preserves_volume(name):
    t = targets.get(name)
    x, v = _start(t, chains=1)
    d = t.dim

    def flow(z):
        x1, v1 = integrators.leapfrog(z[None, :d], z[None, d:], t.grad_log_prob, STEP[name], 10)
        return tf.concat([x1[0], v1[0]], 0)

    assert abs(_log_abs_det_jacobian(flow, tf.concat([x[0], v[0]], 0))) < 1e-8


def test_leapfrog_with_any_vector_field_is_reversible_and_volume_preserving():
    # a field that is not a gradient (its Jacobian is not symmetric): leapfrog stays a
    # composition of shears, which is all NNgHMC's exactness needs
    a = tf.constant([[-1.0, 0.7, 0.0], [-0.3, -2.0, 0.1], [0.5, 0.0, -0.5]], tf.float64)
    field = lambda x: tf.linalg.matvec(a, x) + tf.sin(x)
    z0 = tf.constant([0.3, -1.2, 0.8, 0.1, 0.4, -0.7], tf.float64)

    def flow(z):
        x1, v1 = integrators.leapfrog(z[None, :3], z[None, 3:], field, 0.1, 25)
        return tf.concat([x1[0], v1[0]], 0)

    assert abs(_log_abs_det_jacobian(flow, z0)) < 1e-8
    z1 = flow(z0)
    z2 = flow(tf.concat([z1[:3], -z1[3:]], 0))
    np.testing.assert_allclose(tf.concat([z2[:3], -z2[3:]], 0), z0, rtol=0, atol=1e-12)


@pytest.mark.statistical
@pytest.mark.parametrize("name", ["icg30", "banana", "rough_well", "mog"])
def test_energy_error_is_second_order(name):
    # random starts: the ratio is 4 + O(ε²) for every start, and the horizons keep the
    # O(ε²) correction far inside the ±0.5 tolerance wherever the starts fall
    t = targets.get(name)
    x, v = _start(t, chains=64, seed=scale.seed(3))
    horizon = {"icg30": 0.4, "banana": 0.05, "rough_well": 0.01, "mog": 0.4}[name]
    h0 = -t.log_prob(x) + 0.5 * tf.reduce_sum(v**2, -1)
    errors = []
    for k in range(3):
        steps = 8 * 2**k
        x1, v1 = integrators.leapfrog(x, v, t.grad_log_prob, horizon / steps, steps)
        h1 = -t.log_prob(x1) + 0.5 * tf.reduce_sum(v1**2, -1)
        errors.append(float(tf.reduce_mean(tf.abs(h1 - h0))))
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    np.testing.assert_array_less(3.5, ratios)
    np.testing.assert_array_less(ratios, 4.5)


def test_leapfrog_matches_the_exact_harmonic_oscillator_to_second_order():
    x0 = tf.constant([[1.0]], tf.float64)
    v0 = tf.constant([[0.0]], tf.float64)
    t_end = 1.0
    errs = []
    for steps in (10, 20, 40):
        x1, _ = integrators.leapfrog(x0, v0, lambda x: -x, t_end / steps, steps)
        errs.append(abs(float(x1[0, 0]) - np.cos(t_end)))
    assert 3.5 < errs[0] / errs[1] < 4.5 and 3.5 < errs[1] / errs[2] < 4.5


def test_leapfrog_float32_runs_and_keeps_dtype():
    x = tf.zeros([3, 2])
    x1, v1 = integrators.leapfrog(x, tf.ones([3, 2]), lambda x: -x, 0.1, 5)
    assert x1.dtype == tf.float32 and v1.shape == (3, 2)


@pytest.mark.parametrize("step_size", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_step_size_is_a_clear_error(step_size):
    with pytest.raises(ValueError, match="step_size"):
        integrators.leapfrog(tf.zeros([1, 2]), tf.zeros([1, 2]), lambda x: -x, step_size, 3)


@pytest.mark.parametrize("num_steps,err", [(0, ValueError), (-2, ValueError), (1.5, TypeError)])
def test_bad_step_count_is_a_clear_error(num_steps, err):
    with pytest.raises(err, match="num_steps"):
        integrators.leapfrog(tf.zeros([1, 2]), tf.zeros([1, 2]), lambda x: -x, 0.1, num_steps)


def test_mismatched_momentum_is_a_clear_error():
    with pytest.raises(ValueError, match="momentum"):
        integrators.leapfrog(tf.zeros([1, 2]), tf.zeros([1, 3]), lambda x: -x, 0.1, 3)
