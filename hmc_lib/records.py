"""Recorded long runs: runs too long for the book's build, run once by `tools/record.py`,
stored as JSON with their provenance, and rendered by the chapters beside their `book` runs.
The build never re-executes them.

A long run is a sequence of *units* (say, one per target and training seed). `LongRun`
stores each finished unit's result in its work folder and skips it when the run is started
again, and gives each unit a checkpoint path for what it does inside (`sample_until`'s
`checkpoint`, or `save_tree`/`load_tree` for a training loop's weights, optimiser state and
step). So a run killed at any moment (even `kill -9`) and started again with the same
arguments loses at most the work since the last checkpoint and ends, on the same machine,
with the same numbers as a run that was never interrupted.

A record (`LongRun.write`) holds: `name`, `date` (UTC, of the last unit), `machine`,
`commit` (git, `+dirty` when the tree had uncommitted changes; a run resumed on another
commit or machine lists each, joined by '; '), `python`, `tensorflow`, `scale`, `seeds`
(every seed the run used), `settings`, `wall_seconds` (the units' wall clock, summed over
every process that worked on them), `units` (per unit: its key, wall seconds, date, commit
and machine) and `rows` (the results). `load` reads one back and checks those fields.
"""

import datetime
import json
import os
import pathlib
import platform
import subprocess
import time

import numpy as np

#: fields every record carries (checked by `load`)
FIELDS = ("name", "date", "machine", "commit", "python", "tensorflow", "scale", "seeds",
          "settings", "wall_seconds", "units", "rows")


