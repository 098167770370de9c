"""Diagnostics: effective sample size, R̂, the convergence gate, the summary table, ArviZ
export.

Cost unit: every kernel reports `grad_evals`, the evaluations of the true gradient (or of the
pseudo-marginal estimator's gradient) per step and chain, so ESS per gradient is comparable
across methods. ESS is ArviZ's (Geyer's initial monotone sequence over all chains).

The convergence gate (`convergence`): a run's numbers count only when its chains agree and
carry enough effective draws, R̂ ≤ `RHAT_MAX` and bulk and tail ESS ≥ `ESS_MIN` in every
coordinate (Vehtari, Gelman, Simpson, Carpenter and Bürkner 2021, the rule Stan and ArviZ
use). The book marks every table cell that fails it and draws no verdict from it.
"""

import warnings
from typing import NamedTuple

import numpy as np
from scipy import special

#: the gate's largest rank-normalised split R̂ (Vehtari et al. 2021)
RHAT_MAX = 1.01
#: the gate's smallest bulk and tail ESS, over all chains of a run
ESS_MIN = 100.0

#: trace keys that are not per-step arrays
_RUN_KEYS = ("seconds", "burnin_seconds", "compile_seconds", "num_chunks", "chunk_size",
             "final_state", "final_kernel_results", "convergence", "stopped", "history",
             "resumed_draws", "elapsed_seconds")


def _as_draws(samples):
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3:
        raise ValueError(f"`samples` must have shape [draws, chains, dim], got {x.shape}")
    if x.shape[0] < 4:
        raise ValueError(f"`samples` needs at least 4 draws, got {x.shape[0]}")
    return x


def _constant_coordinates(x, what):
    """Boolean `[dim]`: coordinates in which no chain ever moved (each chain's draws all
    equal its first). Warns once, naming them, when there are any: their ESS and R̂ are NaN,
    not a number of draws."""
    frozen = np.all(x == x[:1], axis=(0, 1))
    if np.any(frozen):
        idx = np.flatnonzero(frozen)
        shown = ", ".join(map(str, idx[:8])) + (", ..." if idx.size > 8 else "")
        warnings.warn(f"{what}: {idx.size} of {x.shape[2]} coordinates never moved in any of "
                      f"the {x.shape[1]} chains of {x.shape[0]} draws (coordinates {shown}); "
                      f"their {what} is NaN", RuntimeWarning, stacklevel=3)
    return frozen


