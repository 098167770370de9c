"""No silent failures: a run that goes wrong says so (issue: "Your own model")."""

import numpy as np
import pytest
import tensorflow as tf

import hmc_lib
from hmc_lib import sampling, targets


def _gauss(dim=2):
    return targets.Target(lambda x: -0.5 * tf.reduce_sum(x**2, -1), dim)


def test_a_log_density_without_a_gradient_is_a_clear_error():
    rounded = lambda x: -0.5 * tf.reduce_sum(tf.round(x) ** 2, -1)
    with pytest.raises(ValueError, match="no gradient.*NumPy"):
        hmc_lib.sample(hmc_lib.HMC(rounded, 0.1, 3), 5, tf.ones([2, 2]))
    numpy_inside = lambda x: tf.constant(-0.5 * np.sum(np.asarray(x) ** 2, -1))
    with pytest.raises(ValueError, match="`target_log_prob_fn` has no gradient"):
        hmc_lib.NUTS(numpy_inside, 0.1).bootstrap_results(tf.ones([2, 2]))


def test_a_non_finite_gradient_at_the_start_is_a_clear_error():
    # finite log-density, infinite gradient at 0: sqrt(|x|)
    cusp = lambda x: -tf.reduce_sum(tf.sqrt(tf.abs(x)), -1)
    with pytest.raises(ValueError, match=r"gradient .* not finite .*\(chains \[0\]\)"):
        hmc_lib.HMC(cusp, 0.1, 3).bootstrap_results(tf.constant([[0.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="gradient .* not finite"):
        hmc_lib.NUTS(cusp, 0.1).bootstrap_results(tf.constant([[0.0, 1.0], [1.0, 1.0]]))


def test_sample_warns_once_with_counts_on_divergences():
    # NaN on half the space: every proposal into x0 < 0 is a divergence, and the user is told
    half = lambda x: tf.where(x[..., 0] > 0, -0.5 * tf.reduce_sum(x**2, -1), np.nan)
    with pytest.warns(RuntimeWarning, match=r"sample: \d+ of 400 transitions divergent") as rec:
        hmc_lib.sample(hmc_lib.HMC(half, 0.5, 5), 100, tf.ones([4, 2]), seed=1)
    assert len([w for w in rec if "sample:" in str(w.message)]) == 1


def test_sample_warns_on_low_acceptance_and_frozen_chains():
    with pytest.warns(RuntimeWarning, match=r"acceptance 0\.0\d* < 0\.1.*4 of 4 chains never"):
        hmc_lib.sample(hmc_lib.HMC(_gauss(50), 5.0, 10), 50,
                       tf.random.stateless_normal([4, 50], [1, 1]), seed=1)


def test_a_healthy_run_warns_nothing(recwarn):
    hmc_lib.sample(hmc_lib.HMC(_gauss(), 0.5, 4), 100, tf.zeros([4, 2]), seed=1)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_run_warnings_reads_structures_and_moved_flags():
    draws = [np.zeros((5, 3, 2)), np.zeros((5, 3))]
    draws[0][:, 1] = np.arange(5)[:, None]
    with pytest.warns(RuntimeWarning, match=r"2 of 3 chains never moved \(chains 0, 2\)"):
        line = sampling.run_warnings("x", None, None, draws)
    assert line.startswith("x: ")
    with pytest.warns(RuntimeWarning, match="chains 1"):
        sampling.run_warnings("warmup", np.zeros((3, 2), bool), np.full((3, 2), 0.5),
                              moved=[True, False])
    assert sampling.run_warnings("x", np.zeros((3, 2), bool), np.full((3, 2), 0.5)) == ""


def test_warmup_warns_when_its_last_window_diverges():
    half = lambda x: tf.where(x[..., 0] > 0, -0.5 * tf.reduce_sum(x**2, -1), np.nan)
    with pytest.warns(RuntimeWarning, match=r"warmup \(its last \d+ iterations.*divergent"):
        hmc_lib.warmup(lambda h, m: hmc_lib.HMC(half, h, 5, mass=m), tf.ones([4, 2]), 40,
                       seed=2)


def test_hnn_collect_takes_a_callable_with_dim_and_names_what_it_needs():
    import numpy as np
    import tensorflow as tf
    from hmc_lib import hnn
    log_prob = lambda x: -0.5 * tf.reduce_sum(x ** 2, -1)
    x0 = np.zeros([2, 3], np.float32)
    with pytest.raises(TypeError, match="dim="):
        hnn.collect(log_prob, x0, 1, 2, 0.1, seed=0)
    data = hnn.collect(log_prob, x0, 1, 2, 0.1, seed=0, dim=3)
    assert np.asarray(data.q).shape == (2 * 1 * 2, 3)
    with pytest.raises(TypeError, match="`target` must be"):
        hnn.collect(3.0, x0, 1, 2, 0.1, seed=0)


def test_an_xla_fallback_in_l2hmc_training_says_so_and_is_flagged():
    """A log-density XLA cannot compile inside the training loop (TFP's MixtureSameFamily
    gradient): training runs without XLA, says so in one warning, and flags it."""
    import tensorflow_probability as tfp
    from hmc_lib import l2hmc
    tfd = tfp.distributions
    mix = tfd.MixtureSameFamily(
        tfd.Categorical(logits=[0.0, 0.0]),
        tfd.MultivariateNormalDiag(loc=[[-2.0, 0.0], [2.0, 0.0]], scale_diag=[[1.0, 1.0]] * 2))
    with pytest.warns(RuntimeWarning, match="XLA could not compile the training step"):
        _, history = l2hmc.train(mix.log_prob, dim=2, num_train_steps=4, batch_size=8, seed=0)
    assert history["xla_fallback"] and not history["xla"]
    _, plain = l2hmc.train(mix.log_prob, dim=2,
                           num_train_steps=4, batch_size=8, seed=0, jit_compile=False)
    assert not plain["xla_fallback"] and not plain["xla"]


def test_a_learned_samplers_summary_charges_its_training_or_says_it_cannot():
    from hmc_lib import diagnostics
    from hmc_lib.nnghmc import NNgHMC
    t = targets.get("icg50")
    x0 = t.sample(4, seed=0)
    field = lambda x: -x / tf.constant(t.variance, x.dtype)     # a perfect "network"
    s, tr = hmc_lib.sample(NNgHMC(t, field, 0.05, 5), 50, x0, seed=1)
    assert tr["learned"]
    unknown = diagnostics.summary(s, tr)
    assert np.isnan(unknown["ess_per_grad_charged"]) and np.isnan(unknown["train_grad_evals"])
    charged = diagnostics.summary(s, tr, training={"grad_evals": 1000.0, "seconds": 2.0})
    assert charged["ess_per_grad_charged"] == pytest.approx(
        charged["ess_min"] / (charged["grad_evals"] + 1000.0))
    assert charged["ess_per_second_charged"] == pytest.approx(
        charged["ess_min"] / (charged["seconds"] + 2.0))
    plain_s, plain_tr = hmc_lib.sample(hmc_lib.HMC(t, 0.05, 5), 50, x0, seed=1)
    plain = diagnostics.summary(plain_s, plain_tr)
    assert not plain_tr["learned"] and plain["ess_per_grad_charged"] == plain["ess_per_grad"]
    with pytest.raises(TypeError, match="grad_evals"):
        diagnostics.summary(s, tr, training="a lot")
