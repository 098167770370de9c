"""Recorded long runs (`hmc_lib.records`): units, provenance, and resuming after `kill -9`."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from hmc_lib import records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A small long run: unit "a" is instant, unit "b" samples in 12 chunks with a checkpoint after
# every chunk; its gate sleeps a little so that a kill lands midway.
SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np, tensorflow as tf
    import hmc_lib
    from hmc_lib import diagnostics, records, sampling, targets

    workdir, out = sys.argv[1], sys.argv[2]
    run = records.LongRun("toy", workdir, "ci", seeds=[3], settings={"chunk_draws": 10})

    def b(checkpoint):
        t = targets.Target(lambda x: -0.5 * tf.reduce_sum(x**2, -1), 3)
        def slow_gate(kept):
            time.sleep(0.3)
            return diagnostics.convergence(kept)
        s, tr = sampling.sample_until(
            hmc_lib.HMC(t, 0.4, 5), tf.random.stateless_normal([4, 3], [1, 2]), seed=3,
            chunk_draws=10, max_draws=120, min_draws=120, gate=slow_gate,
            checkpoint=checkpoint, checkpoint_seconds=0)
        return dict(draws=s.tolist(), resumed=tr["resumed_draws"])

    rows = [run.unit("a", lambda checkpoint: {"x": 1}), run.unit("b", b)]
    run.write(out, rows)
""")


