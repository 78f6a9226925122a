"""What a user installs: the wheel the README's CI block installs, and one TensorFlow for
every extra (pyproject.toml)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import tomllib

from conftest import make_synthetic_run

ROOT = Path(__file__).resolve().parents[1]
TENSORFLOWS = {"tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel",
               "tf-nightly", "tf-nightly-cpu"}  # distributions that each ship `tensorflow`


def _name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.-]+", requirement)[0].lower().replace("_", "-")


def test_every_extra_asks_for_the_same_single_tensorflow():
    """`pip install '.[hub]'` once gave tensorflow-cpu and, through keras-hub's
    tensorflow-text, tensorflow: two copies of one package. Every requirement that names a
    TensorFlow names the one distribution keras-hub and the gpu extra need."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"],
                    *(r for extra in project["optional-dependencies"].values() for r in extra)]
    named = {_name(r) for r in requirements} & TENSORFLOWS
    assert named == {"tensorflow"}, named


def test_the_installed_environment_holds_one_tensorflow():
    """What `make install` made (the dev extra, keras-hub with its dependencies included)."""
    installed = {_name(dist.metadata["Name"]) for dist in metadata.distributions()}
    assert installed & TENSORFLOWS == {"tensorflow"}, installed & TENSORFLOWS


def test_the_built_wheel_runs_from_anywhere(tmp_path):
    """The README's CI block installs attnviz from its repository or a wheel built there:
    the wheel holds the command and the report's assets, and runs outside the checkout."""
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("attnviz-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "attnviz = attnviz.cli:main" in archive.read(entry_points).decode()
    assert {"attnviz/views/report_assets/report.js", "attnviz/cli.py"} <= set(names)
    target = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                                "--target", str(target), str(wheel)], capture_output=True,
                               text=True)
    assert installed.returncode == 0, installed.stderr[-2000:]
    run = make_synthetic_run(tmp_path / "run", epochs=2)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import sys, runpy; import attnviz; print(attnviz.__file__, file=sys.stderr); "
            "sys.argv = ['attnviz', 'report', sys.argv[1], '-o', 'reports/r.html']; "
            "runpy.run_module('attnviz', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code, str(run.root)], cwd=elsewhere,
                            capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(target)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert str(target) in result.stderr  # the wheel's copy ran, not the checkout's
    assert (elsewhere / "reports" / "r.html").read_text().startswith("<!DOCTYPE html>")
