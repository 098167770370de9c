"""Re-using compiled graphs (`hmc_lib._reuse`): a re-used graph gives exactly the draws and the
training a fresh one gives, and it is not traced again.

Everything here is deterministic (same seed, same machine: identical bits), so no tolerance.
"""

import sys

import numpy as np
import pytest
import tensorflow as tf

import hmc_lib
from hmc_lib import _reuse, targets
from hmc_lib.l2hmc import Dynamics, L2HMC, train as l2_train
from hmc_lib.nnghmc import GradientNet, run_schedule

l2_train_module = sys.modules["hmc_lib.l2hmc.train"]
schedule_module = sys.modules["hmc_lib.nnghmc.schedule"]


class CountingGaussian:
    """A standard normal log-density that counts how often it is traced into a graph."""

    def __init__(self, dim=3):
        self.dim, self.traced = dim, 0

    def __call__(self, x):
        if tf.inside_function():
            self.traced += 1
        return -0.5 * tf.reduce_sum(tf.square(x), -1)


def test_cache_keys_on_pins_by_identity_and_settings_and_forgets_the_oldest():
    cache = _reuse.Cache(maxsize=2)
    a, b = object(), object()
    built = []
    build = lambda tag: (lambda: built.append(tag) or tag)
    assert cache.get((a,), 1, build("a1")) == "a1"
    assert cache.get((b,), 1, build("b1")) == "b1"
    assert cache.get((a,), 1, build("again")) == "a1"     # a hit makes (a, 1) the newest
    assert cache.get((a,), 2, build("a2")) == "a2"        # evicts (b, 1), the oldest
    assert len(cache) == 2 and (cache.hits, cache.misses) == (1, 3)
    assert cache.get((b,), 1, build("b1 rebuilt")) == "b1 rebuilt"
    assert built == ["a1", "b1", "a2", "b1 rebuilt"]
    with pytest.raises(ValueError, match="maxsize"):
        _reuse.Cache(maxsize=0)


def test_cache_makes_room_before_it_builds():
    """A miss drops the oldest entry before building the new one, so at most `maxsize`
    workspaces are ever alive (a `Cache(maxsize=1)` holds one configuration at a time)."""
    cache = _reuse.Cache(maxsize=1)
    sizes = []
    build = lambda tag: (lambda: sizes.append(len(cache)) or tag)
    assert cache.get((), "a", build("a")) == "a"
    assert cache.get((), "b", build("b")) == "b"
    assert cache.get((), "b", build("again")) == "b" and len(cache) == 1
    assert sizes == [0, 0]


def test_memo_builds_once_per_key_and_forgets_failures():
    calls = []

    def build(key):
        calls.append(key)
        if key == "bad":
            raise ValueError("no such thing")
        return object()

    get = _reuse.memo(build)
    a = get("a")
    assert get("a") is a and get("b") is not a and calls == ["a", "b"]
    for _ in range(2):                      # a failure is raised again, not remembered
        with pytest.raises(ValueError, match="no such thing"):
            get("bad")
    assert calls == ["a", "b", "bad", "bad"] and set(get.built) == {"a", "b"}
    get.clear()
    assert get("a") is not a and calls[-1] == "a"
    # the L2HMC experiments' targets: one object per name, so their kernels are shared
    from hmc_lib.l2hmc import experiments as l2_ex
    assert l2_ex._target("scg") is l2_ex._target("scg")


def test_copy_weights_copies_every_variable_and_refuses_another_structure():
    src, dst = GradientNet(4, hidden=8, seed=1), GradientNet(4, hidden=8, seed=2)
    src.x_mean.assign(np.arange(4.0))
    _reuse.copy_weights(src, dst)
    for a, b in zip(src.variables, dst.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match="structure"):
        _reuse.copy_weights(src, GradientNet(4, hidden=9))
    with pytest.raises(ValueError, match="structure"):
        _reuse.copy_weights(Dynamics(4, hidden_units=(8,)), src)
    # the structure names the graph, not the numbers: seeds agree, activations do not
    assert _reuse.structure(src) == _reuse.structure(dst)
    assert _reuse.structure(src) != _reuse.structure(GradientNet(4, hidden=8, activation="tanh"))


def test_as_key_is_exact_and_hashable():
    assert _reuse.as_key(0.1) == _reuse.as_key(0.1) != _reuse.as_key(0.1 + 1e-17 + 1e-16)
    k = _reuse.as_key([np.array([0.1, 0.2]), 3])
    assert hash(k) == hash(_reuse.as_key([np.array([0.1, 0.2]), 3]))
    assert k != _reuse.as_key([np.array([0.1, 0.2], np.float32), 3])


