"""HNN-PM-NUTS: NUTS on a θ-only HNN for a pseudo-marginal target, with PM-NUTS as the
numerical fall-back (Chen 2025, after Dhulipala et al. 2023; chapter 7).

The extended target is π(θ, u) ∝ p(θ) p̂(y | θ, u) N(u; 0, I) (`hmc_lib.pm`). The HNN is a
separable H̃(θ, ρ) = Ũ(θ) + ½|ρ|², Ũ ≈ −log p(θ) − log p(y | θ) (trained on θ-gradients of
log p̂ along PM trajectories, Chen's method 4). One transition:

1. **u-refresh** (every transition): a Crank–Nicolson proposal
   u' = c·u + √(1 − c²)·ξ, ξ ~ N(0, I) (c = `u_correlation`; c = 0 draws a fresh u), accepted
   with min(1, p̂(y | θ, u') / p̂(y | θ, u)): the pseudo-marginal Metropolis update of u | θ.
   Exact for π(u | θ); one log p̂ evaluation. (Chen redraws u without a test, which is not
   π-invariant.)
2. **HNN tree**: multinomial NUTS on θ alone (u held) with the HNN's leapfrog, each leaf
   weighted with the extended energy E = −log p(θ') − log p̂(y | θ', u) + ½|ρ'|²: one log p̂ per
   leaf, no gradient of it. With u fixed this is NUTS on π(θ | u) with a reversible,
   volume-preserving integrator: exact. **Monitor**: a leaf with E(leaf) − E(start) >
   Δ_max^hnn (`max_hnn_error`) ends the tree and *fires*.
3. **Fall-back** (on a firing and for the next `cool_down` = N_lf transitions): a PM-NUTS
   transition (`hmc_lib.pm.PMNUTS`: fresh ρ and p at the current (θ, u), the Strang
   integrator, the no-U-turn criterion on (θ, u) with Chen's cap). **Δ_max^lf**
   (`max_lf_error`): if that numerical tree diverges (an energy error above Δ_max^lf, or a
   non-finite one), the sample is *rejected*: the chain stays at (θ, u) and `lf_rejected`
   counts it. (A divergence is a property of the whole tree, which every state of the tree
   would build with the same probability, so rejecting on it keeps PM-NUTS's invariance.)

Exactness: steps 1 and 2 are exact (each leaves π(θ, u) invariant), and so is a PM-NUTS
transition with or without the Δ_max^lf rejection. Dhulipala's *switch* between them
(``exact=False``, steps 2-3 as written above) is not: the fall-back is taken when the HNN
tree fires, which depends on the state, and the cool-down on the chain's past; the same
limitation as `HNNNUTS(exact=False)`. ``exact=True`` (the default) makes the switch exact
as `HNNNUTS(exact=True)` does: the monitor fires on the spread max E − min E over the HNN
tree (a property of the tree's set of states; threshold by default Δ_max^lf, 1000); after a
firing, the PM-NUTS proposal (θ', u') stands only if a fresh HNN tree on θ' | u' fires too,
else the chain stays at (θ, u); no cool-down. With f(θ, u) the probability of a firing, the
fall-back moves (θ, u) → (θ', u') with density π(θ, u) f(θ, u) K_PM((θ, u), (θ', u')) f(θ', u'),
symmetric because PM-NUTS is π-reversible (`fallback_rejected` counts the stays).

Cost fields (per chain and transition): `grad_evals` = gradients of log p̂ (PM-NUTS leaves,
plus one at the start of a fall-back when the gradient at (θ, u) is not known);
`potential_evals` = log p̂ evaluations (the u-refresh, the HNN leaves, the PM leaves, which
evaluate log p̂ with the gradient, and the exact switch's check-tree leaves).
"""

from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

from hmc_lib import _checks
from hmc_lib.hnn.kernel import _check_hnn, _empty_info, hnn_energy, monitor_settings
from hmc_lib.integrators import LeapfrogState, leapfrog_trajectory
from hmc_lib.kernels import metropolis
from hmc_lib.kernels.base import Kernel
from hmc_lib.kernels.nuts import Phase, check_tree_depth, nuts_transition
from hmc_lib.pm import kernel as pm_kernel
from hmc_lib.pm.kernel import PMNUTS, PMResults