def ess(samples, method="identity"):
    """Effective sample size per coordinate, all chains together.

    Args:
      samples: `[draws, chains, dim]` (or `[draws, chains]`).
      method: ArviZ's ESS method; "identity" is n / (1 + 2 Σ ρ_k) with Geyer's truncation
        (the book's chapter 1), "bulk" its rank-normalised split-chain version, "tail" the
        smaller of the ESS of the 5 % and 95 % quantile indicators.
    Returns:
      `[dim]` numpy array; NaN, with a `RuntimeWarning`, in a coordinate where no chain ever
      moved (a frozen chain carries no information, not one effective draw per draw).
    """
    import arviz as az
    x = _as_draws(samples)
    frozen = _constant_coordinates(x, "ESS")
    data = az.convert_to_dataset({"x": np.moveaxis(x, 0, 1)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = az.ess(data, method=method)
    e = np.asarray(out["x"].values, dtype=np.float64).reshape(x.shape[2])
    e[frozen] = np.nan
    return e


def autocorrelation(samples, max_lag=None):
    """Autocorrelation per lag and coordinate, averaged over chains.

    Each chain's autocovariance is taken around the pooled mean and normalised by the
    pooled variance, so chains stuck apart (e.g. in different modes) show high correlation.
    Returns `[max_lag + 1, dim]`.
    """
    x = _as_draws(samples)
    n = x.shape[0]
    max_lag = n - 1 if max_lag is None else min(int(max_lag), n - 1)
    centred = x - x.mean(axis=(0, 1), keepdims=True)
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(centred, n=size, axis=0)
    acov = np.fft.irfft(f * np.conj(f), n=size, axis=0)[: max_lag + 1] / n
    acov = acov.mean(axis=1)
    return acov / acov[:1]


def rhat(samples):
    """Rank-normalised split R̂ per coordinate (ArviZ; Vehtari et al. 2021).

    Args:
      samples: `[draws, chains, dim]` (or `[draws, chains]`), at least 2 chains of 4 draws.
    Returns:
      `[dim]` numpy array; 1 when the chains agree, > 1.01 when they do not yet.
    """
    import arviz as az
    x = _as_draws(samples)
    if x.shape[1] < 2 or x.shape[0] < 4:
        raise ValueError(f"`samples` needs >= 2 chains of >= 4 draws, got {x.shape[1]} of "
                         f"{x.shape[0]}")
    frozen = _constant_coordinates(x, "R̂")
    data = az.convert_to_dataset({"x": np.moveaxis(x, 0, 1)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = np.atleast_1d(np.asarray(az.rhat(data)["x"].values, dtype=np.float64)).copy()
    r[frozen] = np.nan
    return r


class Convergence(NamedTuple):
    """The convergence gate's reading of one run (one table cell): all chains together.

    rhat_max: the largest rank-normalised split R̂ over coordinates.
    ess_bulk_min, ess_tail_min: the smallest bulk and tail ESS over coordinates.
    draws, chains: the size of the run read.
    converged: `rhat_max <= RHAT_MAX` and both ESS `>= ESS_MIN` (False when any is NaN).
    """
    rhat_max: float
    ess_bulk_min: float
    ess_tail_min: float
    draws: int
    chains: int
    converged: bool

    @property
    def ess_min(self):
        """The smaller of the bulk and tail ESS."""
        return min(self.ess_bulk_min, self.ess_tail_min)

    def describe(self):
        """One line: 'R̂ 1.004, ESS bulk 812, tail 655: converged' or '... : not converged'."""
        word = "converged" if self.converged else "not converged"
        return (f"R̂ {self.rhat_max:.3f}, ESS bulk {self.ess_bulk_min:.0f}, tail "
                f"{self.ess_tail_min:.0f}: {word}")


def _reading(r, bulk, tail, shape, rhat_max, ess_min):
    """The gate's `Convergence` from per-coordinate R̂, bulk and tail ESS (NaN anywhere: NaN,
    never converged) of draws of `shape` `[draws, chains, ...]`."""
    worst = lambda v, f: float("nan") if np.any(np.isnan(v)) else float(f(v))
    out = Convergence(worst(r, np.max), worst(bulk, np.min), worst(tail, np.min),
                      int(shape[0]), int(shape[1]), False)
    ok = (out.rhat_max <= rhat_max and out.ess_bulk_min >= ess_min
          and out.ess_tail_min >= ess_min)
    return out._replace(converged=bool(ok))


def convergence(samples, rhat_max=RHAT_MAX, ess_min=ESS_MIN):
    """The convergence gate: is this run's output a result, or Monte Carlo noise?

    Args:
      samples: `[draws, chains, dim]` (or `[draws, chains]`), at least 2 chains of 4 draws;
        for a structured state pass the part the result is about (e.g. θ of a
        pseudo-marginal state).
      rhat_max, ess_min: the thresholds (default: the book's, `RHAT_MAX` and `ESS_MIN`).
    Returns:
      `Convergence`. A coordinate in which no chain moved has NaN R̂ and ESS (with a warning)
      and fails the gate.
    """
    x = _as_draws(samples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # one warning, from rhat below
        bulk = ess(x, method="bulk")
        tail = ess(x, method="tail")
    r = rhat(x)
    return _reading(r, bulk, tail, x.shape, rhat_max, ess_min)



# ------------------------------------------------------------------ the gate, vectorised

def _split_halves(x):
    """`[dim, chains, draws]` -> `[dim, 2 chains, draws // 2]`: each chain's first and last
    halves as chains of their own (a middle draw of an odd count is dropped), as ArviZ."""
    half = x.shape[2] // 2
    return np.concatenate([x[:, :, :half], x[:, :, x.shape[2] - half:]], axis=1)


def _z_scale(x):
    """Rank-normalised values per coordinate of `[dim, chains, draws]` (average ranks over
    draws and chains, Blom's offset 3/8, normal quantiles), as ArviZ's `_z_scale`."""
    from scipy import stats
    dim = x.shape[0]
    n = x[0].size
    rank = stats.rankdata(x.reshape(dim, n), method="average", axis=1)
    return special.ndtri((rank - 0.375) / (n + 0.25)).reshape(x.shape)


def _rhat_plain(x):
    """Split-free R̂ per coordinate of `[dim, chains, draws]` (ArviZ's `_rhat`)."""
    n = x.shape[2]
    between = n * np.var(x.mean(2), axis=1, ddof=1)
    within = np.mean(np.var(x, axis=2, ddof=1), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):   # a frozen coordinate: NaN
        return np.sqrt((between / within + n - 1) / n)


def _ess_geyer(x):
    """ESS per coordinate of `[dim, chains, draws]` (ArviZ's `_ess`: Geyer's initial positive
    then monotone sequence over the chains' mean autocovariance), vectorised over
    coordinates; a coordinate with a constant value gets draws × chains, as ArviZ's."""
    from scipy import fft
    dim, m, n = x.shape
    size = m * n
    flat = x.reshape(dim, size)
    constant = (flat.max(1) - flat.min(1)) < np.finfo(float).resolution
    centred = x - x.mean(2, keepdims=True)
    fft_len = fft.next_fast_len(2 * n)
    f = fft.rfft(centred, n=fft_len, axis=2)
    acov = fft.irfft(f * np.conj(f), n=fft_len, axis=2)[:, :, :n] / n  # [dim, chain, lag]
    mean_acov = acov.mean(1).T                                          # [lag, dim]
    mean_var = mean_acov[0] * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus = var_plus + np.var(x.mean(2), axis=1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = 1.0 - (mean_var - mean_acov) / var_plus                  # [lag, dim]
    rho[0] = 1.0
    # pairs S_k = ρ_2k + ρ_2k+1. ArviZ's loop visits k = 1, 2, ... while 2k − 1 < n − 3
    # and S_(k−1) > 0, and stops after the first S_k <= 0 (k_stop; the last visited k if
    # none); its monotone pass is a running minimum of S_0 ... S_(k_stop − 1), and
    # τ = −1 + 2 Σ_(k < k_stop) min(S_0..S_k) + ρ_(2 k_stop) (kept only if positive when
    # S_(k_stop) < 0). With no pair visited (few draws, or S_0 <= 0), τ = 0.
    num_pairs = n // 2
    sums = rho[: 2 * num_pairs].reshape(num_pairs, 2, dim).sum(1)      # [pair, dim]
    ks = np.arange(1, num_pairs)
    ks = ks[2 * ks - 1 < n - 3]
    if ks.size:
        stop = sums[ks] <= 0.0
        k_stop = np.where(stop.any(0), ks[np.argmax(stop, axis=0)], ks[-1])
        k_stop = np.where(sums[0] > 0.0, k_stop, 0)
    else:
        k_stop = np.zeros(dim, int)
    cummin = np.minimum.accumulate(sums, axis=0)
    below = np.arange(num_pairs)[:, None] < k_stop[None, :]
    total = np.sum(np.where(below, cummin, 0.0), axis=0)
    idx = np.arange(dim)
    even = rho[2 * k_stop, idx]
    extra = np.where(k_stop == 0, 1.0,
                     np.where(sums[k_stop, idx] >= 0.0, even, np.maximum(even, 0.0)))
    tau = np.maximum(-1.0 + 2.0 * total + extra, 1.0 / np.log10(size))
    out = size / tau
    out[np.isnan(rho).any(0)] = np.nan
    out[constant] = size
    return out


def convergence_fast(samples, rhat_max=RHAT_MAX, ess_min=ESS_MIN):
    """`convergence`, computed for every coordinate at once: the same `Convergence` (ArviZ's
    rank-normalised split R̂ and bulk and tail ESS, agreeing with `convergence` to rounding;
    a test checks it) in a small fraction of the time, for gates read between the chunks
    of long runs (`sample_until(gate=...)`). Frozen coordinates are NaN, as there."""
    x = _as_draws(samples)
    if x.shape[1] < 2:
        raise ValueError(f"`samples` needs >= 2 chains, got {x.shape[1]}")
    frozen = _constant_coordinates(x, "R̂ and ESS")
    y = np.ascontiguousarray(np.transpose(x, (2, 1, 0)))   # [dim, chains, draws]
    split = _split_halves(y)
    bulk_z = _z_scale(split)
    folded = np.abs(split - np.median(split.reshape(len(y), -1), axis=1)[:, None, None])
    r = np.maximum(_rhat_plain(bulk_z), _rhat_plain(_z_scale(folded)))
    bulk = _ess_geyer(bulk_z)
    tail = np.full(len(y), np.inf)
    for prob in (0.05, 0.95):
        q = np.quantile(y.reshape(len(y), -1), prob, axis=1)   # R's type 7, as ArviZ
        tail = np.minimum(tail, _ess_geyer(_split_halves((y <= q[:, None, None]) * 1.0)))
    for v in (r, bulk, tail):
        v[frozen] = np.nan
    return _reading(r, bulk, tail, x.shape, rhat_max, ess_min)


def esjd(samples):
    """Expected squared jumped distance: mean over steps and chains of ‖x_{t+1} − x_t‖²."""
    x = _as_draws(samples)
    return float(np.mean(np.sum(np.diff(x, axis=0) ** 2, axis=-1)))


def summary(samples, trace, method="identity", training=None):
    """Summary of a run from `hmc_lib.sample`.

    Args:
      samples, trace: what `hmc_lib.sample` returned.
      method: the ESS estimator (`ess`).
      training: what training a learned sampler cost: a number of true gradient evaluations,
        or an object or dict with `grad_evals` and optionally `seconds` (an `hnn.train`
        result, say). None for an untrained sampler.

    Returns a dict: `ess_min`, `ess_median`, `ess_max` (over coordinates), `acceptance`
    (mean of `is_accepted`), `divergences` (count), `esjd`, `grad_evals` (total over chains
    and draws), `ess_per_grad` and `ess_per_second` (both from `ess_min`),
    `ess_median_per_grad`, `ess_median_per_second`, `seconds`, `draws`, `chains`; the
    convergence gate's reading (`convergence`, with one chain: R̂ NaN): `rhat_max`,
    `ess_bulk_min`, `ess_tail_min`, `converged`; and with training charged:
    `train_grad_evals`, `train_seconds`, `ess_per_grad_charged` (`ess_min` over sampling and
    training gradients) and `ess_per_second_charged`. A learned sampler's run (`trace
    ["learned"]`, set by `sample` for L2HMC, NNgHMC and the HNN kernels) without `training`
    has NaN there: its cost is unknown, not zero.
    """
    x = _as_draws(samples)
    e = ess(x, method=method)
    if x.shape[1] >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # `ess` above has warned
            gate = convergence(x)
    else:
        gate = Convergence(float("nan"), float("nan"), float("nan"), x.shape[0], 1, False)
    grad_evals = float(np.sum(trace["grad_evals"])) if "grad_evals" in trace else float("nan")
    seconds = float(trace.get("seconds", float("nan")))
    out = dict(
        ess_min=float(np.min(e)), ess_median=float(np.median(e)), ess_max=float(np.max(e)),
        acceptance=float(np.mean(trace["is_accepted"])) if "is_accepted" in trace else float("nan"),
        divergences=int(np.sum(trace["is_divergent"])) if "is_divergent" in trace else 0,
        esjd=esjd(x), grad_evals=grad_evals, seconds=seconds,
        draws=int(x.shape[0]), chains=int(x.shape[1]), rhat_max=gate.rhat_max,
        ess_bulk_min=gate.ess_bulk_min, ess_tail_min=gate.ess_tail_min,
        converged=gate.converged)
    out["ess_per_grad"] = out["ess_min"] / grad_evals if grad_evals > 0 else float("nan")
    out["ess_median_per_grad"] = out["ess_median"] / grad_evals if grad_evals > 0 else float("nan")
    out["ess_per_second"] = out["ess_min"] / seconds if seconds > 0 else float("nan")
    out["ess_median_per_second"] = out["ess_median"] / seconds if seconds > 0 else float("nan")
    out.update(_charged(out, training, bool(trace.get("learned", False))))
    return out


def _charged(out, training, learned):
    """`train_grad_evals`, `train_seconds` and the charged ESS rates of `summary`."""
    nan = float("nan")
    if training is None:
        tg, ts = (nan, nan) if learned else (0.0, 0.0)
    elif isinstance(training, (int, float, np.integer, np.floating)):
        tg, ts = float(training), nan
    else:
        get = training.get if isinstance(training, dict) else (
            lambda k, d=None: getattr(training, k, d))
        if get("grad_evals") is None:
            raise TypeError("`training` must be a number of gradient evaluations or carry "
                            f"`grad_evals`; got {type(training).__name__}")
        tg = float(get("grad_evals"))
        ts = float(get("seconds", get("train_seconds", nan)))
    grads, secs = out["grad_evals"] + tg, out["seconds"] + ts
    return dict(train_grad_evals=tg, train_seconds=ts,
                ess_per_grad_charged=out["ess_min"] / grads if grads > 0 else nan,
                ess_per_second_charged=out["ess_min"] / secs if secs > 0 else nan)


def to_inference_data(samples, trace=None, var_name="x"):
    """An `arviz.InferenceData` with the draws as posterior and the trace as sample stats.

    `samples`: `[draws, chains, ...]`, or a list/dict of such (list parts are named
    `x0, x1, ...`). Per-step trace arrays `[draws, chains]` become sample stats
    (`is_divergent` is renamed `diverging`, ArviZ's name).
    """
    import arviz as az
    if hasattr(samples, "_asdict"):          # a joint distribution's named structure
        parts = dict(samples._asdict())
    elif isinstance(samples, dict):
        parts = dict(samples)
    elif isinstance(samples, (list, tuple)):
        parts = {f"{var_name}{i}": s for i, s in enumerate(samples)}
    else:
        parts = {var_name: samples}
    posterior = {k: np.moveaxis(np.asarray(v), 0, 1) for k, v in parts.items()}
    stats = {}
    for key, value in (trace or {}).items():
        if key in _RUN_KEYS:
            continue
        value = np.asarray(value)
        if value.ndim == 2:
            stats["diverging" if key == "is_divergent" else key] = np.moveaxis(value, 0, 1)
    return az.from_dict(posterior=posterior, sample_stats=stats or None)


def ess_known_moments(samples, mean, variance, cutoff=0.05):
    """ESS per draw as L2HMC's reference code measures it, using the true moments.

    The autocorrelation at lag k is mean_t,chains[(x_t − μ)·(x_{t+k} − μ)] / Σ_d Var_d (the
    trace of the true covariance), summed from lag 1 until it first drops below `cutoff`;
    returns 1 / (1 + 2 Σ ρ_k), a fraction (multiply by the number of draws for an ESS).
    """
    x = _as_draws(samples) - np.asarray(mean, np.float64)
    n = x.shape[0]
    total_var = float(np.sum(variance))
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(x, n=size, axis=0)
    acov = np.fft.irfft(f * np.conj(f), n=size, axis=0)[:n]
    acov = acov.sum(axis=-1).mean(axis=1) / (n - np.arange(n))
    rho = acov / total_var
    below = np.nonzero(rho[1:] < cutoff)[0]
    stop = below[0] + 1 if below.size else n
    return float(1.0 / (1.0 + 2.0 * np.sum(rho[1:stop])))


class MomentCheck(NamedTuple):
    """Standardised errors of a run's moments against the truth; see `check_moments`.

    z_mean, z_var: `[dim]` errors of the mean and the variance in Monte Carlo standard errors
    (t statistics with `chains - 1` degrees of freedom); bound: the largest absolute z allowed;
    passed: every absolute z below it.
    """
    z_mean: np.ndarray
    z_var: np.ndarray
    bound: float
    passed: bool


def moment_bound(num_chains, num_tests, alpha=1e-4):
    """The bound on absolute t that `num_tests` t statistics with `num_chains - 1` degrees of freedom all
    stay below with probability >= 1 − alpha (Bonferroni), when the estimates are unbiased."""
    from scipy import stats
    if num_chains < 8:
        raise ValueError(f"`num_chains` must be >= 8 for a between-chain error, got {num_chains}")
    return float(stats.t.ppf(1.0 - alpha / (2.0 * num_tests), num_chains - 1))


def check_moments(samples, mean, variance, alpha=1e-4):
    """Checks a run's per-coordinate mean and variance against the truth, robustly.

    The Monte Carlo standard error comes from the spread *between independent chains*: each
    chain's average of x (and of (x − μ)²) is one independent estimate, so with C chains the
    error of their average is sd/√C, whatever the autocorrelation inside a chain, and the
    standardised error is a t statistic with C − 1 degrees of freedom. This needs no ESS
    estimate (the ESS of a short run of a slowly mixing chain is itself badly estimated, which
    is what makes ESS-based bounds fail on other machines). Chains must be independent and
    started at (or burnt in to) stationarity; use at least 16 of them, and runs long enough
    that each chain's own ESS is at least about 20 in every checked coordinate: a chain that
    barely moves has a skewed chain average, and the t bound then fails far more often than
    `alpha` (simulated: 16 chains of per-chain ESS ≈ 1, 100 statistics, 35 % false failures;
    per-chain ESS ≥ 20, within 3× of `alpha`). Check only coordinates that mix.

    The bound is Bonferroni over the 2·dim statistics at family-wise level `alpha`, so a
    correct sampler fails the check with probability below `alpha` (default 1e-4).

    Args:
      samples: `[draws, chains, dim]`.
      mean, variance: the true moments, `[dim]`.
    Returns:
      `MomentCheck`; `assert_moments` raises on failure.
    """
    x = _as_draws(samples)                       # [draws, chains, dim]
    mean = np.asarray(mean, np.float64)
    variance = np.asarray(variance, np.float64)
    chains = x.shape[1]
    chain_mean = x.mean(axis=0)                  # [chains, dim]
    chain_sq = ((x - mean) ** 2).mean(axis=0)
    root_c = np.sqrt(chains)
    z_mean = (chain_mean.mean(0) - mean) / (chain_mean.std(0, ddof=1) / root_c)
    z_var = (chain_sq.mean(0) - variance) / (chain_sq.std(0, ddof=1) / root_c)
    bound = moment_bound(chains, 2 * x.shape[-1], alpha)
    passed = bool(np.all(np.abs(z_mean) < bound) and np.all(np.abs(z_var) < bound))
    return MomentCheck(z_mean, z_var, bound, passed)


def assert_moments(samples, mean, variance, alpha=1e-4):
    """`check_moments`, raising `AssertionError` with the worst errors when it fails."""
    check = check_moments(samples, mean, variance, alpha)
    if not check.passed:
        raise AssertionError(
            f"moments off: max |z| mean {np.max(np.abs(check.z_mean)):.2f}, variance "
            f"{np.max(np.abs(check.z_var)):.2f}, bound {check.bound:.2f} (between-chain s.e.)")
    return check


def uniform_scores(samples, to_normal):
    """Φ(to_normal(x)): uniform on [0, 1] in every coordinate when x follows the target.

    `to_normal` maps draws of the target to N(0, I) (e.g. `targets.analytic.banana_to_normal`).
    Means and variances of these scores (1/2 and 1/12) test the whole marginal of z, and a
    chain average of a bounded, symmetric score is close to normal after few draws, so the
    between-chain t statistics of `check_moments` keep their level even when a chain barely
    moves (a chain average of z² would then be a skewed χ²₁ draw). Returns a float64 array of
    the shape of `samples`.
    """
    return special.ndtr(to_normal(samples))
