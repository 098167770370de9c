"""NNgHMC's recorded long runs (`hmc_lib.records`), run by `tools/record.py` and rendered by
chapter 6; the build never re-runs them.

`gp_paper(workdir, scale)`: GP regression (the paper's Table 2) at its 500 points, HMC
against scheduled NNgHMC over three training seeds. Registered in `tools/record.py` as
`nnghmc-gp`; writes `hmc_lib/nnghmc/recorded/gp_paper.json`.

How the run is laid out, and why:

- **Cost in CPU seconds of one thread.** The record is made on a machine shared with other
  work, where the wall clock of a step depends on what else runs. Every rate is ESS per
  CPU second (`time.process_time` of a one-thread process); the wall clock is recorded too.
  Per-draw costs are measured by separate timing runs (`cpu_seconds_per_draw`), because
  each kernel's cost per draw does not depend on where the chain is (HMC: L gradients,
  NNgHMC: L network calls and one log-density), so rate = ESS per draw / CPU seconds per
  draw.
- **HMC's length chosen by the error of its rate.** HMC's ESS per second does not depend on
  the run's length, only its error does; HMC is the costly side (each of its draws is L = 20
  gradients, each a 500 × 500 Cholesky per chain), so it runs until the relative standard
  error of its median ESS per draw (`rate_error`) is below `rate_error_max` (and the
  convergence gate passes), or `hmc_max_draws` are spent. One such baseline serves the
  three training seeds: HMC has no training seed.
- **NNgHMC as the paper runs it.** After a shared HMC burn-in, each seed runs the training
  schedule (`schedule.run_schedule` with `criterion="ess_per_second"`, here in resumable
  units): collect (q, ∇log π(q)) from every leapfrog step of HMC draws, refit every
  `retrain_every` draws, probe, switch when the projected ESS per second (training so far
  charged) beats HMC's; then `nnghmc_draws` (the paper's 10,000) NNgHMC draws. Its cost
  charges the collection draws at HMC's price, the training, the probes and the draws.
- **Resumable.** Every stage is a `LongRun` unit; the sampling inside a unit goes through
  `sample_until(checkpoint=...)`, and fitted networks are stored with `records.save_tree`,
  so a run killed at any point loses at most `checkpoint_seconds` of sampling.
"""

import dataclasses
import os
import time
from typing import Tuple

import numpy as np
import tensorflow as tf

from hmc_lib import diagnostics, records, targets
from hmc_lib.kernels.hmc import HMC
from hmc_lib.nnghmc.kernel import NNgHMC, RecordingHMC
from hmc_lib.nnghmc.networks import GradientNet, fit
from hmc_lib.nnghmc.schedule import efficiency_per_draw
from hmc_lib.sampling import sample, sample_until

RECORDED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recorded")
#: the record of `gp_paper` at paper scale, read by chapter 6
GP_RECORD = os.path.join(RECORDED, "gp_paper.json")


@dataclasses.dataclass(frozen=True)
class GPLongRun:
    """Settings of the recorded GP regression run (`gp_paper`).

    num_data: rows of X (the paper's 500). step_size, L: the paper's ε = 0.05, L = 20.
    chains: chains of every sampler. burnin: HMC draws discarded before anything else.
    hmc_chunk, hmc_max_draws: HMC's draws per gate reading and its budget per chain.
    rate_error_max: HMC stops once the relative standard error of its median ESS per draw
      (`rate_error`) is at most this.
    collect_until, retrain_every, probe_steps: the schedule's b, r and probe length.
    collect_chunk: collection draws per checkpointed chunk.
    nnghmc_draws, nnghmc_chunk: NNgHMC's draws (the paper's 10,000) and draws per chunk.
    min_speedup: the switch test's ratio (`run_schedule`'s `min_speedup`).
    net: keyword arguments of `fit` (the paper: 100 hidden units, 100 epochs).
    seeds: training seeds (each drives collection, training, probes and NNgHMC's draws).
    baseline_seed: seed of the burn-in and of HMC's baseline.
    timing_draws_hmc, timing_draws_nnghmc: draws of the timing runs.
    checkpoint_seconds: least seconds between checkpoint writes.
    """
    num_data: int = 500
    step_size: float = 0.05
    L: int = 20
    chains: int = 4
    burnin: int = 200
    hmc_chunk: int = 100
    hmc_max_draws: int = 4000
    rate_error_max: float = 0.05
    collect_until: int = 1000
    retrain_every: int = 250
    collect_chunk: int = 25
    probe_steps: int = 20
    nnghmc_draws: int = 10000
    nnghmc_chunk: int = 500
    min_speedup: float = 1.0
    net: Tuple[Tuple[str, object], ...] = (("hidden", 100), ("epochs", 100),
                                           ("batch_size", 64), ("learning_rate", 1e-2))
    seeds: Tuple[int, ...] = (0, 1, 2)
    baseline_seed: int = 1000
    timing_draws_hmc: int = 20
    timing_draws_nnghmc: int = 500
    checkpoint_seconds: float = 120.0


