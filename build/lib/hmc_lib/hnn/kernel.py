"""HNN-HMC and HNN-NUTS: samplers whose trajectories follow a learned Hamiltonian H̃.

`HNNHMC` (Chen's "HNN-HMC", chapter 7): L steps of the HNN integrator (leapfrog with
−∇Ũ for a separable HNN, the implicit generalised leapfrog for a latent one) from a fresh
momentum, then

- ``exact=True`` (default): the shared Metropolis test with the **true** H = −log π + ½|p|²
  at the two ends of the trajectory. The HNN map is reversible and volume preserving, so
  the chain leaves π invariant whatever the network is; cost per step: one true log π,
  no true gradient.
- ``exact=False``: Chen's rule, accept with min(1, exp(H̃(start) − H̃(end))). No true
  evaluation at all, but it samples the HNN's own marginal, not π (biased; kept to measure
  the bias).

`HNNNUTS` (Dhulipala et al. 2023, chapter 7): the library's multinomial NUTS
(`hmc_lib.kernels.nuts.nuts_transition`) whose tree is built with the HNN integrator and
weighted with the **true** H at every leaf (one true log π per leaf). Dhulipala's online
error monitoring (``exact=False``; the default ``exact=True`` is below): if some leaf of
the HNN tree has H(leaf) − H(start) > `max_hnn_error` (Δ_max^hnn, also a fixed point that
did not converge), the transition *falls back*: it is redone from
the same state and momentum by NUTS with true gradients, and the next `cool_down` (N_lf)
transitions use true gradients too before the HNN is tried again. Ours differs from
Dhulipala's code in one respect: their sampler switches at the failing leaf and continues
that tree with true gradients; ours redoes the whole transition (so its cost is exactly
counted: the HNN leaves' log π evaluations plus the true tree's gradients; a hook to switch
at the leaf would need `nuts_transition` to report a per-leaf cost).

Exactness. With the monitor never firing (a good network) HNN-NUTS is exactly NUTS with a
reversible, volume-preserving integrator. Dhulipala's fall-back (``exact=False``) makes the
choice of integrator depend on the state: whether the HNN tree fires depends on where the
chain is (and, through H(leaf) − H(start), on which point of the trajectory it started
from), and the cool-down on where it has been. Such a switch is not π-invariant; with a poor
network its bias is large (the tests measure it). In cool-down, divergences use
`max_energy_error` (Δ_max^lf = 1000).

``exact=True`` (the default) makes the fall-back exact, at the price of one more HNN tree
(true log π evaluations, no true gradient) per fall-back and no cool-down:

1. the monitor fires when the spread max H − min H of the true H over the HNN tree exceeds
   Δ_max^hnn (`nuts_transition(divergence="range")`; by default 1000, the true tree's
   threshold: here it sets cost and mixing, not exactness), a property of the set of states, so
   every start in a trajectory that did not fire would have built it and not fired: the
   HNN branch, x → y with probability P(tree | x)·1{no fire}·w(y), is symmetric as NUTS is;
2. after a fall-back from x the true tree, with a momentum of its own (the HNN tree's is
   biased by having fired), proposes y, and a fresh HNN tree (new momentum, new
   directions) is built from y: y is accepted if that tree fires too, else the chain
   stays at x. With f(x) the probability that the monitor fires from x, the fall-back
   branch moves x → y with density π(x)·f(x)·K_true(x, y)·f(y), symmetric because NUTS
   with true gradients is π-reversible (K_true). Both branches satisfy detailed balance,
   so the kernel is π-invariant whatever the network is. A cool-down would make the choice
   depend on the chain's past, so it must be 0.

Cost fields (per chain and transition): `potential_evals` = true log π evaluations (HNN
leaves, plus true-tree leaves, which evaluate log π with the gradient); `grad_evals` = true
gradients (true-tree leaves, plus one at the start of a true tree when the current
gradient is not known).
"""

from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