def _start(tmp_path, name):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="3")
    work, out = tmp_path / name, tmp_path / f"{name}.json"
    proc = subprocess.Popen([sys.executable, str(script), str(work), str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, work, out


def test_a_long_run_killed_midway_resumes_to_the_same_result(tmp_path):
    proc, work, out = _start(tmp_path, "killed")
    ckpt = work / "checkpoints" / "b.npz"
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert ckpt.exists(), proc.stderr.read() if proc.poll() is not None else "no checkpoint"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()                         # killed before the end
    resumed, _, _ = _start(tmp_path, "killed")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    plain, _, plain_out = _start(tmp_path, "plain")
    assert plain.wait(timeout=300) == 0, plain.stderr.read()
    a, b = records.load(out), records.load(plain_out)
    assert 0 < a["rows"][1]["resumed"] < 120 and b["rows"][1]["resumed"] == 0
    np.testing.assert_array_equal(np.array(a["rows"][1]["draws"]),
                                  np.array(b["rows"][1]["draws"]))
    assert a["rows"][0] == {"x": 1} and a["seeds"] == [3] and a["wall_seconds"] > 0


def test_finished_units_are_not_run_again_and_settings_are_checked(tmp_path):
    run = records.LongRun("r", tmp_path, "ci", [1], {"n": 1})
    calls = []
    assert run.unit("u", lambda c: calls.append(c) or {"v": 2}) == {"v": 2}
    again = records.LongRun("r", tmp_path, "ci", [1], {"n": 1})
    assert again.unit("u", lambda c: calls.append(c) or {"v": 3}) == {"v": 2}
    assert len(calls) == 1 and calls[0].endswith(os.path.join("checkpoints", "u.npz"))
    with pytest.raises(ValueError, match="other settings"):
        records.LongRun("r", tmp_path, "ci", [1], {"n": 2})
    with pytest.raises(ValueError, match="plain file name"):
        run.unit("../x", lambda c: {})


def test_a_record_carries_its_provenance(tmp_path):
    run = records.LongRun("r", tmp_path / "w", "paper", [0, 1, 2], {"n": 1})
    run.unit("u", lambda c: {"v": np.float64(2.5)})
    rec = run.write(tmp_path / "rec.json", rows=[{"v": 2.5}], note="x")
    for field in records.FIELDS:
        assert field in rec
    assert rec["seeds"] == [0, 1, 2] and rec["scale"] == "paper" and rec["note"] == "x"
    assert records.load(tmp_path / "rec.json") == rec
    line = records.describe(rec)
    assert "paper scale" in line and "seeds 0, 1, 2" in line and rec["commit"] in line
    # hours are whole hours: 10,213 s is 2 h 50 min (it once printed "3 h 10 min")
    for secs, text in ((10213, "2 h 50 min"), (3590, "1 h 0 min"), (125, "2 min"), (42, "42 s")):
        assert f"{text} wall clock" in records.describe(dict(rec, wall_seconds=secs)), secs
    (tmp_path / "bad.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="missing"):
        records.load(tmp_path / "bad.json")


def test_a_run_whose_work_folder_was_lost_adopts_its_records_units(tmp_path):
    """`LongRun.prior` finds the record of a run with the same name, scale, seeds and
    settings (and no other); `adopt` counts its units with their own commit and machine,
    which the new record lists beside this run's."""
    first = records.LongRun("r", tmp_path / "w1", "paper", [0], {"n": 1})
    first.unit("u", lambda c: {"v": 1})
    rec = first.write(tmp_path / "rec.json", rows=[{"v": 1}])
    rec = dict(rec, commit="abc123", machine="elsewhere",
               units=[dict(u, commit="abc123", machine="elsewhere") for u in rec["units"]])
    (tmp_path / "rec.json").write_text(json.dumps(rec))
    others = (dict(name="s"), dict(scale="book"), dict(seeds=[1]), dict(settings={"n": 2}))
    for i, other in enumerate(others):
        args = dict(dict(name="r", scale="paper", seeds=[0], settings={"n": 1}), **other)
        run = records.LongRun(workdir=tmp_path / f"other{i}", **args)
        assert run.prior(tmp_path / "rec.json") is None, other
    run = records.LongRun("r", tmp_path / "w2", "paper", [0], {"n": 1})
    assert run.prior(tmp_path / "missing.json") is None
    prior = run.prior(tmp_path / "rec.json")
    assert prior is not None
    with pytest.raises(ValueError, match="no units"):
        run.adopt(prior, ["nope"])
    run.adopt(prior, ["u"])
    run.unit("w", lambda c: {"v": 2})
    new = run.write(tmp_path / "rec2.json", rows=[{"v": 1}, {"v": 2}])
    assert [u["key"] for u in new["units"]] == ["u", "w"]
    assert new["units"][0]["seconds"] == rec["units"][0]["seconds"]
    assert new["commit"].startswith("abc123; ") and new["machine"].startswith("elsewhere; ")
    assert "commits abc123; " in records.describe(new)


def test_a_record_at_a_smaller_scale_is_a_rehearsal_that_feeds_no_verdict(tmp_path):
    run = records.LongRun("r", tmp_path / "w", "ci", [0], {"n": 1})
    rows = [{"converged": True, "grid": {"0.1": {"hmc_converged": True, "ess": 5.0}}}]
    run.write(tmp_path / "rec.json", rows=rows)
    same = records.load(tmp_path / "rec.json", scale="ci")
    assert same["rows"] == rows and records.rehearsal_note(same) == ""
    assert records.long_text(same, "3.1") == "3.1"
    rehearsal = records.load(tmp_path / "rec.json", scale="paper")
    assert rehearsal["rehearsal"] and rehearsal["rows"] == [
        {"converged": False, "grid": {"0.1": {"hmc_converged": False, "ess": 5.0}}}]
    assert "rehearsal at ci scale" in records.rehearsal_note(rehearsal, "python tools/record.py r")
    assert records.long_text(rehearsal, "3.1") == "not recorded (ci rehearsal only)"


def test_tree_checkpoints_round_trip(tmp_path):
    tree = {"w": [np.arange(3.0), np.ones((2, 2), np.float32)], "step": np.int64(7)}
    path = records.save_tree(tmp_path / "t.npz", tree)
    back = records.load_tree(path, tree)
    np.testing.assert_array_equal(back["w"][1], tree["w"][1])
    assert back["w"][1].dtype == np.float32 and int(back["step"]) == 7
    assert records.load_tree(tmp_path / "none.npz", tree) is None
    with pytest.raises(ValueError, match="another run"):
        records.load_tree(path, {"w": [1.0]})
