"""The convergence gate (`diagnostics.convergence`), frozen chains, and `sample_until`."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

import hmc_lib
from hmc_lib import diagnostics, sampling, targets


def _iid(draws, chains, dim, seed=0):
    return np.random.default_rng(seed).standard_normal((draws, chains, dim))


def test_gate_passes_independent_chains_and_fails_short_or_disagreeing_ones():
    # 4 x 1000 iid draws: ESS ≈ 4000 and R̂ − 1 ≈ 1e-3, far inside the gate.
    ok = diagnostics.convergence(_iid(1000, 4, 3))
    assert ok.converged and ok.rhat_max < diagnostics.RHAT_MAX
    assert ok.ess_min == min(ok.ess_bulk_min, ok.ess_tail_min) > 1000
    assert "converged" in ok.describe() and (ok.draws, ok.chains) == (1000, 4)
    # 4 x 20 draws: ESS ≈ 80 < 100, whatever the draws
    assert not diagnostics.convergence(_iid(20, 4, 3)).converged
    # one chain shifted by 1 sd: R̂ ≈ 1.09
    x = _iid(1000, 4, 3)
    x[:, 0] += 1.0
    shifted = diagnostics.convergence(x)
    assert not shifted.converged and shifted.rhat_max > 1.05
    assert "not converged" in shifted.describe()


def test_thresholds_are_the_books():
    assert diagnostics.RHAT_MAX == 1.01 and diagnostics.ESS_MIN == 100


def test_a_chain_that_never_moves_has_nan_ess_and_rhat_and_a_warning():
    with pytest.warns(RuntimeWarning, match="never moved"):
        e = diagnostics.ess(np.zeros((400, 4)))
    assert np.isnan(e).all()          # was 1600, the number of draws
    x = _iid(400, 4, 2)
    x[:, :, 1] = np.arange(4)         # each chain stuck at its own value
    with pytest.warns(RuntimeWarning, match="1 of 2 coordinates"):
        r = diagnostics.rhat(x)
    assert np.isnan(r[1]) and np.isfinite(r[0])
    with pytest.warns(RuntimeWarning):
        gate = diagnostics.convergence(x)
    assert not gate.converged and np.isnan(gate.rhat_max)
    with pytest.warns(RuntimeWarning):
        s = diagnostics.summary(x, {"grad_evals": np.ones((400, 4))})
    assert np.isnan(s["ess_min"]) and s["converged"] is False


def test_summary_carries_the_gate():
    s = diagnostics.summary(_iid(500, 4, 2), {"grad_evals": np.ones((500, 4))})
    assert s["converged"] and s["rhat_max"] < 1.01 and s["ess_bulk_min"] > 1000


def _kernel():
    t = targets.Target(lambda x: -0.5 * tf.reduce_sum(x**2, -1), 3)
    return hmc_lib.HMC(t, 0.4, 5)


def _until(**kw):
    state = tf.random.stateless_normal([4, 3], [1, 2])
    args = dict(seed=3, chunk_draws=25, max_draws=2000)
    args.update(kw)
    return sampling.sample_until(_kernel(), state, **args)


def test_sample_until_stops_at_the_gate_and_records_its_history():
    s, tr = _until()
    assert tr["stopped"] == "converged" and tr["convergence"].converged
    assert s.shape[0] == tr["history"][-1]["draws"] and s.shape[0] % 25 == 0
    assert all(not h["converged"] for h in tr["history"][:-1])
    # every step's gradients are counted: 5 per step and chain
    assert tr["history"][-1]["grad_evals"] == 5 * 4 * s.shape[0]
    assert tr["is_accepted"].shape == (s.shape[0], 4)


def test_sample_until_reports_a_spent_budget():
    s, tr = _until(chunk_draws=10, max_grad_evals=5 * 4 * 30)   # 3 chunks' gradients
    assert tr["stopped"] == "max_grad_evals" and s.shape[0] == 30
    assert not tr["convergence"].converged
    s, tr = _until(chunk_draws=10, max_draws=20)
    assert tr["stopped"] == "max_draws" and s.shape[0] == 20


def test_sample_until_is_fixed_by_its_seed_and_a_longer_budget_only_appends():
    a, _ = _until(chunk_draws=10, max_draws=30)
    b, _ = _until(chunk_draws=10, max_draws=50)
    np.testing.assert_array_equal(a, b[:30])
    c, _ = _until(chunk_draws=10, max_draws=30, seed=4)
    assert not np.array_equal(a, c)


def test_sample_until_resumes_from_its_checkpoint(tmp_path):
    path = str(tmp_path / "run.npz")
    short, _ = _until(chunk_draws=10, max_draws=20, checkpoint=path, checkpoint_seconds=0)
    # the same run asked for more: continues from the checkpoint (20 draws restored)
    full, tr = _until(chunk_draws=10, max_draws=60, checkpoint=path, checkpoint_seconds=0)
    fresh, _ = _until(chunk_draws=10, max_draws=60)
    assert tr["resumed_draws"] == 20
    np.testing.assert_array_equal(full, fresh)
    with pytest.raises(ValueError, match="another run"):
        _until(chunk_draws=10, max_draws=60, checkpoint=path, seed=9)


def test_sample_until_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="chunk_draws"):
        _until(chunk_draws=0)
    with pytest.raises(ValueError, match="chunk_draws"):
        _until(chunk_draws=50, max_draws=10)
    with pytest.raises(ValueError, match="max_grad_evals"):
        _until(max_grad_evals=0)