from hmc_lib import _checks
from hmc_lib.hnn.integrators import implicit_leapfrog, implicit_step
from hmc_lib.integrators import LeapfrogState, leapfrog_trajectory, value_and_grad
from hmc_lib.kernels import metropolis
from hmc_lib.kernels.base import Kernel
from hmc_lib.kernels.hmc import check_initial, draw_momentum, log_accept_ratio, unpack_target
from hmc_lib.kernels.nuts import Phase, check_tree_depth, nuts_transition


def _check_hnn(hnn, dim):
    needed = ("kind", "dim", "hamiltonian", "grads") + (
        ("field",) if getattr(hnn, "kind", None) == "separable" else ())
    if not all(hasattr(hnn, a) for a in needed):
        raise TypeError(f"`hnn` must be an hmc_lib.hnn.HNN (or have {needed}), got "
                        f"{type(hnn).__name__}")
    if dim is not None and hnn.dim != dim:
        raise ValueError(f"`hnn` has dim {hnn.dim} but the target has dim {dim}")


#: Dhulipala's monitor: threshold Δ_max^hnn and cool-down N_lf (chapter 7)
DHULIPALA_MAX_HNN_ERROR, DHULIPALA_COOL_DOWN = 10.0, 20


def monitor_settings(exact, max_hnn_error, cool_down, true_threshold):
    """Checks and fills in an HNN sampler's monitor settings: `(max_hnn_error, cool_down)`.

    `None` means the default: for the exact monitor (`exact=True`) the numerical tree's own
    divergence threshold `true_threshold` and no cool-down (which it does not allow); for
    Dhulipala's, 10 and 20."""
    if not isinstance(exact, bool):
        raise TypeError(f"`exact` must be a bool, got {exact!r}")
    if max_hnn_error is None:
        max_hnn_error = true_threshold if exact else DHULIPALA_MAX_HNN_ERROR
    _checks.positive_float(max_hnn_error, "max_hnn_error")
    if cool_down is None:
        cool_down = 0 if exact else DHULIPALA_COOL_DOWN
    if not isinstance(cool_down, int) or cool_down < 0:
        raise ValueError(f"`cool_down` must be an integer >= 0, got {cool_down!r}")
    if exact and cool_down:
        raise ValueError(f"`cool_down` must be 0 with exact=True (a cool-down makes the "
                         f"choice of integrator depend on the chain's past), got "
                         f"{cool_down}")
    return max_hnn_error, cool_down


def hnn_energy(phase):
    """H = −log π + ½|p|² of a NUTS `Phase` with one position and momentum part."""
    return -phase.value + metropolis.kinetic_energy(phase.momentum[0])


class HNNHMCResults(NamedTuple):
    """Kernel results of `HNNHMC`; `[chains]` unless stated.

    target_log_prob: true log π at the current state (exact=True); for exact=False it is
      −Ũ-like: −H̃(x, 0), never a true evaluation.
    step_size; is_accepted, log_accept_ratio, is_divergent (a non-converged fixed point or a
      non-finite energy counts); grad_evals (always 0); potential_evals (1 if exact else 0);
    hnn_energy_error: H̃(end) − H̃(start) of the last trajectory.
    """
    target_log_prob: tf.Tensor
    step_size: tf.Tensor
    is_accepted: tf.Tensor
    log_accept_ratio: tf.Tensor
    is_divergent: tf.Tensor
    grad_evals: tf.Tensor
    potential_evals: tf.Tensor
    hnn_energy_error: tf.Tensor