def gp_settings(scale):
    """`GPLongRun` at `scale`: the paper's sizes at "paper"; at "ci" and "book" a toy of
    the same run (30 points, a few hundred draws) for the tests, whose switch test always
    passes (`min_speedup` tiny), so that a resumed run takes the same path as an
    uninterrupted one however long each of its steps took."""
    if scale == "paper":
        return GPLongRun()
    if scale in ("ci", "book"):
        return GPLongRun(num_data=30, burnin=20, hmc_chunk=20, hmc_max_draws=100,
                         rate_error_max=0.3, collect_until=40, retrain_every=20,
                         collect_chunk=10, probe_steps=5, nnghmc_draws=60, nnghmc_chunk=20,
                         min_speedup=1e-9, net=(("hidden", 16), ("epochs", 3),
                                                ("batch_size", 64), ("learning_rate", 1e-2)),
                         timing_draws_hmc=4, timing_draws_nnghmc=10, checkpoint_seconds=0.0)
    raise ValueError(f"`scale` must be 'ci', 'book' or 'paper', got {scale!r}")


# ------------------------------------------------------------------ measurements

def rate_error(samples):
    """The median (over coordinates) ESS per draw of a run and its relative standard error.

    The ESS is `diagnostics.ess` (all chains together). Its error is the standard large-run
    one for the integrated autocorrelation time τ = 1 + 2 Σ_{k=1}^{M} ρ_k summed up to a
    window M (Madras and Sokal 1988; Sokal 1997, eq. 3.19):
    Var(τ̂) ≈ 2 (2M + 1) τ² / N for N draws in all, so the relative error of ESS = N/τ is
    sqrt(2 (2M + 1) / N). M is the window of Geyer's initial positive sequence (the first
    pair of lags whose summed autocorrelation (`diagnostics.autocorrelation`, all chains) is
    negative ends it), taken in the coordinate whose ESS is the median.

    Args:
      samples: `[draws, chains, dim]`, at least 4 draws.
    Returns:
      `(ess_per_draw, relative_error)`: median ESS over draws × chains, and its error.
    """
    x = np.asarray(samples, np.float64)
    if x.ndim != 3 or x.shape[0] < 4:
        raise ValueError(f"`samples` must be [draws >= 4, chains, dim], got {list(x.shape)}")
    total = x.shape[0] * x.shape[1]
    e = diagnostics.ess(x)
    j = int(np.argsort(e)[(len(e) - 1) // 2])        # the (lower) median coordinate
    rho = diagnostics.autocorrelation(x[..., j:j + 1])[:, 0]
    pairs = rho[:(len(rho) // 2) * 2].reshape(-1, 2).sum(1)
    negative = np.flatnonzero(pairs < 0)
    window = 2 * int(negative[0]) if negative.size else len(rho) - 1
    return float(e[j] / total), float(np.sqrt(2.0 * (2 * window + 1) / total))


def cpu_seconds_per_draw(kernel, state, draws, seed):
    """CPU seconds of one draw of `kernel` (all chains), compilation excluded: a first run of
    `draws` draws compiles, a second one from its end is timed with `time.process_time`."""
    _, tr = sample(kernel, int(draws), state, seed=int(seed), chunk_size=int(draws),
                   jit_compile=False)
    start = time.process_time()
    sample(kernel, int(draws), tr["final_state"], seed=int(seed) + 1, chunk_size=int(draws),
           jit_compile=False)
    return (time.process_time() - start) / int(draws)


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


# ------------------------------------------------------------------ the GP regression record

def gp_paper(workdir, scale="paper", out=None):
    """The recorded GP regression run (module docstring); returns the record.

    Rows: one `HMC` row (the baseline: its draws, why it stopped, ESS, acceptance, CPU
    seconds per draw, `rate_error`, the gate), then per training seed one `NNgHMC` row
    (the schedule's events, collection draws, training CPU seconds, its draws' ESS and gate,
    CPU seconds per draw, `cpu_seconds_total` and `ess_median_per_second` with everything
    charged, `speedup` over HMC and `sampling_speedup` of the draws alone), then one
    `nnghmc/hmc` summary row (median and range of the speed-ups).
    """
    cfg = gp_settings(scale)
    out = out or (GP_RECORD if scale == "paper" else os.path.join(workdir, "gp_record.json"))
    settings = dataclasses.asdict(cfg)
    run = records.LongRun("nnghmc-gp", workdir, scale, [cfg.baseline_seed, *cfg.seeds],
                          settings)
    data_dir = os.path.join(str(workdir), "data")
    os.makedirs(data_dir, exist_ok=True)
    target = targets.get("gp_matern", num_data=cfg.num_data)
    hmc = HMC(target, cfg.step_size, cfg.L)
    x0 = tf.constant(np.tile([0.5, 0.5, -1.4], (cfg.chains, 1)), tf.float32)
    net_kwargs = dict(cfg.net)

    def burnin(ckpt):
        s, tr = sample_until(hmc, x0, cfg.baseline_seed, chunk_draws=max(1, cfg.burnin // 4),
                             max_draws=cfg.burnin, min_draws=cfg.burnin, checkpoint=ckpt,
                             checkpoint_seconds=cfg.checkpoint_seconds, jit_compile=False)
        return dict(state=np.asarray(tr["final_state"]).tolist(),
                    acceptance=float(np.mean(tr["is_accepted"])),
                    wall_seconds=tr["elapsed_seconds"])

    start = _state(run.unit("burnin", burnin)["state"])

    def timing_hmc(ckpt):
        return dict(cpu_seconds_per_draw=cpu_seconds_per_draw(
            hmc, start, cfg.timing_draws_hmc, cfg.baseline_seed + 1))

    hmc_cpu = run.unit("timing-hmc", timing_hmc)["cpu_seconds_per_draw"]

    def rate_gate(kept):
        g = diagnostics.convergence(kept)
        _, err = rate_error(kept)
        return g._replace(converged=bool(g.converged and err <= cfg.rate_error_max))

    def baseline(ckpt):
        s, tr = sample_until(hmc, start, cfg.baseline_seed + 2, chunk_draws=cfg.hmc_chunk,
                             max_draws=cfg.hmc_max_draws, gate=rate_gate, checkpoint=ckpt,
                             checkpoint_seconds=cfg.checkpoint_seconds, jit_compile=False)
        per_draw, err = rate_error(s)
        summ = _summary(s, tr)
        return dict(method="HMC", stopped=tr["stopped"], **summ,
                    ess_median_per_chain_draw=per_draw, rate_error=err,
                    cpu_seconds_per_draw=hmc_cpu,
                    ess_median_per_second=summ["ess_median"] / (summ["draws"] * hmc_cpu),
                    ess_min_per_second=summ["ess_min"] / (summ["draws"] * hmc_cpu),
                    wall_seconds=tr["elapsed_seconds"], gate=_gate_reading(s),
                    history=tr["history"])

    hmc_row = run.unit("hmc", baseline)
    rows = [hmc_row]
    for seed in cfg.seeds:
        rows.append(_gp_seed(run, cfg, target, hmc, start, hmc_cpu, seed, net_kwargs,
                             data_dir))
    sp = np.array([r["speedup"] for r in rows[1:]])
    ssp = np.array([r["sampling_speedup"] for r in rows[1:]])
    rows.append(dict(method="nnghmc/hmc", seeds=list(cfg.seeds),
                     speedup_median=float(np.median(sp)), speedup_min=float(sp.min()),
                     speedup_max=float(sp.max()),
                     sampling_speedup_median=float(np.median(ssp)),
                     sampling_speedup_min=float(ssp.min()),
                     sampling_speedup_max=float(ssp.max())))
    return run.write(out, rows, command="python tools/record.py nnghmc-gp --threads 1",
                     time_unit="CPU seconds, one thread")


def _gp_seed(run, cfg, target, hmc, start, hmc_cpu, seed, net_kwargs, data_dir):
    """One training seed of `gp_paper`: the schedule in units, then NNgHMC's draws."""
    rng = np.random.default_rng(seed)
    seeds = iter(rng.integers(0, 2**31 - 1, size=1000).tolist())
    recording = RecordingHMC(target, cfg.step_size, cfg.L)
    state, draw, events, train_cpu = start, 0, [], 0.0
    files, net, config = [], None, None
    probe_draws, accepted, steps = 0, 0.0, 0
    while draw < cfg.collect_until:
        b = len(events)
        n = min(cfg.retrain_every, cfg.collect_until - draw)
        s_collect, s_fit, s_probe, s_time = next(seeds), next(seeds), next(seeds), next(seeds)
        path = os.path.join(data_dir, f"collect-{seed}-{b}.npz")

        def collect(ckpt, state=state, n=n, s=s_collect, path=path):
            smp, tr = sample_until(recording, state, s, chunk_draws=min(cfg.collect_chunk, n),
                                   max_draws=n, min_draws=n, checkpoint=ckpt,
                                   checkpoint_seconds=cfg.checkpoint_seconds, jit_compile=False)
            dim = target.dim
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
        like = [np.zeros((0, target.dim)), np.zeros((0, target.dim)), np.zeros((0, 0, 0))]
        blocks = [records.load_tree(f, like) for f in files]
        hmc_blocks = [blk[2] for blk in blocks]
        accepted, steps = accepted + col["accepted"], steps + col["steps"]
        state = _state(col["state"])
        net_path = os.path.join(data_dir, f"net-{seed}-{b}.npz")

        def train(ckpt, s=s_fit, net_path=net_path):
            t0 = time.process_time()
            net, hist = fit(np.concatenate([blk[0] for blk in blocks]),
                            np.concatenate([blk[1] for blk in blocks]), seed=s, **net_kwargs)
            cpu = time.process_time() - t0
            _save_net(net_path, net)
            return dict(config=net.config(), cpu_seconds=cpu, final_loss=hist["loss"][-1],
                        num_pairs=int(hist["num_train"]))

        fitted = run.unit(f"fit-{seed}-{b}", train)
        net, config = _load_net(net_path, fitted["config"]), fitted["config"]
        train_cpu += fitted["cpu_seconds"]
        kernel = NNgHMC(target, net, cfg.step_size, cfg.L)

        def probe(ckpt, state=state, s=s_probe, st=s_time, kernel=kernel):
            nn_cpu = cpu_seconds_per_draw(kernel, state, cfg.probe_steps, st)
            smp, tr = sample(kernel, cfg.probe_steps, state, seed=s, jit_compile=False)
            return dict(samples=smp.tolist(), state=np.asarray(tr["final_state"]).tolist(),
                        acceptance=float(np.mean(tr["is_accepted"])),
                        cpu_seconds_per_draw=nn_cpu)

        pr = run.unit(f"probe-{seed}-{b}", probe)
        probe_draws += cfg.probe_steps
        state = _state(pr["state"])
        ref = np.concatenate(hmc_blocks)
        ref_var = ref.reshape(-1, ref.shape[-1]).var(0)
        hmc_rate = efficiency_per_draw(hmc_blocks[-1], ref_var) / hmc_cpu
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
                               max_draws=cfg.nnghmc_draws, min_draws=cfg.nnghmc_draws,
                               checkpoint=ckpt, checkpoint_seconds=cfg.checkpoint_seconds,
                               jit_compile=False)
        per_draw = cpu_seconds_per_draw(final, _state(np.asarray(tr["final_state"])),
                                        cfg.timing_draws_nnghmc, s_time)
        return dict(**_summary(smp, tr), cpu_seconds_per_draw=per_draw,
                    gate=_gate_reading(smp), wall_seconds=tr["elapsed_seconds"])

    fin = run.unit(f"final-{seed}", draws)
    nn_cpu = fin["cpu_seconds_per_draw"]
    collect_draws = events[-1]["draw"]
    total = (collect_draws * hmc_cpu + train_cpu + probe_draws * nn_cpu
             + cfg.nnghmc_draws * nn_cpu)
    hmc_rate = _unit_result(run, "hmc")["ess_median_per_second"]
    rate = fin["ess_median"] / total
    sampling_rate = fin["ess_median"] / (cfg.nnghmc_draws * nn_cpu)
    return dict(method="NNgHMC", seed=int(seed), final_method=method, events=events,
                collect_draws=int(collect_draws), probe_draws=int(probe_draws),
                train_cpu_seconds=train_cpu, **{k: v for k, v in fin.items()},
                cpu_seconds_total=total, ess_median_per_second=rate,
                ess_min_per_second=fin["ess_min"] / total,
                speedup=rate / hmc_rate, sampling_speedup=sampling_rate / hmc_rate,
                net=config)


def _unit_result(run, key):
    """The stored result of a finished unit of `run`."""
    import json
    with open(os.path.join(str(run.workdir), "units", f"{key}.json")) as f:
        return json.load(f)["result"]


def recorded_gp(path=GP_RECORD):
    """The recorded GP regression run (`gp_paper` at paper scale), checked by
    `records.load`."""
    return records.load(path)
