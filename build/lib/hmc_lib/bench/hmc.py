"""Benchmark `hmc`: our `HMC` against `tfp.mcmc.HamiltonianMonteCarlo` on `icg50`.

Same chains, step size, leapfrog steps and seed, in one process; each kernel runs `repeats`
times alternately and the fastest run is kept (timing noise on a shared machine only slows
runs down). The chains are identical, so acceptance and ESS must agree exactly; the row
`per_step_ms` compares the cost of one transition for all chains.
"""

import tensorflow_probability as tfp

from hmc_lib import HMC, sample, scale as scale_mod, targets
from hmc_lib.bench import row


def run(scale):
    t = targets.get("icg50")
    chains = scale_mod.pick(ci=16, book=100, paper=200, scale=scale)
    n = scale_mod.pick(ci=200, book=2000, paper=10000, scale=scale)
    repeats = scale_mod.pick(ci=1, book=3, paper=3, scale=scale)
    step_size, steps = 0.1, 10
    x0 = t.sample(chains, 0)
    kernels = {"hmc_lib.HMC": lambda: HMC(t, step_size, steps),
               "tfp.mcmc.HamiltonianMonteCarlo":
                   lambda: tfp.mcmc.HamiltonianMonteCarlo(t.log_prob, step_size, steps)}
    best = {}
    for _ in range(repeats):
        for name, make in kernels.items():
            samples, trace = sample(make(), n, x0, num_burnin_steps=n // 5, seed=42)
            if "grad_evals" not in trace:  # TFP's results do not count gradients
                trace["grad_evals"] = trace["is_accepted"].astype("int64") * 0 + steps
            if name not in best or trace["seconds"] < best[name][1]["seconds"]:
                best[name] = (samples, trace)
    rows = []
    for name, (samples, trace) in best.items():
        rows.append(row(name, "icg50", samples, trace, step_size=step_size,
                        num_leapfrog_steps=steps, chains=chains, draws=n,
                        per_step_ms=1e3 * trace["seconds"] / n,
                        compile_seconds=trace["compile_seconds"]))
    rows[0]["time_ratio_vs_tfp"] = rows[0]["per_step_ms"] / rows[1]["per_step_ms"]
    return rows