class HNNHMC(Kernel):
    """HMC on the HNN's dynamics (see the module docstring).

    Args:
      target_log_prob_fn: `[chains, dim] -> [chains]` (true log π), or a `Target`.
      hnn: a trained `hmc_lib.hnn.HNN` (separable or latent).
      step_size: ε > 0 (scalar).
      num_leapfrog_steps: L >= 1.
      exact: Metropolis on the true H (True) or on H̃ (False, Chen's rule, biased).
      tol, max_iter: the implicit integrator's fixed-point settings (latent HNNs).
      max_energy_error: energy errors above this count as divergences.
    """

    learned = True

    trace_fields = ("potential_evals", "hnn_energy_error")

    def __init__(self, target_log_prob_fn, hnn, step_size, num_leapfrog_steps, exact=True,
                 tol=1e-6, max_iter=100, max_energy_error=metropolis.MAX_ENERGY_ERROR,
                 name="hnn_hmc"):
        self._log_prob_fn, self._dim = unpack_target(target_log_prob_fn)
        _check_hnn(hnn, self._dim)
        _checks.positive_float(step_size, "step_size")
        _checks.positive_int(num_leapfrog_steps, "num_leapfrog_steps")
        _checks.positive_float(tol, "tol")
        _checks.positive_int(max_iter, "max_iter")
        _checks.positive_float(max_energy_error, "max_energy_error")
        if not isinstance(exact, bool):
            raise TypeError(f"`exact` must be a bool, got {exact!r}")
        self._hnn = hnn
        self._parameters = dict(target_log_prob_fn=target_log_prob_fn, hnn=hnn,
                                step_size=step_size, num_leapfrog_steps=num_leapfrog_steps,
                                exact=exact, tol=tol, max_iter=max_iter,
                                max_energy_error=max_energy_error, name=name)

    def _value(self, x):
        if self.exact:
            return self._log_prob_fn(x)
        return -self._hnn.hamiltonian(x, tf.zeros_like(x))

    def bootstrap_results(self, init_state):
        x = _checks.floating(init_state, "current_state")
        _checks.state_shape(x, self._dim, "current_state")
        lp = self._log_prob_fn(x)
        x = check_initial(x, lp, self._dim)
        lp = self._value(x)
        izero = tf.zeros_like(lp, tf.int32)
        return HNNHMCResults(
            target_log_prob=lp, step_size=_checks.as_dtype(self.step_size, x.dtype),
            is_accepted=tf.zeros_like(lp, tf.bool), log_accept_ratio=tf.zeros_like(lp),
            is_divergent=tf.zeros_like(lp, tf.bool), grad_evals=izero,
            potential_evals=izero, hnn_energy_error=tf.zeros_like(lp))

    def _integrate(self, x, v, eps):
        """Returns `(x1, v1, converged [chains])`."""
        hnn = self._hnn
        if hnn.kind == "separable":
            dummy = tf.zeros(tf.shape(x)[:-1], x.dtype)
            start = LeapfrogState(x, v, dummy, hnn.field(x))
            end = leapfrog_trajectory(start, lambda y: (dummy, hnn.field(y)), eps,
                                      self.num_leapfrog_steps)
            return end.position, end.momentum, metropolis.all_finite((end.position,
                                                                      end.momentum))
        res = implicit_leapfrog(x, v, hnn, eps, self.num_leapfrog_steps, self.tol,
                                self.max_iter)
        return res.position, res.momentum, res.converged

    def one_step(self, current_state, previous_kernel_results, seed=None):
        x, prev = current_state, previous_kernel_results
        v0, accept_seed = draw_momentum(x, seed)
        x1, v1, ok = self._integrate(x, v0, prev.step_size)
        hnn_err = self._hnn.hamiltonian(x1, v1) - self._hnn.hamiltonian(x, v0)
        lp_new = self._value(x1)
        if self.exact:
            lar = log_accept_ratio(lp_new, prev.target_log_prob, v0, v1)
        else:
            lar = -hnn_err
        lar = tf.where(ok, lar, tf.constant(-float("inf"), lar.dtype))
        decision = metropolis.decide(lar, accept_seed, x1, self.max_energy_error)
        new_x, lp = metropolis.choose(decision.is_accepted, (x1, lp_new),
                                      (x, prev.target_log_prob))
        ones = tf.ones_like(lp, tf.int32)
        return new_x, prev._replace(
            target_log_prob=lp, is_accepted=decision.is_accepted,
            log_accept_ratio=decision.log_accept_ratio, is_divergent=decision.is_divergent,
            grad_evals=0 * ones, potential_evals=ones if self.exact else 0 * ones,
            hnn_energy_error=hnn_err)


