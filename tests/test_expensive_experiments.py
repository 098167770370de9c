"""`hmc_lib.nnghmc.expensive`: the drivers of the chapter 'When gradients are expensive' on
tiny sizes (structure and bookkeeping; the statistics are in the kernels' own tests)."""

import numpy as np
import pytest

from hmc_lib import targets
from hmc_lib.nnghmc import expensive as ex


def test_settings_every_scale():
    for s in ("ci", "book", "paper"):
        cfg = ex.settings(s)
        assert set(cfg) == {"garch", "gp_matern", "surrogate", "cover_type", "table5"}
    paper = ex.settings("paper")
    assert paper["garch"]["target"]["num_obs"] == 1000 and paper["gp_matern"]["target"]["num_data"] == 500
    assert paper["surrogate"]["dims"] == [10, 20, 40] and paper["surrogate"]["sizes"] == [500, 1000, 2000]
    assert paper["cover_type"]["num_data"] == 581012 and paper["table5"]["shrink"] == 1
    assert ex.settings("book")["garch"]["seeds"] >= 3


def test_surrogate_grid_tiny():
    net = dict(hidden=8, epochs=2, batch_size=8, learning_rate=1e-3)
    cfg = dict(dims=[2], sizes=[40, 50], gp_sizes=[40], step_size=0.3, L=5, chains=4,
               draws=10, net=net, authors_net=dict(net, batch_size=20))
    rows = ex.surrogate_grid(cfg, seed=3)
    assert [(r["d"], r["n"]) for r in rows] == [(2, 40), (2, 50)]
    for k in ("gp", "nn", "nn_authors", "hmc"):
        assert 0.0 <= rows[0][k] <= 1.0
    assert rows[0]["gp_fit_seconds"] > 0
    assert np.isnan(rows[1]["gp"]) and 0.0 <= rows[1]["nn"] <= 1.0   # no GP at n = 50


def test_schedule_table_tiny_garch():
    cfg = dict(step_size=0.002, L=3, chains=2, num_results=12, burnin=4, collect=6, fits=1,
               net=dict(hidden=4, epochs=2, batch_size=8, learning_rate=1e-3))
    t = targets.get("garch", num_obs=50)
    rows, (hs, ns), res = ex.schedule_table(t, "garch", cfg, seed=1)
    assert [r["method"] for r in rows] == ["HMC", "NNgHMC"]
    assert hs.shape == ns.shape == (12, 2, 4)
    assert rows[1]["seconds"] > rows[1]["train_seconds"] > 0
    np.testing.assert_allclose(rows[1]["speedup"], rows[1]["ess_median_per_second"]
                               / rows[0]["ess_median_per_second"])
    assert res.log["criterion"] == "ess_per_second" and len(res.log["events"]) == 1
    with pytest.raises(ValueError, match="start"):
        ex.start_state(targets.get("gaussian", variance=np.ones(2)), "gaussian", 2)


def test_table5_targets_have_the_papers_shapes_at_paper_scale():
    assert ex.PAPER["table5"]["census"]["shape"] == (48842, 123)
    cfg = dict(shrink=400)
    t = ex.table5_target("dota2", cfg)
    assert t.data[0].shape == (102944 // 400, 116)
    assert ex.table5_step_size(t) > 0
