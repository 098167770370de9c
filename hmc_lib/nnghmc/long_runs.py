"""NNgHMC's recorded long runs (`hmc_lib.records`), run by `tools/record.py` and rendered by
chapters 3 and 6; the build never re-runs them.

Three records, one driver (`scheduled_record`), each HMC against scheduled NNgHMC at the
paper's size over three training seeds:

- `gp_paper` (`nnghmc-gp`): GP regression, the paper's Table 2, 500 points;
- `garch_paper` (`nnghmc-garch`): GARCH(2,1), Table 1, 1,000 observations;
- `logreg_paper` (`nnghmc-logreg`): logistic regression 50,000 × 200, Sec. 4.2;

and `table4_paper` (`nnghmc-table4`): the GP-surrogate grid of Table 4 at every n (the
maximum-likelihood fit of the GP at n = 2,000 is too slow for the chapter). `record_view`
lays a record out for a chapter, checked against its own summary.

How a run is laid out, and why:

- **Cost in CPU seconds of one thread.** The records are made on a machine shared with
  other work, where the wall clock of a step depends on what else runs. Every rate is ESS
  per CPU second (`time.process_time` of a one-thread process); the wall clock is recorded
  too. Per-draw costs are measured by separate timing runs (`cpu_seconds_per_draw`),
  because each kernel's cost per draw does not depend on where the chain is (HMC: L
  gradients, NNgHMC: L network calls and one log-density), so rate = ESS / (draws × CPU
  seconds per draw).
- **HMC's length chosen by the error of its rate.** HMC's ESS per second does not depend
  on the run's length, only its error does, and HMC is the costly side. It runs until the
  convergence gate passes and the relative standard error of its ESS per draw
  (`rate_error`) is at most `rate_error_max`, or `hmc_max_draws` are spent. One baseline
  serves the three training seeds: HMC has no training seed.
- **NNgHMC as the paper runs it.** After a shared HMC burn-in, each seed runs the training
  schedule of `schedule.run_schedule` with `criterion="ess_per_second"`, here in resumable
  units: collect (q, ∇log π(q)) from every leapfrog step of HMC draws, refit every
  `retrain_every` draws, probe, switch when the projected ESS per second (training so far
  charged) beats HMC's; then at least `nnghmc_draws` draws (the paper's length), more until
  the gate passes or `nnghmc_max_draws` are spent. Its cost charges the collection draws at
  HMC's price, the training, the probes and the draws.
- **Resumable.** Every stage is a `LongRun` unit; sampling inside a unit goes through
  `sample_until(checkpoint=...)`, fitted networks are stored with `records.save_tree`, so a
  run killed at any point loses at most `checkpoint_seconds` of sampling.
"""

import dataclasses
import os
import time
from typing import NamedTuple, Optional, Tuple

import numpy as np
import tensorflow as tf

from hmc_lib import diagnostics, records, targets
from hmc_lib.kernels.hmc import HMC
from hmc_lib.nnghmc.kernel import NNgHMC, RecordingHMC
from hmc_lib.nnghmc.networks import GradientNet, fit
from hmc_lib.nnghmc.schedule import efficiency_per_draw
from hmc_lib.sampling import sample, sample_until

RECORDED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recorded")
#: the records at paper scale, read by chapters 3 and 6
GP_RECORD = os.path.join(RECORDED, "gp_paper.json")
GARCH_RECORD = os.path.join(RECORDED, "garch_paper_gated.json")
LOGREG_RECORD = os.path.join(RECORDED, "logreg_paper_gated.json")
TABLE4_RECORD = os.path.join(RECORDED, "table4_paper.json")


