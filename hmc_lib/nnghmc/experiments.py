"""NNgHMC experiments: the run settings per scale and the published numbers, in one place.

Read by the chapter `book/03_nnghmc.md` and by `python -m hmc_lib.bench nnghmc`, so the book
and the benchmark run the same experiments. Numbers in `PAPER` are typed from Li et al. (2019).
"""

from hmc_lib import scale as scale_mod

PAPER = {
    ("banana", "hmc"): dict(acceptance=0.58),
    ("banana", "nnghmc"): dict(acceptance=0.57),
    ("icg30", "hmc"): dict(acceptance=0.7),
    ("icg30", "nnghmc"): dict(acceptance=0.5),
    ("logreg", "hmc"): dict(acceptance=0.8, ess_per_second=1.5, seconds=300, num_data=50000),
    ("logreg", "nnghmc"): dict(acceptance=0.6, ess_per_second=6.75, seconds=40, speedup=4.5),
}


def settings(scale):
    """Run sizes and sampler settings per experiment at `scale`.

    Banana: ε=0.3, L=20 instead of the paper's 0.1, 5 (our banana, A=1, B=0.1, C=1, has
    sd(x1)=10; a trajectory of length 0.5 barely moves). ICG30: the paper's ε=0.5, L=100.
    Logistic regression: the paper's L=20; ε is 0.0075 at the reference size (the middle one)
    and scales like n^-1/2 — the paper's ε=0.01 puts εL near one full period of the
    posterior's oscillation at our sizes (a fixed L resonates; the authors' code draws L at
    random), which drives the ESS of HMC to a few units.
    """
    p = lambda **kw: scale_mod.pick(scale=scale, **kw)
    return dict(
        banana=dict(target=dict(), step_size=0.3, L=20, chains=4,
                    num_results=p(ci=300, book=2000, paper=5000), burnin=100,
                    collect=p(ci=200, book=500, paper=1000),
                    net=dict(hidden=100, epochs=50, batch_size=64, learning_rate=1e-2)),
        icg30=dict(target=dict(), step_size=0.5, L=100, chains=4,
                   num_results=p(ci=200, book=1000, paper=5000), burnin=100,
                   collect=p(ci=100, book=100, paper=200),
                   net=dict(hidden=100, epochs=10, learning_rate=1e-3)),
        logreg=dict(target=dict(num_features=p(ci=20, book=50, paper=200)),
                    sizes=p(ci=[2000, 5000, 10000], book=[5000, 10000, 20000], paper=[10000, 25000, 50000]),
                    step_size=p(ci=0.0075, book=0.0075, paper=0.005), L=20,
                    chains=p(ci=2, book=4, paper=4), num_results=p(ci=200, book=1000, paper=1000),
                    burnin=50, collect=p(ci=200, book=100, paper=100),
                    net=dict(hidden=100, epochs=50, batch_size=128, learning_rate=1e-3, linear=True)),
    )