def test_sampling_again_with_a_kernel_reuses_its_graph_and_its_draws_are_unchanged():
    target = CountingGaussian()
    x0 = tf.random.stateless_normal([4, 3], seed=[1, 2])
    kernel = hmc_lib.HMC(target, 0.3, 5)
    a, _ = hmc_lib.sample(kernel, 20, x0, seed=1)
    traced = target.traced
    assert traced > 0
    b, tb = hmc_lib.sample(kernel, 20, x0, seed=2)
    again, _ = hmc_lib.sample(kernel, 20, x0, seed=1)
    assert target.traced == traced                        # no second trace
    np.testing.assert_array_equal(a, again)
    assert not np.array_equal(a, b)
    fresh, _ = hmc_lib.sample(hmc_lib.HMC(target, 0.3, 5), 20, x0, seed=2)
    assert target.traced == traced      # a new kernel of the same target and settings: shared
    np.testing.assert_array_equal(b, fresh)
    # another step size or mass is an input of the same graph, and gives that kernel's chain
    other, _ = hmc_lib.sample(hmc_lib.HMC(target, 0.2, 5, mass=np.full(3, 2.0)), 20, x0, seed=2)
    assert target.traced == traced + 1  # mass given vs none: another graph, traced once
    mass_again, _ = hmc_lib.sample(hmc_lib.HMC(target, 0.25, 5, mass=np.full(3, 0.5)), 20, x0,
                                   seed=2)
    assert target.traced == traced + 1  # a new step size and mass: no new trace
    alone = hmc_lib.HMC(target, 0.25, 5, mass=np.full(3, 0.5))
    alone.graph_key = lambda: None      # the same kernel compiled on its own, constants inlined
    np.testing.assert_array_equal(mass_again, hmc_lib.sample(alone, 20, x0, seed=2)[0])
    hmc_lib.sample(hmc_lib.HMC(target, 0.3, 6), 20, x0, seed=2)
    assert target.traced == traced + 3  # `alone`, then another number of leapfrog steps
    # another chunk size or trace function is another graph, never the cached one
    c, tc = hmc_lib.sample(kernel, 20, x0, seed=2, chunk_size=7)
    np.testing.assert_array_equal(b, c)
    d, td = hmc_lib.sample(kernel, 20, x0, seed=2, trace_fn=lambda s, r: dict(lp=r.target_log_prob))
    np.testing.assert_array_equal(b, d)
    assert set(td) >= {"lp"} and "is_accepted" not in td