@dataclasses.dataclass(frozen=True)
class ScheduledRun:
    """Settings of one recorded HMC-against-NNgHMC run (`scheduled_record`).

    name: the record's name. target, target_kwargs: `targets.get(target, **kwargs)`.
    start: the chains' common start, or None for the target's `true_params`/`true_beta`.
    step_size, L: ε and L of both samplers. chains: chains of every sampler.
    burnin: HMC draws discarded before anything else.
    hmc_chunk, hmc_max_draws: HMC's draws per gate reading and its budget per chain.
    rate_error_max: HMC stops once the relative standard error of its ESS per draw
      (`rate_error`) is at most this (and the gate passes).
    rate_statistic: "median" or "min": the ESS over coordinates that the rates use.
    collect_until, retrain_every, probe_steps: the schedule's b (draws after burn-in), r and
      probe length. collect_chunk: collection draws per checkpointed chunk.
    nnghmc_draws, nnghmc_max_draws, nnghmc_chunk: NNgHMC's draws (the paper's length), its
      budget if the gate has not passed by then, and draws per chunk.
    min_speedup: the switch test's ratio (`run_schedule`'s `min_speedup`).
    net: keyword arguments of `fit`, as pairs.
    seeds: training seeds (each drives collection, training, probes and NNgHMC's draws).
    baseline_seed: seed of the burn-in and of HMC's baseline.
    timing_draws_hmc, timing_draws_nnghmc: draws of the timing runs.
    checkpoint_seconds: least seconds between checkpoint writes.
    jit_compile: compile the samplers with XLA (off for the GP: XLA's Cholesky is slow on CPU).
    """
    name: str = "nnghmc-gp"
    target: str = "gp_matern"
    target_kwargs: Tuple[Tuple[str, object], ...] = (("num_data", 500),)
    start: Optional[Tuple[float, ...]] = (0.5, 0.5, -1.4)
    step_size: float = 0.05
    L: int = 20
    chains: int = 4
    burnin: int = 200
    hmc_chunk: int = 100
    hmc_max_draws: int = 4000
    rate_error_max: float = 0.1
    rate_statistic: str = "median"
    collect_until: int = 1000
    retrain_every: int = 100
    collect_chunk: int = 25
    probe_steps: int = 20
    nnghmc_draws: int = 10000
    nnghmc_max_draws: int = 10000
    nnghmc_chunk: int = 500
    min_speedup: float = 1.0
    net: Tuple[Tuple[str, object], ...] = (("hidden", 100), ("epochs", 100),
                                           ("batch_size", 64), ("learning_rate", 1e-2))
    seeds: Tuple[int, ...] = (0, 1, 2)
    baseline_seed: int = 1000
    timing_draws_hmc: int = 20
    timing_draws_nnghmc: int = 500
    checkpoint_seconds: float = 120.0
    jit_compile: bool = False


#: a toy of each run for the tests ("ci" and "book" scales): tiny sizes, and a switch test
#: that always passes (`min_speedup` tiny), so that a resumed run takes the same path as an
#: uninterrupted one however long each of its steps took
_TOY = dict(burnin=20, hmc_chunk=20, hmc_max_draws=100, rate_error_max=0.3,
            collect_until=40, retrain_every=20, collect_chunk=10, probe_steps=5,
            nnghmc_draws=60, nnghmc_max_draws=60, nnghmc_chunk=20, min_speedup=1e-9,
            net=(("hidden", 16), ("epochs", 3), ("batch_size", 64), ("learning_rate", 1e-2)),
            timing_draws_hmc=4, timing_draws_nnghmc=10, checkpoint_seconds=0.0)


def _check_scale(scale):
    if scale not in ("ci", "book", "paper"):
        raise ValueError(f"`scale` must be 'ci', 'book' or 'paper', got {scale!r}")
    return scale == "paper"


def gp_settings(scale):
    """GP regression (Table 2): the paper's 500 points, ε = 0.05, L = 20, 10,000 NNgHMC draws,
    training on at most the first 1,000 draws (fits every 100: 8,000 pairs for a 3-d field),
    100 hidden units and 100 epochs; HMC until its rate's error is at most 10 % (each HMC draw
    costs 80 Cholesky factorisations of 500 × 500 and their gradients); at "ci" and "book"
    the toy (30 points)."""
    if _check_scale(scale):
        return ScheduledRun()
    return ScheduledRun(target_kwargs=(("num_data", 30),), **_TOY)


