"""The No-U-Turn Sampler (Hoffman & Gelman 2014), multinomial variant, vectorised over chains.

Variant: iterative tree doubling (as TFP and BlackJAX do it, not recursion): at depth d a
direction is drawn per chain and a subtree of 2^d integrator steps is built from that end of
the trajectory, one step per iteration of a `tf.while_loop`, every chain stepping at once
under a per-chain mask (a chain that has stopped is frozen and its steps are not counted).
Within a subtree the candidate is drawn by progressive multinomial sampling (proportional to
exp(−H)); a valid subtree replaces the trajectory's candidate with probability
min(1, W_subtree / W_old) (Stan's biased progressive sampling). The no-U-turn criterion is
the original one, (z⁺ − z⁻)·v⁻ < 0 or (z⁺ − z⁻)·v⁺ < 0, checked on every sub-subtree of the
new subtree (through checkpoints kept per level) and on the whole trajectory after each
merge; an optional cap stops when |(z⁺ − z⁻)·v| exceeds it (Chen's stabilisation for
PM-NUTS). A leaf whose energy error exceeds `max_energy_error` (or is not finite) is a
divergence: its subtree is discarded and the tree stops. The error is H(leaf) − H(start) by
default (`divergence="start"`, as Stan and TFP); with `divergence="range"` it is the spread
max H − min H over the trajectory so far and the leaf. The spread is a property of the set
of states, not of which of them the transition started from, so every start in the final
trajectory would have stopped (or not) on the same divergence: "the transition diverged" is
then a symmetric event, which `hmc_lib.hnn.HNNNUTS(exact=True)` needs.

The tree builder `nuts_transition` is generic over the integrator step and the state
structure (tuples of position and momentum parts), so PM-NUTS (`kernels/pm.py`) reuses it
with the extended state (θ, u), (ρ, p).

Reported per chain: `tree_depth` (doublings), `grad_evals` (integrator steps actually taken,
one gradient each), `is_divergent`, `is_accepted` (the chain moved), and `log_accept_ratio` =
log of the mean over the tree's leaves of min(1, exp(H₀ − H)) (Stan's accept_stat, read by
TFP's step-size adaptation).
"""

from typing import Any, NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

from hmc_lib import _checks
from hmc_lib.integrators import LeapfrogState, leapfrog_trajectory, value_and_grad
from hmc_lib.kernels import metropolis
from hmc_lib.kernels.hmc import check_initial, mass_leapfrog, mass_tensors, unpack_target
from hmc_lib.kernels.base import Kernel, check_mass, check_mass_against_state


class Phase(NamedTuple):
    """A point in phase space: `position`, `momentum`, `grad` are tuples of `[chains, ...]`
    parts; `value` `[chains]` is the log-density whose gradient is `grad`."""
    position: Any
    momentum: Any
    value: Any
    grad: Any


class TreeInfo(NamedTuple):
    """What one NUTS transition reports, each `[chains]`."""
    tree_depth: Any
    is_divergent: Any
    grad_evals: Any
    log_accept_ratio: Any
    is_accepted: Any


def _bcast(mask, x):
    """Reshapes `mask` `[*lead_dims, chains]` to broadcast against `x` `[*lead_dims, chains, ...]`."""
    extra = len(x.shape) - len(mask.shape)
    return tf.reshape(mask, tf.concat([tf.shape(mask), tf.ones([extra], tf.int32)], 0))


def _where(mask, a, b):
    return tf.nest.map_structure(lambda x, y: tf.where(_bcast(mask, x), x, y), a, b)


def _dot(a, b, batch_ndims):
    """Σ over parts and event axes of a·b; `a`, `b` tuples of tensors, result `[batch]`."""
    total = 0.0
    for x, y in zip(a, b):
        prod = x * y
        total = total + tf.reduce_sum(prod, axis=list(range(batch_ndims, len(prod.shape))))
    return total


def _uturn(dz, v_a, v_b, batch_ndims, cap):
    """True where (dz·v_a < 0) or (dz·v_b < 0) (or a dot exceeds `cap` in size)."""
    a, b = _dot(dz, v_a, batch_ndims), _dot(dz, v_b, batch_ndims)
    turn = (a < 0) | (b < 0)
    if cap is not None:
        turn = turn | (tf.abs(a) > cap) | (tf.abs(b) > cap)
    return turn


DIVERGENCE = ("start", "range")