class HNNNUTSResults(NamedTuple):
    """Kernel results of `HNNNUTS`; `[chains]` unless stated.

    target_log_prob: true log π at the current state; grad_target_log_prob `[chains, dim]`:
      the true gradient there where `grad_is_known`, else stale.
    step_size; is_accepted (the chain moved); log_accept_ratio (Stan's accept_stat);
    is_divergent: a divergence of the tree that produced the draw (a fall-back is reported
      in `fell_back`, not here); tree_depth.
    grad_evals, potential_evals: true gradients and true log π evaluations (module docstring).
    used_hnn: the draw came from the HNN tree. fell_back: the monitor fired this transition.
    cool_down: true-gradient transitions still to run before the HNN is tried again.
    fallback_rejected: (exact=True) the true tree's draw was rejected by the fall-back's
      check tree and the chain stayed.
    """
    target_log_prob: tf.Tensor
    grad_target_log_prob: tf.Tensor
    grad_is_known: tf.Tensor
    step_size: tf.Tensor
    is_accepted: tf.Tensor
    log_accept_ratio: tf.Tensor
    is_divergent: tf.Tensor
    tree_depth: tf.Tensor
    grad_evals: tf.Tensor
    potential_evals: tf.Tensor
    used_hnn: tf.Tensor
    fell_back: tf.Tensor
    cool_down: tf.Tensor
    fallback_rejected: tf.Tensor