def machine():
    """'CPU model, N cores, OS' of this machine."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()}"


def commit(repo=None):
    """The git commit of `repo` (default: this package's checkout), '+dirty' appended when
    tracked files have uncommitted changes; 'unknown' outside a git checkout."""
    repo = repo or pathlib.Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    if hasattr(value, "_asdict"):
        return value._asdict()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _write_json(path, obj):
    """Writes `obj` as JSON to `path` atomically (NaN and infinity as JSON's extensions)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, default=_json_default)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_tree(path, tree):
    """Writes a nested structure (dicts, lists, tuples) of arrays and numbers to `path`
    (`.npz`) atomically, for a training loop's checkpoint: weights, optimiser slots, step,
    chain state. `load_tree(path, like)` reads it back into the structure of `like`."""
    import tensorflow as tf
    leaves = tf.nest.flatten(tree)
    path = os.fspath(path)
    tmp = f"{path}.tmp.npz"
    with open(tmp, "wb") as f:
        np.savez(f, **{f"leaf{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)})
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_tree(path, like):
    """The structure written by `save_tree`, packed like `like`; None if `path` is absent.
    Raises `ValueError` when the file holds a different number of leaves."""
    import tensorflow as tf
    path = os.fspath(path)
    if not os.path.exists(path):
        return None
    with np.load(path, allow_pickle=False) as data:
        leaves = [data[k] for k in sorted(data.files)]
    if len(leaves) != len(tf.nest.flatten(like)):
        raise ValueError(f"checkpoint {path!r} holds {len(leaves)} arrays, the structure "
                         f"{len(tf.nest.flatten(like))}: it belongs to another run")
    return tf.nest.pack_sequence_as(like, leaves)


class LongRun:
    """A long run in resumable units; see the module docstring.

    Args:
      name: the run's name (the record's `name`).
      workdir: a folder for finished units and checkpoints (created; keep it until the
        record is written, then it may be deleted).
      scale: the scale name the run's sizes come from ("paper", or "book" for a test).
      seeds: every seed the run uses (recorded).
      settings: a JSON-serialisable dict of the run's sizes and settings (recorded; a
        work folder started with other settings is refused).
    """

    def __init__(self, name, workdir, scale, seeds, settings):
        self.name = str(name)
        self.workdir = pathlib.Path(workdir)
        self.scale = scale
        self.seeds = [int(s) for s in seeds]
        self.settings = json.loads(json.dumps(settings, default=_json_default))
        (self.workdir / "units").mkdir(parents=True, exist_ok=True)
        (self.workdir / "checkpoints").mkdir(parents=True, exist_ok=True)
        header = dict(name=self.name, scale=scale, seeds=self.seeds, settings=self.settings)
        head_path = self.workdir / "run.json"
        if head_path.exists():
            old = json.loads(head_path.read_text())
            if old != header:
                raise ValueError(f"{self.workdir} holds a run with other settings ({old}); "
                                 "use another `workdir`")
        else:
            _write_json(head_path, header)
        self.units = []

    @staticmethod
    def _key(key):
        key = str(key)
        if not key or any(c in key for c in "/\\\0") or key.startswith("."):
            raise ValueError(f"`key` must be a plain file name, got {key!r}")
        return key

    def checkpoint(self, key, suffix=".npz"):
        """The checkpoint path for unit `key` (inside the work folder)."""
        return str(self.workdir / "checkpoints" / (self._key(key) + suffix))

    def unit(self, key, fn):
        """The result of unit `key`: read back if it finished before, else `fn(checkpoint)`
        (a JSON-serialisable dict), stored before it is returned. `checkpoint` is this
        unit's checkpoint path; wall seconds are added across restarts."""
        key = self._key(key)
        path = self.workdir / "units" / f"{key}.json"
        if path.exists():
            stored = json.loads(path.read_text())
        else:
            spent_path = self.workdir / "checkpoints" / f"{key}.seconds"
            spent = float(spent_path.read_text()) if spent_path.exists() else 0.0
            start = time.perf_counter()
            try:
                result = fn(self.checkpoint(key))
            finally:
                # the time of an interrupted attempt is charged too (a kill -9 skips this,
                # so a unit's time is counted from its last checkpoint write at worst)
                spent_path.write_text(repr(spent + time.perf_counter() - start))
            stored = dict(key=key, seconds=float(spent_path.read_text()),
                          date=datetime.datetime.now(datetime.timezone.utc).isoformat(
                              timespec="seconds"),
                          commit=commit(), machine=machine(), result=result)
            _write_json(path, stored)
            stored = json.loads(path.read_text())
        self.units.append(dict(key=key, seconds=stored["seconds"], date=stored["date"],
                               commit=stored.get("commit") or commit(),
                               machine=stored.get("machine") or machine()))
        return stored["result"]

    def prior(self, out):
        """The record at `out` if it was written by a run of this name, scale, seeds and
        settings (so its finished units can stand for this run's: `adopt`), else None."""
        out = pathlib.Path(out)
        if not out.exists():
            return None
        try:
            rec = load(out)
        except (ValueError, json.JSONDecodeError):
            return None
        same = (rec["name"] == self.name and rec["scale"] == self.scale
                and rec["seeds"] == self.seeds and rec["settings"] == self.settings)
        return rec if same else None

    def adopt(self, rec, keys):
        """Counts the units `keys` of the earlier record `rec` (`prior`) as finished units
        of this run, with their seconds, dates, commits and machines (a run whose work
        folder was lost resumes from its record)."""
        by_key = {u["key"]: u for u in rec["units"]}
        missing = [k for k in keys if k not in by_key]
        if missing:
            raise ValueError(f"the record has no units {missing}")
        for k in keys:
            u = by_key[k]
            self.units.append(dict(key=k, seconds=float(u["seconds"]), date=u["date"],
                                   commit=u.get("commit") or rec["commit"],
                                   machine=u.get("machine") or rec["machine"]))

    def write(self, out, rows, **extra):
        """Writes the record of the units run so far, with `rows` (a list of dicts) and any
        `extra` fields, to `out`; returns the record."""
        import tensorflow as tf
        rec = dict(name=self.name,
                   date=max((u["date"] for u in self.units), default=None),
                   machine=_distinct(u["machine"] for u in self.units) or machine(),
                   commit=_distinct(u["commit"] for u in self.units) or commit(),
                   python=platform.python_version(),
                   tensorflow=tf.__version__, scale=self.scale, seeds=self.seeds,
                   settings=self.settings,
                   wall_seconds=float(sum(u["seconds"] for u in self.units)),
                   units=list(self.units), rows=rows, **extra)
        _write_json(out, rec)
        return json.loads(pathlib.Path(out).read_text())


def _distinct(values):
    """The distinct values, in order of first appearance, joined by '; ' ('' if none)."""
    return "; ".join(dict.fromkeys(values))


def load(path, scale=None):
    """A record written by `LongRun.write`, as a dict; raises `ValueError` naming the
    missing fields if it is not one.

    With `scale` (the scale a chapter shows the record as, usually "paper"): a record run at
    another scale is a rehearsal of the long run at a smaller size, not its result. It comes
    back with `rec["rehearsal"] = True` and every boolean field whose name ends in
    "converged", at any depth, set to False, so that it feeds no verdict and its cells are
    marked unconverged; `rehearsal_note(rec)` and `long_text(rec, text)` say so on the page.
    """
    rec = json.loads(pathlib.Path(path).read_text())
    missing = [f for f in FIELDS if f not in rec]
    if missing:
        raise ValueError(f"{path} is not a long-run record: missing {', '.join(missing)}")
    if scale is not None and rec["scale"] != scale:
        rec.update(rehearsal=True, expected_scale=scale, rows=_unconverged(rec["rows"]))
    return rec


def _unconverged(obj):
    if isinstance(obj, dict):
        return {k: (False if k.endswith("converged") and isinstance(v, (bool, np.bool_))
                    else _unconverged(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unconverged(v) for v in obj]
    return obj


def rehearsal_note(rec, command=None):
    """'' for a record at the scale its chapter expects; for a rehearsal (`load(path,
    scale)`), a sentence for the page saying that the run at that scale has not been
    recorded and that the rehearsal's numbers feed no verdict."""
    if not rec.get("rehearsal"):
        return ""
    how = f" (`{command}`)" if command else ""
    return (f"Not yet recorded at {rec['expected_scale']} scale{how}: the record in the "
            f"repository is a rehearsal at {rec['scale']} scale, which checks that the "
            f"long run and this page work end to end. Its numbers are shown, every cell "
            f"marked unconverged, and none of them feeds a verdict.")


def long_text(rec, text):
    """`text` (a recorded number, for a results table), or 'not recorded' for a
    rehearsal."""
    return f"not recorded ({rec['scale']} rehearsal only)" if rec.get("rehearsal") else text


def describe(rec):
    """One line of provenance for a caption: 'recorded 2026-12-03 on <machine>, commit
    <c>, paper scale, 3 h 12 min wall clock, seeds 0, 1, 2'."""
    secs = float(rec["wall_seconds"])
    minutes = int(round(secs / 60))
    wall = (f"{minutes // 60} h {minutes % 60} min" if minutes >= 60
            else f"{minutes} min" if secs >= 60 else f"{secs:.0f} s")
    commits = "commits" if ";" in rec["commit"] else "commit"
    return (f"recorded {str(rec['date'])[:10]} on {rec['machine']}, {commits} {rec['commit']}, "
            f"{rec['scale']} scale, {wall} wall clock, seeds "
            f"{', '.join(map(str, rec['seeds']))}")