def test_l2hmc_training_reuses_its_graph_across_seeds_and_trains_exactly_as_fresh():
    target = CountingGaussian(dim=4)
    kw = dict(dim=4, num_train_steps=6, batch_size=4, num_leapfrog_steps=3,
              hidden_units=(5,), chunk_size=3)
    first, h1 = l2_train(target, seed=1, **kw)
    traced = target.traced
    second, h2 = l2_train(target, seed=2, **kw)
    assert target.traced == traced                        # seed 2 ran seed 1's graph
    assert not np.array_equal(h1["loss"], h2["loss"])
    assert not np.array_equal(first.masks, second.masks)  # masks are per seed, and copied
    l2_train_module._WORKSPACES.clear()
    fresh, h2_fresh = l2_train(target, seed=2, **kw)
    assert target.traced > traced
    np.testing.assert_array_equal(h2["loss"], h2_fresh["loss"])
    for a, b in zip(second.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(second.masks, Dynamics(4, 3, hidden_units=(5,), seed=2).masks)
    # the returned dynamics are the caller's own: a later run does not change them
    before = first.get_weights()
    l2_train(target, seed=3, **kw)
    for a, b in zip(before, first.get_weights()):
        np.testing.assert_array_equal(a, b)
    # and a kernel over them samples exactly as one over a fresh copy
    x0 = tf.zeros([4, 4])
    s1, _ = hmc_lib.sample(L2HMC(target, first), 10, x0, seed=4)
    s2, _ = hmc_lib.sample(L2HMC(target, first.copy()), 10, x0, seed=4)
    np.testing.assert_array_equal(s1, s2)


def test_dynamics_masks_are_checked():
    d = Dynamics(3, num_steps=2, hidden_units=(4,))
    with pytest.raises(ValueError, match="masks"):
        d.masks = np.ones((3, 3))
    d.masks = np.eye(3)[:2]
    np.testing.assert_array_equal(d.masks, np.eye(3)[:2])


def test_nnghmc_schedule_reuses_its_kernels_and_gives_the_same_chain():
    target = targets.get("scg")
    x0 = target.sample(4, 0)
    kw = dict(collect_until=10, retrain_every=5, probe_steps=4, tolerance=1.0,
              net_kwargs=dict(hidden=8, epochs=2, batch_size=16))
    warm = run_schedule(target, x0, 0.1, 5, 12, seed=3, **kw)
    hits = schedule_module._KERNELS.hits
    again = run_schedule(target, x0, 0.1, 5, 12, seed=3, **kw)
    assert schedule_module._KERNELS.hits > hits
    schedule_module._KERNELS.clear()
    fresh = run_schedule(target, x0, 0.1, 5, 12, seed=3, **kw)
    for res in (again, fresh):
        np.testing.assert_array_equal(warm.samples, res.samples)
        assert res.log["method"] == warm.log["method"] == "nnghmc"
    # the returned network is the fit's own, not the shared one the kernel runs
    shared = [w[0] for _, w in schedule_module._KERNELS._entries.values() if isinstance(w, tuple)]
    assert shared and isinstance(warm.grad_fn, GradientNet)
    assert all(warm.grad_fn is not net for net in shared)


def test_hnn_training_and_collection_reuse_their_graphs_and_match_fresh_ones():
    from hmc_lib.hnn import collect, train as hnn_train
    hnn_train_module = sys.modules["hmc_lib.hnn.train"]
    data_module = sys.modules["hmc_lib.hnn.data"]
    target = targets.get("scg")
    x0 = tf.cast(target.sample(4, 0), tf.float64)
    kw = dict(hidden=(8,), num_steps=5, batch_size=16, progress=False)

    def run(seed):
        data = collect(target, x0, 2, 3, 0.1, seed=seed)
        fit = hnn_train(data, seed=seed, **kw)
        return data, fit

    d1, f1 = run(1)
    misses = (hnn_train_module._WORKSPACES.misses, data_module._TRAJECTORIES.misses)
    d2, f2 = run(2)
    assert (hnn_train_module._WORKSPACES.misses, data_module._TRAJECTORIES.misses) == misses
    assert not np.array_equal(f1.history["loss"], f2.history["loss"])
    hnn_train_module._WORKSPACES.clear()
    data_module._TRAJECTORIES.clear()
    d2_fresh, f2_fresh = run(2)
    for a, b in zip(d2, d2_fresh):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(f2.history["loss"], f2_fresh.history["loss"])
    for a, b in zip(f2.hnn.get_weights(), f2_fresh.hnn.get_weights()):
        np.testing.assert_array_equal(a, b)
    # the first fit's network is its own: later fits did not overwrite it
    assert not np.array_equal(f1.hnn.get_weights()[0], f2.hnn.get_weights()[0])


def test_kernel_for_runs_the_latest_networks_weights_through_one_graph():
    """`kernel_for` returns one kernel per structure, and it samples exactly as a kernel built
    on the network passed last (its weights copied in), not on an earlier one's."""
    from hmc_lib.nnghmc import NNgHMC
    target = targets.get("scg")
    x0 = target.sample(4, 0)
    cache = _reuse.Cache(maxsize=2)
    a, b = GradientNet(target.dim, hidden=8, seed=1), GradientNet(target.dim, hidden=8, seed=2)
    build = lambda net: NNgHMC(target, net, 0.2, 4)
    ka = _reuse.kernel_for(cache, (target,), ("nnghmc",), a, build)
    da, _ = hmc_lib.sample(ka, 15, x0, seed=3)
    kb = _reuse.kernel_for(cache, (target,), ("nnghmc",), b, build)
    assert kb is ka and cache.misses == 1
    db, _ = hmc_lib.sample(kb, 15, x0, seed=3)
    np.testing.assert_array_equal(da, hmc_lib.sample(build(a), 15, x0, seed=3)[0])
    np.testing.assert_array_equal(db, hmc_lib.sample(build(b), 15, x0, seed=3)[0])
    assert not np.array_equal(da, db)
    other = GradientNet(target.dim, hidden=8, activation="tanh")
    assert _reuse.kernel_for(cache, (target,), ("nnghmc",), other, build) is not ka
