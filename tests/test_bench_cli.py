"""The benchmark command line: a listing, help per benchmark, a table within 100 columns."""

import os
import subprocess
import sys

from hmc_lib import bench
from hmc_lib.bench import __main__ as cli


def test_the_listing_names_every_benchmark_within_100_columns(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in bench.available():
        assert f"  {name} " in out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_help_says_what_each_benchmark_runs_and_how_long_it_takes():
    for name in bench.available():
        text = bench.describe(name)
        assert text.startswith(bench._doc(name)[:20]) and "ll clock" in text
        assert bench.summary(name)
    bench.DURATIONS["hmc"] = {"ci": "9 s", "book": "1 min"}
    try:
        assert "ci 9 s; book 1 min" in bench.describe("hmc")
    finally:
        del bench.DURATIONS["hmc"]


def test_the_default_table_fits_100_columns():
    rows = [dict(method="TFP NUTS (dual averaging, a very long label)", target="gym_brownian",
                 ess_min=1234.5678, ess_per_grad=1.2345e-4, ess_per_second=98765.4,
                 acceptance=0.81234, seconds=12.3, train_seconds=0.0,
                 paper={"acceptance": 0.7, "ess": [1, 2, 3]}, spread={"x": [1, 2]})]
    text = cli.table(rows)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "…" in text and "paper" not in text


def test_unknown_benchmark_is_a_clear_error(capsys):
    assert cli.main(["nope"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err


def test_the_cli_prints_a_table_and_shows_progress_on_stderr():
    out = subprocess.run([sys.executable, "-m", "hmc_lib.bench", "hmc", "--scale", "ci"],
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].split()[:2] == ["method", "target"] and "rows" in lines[-1]
    assert max(len(line) for line in lines) <= 100
    assert "hmc (ci scale):" in out.stderr and "elapsed" in out.stderr