def garch_settings(scale):
    """GARCH(2,1) (Table 1): the paper's 1,000 observations, ε = 0.002, L = 15, 1,000 draws of
    burn-in, gradients of draws 1,000–2,000 (fits every 500), 50 hidden units, at least
    10,000 NNgHMC draws; at "ci" and "book" the toy (200 observations)."""
    base = dict(name="nnghmc-garch", target="garch", start=None, step_size=0.002, L=15,
                jit_compile=True, rate_error_max=0.05)
    if _check_scale(scale):
        return ScheduledRun(**base, target_kwargs=(("num_obs", 1000),), burnin=1000,
                            hmc_chunk=1000, hmc_max_draws=40000, collect_until=1000,
                            retrain_every=500, collect_chunk=100, nnghmc_draws=10000,
                            nnghmc_max_draws=40000, nnghmc_chunk=1000,
                            net=(("hidden", 50), ("epochs", 50), ("batch_size", 64),
                                 ("learning_rate", 1e-2)), timing_draws_hmc=200,
                            timing_draws_nnghmc=1000)
    return ScheduledRun(**{**base, **_TOY}, target_kwargs=(("num_obs", 200),))


def logreg_settings(scale):
    """Logistic regression (Sec. 4.2): the paper's 50,000 × 200 and L = 20, ε of
    `experiments.logreg_step_size` (see chapter 3), the minimum ESS over coordinates (the
    paper's ESS/s), 100 collection draws (fits every 50), the linear-skip network of
    `experiments.settings`, at least 1,000 NNgHMC draws; at "ci" and "book" the toy
    (500 × 5)."""
    from hmc_lib.nnghmc.experiments import logreg_step_size, settings
    cfg = settings("paper")["logreg"]
    n = max(cfg["sizes"])
    base = dict(name="nnghmc-logreg", target="logreg", start=None, L=cfg["L"],
                rate_statistic="min", jit_compile=True, rate_error_max=0.05)
    if _check_scale(scale):
        return ScheduledRun(**base, step_size=logreg_step_size(cfg, n),
                            target_kwargs=(("num_data", n), ("num_features", 200),
                                           ("seed", 0)),
                            burnin=cfg["burnin"], hmc_chunk=200, hmc_max_draws=4000,
                            collect_until=cfg["collect"], retrain_every=cfg["collect"] // 2,
                            collect_chunk=25, nnghmc_draws=cfg["num_results"],
                            nnghmc_max_draws=4 * cfg["num_results"], nnghmc_chunk=250,
                            net=tuple(sorted(cfg["net"].items())), timing_draws_hmc=20,
                            timing_draws_nnghmc=100)
    return ScheduledRun(**{**base, **_TOY}, step_size=0.02, target_kwargs=(
        ("num_data", 500), ("num_features", 5), ("seed", 0)))


# ------------------------------------------------------------------ measurements