class HNNNUTS(Kernel):
    """NUTS on the HNN's dynamics with online error monitoring (module docstring).

    Args:
      target_log_prob_fn: `[chains, dim] -> [chains]` (true log π), or a `Target`.
      hnn: a trained `hmc_lib.hnn.HNN`.
      step_size: ε > 0 (scalar), shared by the HNN and the true trees.
      max_tree_depth: at most 2^max_tree_depth − 1 steps per tree (<= 16).
      max_hnn_error: Δ_max^hnn, the monitor's threshold on H(leaf) − H(start) (exact=False;
        default 10, Dhulipala's) or on the spread of H over the HNN tree (exact=True;
        default `max_energy_error`, 1000). With the exact monitor the threshold sets cost
        and mixing, not exactness: the HNN tree is exact at any spread (its leaves are
        weighted with the true H, so leaves the network got wrong get negligible weight,
        and such a tree barely moves the chain); a low threshold sends more transitions to
        the true tree, which costs true gradients.
      exact: True (default): the exact monitor and fall-back (module docstring); False:
        Dhulipala's, with a cool-down.
      cool_down: N_lf, true-gradient transitions after a fall-back: default 20 (Dhulipala)
        for exact=False, 0 for exact=True, which allows no other value.
      max_energy_error: Δ_max^lf, the true tree's divergence threshold (1000).
      tol, max_iter: the implicit integrator's settings (latent HNNs).
    """

    learned = True

    trace_fields = ("tree_depth", "potential_evals", "used_hnn", "fell_back", "cool_down",
                    "fallback_rejected")

    def __init__(self, target_log_prob_fn, hnn, step_size, max_tree_depth=10,
                 max_hnn_error=None, cool_down=None,
                 max_energy_error=metropolis.MAX_ENERGY_ERROR, tol=1e-6, max_iter=100,
                 exact=True, name="hnn_nuts"):
        self._log_prob_fn, self._dim = unpack_target(target_log_prob_fn)
        _check_hnn(hnn, self._dim)
        _checks.positive_float(step_size, "step_size")
        max_tree_depth = check_tree_depth(max_tree_depth)
        _checks.positive_float(max_energy_error, "max_energy_error")
        max_hnn_error, cool_down = monitor_settings(exact, max_hnn_error, cool_down,
                                                    max_energy_error)
        _checks.positive_float(tol, "tol")
        _checks.positive_int(max_iter, "max_iter")
        self._hnn = hnn
        self._parameters = dict(target_log_prob_fn=target_log_prob_fn, hnn=hnn,
                                step_size=step_size, max_tree_depth=max_tree_depth,
                                max_hnn_error=max_hnn_error, cool_down=cool_down,
                                max_energy_error=max_energy_error, tol=tol, max_iter=max_iter,
                                exact=exact, name=name)

    def bootstrap_results(self, init_state):
        x = _checks.floating(init_state, "current_state")
        if x.shape.rank is not None and x.shape.rank != 2:
            raise ValueError(f"`current_state` must have shape [chains, dim], got "
                             f"{x.shape.as_list()}")
        _checks.state_shape(x, self._dim, "current_state")
        lp = self._log_prob_fn(x)
        x = check_initial(x, lp, self._dim)
        false, izero = tf.zeros_like(lp, tf.bool), tf.zeros_like(lp, tf.int32)
        return HNNNUTSResults(
            target_log_prob=lp, grad_target_log_prob=tf.zeros_like(x), grad_is_known=false,
            step_size=_checks.as_dtype(self.step_size, x.dtype), is_accepted=false,
            log_accept_ratio=tf.zeros_like(lp), is_divergent=false, tree_depth=izero,
            grad_evals=izero, potential_evals=izero, used_hnn=false, fell_back=false,
            cool_down=izero, fallback_rejected=false)

    _energy = staticmethod(hnn_energy)

    def _hnn_step(self, phase, eps):
        """One HNN step; the leaf's value is the true log π (-inf if the step failed)."""
        hnn, x, v = self._hnn, phase.position[0], phase.momentum[0]
        if hnn.kind == "separable":
            start = LeapfrogState(x, v, phase.value, phase.grad[0])
            end = leapfrog_trajectory(start, lambda y: (self._log_prob_fn(y), hnn.field(y)),
                                      eps[:, None], 1)
            return Phase((end.position,), (end.momentum,), end.value, (end.grad,))
        x1, v1, ok, _ = implicit_step(hnn, x, v, eps[:, None], self.tol, self.max_iter)
        x1 = tf.where(ok[:, None], x1, x)
        lp = tf.where(ok, self._log_prob_fn(x1), tf.constant(-float("inf"), x.dtype))
        return Phase((x1,), (v1,), lp, phase.grad)

    def _true_step(self, phase, eps):
        start = LeapfrogState(phase.position[0], phase.momentum[0], phase.value, phase.grad[0])
        end = leapfrog_trajectory(start, value_and_grad(self._log_prob_fn), eps[:, None], 1)
        return Phase((end.position,), (end.momentum,), end.value, (end.grad,))

    def _hnn_tree(self, x, v, log_prob, eps, seed):
        """The NUTS tree on the HNN's dynamics from (x, v): `(draw, its log π, TreeInfo)`;
        the monitor is its divergence (on the spread of H when exact)."""
        field = self._hnn.field(x) if self._hnn.kind == "separable" else tf.zeros_like(x)
        start = Phase((x,), (v,), log_prob, (field,))
        new, info = nuts_transition(start, seed, eps, self._hnn_step,
                                    self._energy, self.max_tree_depth, self.max_hnn_error,
                                    divergence="range" if self.exact else "start")
        return new.position[0], new.value, info

    def one_step(self, current_state, previous_kernel_results, seed=None):
        x, prev = current_state, previous_kernel_results
        seed = tfp.random.sanitize_seed(seed)
        momentum_seed, hnn_seed, true_seed = tfp.random.split_seed(seed, n=3)
        v = tf.random.stateless_normal(tf.shape(x), seed=momentum_seed, dtype=x.dtype)
        in_cool = prev.cool_down > 0
        eps, depth = prev.step_size, self.max_tree_depth
        izero = tf.zeros_like(prev.cool_down)
        false = tf.zeros_like(in_cool)

        def skip_hnn():
            return x, prev.target_log_prob, _empty_info(prev.target_log_prob)

        hx, hlp, hinfo = tf.cond(tf.reduce_all(in_cool), skip_hnn,
                                 lambda: self._hnn_tree(x, v, prev.target_log_prob, eps, hnn_seed))
        fired = ~in_cool & hinfo.is_divergent
        need_true = in_cool | fired

        # exact: the true tree draws its own momentum (the HNN tree's is biased by having
        # fired, so a true tree from it would not be K_true)
        true_v = (tf.random.stateless_normal(
            tf.shape(x), seed=tf.random.experimental.stateless_fold_in(seed, 3), dtype=x.dtype)
            if self.exact else v)

        def true_tree():
            lp, grad = value_and_grad(self._log_prob_fn)(x)
            grad = tf.where(prev.grad_is_known[:, None], prev.grad_target_log_prob, grad)
            start = Phase((x,), (true_v,), prev.target_log_prob, (grad,))
            new, info = nuts_transition(start, true_seed, eps, self._true_step, self._energy,
                                        depth, self.max_energy_error)
            return new.position[0], new.value, new.grad[0], info

        def skip_true():
            return x, prev.target_log_prob, prev.grad_target_log_prob, \
                _empty_info(prev.target_log_prob)

        tx, tlp, tgrad, tinfo = tf.cond(tf.reduce_any(need_true), true_tree, skip_true)
        check_leaves, rejected = izero, false
        if self.exact:
            # the fall-back's draw stands only if a fresh HNN tree from it fires too
            check_seed = tf.random.experimental.stateless_fold_in(seed, 1)
            check_v = tf.random.stateless_normal(
                tf.shape(x), seed=tf.random.experimental.stateless_fold_in(seed, 2),
                dtype=x.dtype)
            _, _, cinfo = tf.cond(tf.reduce_any(fired),
                                  lambda: self._hnn_tree(tx, check_v, tlp, eps, check_seed),
                                  skip_hnn)
            check_leaves = tf.where(fired, cinfo.grad_evals, izero)
            rejected = fired & ~cinfo.is_divergent
            tx = tf.where(rejected[:, None], x, tx)
            tlp = tf.where(rejected, prev.target_log_prob, tlp)
        pick = lambda a, b: tf.where(need_true if a.shape.rank == 1 else need_true[:, None],
                                     a, b)
        new_x = pick(tx, hx)
        start_grad = tf.cast(need_true & ~prev.grad_is_known, tf.int32)
        hnn_leaves = tf.where(in_cool, izero, hinfo.grad_evals)
        true_leaves = tf.where(need_true, tinfo.grad_evals, izero)
        # a true tree leaves the true gradient at its draw (not after a rejected fall-back);
        # an HNN draw that moved does not
        grad_known = (need_true & ~rejected) | (prev.grad_is_known & ~hinfo.is_accepted
                                                & ~need_true)
        cool = tf.where(fired, tf.fill(tf.shape(izero), self.cool_down),
                        tf.maximum(prev.cool_down - 1, 0))
        results = prev._replace(
            target_log_prob=pick(tlp, hlp),
            grad_target_log_prob=tf.where(need_true[:, None], tgrad, prev.grad_target_log_prob),
            grad_is_known=grad_known,
            is_accepted=pick(tinfo.is_accepted & ~rejected, hinfo.is_accepted),
            log_accept_ratio=pick(tinfo.log_accept_ratio, hinfo.log_accept_ratio),
            is_divergent=need_true & tinfo.is_divergent,
            tree_depth=pick(tinfo.tree_depth, hinfo.tree_depth),
            grad_evals=true_leaves + start_grad,
            potential_evals=hnn_leaves + true_leaves + check_leaves,
            used_hnn=~need_true, fell_back=fired, cool_down=cool, fallback_rejected=rejected)
        return new_x, results


def _empty_info(like):
    from hmc_lib.kernels.nuts import TreeInfo
    false, izero = tf.zeros_like(like, tf.bool), tf.zeros_like(like, tf.int32)
    return TreeInfo(tree_depth=izero, is_divergent=false, grad_evals=izero,
                    log_accept_ratio=tf.zeros_like(like), is_accepted=false)