class HNNPMNUTSResults(NamedTuple):
    """Kernel results of `HNNPMNUTS`; `[chains]` unless stated.

    target_log_prob: log p(θ) + log p̂(y | θ, u) at the current state.
    grad_theta `[chains, theta_dim]`, grad_u `[chains, *u_shape]`: its gradients where
      `grad_is_known`, else stale.
    step_size; is_accepted (θ moved); log_accept_ratio (of the tree that produced the draw);
    is_divergent (the PM tree diverged: equals `lf_rejected`); tree_depth;
    grad_evals, potential_evals (module docstring); used_hnn: the draw came from the HNN tree;
    fell_back: the monitor fired; cool_down: PM-NUTS transitions still to run;
    lf_rejected: the PM tree's error exceeded Δ_max^lf and the sample was rejected;
    u_accepted: the u-refresh was accepted;
    fallback_rejected: (exact=True) the check tree from the PM proposal did not fire, so the
      chain stayed.
    """
    target_log_prob: tf.Tensor
    grad_theta: tf.Tensor
    grad_u: tf.Tensor
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
    lf_rejected: tf.Tensor
    u_accepted: tf.Tensor
    fallback_rejected: tf.Tensor


def _event_axes(x):
    return list(range(1, len(x.shape)))


class HNNPMNUTS(Kernel):
    """HNN-PM-NUTS on a `PseudoMarginalTarget` (module docstring).

    The state is the list `[theta [chains, theta_dim], u [chains, *u_shape]]`, as for PMNUTS.

    Args:
      target: a `hmc_lib.targets.PseudoMarginalTarget`.
      hnn: a separable HNN over θ (`hnn.dim == target.theta_dim`), e.g. from
        `hmc_lib.hnn.train` on `hmc_lib.hnn.collect_pm` data.
      step_size: h > 0, shared by the HNN tree and the PM-NUTS fall-back.
      max_tree_depth: at most 2^max_tree_depth − 1 steps per tree (<= 16).
      max_hnn_error: Δ_max^hnn, the monitor's threshold on E(leaf) − E(start) (exact=False;
        default 10) or on the spread of E over the HNN tree (exact=True; default
        `max_lf_error`: there it only sets how often a PM tree runs).
      max_lf_error: Δ_max^lf, the PM tree's divergence threshold; a divergent PM tree is a
        rejected sample (1000).
      cool_down: N_lf, PM-NUTS transitions after a firing: default 20 for exact=False, 0
        for exact=True, which allows no other value.
      exact: True (default): the exact switch (module docstring); False: Dhulipala's.
      u_correlation: c in [0, 1) of the u-refresh (0: a fresh u each transition).
      uturn_cap: Chen's cap for the PM tree (PMNUTS's `uturn_cap`).
      use_manual_grad: the target's hand-derived gradient where it has one.
    """

    learned = True

    trace_fields = ("tree_depth", "potential_evals", "used_hnn", "fell_back", "cool_down",
                    "lf_rejected", "u_accepted", "fallback_rejected")

    def __init__(self, target, hnn, step_size, max_tree_depth=10, max_hnn_error=None,
                 max_lf_error=metropolis.MAX_ENERGY_ERROR, cool_down=None, u_correlation=0.0,
                 uturn_cap=50000.0, use_manual_grad=True, exact=True, name="hnn_pm_nuts"):
        for attr in ("theta_dim", "u_shape", "value_and_grad", "log_joint"):
            if not hasattr(target, attr):
                raise TypeError(f"`target` must be a PseudoMarginalTarget (lacks `{attr}`), "
                                f"got {target!r}")
        _check_hnn(hnn, target.theta_dim)
        if hnn.kind != "separable":
            raise ValueError(f"`hnn` must be a separable HNN over θ, got kind={hnn.kind!r}")
        _checks.positive_float(step_size, "step_size")
        max_tree_depth = check_tree_depth(max_tree_depth)
        _checks.positive_float(max_lf_error, "max_lf_error")
        max_hnn_error, cool_down = monitor_settings(exact, max_hnn_error, cool_down,
                                                    max_lf_error)
        if not (isinstance(u_correlation, (int, float)) and 0.0 <= u_correlation < 1.0):
            raise ValueError(f"`u_correlation` must be a float in [0, 1), got {u_correlation!r}")
        self._target, self._hnn = target, hnn
        # the fall-back: the library's PM-NUTS with Δ_max^lf as its divergence threshold
        self._pm = PMNUTS(target, step_size, max_tree_depth=max_tree_depth,
                          uturn_cap=uturn_cap, max_energy_error=max_lf_error,
                          use_manual_grad=use_manual_grad)
        self._vg = (target.value_and_grad if use_manual_grad
                    else target.autodiff_value_and_grad)
        self._parameters = dict(target=target, hnn=hnn, step_size=step_size,
                                max_tree_depth=max_tree_depth, max_hnn_error=max_hnn_error,
                                max_lf_error=max_lf_error, cool_down=cool_down,
                                u_correlation=float(u_correlation), uturn_cap=uturn_cap,
                                use_manual_grad=use_manual_grad, exact=exact, name=name)

    @property
    def target(self):
        return self._target

    def bootstrap_results(self, init_state):
        theta, u = pm_kernel.check_state(self._target, init_state)
        value, g_theta, g_u = self._vg(theta, u)
        if tf.executing_eagerly() and not bool(tf.reduce_all(tf.math.is_finite(value))):
            raise ValueError("`target.log_joint` is not finite at `current_state`")
        false, izero = tf.zeros_like(value, tf.bool), tf.zeros_like(value, tf.int32)
        return HNNPMNUTSResults(
            target_log_prob=value, grad_theta=g_theta, grad_u=g_u,
            grad_is_known=tf.ones_like(false), step_size=_checks.as_dtype(self.step_size,
                                                                          theta.dtype),
            is_accepted=false, log_accept_ratio=tf.zeros_like(value), is_divergent=false,
            tree_depth=izero, grad_evals=izero, potential_evals=izero, used_hnn=false,
            fell_back=false, cool_down=izero, lf_rejected=false, u_accepted=false,
            fallback_rejected=false)

    def _refresh_u(self, theta, u, value, seed):
        """Crank–Nicolson proposal for u with the pseudo-marginal test: `(u, value, accepted)`."""
        c = self.u_correlation
        xi_seed, acc_seed = tfp.random.split_seed(seed)
        xi = tf.random.stateless_normal(tf.shape(u), xi_seed, dtype=u.dtype)
        u_new = c * u + (1.0 - c * c) ** 0.5 * xi
        value_new = self._target.log_joint(theta, u_new)
        log_ratio = value_new - value
        log_ratio = tf.where(tf.math.is_finite(log_ratio), log_ratio,
                             tf.constant(-float("inf"), value.dtype))
        log_unif = tf.math.log(tf.random.stateless_uniform(tf.shape(value), acc_seed,
                                                           dtype=value.dtype))
        ok = log_unif < log_ratio
        expand = tf.reshape(ok, tf.concat([tf.shape(ok), tf.ones([len(u.shape) - 1],
                                                                 tf.int32)], 0))
        return tf.where(expand, u_new, u), tf.where(ok, value_new, value), ok

    def one_step(self, current_state, previous_kernel_results, seed=None):
        theta, u = current_state
        prev = previous_kernel_results
        seed = tfp.random.sanitize_seed(seed)
        u_seed, rho_seed, hnn_seed, pm_seed = tfp.random.split_seed(seed, n=4)
        eps = prev.step_size
        izero = tf.zeros_like(prev.cool_down)

        # 1. u | θ
        u1, value1, u_ok = self._refresh_u(theta, u, prev.target_log_prob, u_seed)
        grad_known = prev.grad_is_known & ~u_ok

        # 2. the HNN tree on θ | u
        rho = tf.random.stateless_normal(tf.shape(theta), rho_seed, dtype=theta.dtype)
        in_cool = prev.cool_down > 0

        def skip_hnn():
            return theta, value1, _empty_info(value1)

        h_theta, h_value, hinfo = tf.cond(
            tf.reduce_all(in_cool), skip_hnn,
            lambda: self._hnn_tree(theta, u1, rho, value1, eps, hnn_seed))
        fired = ~in_cool & hinfo.is_divergent
        need_pm = in_cool | fired

        # 3. the PM-NUTS fall-back, with the Δ_max^lf rejection
        def pm_tree():
            value, g_theta, g_u = self._vg(theta, u1)
            g_theta = tf.where(grad_known[:, None], prev.grad_theta, g_theta)
            g_u = tf.where(tf.reshape(grad_known, [-1] + [1] * (len(u.shape) - 1)),
                           prev.grad_u, g_u)
            pm_prev = PMResults(
                target_log_prob=value1, grad_theta=g_theta, grad_u=g_u, step_size=eps,
                is_accepted=prev.is_accepted, log_accept_ratio=prev.log_accept_ratio,
                is_divergent=prev.is_divergent, grad_evals=izero, tree_depth=izero)
            (t_theta, t_u), res = self._pm.one_step([theta, u1], pm_prev, seed=pm_seed)
            rej = res.is_divergent
            keep = lambda new, old: tf.where(
                tf.reshape(rej, [-1] + [1] * (len(new.shape) - 1)), old, new)
            return (keep(t_theta, theta), keep(t_u, u1), keep(res.target_log_prob, value1),
                    keep(res.grad_theta, g_theta), keep(res.grad_u, g_u), res, rej, g_theta,
                    g_u)

        def skip_pm():
            empty = _empty_info(value1)
            res = PMResults(value1, prev.grad_theta, prev.grad_u, eps, empty.is_accepted,
                            empty.log_accept_ratio, empty.is_divergent, izero, izero)
            return (theta, u1, value1, prev.grad_theta, prev.grad_u, res,
                    tf.zeros_like(in_cool), prev.grad_theta, prev.grad_u)

        p_theta, p_u, p_value, p_gt, p_gu, pres, rej, s_gt, s_gu = tf.cond(
            tf.reduce_any(need_pm), pm_tree, skip_pm)

        check_leaves, fb_rejected = izero, tf.zeros_like(in_cool)
        if self.exact:
            # the PM proposal stands only if a fresh HNN tree from it fires too (a rejected
            # PM tree proposes the current state: nothing to check)
            check = fired & ~rej
            check_rho = tf.random.stateless_normal(
                tf.shape(theta), tf.random.experimental.stateless_fold_in(seed, 2),
                dtype=theta.dtype)
            _, _, cinfo = tf.cond(
                tf.reduce_any(check),
                lambda: self._hnn_tree(p_theta, p_u, check_rho, p_value, eps,
                                       tf.random.experimental.stateless_fold_in(seed, 1)),
                skip_hnn)
            check_leaves = tf.where(check, cinfo.grad_evals, izero)
            fb_rejected = check & ~cinfo.is_divergent
            back = lambda new, old: tf.where(
                tf.reshape(fb_rejected, [-1] + [1] * (len(new.shape) - 1)), old, new)
            p_theta, p_u, p_value = back(p_theta, theta), back(p_u, u1), back(p_value, value1)
            p_gt, p_gu = back(p_gt, s_gt), back(p_gu, s_gu)

        def pick(a, b):
            m = tf.reshape(need_pm, [-1] + [1] * (len(a.shape) - 1))
            return tf.where(m, a, b)

        new_theta = pick(p_theta, h_theta)
        new_u = pick(p_u, u1)
        lf_rejected = need_pm & rej
        start_grad = tf.cast(need_pm & ~grad_known, tf.int32)
        hnn_leaves = tf.where(in_cool, izero, hinfo.grad_evals)
        pm_leaves = tf.where(need_pm, pres.grad_evals, izero)
        cool = tf.where(fired, tf.fill(tf.shape(izero), self.cool_down),
                        tf.maximum(prev.cool_down - 1, 0))
        results = prev._replace(
            target_log_prob=pick(p_value, h_value),
            grad_theta=pick(p_gt, prev.grad_theta), grad_u=pick(p_gu, prev.grad_u),
            grad_is_known=need_pm | (grad_known & ~hinfo.is_accepted),
            is_accepted=pick(pres.is_accepted & ~rej & ~fb_rejected, hinfo.is_accepted),
            log_accept_ratio=pick(pres.log_accept_ratio, hinfo.log_accept_ratio),
            is_divergent=lf_rejected,
            tree_depth=pick(pres.tree_depth, hinfo.tree_depth),
            grad_evals=pm_leaves + start_grad,
            potential_evals=1 + hnn_leaves + pm_leaves + check_leaves,
            used_hnn=~need_pm, fell_back=fired, cool_down=cool, lf_rejected=lf_rejected,
            u_accepted=u_ok, fallback_rejected=fb_rejected)
        return [new_theta, new_u], results

    def _hnn_tree(self, theta, u, rho, value, eps, seed):
        """The NUTS tree on θ | u (u held) with the HNN's leapfrog from (θ, ρ), each leaf
        weighted with the extended energy: `(draw, its log p(θ) + log p̂, TreeInfo)`; the
        monitor is its divergence (on the spread of the energy when exact)."""
        hnn, target = self._hnn, self._target

        def step(phase, eps_c):
            start = LeapfrogState(phase.position[0], phase.momentum[0], phase.value,
                                  phase.grad[0])
            end = leapfrog_trajectory(start, lambda th: (target.log_joint(th, u),
                                                         hnn.field(th)), eps_c[:, None], 1)
            return Phase((end.position,), (end.momentum,), end.value, (end.grad,))

        start = Phase((theta,), (rho,), value, (hnn.field(theta),))
        new, info = nuts_transition(start, seed, eps, step, hnn_energy, self.max_tree_depth,
                                    self.max_hnn_error,
                                    divergence="range" if self.exact else "start")
        return new.position[0], new.value, info