def rate_error(samples, statistic="median"):
    """The median (or min) over coordinates of a run's ESS per draw, and its relative
    standard error.

    The ESS is `diagnostics.ess` (all chains together). Its error is the standard large-run
    one for the integrated autocorrelation time τ = 1 + 2 Σ_{k=1}^{M} ρ_k summed up to a
    window M (Madras and Sokal 1988; Sokal 1997, eq. 3.19):
    Var(τ̂) ≈ 2 (2M + 1) τ² / N for N draws in all, so the relative error of ESS = N/τ is
    sqrt(2 (2M + 1) / N). M is the window of Geyer's initial positive sequence (the first
    pair of lags whose summed autocorrelation (`diagnostics.autocorrelation`, all chains) is
    negative ends it), taken in the coordinate whose ESS is the median (or the min). In
    checks on AR(1) chains it overstates the error of one coordinate's ESS by a quarter to
    a half (`tests/test_nnghmc_long_runs.py`): a conservative stopping rule.

    Args:
      samples: `[draws, chains, dim]`, at least 4 draws.
      statistic: "median" or "min".
    Returns:
      `(ess_per_draw, relative_error)`: that ESS over draws × chains, and its error.
    """
    if statistic not in ("median", "min"):
        raise ValueError(f"`statistic` must be 'median' or 'min', got {statistic!r}")
    x = np.asarray(samples, np.float64)
    if x.ndim != 3 or x.shape[0] < 4:
        raise ValueError(f"`samples` must be [draws >= 4, chains, dim], got {list(x.shape)}")
    total = x.shape[0] * x.shape[1]
    e = diagnostics.ess(x)
    j = int(np.argsort(e)[(len(e) - 1) // 2 if statistic == "median" else 0])
    rho = diagnostics.autocorrelation(x[..., j:j + 1])[:, 0]
    pairs = rho[:(len(rho) // 2) * 2].reshape(-1, 2).sum(1)
    negative = np.flatnonzero(pairs < 0)
    window = 2 * int(negative[0]) if negative.size else len(rho) - 1
    return float(e[j] / total), float(np.sqrt(2.0 * (2 * window + 1) / total))


def cpu_seconds_per_draw(kernel, state, draws, seed, jit_compile=False):
    """CPU seconds of one draw of `kernel` (all chains), compilation excluded: a first run of
    `draws` draws compiles, a second one from its end is timed with `time.process_time`."""
    _, tr = sample(kernel, int(draws), state, seed=int(seed), chunk_size=int(draws),
                   jit_compile=jit_compile)
    start = time.process_time()
    sample(kernel, int(draws), tr["final_state"], seed=int(seed) + 1, chunk_size=int(draws),
           jit_compile=jit_compile)
    return (time.process_time() - start) / int(draws)


def _no_gate(kept):
    """A gate that never passes (for runs of a fixed length: burn-in, collection)."""
    x = np.asarray(kept)
    return diagnostics.Convergence(float("nan"), float("nan"), float("nan"), x.shape[0],
                                   x.shape[1], False)


def _state(values):
    return tf.constant(np.asarray(values, np.float32))


def _save_net(path, net):
    records.save_tree(path, [v.numpy() for v in net.variables])


def _load_net(path, config):
    cfg = dict(config)
    net = GradientNet(cfg.pop("dim"), hidden=cfg["hidden"], blocks=cfg["blocks"],
                      activation=cfg["activation"], dtype=tf.as_dtype(cfg["dtype"]),
                      linear=cfg["linear"])
    for v, a in zip(net.variables, records.load_tree(path, [v.numpy() for v in net.variables])):
        v.assign(a)
    return net


def _gate_reading(samples):
    g = diagnostics.convergence(samples)
    return dict(rhat_max=g.rhat_max, ess_bulk_min=g.ess_bulk_min, ess_tail_min=g.ess_tail_min,
                converged=bool(g.converged), draws=g.draws, chains=g.chains)


def _summary(samples, trace):
    s = diagnostics.summary(samples, trace)
    return {k: s[k] for k in ("ess_min", "ess_median", "ess_max", "acceptance", "draws",
                              "chains", "divergences")}


# ------------------------------------------------------------------ the records

def gp_paper(workdir, scale="paper", out=None):
    """`tools/record.py nnghmc-gp`: GP regression (Table 2) at the paper's 500 points."""
    return scheduled_record(gp_settings(scale), workdir, scale,
                            out or (GP_RECORD if scale == "paper" else None))


def garch_paper(workdir, scale="paper", out=None):
    """`tools/record.py nnghmc-garch`: GARCH(2,1) (Table 1) at the paper's size."""
    return scheduled_record(garch_settings(scale), workdir, scale,
                            out or (GARCH_RECORD if scale == "paper" else None))


def logreg_paper(workdir, scale="paper", out=None):
    """`tools/record.py nnghmc-logreg`: logistic regression 50,000 × 200 (Sec. 4.2)."""
    return scheduled_record(logreg_settings(scale), workdir, scale,
                            out or (LOGREG_RECORD if scale == "paper" else None))


def table4_paper(workdir, scale="paper", out=None):
    """`tools/record.py nnghmc-table4`: the paper's Table 4 grid (d = 10, 20, 40 × n = 500,
    1,000, 2,000), the GP surrogate fitted at every n (`expensive.surrogate_cell` with
    `expensive.settings(scale)["surrogate"]`), one unit per cell; rows as
    `expensive.surrogate_grid`'s."""
    from hmc_lib.nnghmc.expensive import settings, surrogate_cell
    cfg = dict(settings(scale)["surrogate"])
    seed = 400
    run = records.LongRun("nnghmc-table4", workdir, scale, [seed], cfg)
    rows = [run.unit(f"d{d}-n{n}", lambda ckpt, d=d, n=n: surrogate_cell(cfg, d, n, seed))
            for d in cfg["dims"] for n in cfg["sizes"]]
    out = out or (TABLE4_RECORD if scale == "paper" else os.path.join(str(workdir),
                                                                       "record.json"))
    return run.write(out, rows, command="python tools/record.py nnghmc-table4 --threads 1")


def _target(cfg):
    t = targets.get(cfg.target, **dict(cfg.target_kwargs))
    if cfg.start is not None:
        x = np.asarray(cfg.start, np.float64)
    else:
        x = getattr(t, "true_params", None)
        x = getattr(t, "true_beta", None) if x is None else x
    return t, tf.constant(np.tile(np.asarray(x, np.float32), (cfg.chains, 1)))


def scheduled_record(cfg, workdir, scale, out=None):
    """Runs (or resumes) the record `cfg` (a `ScheduledRun`, module docstring) in `workdir`
    and writes it to `out` (default `workdir/record.json`); returns the record.

    Rows: one `HMC` row (the baseline: why it stopped, its draws, ESS min/median/max,
    acceptance, CPU seconds per draw, `rate_error`, the `gate` reading, `ess_per_second`
    from the `rate_statistic` ESS), then per training seed one `NNgHMC` row (the schedule's
    `events`, `collect_draws`, `train_cpu_seconds`, its draws' ESS and `gate`, CPU seconds
    per draw, `cpu_seconds_total` and `ess_per_second` with everything charged, `speedup`
    over HMC, `sampling_speedup` of the draws alone), then one `nnghmc/hmc` summary row
    (median and range of both speed-ups). Also `ess_median_per_second` and
    `ess_min_per_second` on every sampler row.
    """
    if cfg.rate_statistic not in ("median", "min"):
        raise ValueError(f"`rate_statistic` must be 'median' or 'min', got "
                         f"{cfg.rate_statistic!r}")
    out = out or os.path.join(str(workdir), "record.json")
    run = records.LongRun(cfg.name, workdir, scale, [cfg.baseline_seed, *cfg.seeds],
                          dataclasses.asdict(cfg))
    data_dir = os.path.join(str(workdir), "data")
    os.makedirs(data_dir, exist_ok=True)
    target, x0 = _target(cfg)
    hmc = HMC(target, cfg.step_size, cfg.L)
    jit = cfg.jit_compile
    key = "ess_" + cfg.rate_statistic

    def burnin(ckpt):
        s, tr = sample_until(hmc, x0, cfg.baseline_seed, chunk_draws=max(1, cfg.burnin // 4),
                             max_draws=cfg.burnin, min_draws=cfg.burnin, gate=_no_gate,
                             checkpoint=ckpt,
                             checkpoint_seconds=cfg.checkpoint_seconds, jit_compile=jit)
        return dict(state=np.asarray(tr["final_state"]).tolist(),
                    acceptance=float(np.mean(tr["is_accepted"])),
                    wall_seconds=tr["elapsed_seconds"])

    start = _state(run.unit("burnin", burnin)["state"])
    hmc_cpu = run.unit("timing-hmc", lambda ckpt: dict(cpu_seconds_per_draw=cpu_seconds_per_draw(
        hmc, start, cfg.timing_draws_hmc, cfg.baseline_seed + 1, jit)))["cpu_seconds_per_draw"]

    def rate_gate(kept):
        g = diagnostics.convergence(kept)
        _, err = rate_error(kept, cfg.rate_statistic)
        return g._replace(converged=bool(g.converged and err <= cfg.rate_error_max))

    def baseline(ckpt):
        s, tr = sample_until(hmc, start, cfg.baseline_seed + 2, chunk_draws=cfg.hmc_chunk,
                             max_draws=cfg.hmc_max_draws, gate=rate_gate, checkpoint=ckpt,
                             checkpoint_seconds=cfg.checkpoint_seconds, jit_compile=jit)
        per_draw, err = rate_error(s, cfg.rate_statistic)
        row = dict(method="HMC", stopped=tr["stopped"], **_summary(s, tr),
                   ess_per_chain_draw=per_draw, rate_error=err, cpu_seconds_per_draw=hmc_cpu,
                   wall_seconds=tr["elapsed_seconds"], gate=_gate_reading(s),
                   history=tr["history"])
        cpu = row["draws"] * hmc_cpu
        row.update(cpu_seconds_total=cpu, ess_median_per_second=row["ess_median"] / cpu,
                   ess_min_per_second=row["ess_min"] / cpu, ess_per_second=row[key] / cpu)
        return row

    rows = [run.unit("hmc", baseline)]
    for seed in cfg.seeds:
        rows.append(_scheduled_seed(run, cfg, target, hmc, start, hmc_cpu, rows[0], seed,
                                    data_dir))
    sp = np.array([r["speedup"] for r in rows[1:]])
    ssp = np.array([r["sampling_speedup"] for r in rows[1:]])
    rows.append(dict(method="nnghmc/hmc", seeds=list(cfg.seeds),
                     speedup_median=float(np.median(sp)), speedup_min=float(sp.min()),
                     speedup_max=float(sp.max()),
                     sampling_speedup_median=float(np.median(ssp)),
                     sampling_speedup_min=float(ssp.min()),
                     sampling_speedup_max=float(ssp.max())))
    return run.write(out, rows, command=f"python tools/record.py {cfg.name} --threads 1",
                     time_unit="CPU seconds, one thread", rate=key + "_per_second")


def _scheduled_seed(run, cfg, target, hmc, start, hmc_cpu, hmc_row, seed, data_dir):
    """One training seed of `scheduled_record`: the schedule in units, then NNgHMC's draws."""
    seeds = iter(np.random.default_rng(seed).integers(0, 2**31 - 1, size=1000).tolist())
    recording = RecordingHMC(target, cfg.step_size, cfg.L)
    jit, dim, key = cfg.jit_compile, target.dim, "ess_" + cfg.rate_statistic
    state, draw, events, train_cpu, files = start, 0, [], 0.0, []
    net, config, probe_draws, accepted, steps = None, None, 0, 0.0, 0
    while draw < cfg.collect_until:
        b = len(events)
        n = min(cfg.retrain_every, cfg.collect_until - draw)
        s_collect, s_fit, s_probe, s_time = next(seeds), next(seeds), next(seeds), next(seeds)
        path = os.path.join(data_dir, f"collect-{seed}-{b}.npz")

        def collect(ckpt, state=state, n=n, s=s_collect, path=path):
            smp, tr = sample_until(recording, state, s, chunk_draws=min(cfg.collect_chunk, n),
                                   max_draws=n, min_draws=n, gate=_no_gate, checkpoint=ckpt,
                                   checkpoint_seconds=cfg.checkpoint_seconds, jit_compile=jit)
            pos = tr["trajectory_positions"].reshape(-1, dim)
            grads = tr["trajectory_grads"].reshape(-1, dim)
            ok = np.all(np.isfinite(pos), 1) & np.all(np.isfinite(grads), 1)
            records.save_tree(path, [pos[ok], grads[ok], smp])
            return dict(file=os.path.basename(path), state=np.asarray(tr["final_state"]).tolist(),
                        accepted=float(np.sum(tr["is_accepted"])),
                        steps=int(np.size(tr["is_accepted"])), wall_seconds=tr["elapsed_seconds"])

        col = run.unit(f"collect-{seed}-{b}", collect)
        files.append(path)
        draw += n
        like = [np.zeros((0, dim)), np.zeros((0, dim)), np.zeros((0, 0, 0))]
        blocks = [records.load_tree(f, like) for f in files]
        accepted, steps = accepted + col["accepted"], steps + col["steps"]
        state = _state(col["state"])
        net_path = os.path.join(data_dir, f"net-{seed}-{b}.npz")

        def train(ckpt, s=s_fit, net_path=net_path, blocks=blocks):
            t0 = time.process_time()
            net, hist = fit(np.concatenate([blk[0] for blk in blocks]),
                            np.concatenate([blk[1] for blk in blocks]), seed=s,
                            **dict(cfg.net))
            cpu = time.process_time() - t0
            _save_net(net_path, net)
            return dict(config=net.config(), cpu_seconds=cpu, final_loss=hist["loss"][-1],
                        num_pairs=int(hist["num_train"]))

        fitted = run.unit(f"fit-{seed}-{b}", train)
        net, config = _load_net(net_path, fitted["config"]), fitted["config"]
        train_cpu += fitted["cpu_seconds"]
        kernel = NNgHMC(target, net, cfg.step_size, cfg.L)

        def probe(ckpt, state=state, s=s_probe, st=s_time, kernel=kernel):
            nn_cpu = cpu_seconds_per_draw(kernel, state, cfg.probe_steps, st, jit)
            smp, tr = sample(kernel, cfg.probe_steps, state, seed=s, jit_compile=jit)
            return dict(samples=smp.tolist(), state=np.asarray(tr["final_state"]).tolist(),
                        acceptance=float(np.mean(tr["is_accepted"])),
                        cpu_seconds_per_draw=nn_cpu)

        pr = run.unit(f"probe-{seed}-{b}", probe)
        probe_draws += cfg.probe_steps
        state = _state(pr["state"])
        ref = np.concatenate([blk[2] for blk in blocks])
        ref_var = ref.reshape(-1, dim).var(0)
        hmc_rate = efficiency_per_draw(blocks[-1][2], ref_var) / hmc_cpu
        nn_rate = (cfg.nnghmc_draws * efficiency_per_draw(np.asarray(pr["samples"]), ref_var)
                   / (cfg.nnghmc_draws * pr["cpu_seconds_per_draw"] + train_cpu))
        passed = bool(nn_rate >= cfg.min_speedup * hmc_rate)
        events.append(dict(draw=draw, num_pairs=fitted["num_pairs"],
                           train_cpu_seconds=fitted["cpu_seconds"],
                           final_loss=fitted["final_loss"],
                           probe_acceptance=pr["acceptance"], hmc_acceptance=accepted / steps,
                           est_hmc_ess_per_second=hmc_rate, est_nnghmc_ess_per_second=nn_rate,
                           passed=passed))
        if passed:
            break

    method = "nnghmc" if events[-1]["passed"] else "hmc"
    final = NNgHMC(target, net, cfg.step_size, cfg.L) if method == "nnghmc" else hmc
    s_final, s_time = next(seeds), next(seeds)

    def draws(ckpt):
        smp, tr = sample_until(final, state, s_final, chunk_draws=cfg.nnghmc_chunk,
                               max_draws=cfg.nnghmc_max_draws, min_draws=cfg.nnghmc_draws,
                               checkpoint=ckpt, checkpoint_seconds=cfg.checkpoint_seconds,
                               jit_compile=jit)
        per_draw = cpu_seconds_per_draw(final, _state(np.asarray(tr["final_state"])),
                                        cfg.timing_draws_nnghmc, s_time, jit)
        return dict(**_summary(smp, tr), stopped=tr["stopped"], cpu_seconds_per_draw=per_draw,
                    gate=_gate_reading(smp), wall_seconds=tr["elapsed_seconds"])

    fin = run.unit(f"final-{seed}", draws)
    nn_cpu = fin["cpu_seconds_per_draw"]
    collect_draws = events[-1]["draw"]
    sampling = fin["draws"] * nn_cpu
    total = collect_draws * hmc_cpu + train_cpu + probe_draws * nn_cpu + sampling
    return dict(method="NNgHMC", seed=int(seed), final_method=method, events=events,
                collect_draws=int(collect_draws), probe_draws=int(probe_draws),
                train_cpu_seconds=train_cpu, **fin, cpu_seconds_total=total,
                ess_median_per_second=fin["ess_median"] / total,
                ess_min_per_second=fin["ess_min"] / total, ess_per_second=fin[key] / total,
                speedup=fin[key] / total / hmc_row["ess_per_second"],
                sampling_speedup=fin[key] / sampling / hmc_row["ess_per_second"], net=config)


def _unit_result(run, key):
    """The stored result of a finished unit of `run`."""
    import json
    with open(os.path.join(str(run.workdir), "units", f"{key}.json")) as f:
        return json.load(f)["result"]


def recorded(path):
    """A record of `scheduled_record` (e.g. `GP_RECORD`), checked by `records.load`."""
    return records.load(path)


# ------------------------------------------------------------------ reading a record

class RecordView(NamedTuple):
    """A `scheduled_record` record laid out for a chapter (`record_view`).

    table: `pd.DataFrame`, one row per quantity and the columns "HMC", "HMC (paper)",
      "seed <k>" per training seed and "NNgHMC (paper)".
    converged: one bool per column (the paper's columns count as passed), for
      `hmc_lib.book.gated_table(table, converged, axis=1)`.
    hmc, seeds, summary: the record's HMC row, NNgHMC rows and `nnghmc/hmc` row.
    cells: the gate readings of HMC and of every seed (every verdict on the record draws on
      all of them).
    outcome: how the seeds' speed-ups compare with the paper's: `"every"` seed reaches it,
      else the `"median"` does, else only the `"best"` does, else `"none"` does.
    """
    table: object
    converged: list
    hmc: dict
    seeds: list
    summary: dict
    cells: list
    outcome: str


#: rows of `RecordView.table`: (label, field of an HMC or NNgHMC row)
RECORD_ROWS = (("ESS/s, all charged", "ess_per_second"), ("speed-up", "speedup"),
               ("speed-up, sampling", "sampling_speedup"), ("acceptance", "acceptance"),
               ("draws per chain", "draws"), ("ESS min", "ess_min"),
               ("ESS median", "ess_median"), ("R̂ (max)", "rhat_max"),
               ("ESS bulk (min)", "ess_bulk_min"), ("ESS tail (min)", "ess_tail_min"),
               ("final sampler", "final_method"), ("CPU s, all charged", "cpu_seconds_total"))


def record_view(rec, paper):
    """The record `rec` (`scheduled_record`) as a `RecordView`, checked for consistency.

    Args:
      rec: the record (`recorded(path)`).
      paper: the paper's figures, a dict with `hmc_rate`, `nnghmc_rate`, `hmc_acceptance`,
        `nnghmc_acceptance`, `speedup` (the rates in the record's statistic, e.g. median
        ESS per second).
    Raises:
      ValueError: not exactly one HMC row and one summary row, fewer than 3 seeds, or a
        speed-up or summary that does not follow from the rows (a record edited by hand).
    """
    import pandas as pd
    rows = rec["rows"]
    hmc = [r for r in rows if r["method"] == "HMC"]
    seeds = [r for r in rows if r["method"] == "NNgHMC"]
    summary = [r for r in rows if r["method"] == "nnghmc/hmc"]
    if len(hmc) != 1 or len(summary) != 1 or len(seeds) < 3:
        raise ValueError(f"need one HMC row, one summary row and >= 3 seeds, got {len(hmc)}, "
                         f"{len(summary)} and {len(seeds)}")
    hmc, summary = hmc[0], summary[0]
    sp = np.array([r["speedup"] for r in seeds])
    if not np.allclose(sp, [r["ess_per_second"] / hmc["ess_per_second"] for r in seeds]):
        raise ValueError("a seed's speed-up is not its ESS per second over HMC's")
    for stat, fn in (("median", np.median), ("min", np.min), ("max", np.max)):
        if not np.isclose(summary[f"speedup_{stat}"], fn(sp)):
            raise ValueError(f"the summary's speedup_{stat} is not the {stat} of the seeds'")

    def column(r):
        out = []
        for _, key in RECORD_ROWS:
            value = r["gate"][key] if key in r.get("gate", {}) else r.get(key, np.nan)
            out.append(value)
        return out

    cols = {"HMC": column(hmc),
            "HMC (paper)": [paper["hmc_rate"], np.nan, np.nan, paper["hmc_acceptance"]]
            + [np.nan] * (len(RECORD_ROWS) - 4)}
    for r in seeds:
        cols[f"seed {r['seed']}"] = column(r)
    cols["NNgHMC (paper)"] = ([paper["nnghmc_rate"], paper["speedup"], np.nan,
                               paper["nnghmc_acceptance"]] + [np.nan] * (len(RECORD_ROWS) - 4))
    cols["HMC"][RECORD_ROWS.index(("final sampler", "final_method"))] = "hmc"
    table = pd.DataFrame(cols, index=[label for label, _ in RECORD_ROWS], dtype=object)
    cells = [hmc["gate"]] + [r["gate"] for r in seeds]
    converged = ([bool(hmc["gate"]["converged"]), True]
                 + [bool(r["gate"]["converged"]) for r in seeds] + [True])
    p = paper["speedup"]
    outcome = ("every" if sp.min() >= p else "median" if np.median(sp) >= p else
               "best" if sp.max() >= p else "none")
    return RecordView(table, converged, hmc, seeds, summary, cells, outcome)