def nuts_transition(initial, seed, step_size, step_fn, energy_fn, max_tree_depth,
                    max_energy_error=metropolis.MAX_ENERGY_ERROR, velocity_fn=None,
                    uturn_cap=None, divergence="start"):
    """One multinomial NUTS transition from `initial` (a `Phase` with fresh momentum).

    Args:
      initial: `Phase`; parts `[chains, ...]`, value `[chains]`.
      seed: `[2]` stateless seed.
      step_size: scalar ε > 0.
      step_fn: `(phase, eps [chains]) -> phase`, one integrator step of signed size eps.
      energy_fn: `phase -> [chains]`, the Hamiltonian.
      max_tree_depth: int, at most 2^max_tree_depth − 1 steps.
      velocity_fn: `momentum tuple -> velocity tuple` for the criterion (default identity).
      uturn_cap: optional float, stop when |(z⁺ − z⁻)·v| exceeds it.
      divergence: "start" (H(leaf) − H(start) > max_energy_error) or "range" (max − min of
        H over the trajectory and the leaf > max_energy_error); module docstring.
    Returns:
      `(selected Phase, TreeInfo)`.
    """
    if divergence not in DIVERGENCE:
        raise ValueError(f"`divergence` must be one of {DIVERGENCE}, got {divergence!r}")
    by_range = divergence == "range"
    velocity_fn = velocity_fn or (lambda m: m)
    dtype = initial.value.dtype
    chains = tf.shape(initial.value)[0]
    depth_max = int(max_tree_depth)
    levels = max(depth_max - 1, 1)
    max_leaves = 2 ** (depth_max - 1)
    h0 = energy_fn(initial)
    dir_seed, merge_seed, leaf_seed = tfp.random.split_seed(seed, n=3)
    dir_u = tf.random.stateless_uniform([depth_max, chains], seed=dir_seed, dtype=dtype)
    merge_u = tf.random.stateless_uniform([depth_max, chains], seed=merge_seed, dtype=dtype)

    def leaf_u(d, k):
        # the uniform of leaf k of the depth-d subtree, drawn when the leaf is (drawing all
        # 2^(D-1) x D of them up front cost more than the tree at the default depth 10)
        index = tf.cast(d * max_leaves + k, tf.int32)
        return tf.random.stateless_uniform(
            [chains], seed=tf.random.experimental.stateless_fold_in(leaf_seed, index),
            dtype=dtype)
    step_size = _checks.as_dtype(step_size, dtype)
    pow2 = tf.constant([2 ** j for j in range(1, levels + 1)], tf.int32)   # levels 1..D-1
    neg_inf = tf.fill([chains], tf.constant(-float("inf"), dtype))
    false = tf.zeros([chains], tf.bool)
    izero = tf.zeros([chains], tf.int32)

    def checkpoint_like(parts):
        return tuple(tf.zeros(tf.concat([[levels], tf.shape(t)], 0), t.dtype) for t in parts)

    def build_subtree(d, start, direction, active0, tree_lo, tree_hi):
        """2^d steps from `start` in `direction` for chains in `active0`; `tree_lo`,
        `tree_hi`: min and max of H over the trajectory so far (for `divergence="range"`)."""
        eps = tf.cast(direction, dtype) * step_size
        dir_f = tf.cast(direction, dtype)

        def body(k, leaf, sub_logw, cand, ok, ck_pos, ck_vel, n, acc, div, lo, hi):
            active = active0 & ok
            leaf = _where(active, step_fn(leaf, eps), leaf)
            h = energy_fn(leaf)
            logw = h0 - h
            if by_range:
                lo = tf.where(active, tf.minimum(lo, h), lo)
                hi = tf.where(active, tf.maximum(hi, h), hi)
                diverge = ~tf.math.is_finite(logw) | (hi - lo > max_energy_error)
            else:
                diverge = ~tf.math.is_finite(logw) | (-logw > max_energy_error)
            logw = tf.where(tf.math.is_finite(logw), logw, neg_inf)
            n = n + tf.cast(active, tf.int32)
            acc = acc + tf.where(active, tf.exp(tf.minimum(logw, 0.0)), tf.zeros_like(logw))
            div = div | (active & diverge)
            take = active & ~diverge
            new_logw = tf.reduce_logsumexp(tf.stack([sub_logw, logw], 0), 0)
            pick = take & (leaf_u(d, k) < tf.exp(logw - new_logw))
            cand = _where(pick, leaf, cand)
            sub_logw = tf.where(take, new_logw, sub_logw)
            # checkpoints: the first leaf of each sub-subtree of size 2^j (j = 1..d)
            in_tree = tf.range(1, levels + 1) <= d
            set_j = in_tree & (tf.math.floormod(k, pow2) == 0)
            set_mask = set_j[:, None] & active[None, :]
            vel = velocity_fn(leaf.momentum)
            ck_pos = _where(set_mask, tuple(tf.broadcast_to(t[None], tf.shape(c)) for t, c in
                                            zip(leaf.position, ck_pos)), ck_pos)
            ck_vel = _where(set_mask, tuple(tf.broadcast_to(t[None], tf.shape(c)) for t, c in
                                            zip(vel, ck_vel)), ck_vel)
            check_j = in_tree & (tf.math.floormod(k + 1, pow2) == 0)
            dz = tuple(_bcast(dir_f, t) * (t[None] - c) for t, c in zip(leaf.position, ck_pos))
            turn = _uturn(dz, tuple(t[None] for t in vel), ck_vel, 2, uturn_cap)
            sub_turn = tf.reduce_any(check_j[:, None] & turn, axis=0)
            ok = ok & ~(active & (diverge | sub_turn))
            return k + 1, leaf, sub_logw, cand, ok, ck_pos, ck_vel, n, acc, div, lo, hi

        num = tf.bitwise.left_shift(1, d)
        init = (tf.constant(0, tf.int32), start, neg_inf, start, tf.ones([chains], tf.bool),
                checkpoint_like(start.position), checkpoint_like(start.position),
                izero, tf.zeros([chains], dtype), false, tree_lo, tree_hi)
        out = tf.while_loop(lambda k, leaf, sl, c, ok, *_: (k < num) & tf.reduce_any(active0 & ok),
                            body, init)
        return out[1:]

    def body(d, left, right, cand, log_w, cont, depth, n, acc, div, moved, lo, hi):
        direction = tf.where(dir_u[d] < 0.5, -1, 1)
        start = _where(direction > 0, right, left)
        leaf, sub_logw, sub_cand, ok, _, _, sub_n, sub_acc, sub_div, sub_lo, sub_hi = \
            build_subtree(d, start, direction, cont, lo, hi)
        n, acc, div = n + sub_n, acc + sub_acc, div | sub_div
        valid = cont & ok
        pick = valid & (merge_u[d] < tf.exp(sub_logw - log_w))
        cand = _where(pick, sub_cand, cand)
        moved = moved | pick
        log_w = tf.where(valid, tf.reduce_logsumexp(tf.stack([log_w, sub_logw], 0), 0), log_w)
        left = _where(valid & (direction < 0), leaf, left)
        right = _where(valid & (direction > 0), leaf, right)
        dz = tuple(r - l for r, l in zip(right.position, left.position))
        turn = _uturn(dz, velocity_fn(left.momentum), velocity_fn(right.momentum), 1, uturn_cap)
        depth = depth + tf.cast(cont, tf.int32)
        lo, hi = tf.where(valid, sub_lo, lo), tf.where(valid, sub_hi, hi)
        return d + 1, left, right, cand, log_w, valid & ~turn, depth, n, acc, div, moved, lo, hi

    init = (tf.constant(0, tf.int32), initial, initial, initial, tf.zeros([chains], dtype),
            tf.ones([chains], tf.bool), izero, izero, tf.zeros([chains], dtype), false, false,
            h0, h0)
    out = tf.while_loop(lambda d, *rest: (d < depth_max) & tf.reduce_any(rest[4]), body, init)
    _, _, _, cand, _, _, depth, n, acc, div, moved, _, _ = out
    mean_acc = acc / tf.cast(tf.maximum(n, 1), dtype)
    return cand, TreeInfo(tree_depth=depth, is_divergent=div, grad_evals=n,
                          log_accept_ratio=tf.math.log(mean_acc), is_accepted=moved)


