"""Keras 3 on JAX: `train --backend jax`, data-parallel over two CPU devices, and runs read on
the other backend. Every command runs in a fresh process, as users run it; make test runs this
file in its JAX session (KERAS_BACKEND=jax), beside the TensorFlow one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from attnviz.store.run import Run

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="make test runs it with KERAS_BACKEND=jax")]

TINY = ["--samples", "512", "--val-samples", "64", "--units", "8", "--epochs", "2",
        "--probe-size", "4"]
# data-parallel splits each batch between two devices and sums their gradients: the same
# steps as one device, up to float32 summation order
TOLERANCE = 1e-4


def attnviz(*args, backend: str | None = None, **env):
    environment = {**os.environ, **env}
    environment.pop("KERAS_BACKEND", None)  # --backend, or TensorFlow as users default
    if backend is not None:
        environment["KERAS_BACKEND"] = backend
    return subprocess.run([sys.executable, "-m", "attnviz", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=environment)


@pytest.fixture(scope="module")
def jax_runs(tmp_path_factory):
    """One run on one device and one data-parallel over two, both `train --backend jax`."""
    root = tmp_path_factory.mktemp("jax")
    single = attnviz("train", "--out", root / "single", "--backend", "jax", *TINY)
    assert single.returncode == 0, single.stderr[-2000:]
    parallel = attnviz("train", "--out", root / "parallel", "--backend", "jax", *TINY,
                       "--strategy", "data-parallel", "--cpu-devices", "2")
    assert parallel.returncode == 0, parallel.stderr[-2000:]
    return root, single, parallel


def test_train_backend_jax_writes_a_run(jax_runs):
    root, single, _ = jax_runs
    assert "jax backend, strategy default on /CPU:0" in single.stderr
    run = Run.open(root / "single")
    assert run.epochs_done == 2 and run.attention_epochs == [0, 1, 2]
    weights = run.attention(2)
    assert weights.shape[0] == 4 and np.allclose(weights.sum(axis=-1), 1.0, atol=1e-5)


def test_data_parallel_trains_over_two_devices_like_one(jax_runs):
    root, _, parallel = jax_runs
    assert "strategy data-parallel over 2 devices: /CPU:0, /CPU:1" in parallel.stderr
    one, two = Run.open(root / "single"), Run.open(root / "parallel")
    assert two.config.strategy == "data-parallel" and two.epochs_done == 2
    for epoch in (0, 1, 2):
        a, b = one.attention(epoch), two.attention(epoch)
        assert np.abs(a - b).max() < TOLERANCE, epoch
    assert not np.allclose(one.attention(0),
                           one.attention(2))  # it did train


def test_a_jax_run_is_scored_explained_and_resumed_on_tensorflow(jax_runs, tmp_path):
    root, *_ = jax_runs
    run = root / "single"
    score = attnviz("score", run, "--mask", "delimiter", "--json")
    assert score.returncode == 0, score.stderr[-2000:]
    assert json.loads(score.stdout)["masks"] == ["delimiter"]
    explained = attnviz("explain", run, "--samples", "64", "--steps", "8", "--draws", "1",
                        "--adversarial-steps", "5", "--json")
    assert explained.returncode == 0, explained.stderr[-2000:]
    assert json.loads(explained.stdout)["interventions"][0]["name"] == "learned"
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(run), str(copy)], check=True)
    resumed = attnviz("train", "--out", copy, "--resume", "--epochs", "3")  # TensorFlow
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "tensorflow backend" in resumed.stderr
    history = Run.open(copy).history
    assert [h["backend"] for h in history] == ["jax", "jax", "tensorflow"]  # what trained each


def test_a_strategy_of_the_other_backend_is_refused_naming_its_backend(tmp_path):
    refused = attnviz("train", "--out", tmp_path / "tf", "--strategy", "data-parallel")
    assert refused.returncode == 2
    assert "--strategy data-parallel runs on the jax backend" in refused.stderr
    assert "--backend jax" in refused.stderr
    mirrored = attnviz("train", "--out", tmp_path / "jax", "--strategy", "mirrored",
                       backend="jax")
    assert mirrored.returncode == 2
    assert "--strategy data-parallel on jax" in mirrored.stderr
    worker = attnviz("train", "--out", tmp_path / "mw", "--strategy", "multi-worker")
    said = " ".join(worker.stderr.split())
    assert worker.returncode == 2 and "--backend jax --strategy data-parallel" in said
    assert "--num-processes N across machines" in said
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_resuming_a_data_parallel_run_on_tensorflow_is_refused_before_it_is_touched(jax_runs,
                                                                                     tmp_path):
    root, *_ = jax_runs
    copy = tmp_path / "parallel"
    subprocess.run(["cp", "-r", str(root / "parallel"), str(copy)], check=True)
    before = {path: path.read_bytes() for path in copy.rglob("*") if path.is_file()}
    refused = attnviz("train", "--out", copy, "--resume", "--epochs", "3")  # TensorFlow
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "error: this run trains with --strategy data-parallel, which runs on the jax backend,"
        " and Keras runs on tensorflow: resume it with --backend jax"]
    assert {path: path.read_bytes() for path in copy.rglob("*") if path.is_file()} == before