class NUTSResults(NamedTuple):
    """Kernel results of `NUTS`; `[chains]` unless stated.

    target_log_prob, grad_target_log_prob (`[chains, dim]`): at the current state.
    step_size: in use (read and written by TFP's step-size adaptation).
    is_accepted: the chain moved. log_accept_ratio: log of Stan's accept_stat.
    is_divergent, grad_evals (int32), tree_depth (int32): of the last transition.
    """
    target_log_prob: tf.Tensor
    grad_target_log_prob: tf.Tensor
    step_size: tf.Tensor
    is_accepted: tf.Tensor
    log_accept_ratio: tf.Tensor
    is_divergent: tf.Tensor
    grad_evals: tf.Tensor
    tree_depth: tf.Tensor


def check_tree_depth(max_tree_depth):
    _checks.positive_int(max_tree_depth, "max_tree_depth")
    if int(max_tree_depth) > 16:
        raise ValueError(f"`max_tree_depth` must be <= 16, got {max_tree_depth}")
    return int(max_tree_depth)


class NUTS(Kernel):
    """Multinomial NUTS with a diagonal mass matrix, state `[chains, dim]` (module docstring).

    Args:
      target_log_prob_fn: `[chains, dim] -> [chains]`, or a `Target`.
      step_size: ε > 0, a scalar.
      max_tree_depth: at most 2^max_tree_depth − 1 leapfrog steps per transition (<= 16).
      max_energy_error: energy errors above this are divergences.
      mass: diagonal of the mass matrix M, `[dim]` (or `[chains, dim]`, or a scalar), > 0;
        momentum p ~ N(0, M), kinetic energy ½ pᵀM⁻¹p, and the no-U-turn criterion uses the
        velocity M⁻¹p. `None` (default): M = I.
    """

    trace_fields = ("tree_depth",)

    _input_parameters = ("step_size", "mass")

    def __init__(self, target_log_prob_fn, step_size, max_tree_depth=10,
                 max_energy_error=metropolis.MAX_ENERGY_ERROR, name="nuts", mass=None):
        self._log_prob_fn, self._dim = unpack_target(target_log_prob_fn)
        _checks.positive_float(step_size, "step_size")
        if tf.get_static_value(tf.convert_to_tensor(step_size)) is not None and \
                tf.convert_to_tensor(step_size).shape.rank not in (0, None):
            raise ValueError(f"`step_size` must be a scalar, got shape "
                             f"{tf.convert_to_tensor(step_size).shape.as_list()}")
        max_tree_depth = check_tree_depth(max_tree_depth)
        _checks.positive_float(max_energy_error, "max_energy_error")
        check_mass(mass, self._dim)
        self._parameters = dict(target_log_prob_fn=target_log_prob_fn, step_size=step_size,
                                max_tree_depth=max_tree_depth,
                                max_energy_error=max_energy_error, name=name, mass=mass)

    def _value_and_grad(self, x):
        return value_and_grad(self._log_prob_fn)(x)

    def bootstrap_results(self, init_state):
        x = _checks.floating(init_state, "current_state")
        if x.shape.rank is not None and x.shape.rank != 2:
            raise ValueError(f"`current_state` must have shape [chains, dim], got {x.shape.as_list()}")
        _checks.state_shape(x, self._dim, "current_state")
        lp, grad = self._value_and_grad(x)
        x = check_initial(x, lp, self._dim, grad=grad)
        check_mass_against_state(self._parameters.get("mass"), x)
        return NUTSResults(
            target_log_prob=lp, grad_target_log_prob=grad,
            step_size=_checks.as_dtype(self.step_size, x.dtype), is_accepted=tf.zeros_like(lp, tf.bool),
            log_accept_ratio=tf.zeros_like(lp), is_divergent=tf.zeros_like(lp, tf.bool),
            grad_evals=tf.zeros_like(lp, tf.int32), tree_depth=tf.zeros_like(lp, tf.int32))

    def _step(self, phase, eps):
        start = LeapfrogState(phase.position[0], phase.momentum[0], phase.value, phase.grad[0])
        end = leapfrog_trajectory(start, self._value_and_grad, eps[:, None], 1)
        return Phase((end.position,), (end.momentum,), end.value, (end.grad,))

    @staticmethod
    def _energy(phase):
        return -phase.value + metropolis.kinetic_energy(phase.momentum[0])

    def _mass_functions(self, dtype):
        """`(M, step_fn, energy_fn, velocity_fn)` for a diagonal mass matrix."""
        m, m_inv = mass_tensors(self._parameters["mass"], dtype)

        def step_fn(phase, eps):
            start = LeapfrogState(phase.position[0], phase.momentum[0], phase.value,
                                  phase.grad[0])
            end = mass_leapfrog(start, self._value_and_grad, eps[:, None], 1, m_inv)
            return Phase((end.position,), (end.momentum,), end.value, (end.grad,))

        def energy_fn(phase):
            p = phase.momentum[0]
            return -phase.value + 0.5 * tf.reduce_sum(p * p * m_inv, -1)

        return m, step_fn, energy_fn, lambda mom: (mom[0] * m_inv,)

    def one_step(self, current_state, previous_kernel_results, seed=None):
        prev = previous_kernel_results
        seed = tfp.random.sanitize_seed(seed)
        momentum_seed, tree_seed = tfp.random.split_seed(seed)
        x = current_state
        v = tf.random.stateless_normal(tf.shape(x), seed=momentum_seed, dtype=x.dtype)
        step_fn, energy_fn, velocity_fn = self._step, self._energy, None
        if self._parameters.get("mass") is not None:
            m, step_fn, energy_fn, velocity_fn = self._mass_functions(x.dtype)
            v = tf.sqrt(m) * v
        initial = Phase((x,), (v,), prev.target_log_prob, (prev.grad_target_log_prob,))
        new, info = nuts_transition(initial, tree_seed, prev.step_size, step_fn, energy_fn,
                                    self.max_tree_depth, self._parameters["max_energy_error"],
                                    velocity_fn=velocity_fn)
        results = prev._replace(
            target_log_prob=new.value, grad_target_log_prob=new.grad[0],
            is_accepted=info.is_accepted, log_accept_ratio=info.log_accept_ratio,
            is_divergent=info.is_divergent, grad_evals=info.grad_evals,
            tree_depth=info.tree_depth)
        return new.position[0], results
