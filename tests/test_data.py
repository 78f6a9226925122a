"""`attnviz data`: task samples and masks as files, made again from a seed (no TensorFlow)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from attnviz.cli import app
from attnviz.store.config import TrainConfig

from conftest import locked_plan

runner = CliRunner()


def data(*args):
    return runner.invoke(app, ["data", *map(str, args)])


def test_npz_holds_x_y_and_every_mask_like_a_probe_batch(tmp_path):
    result = data("-o", tmp_path / "s.npz", "--samples", 6)
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "s.npz") as archive:
        arrays = {name: archive[name] for name in archive.files}
    assert {name: a.shape for name, a in arrays.items()} == {
        "x": (6, 20, 1), "y": (6, 1), "mask_delimiter": (6, 20), "mask_prefix": (6, 20)}
    x, y = arrays["x"][..., 0], arrays["y"][:, 0]
    delimiter = arrays["mask_delimiter"].argmax(axis=1)
    assert (x[np.arange(6), delimiter] == 0).all()  # the delimiter 0.0 sits where marked
    np.testing.assert_allclose(y, np.where(arrays["mask_prefix"], x, 0).sum(axis=1), rtol=1e-5)


def test_probe_is_the_probe_batch_of_a_run_with_that_seed(tmp_path):
    run = locked_plan(TrainConfig(seed=3, samples=64, val_samples=8), tmp_path / "run").run
    result = data("-o", tmp_path / "probe.npz", "--probe", "--seed", 3)
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "probe.npz") as archive:
        np.testing.assert_array_equal(archive["x"], run.probe.x)
        np.testing.assert_array_equal(archive["mask_delimiter"], run.probe.masks["delimiter"])


def test_a_folder_of_npy_files_feeds_score_mask(tmp_path):
    folder = tmp_path / "fresh"
    assert data("-o", folder, "--samples", 5).exit_code == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "delimiter.npy", "prefix.npy", "x.npy", "y.npy"]
    again = data("-o", folder, "--samples", 5)  # a folder that exists is written into
    assert again.exit_code == 0, again.output
    delimiter = np.load(folder / "delimiter.npy")
    np.save(tmp_path / "a.npy", delimiter.astype(np.float32))  # attention on the delimiter
    result = runner.invoke(app, ["score", "--attention", str(tmp_path / "a.npy"), "--mask",
                                 str(folder / "delimiter.npy"), "--mask",
                                 str(folder / "prefix.npy"), "--json"])
    assert result.exit_code == 0, result.output
    scores = {s["mask"]: s["mass"] for s in json.loads(result.stdout)["scores"]}
    assert scores == {"delimiter": 1.0, "prefix": 0.0}


def test_npy_is_x_alone_and_the_same_seed_gives_the_same_samples(tmp_path):
    for name in ("a.npy", "b.npy"):
        assert data("-o", tmp_path / name, "--task", "find-max", "--seq-len", 8).exit_code == 0
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.shape == (10, 8, 1) and (a == b).all()
    other = data("-o", tmp_path / "c.npy", "--task", "find-max", "--seq-len", 8, "--seed", 8)
    assert other.exit_code == 0 and not (np.load(tmp_path / "c.npy") == a).all()


@pytest.mark.parametrize("args, message", [
    (["--task", "find-maks"], "(did you mean find-max?)"),
    (["--samples", "0"], "--samples 0 must be at least 1"),
    (["--seq-len", "2"], "--seq-len 2 is too short"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    result = data("-o", tmp_path / "s.npz", *args)
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_data_does_not_import_tensorflow(tmp_path):
    code = ("import sys; from attnviz.cli import main; "
            f"sys.argv = ['attnviz', 'data', '-o', {str(tmp_path / 's.npz')!r}]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "assert not any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)
    assert (tmp_path / "s.npz").is_file()


@pytest.mark.slow
def test_inspect_reads_the_samples_with_a_checkpoint(tmp_path, trained_run):
    assert data("-o", tmp_path / "fresh.npy", "--samples", 4).exit_code == 0
    result = runner.invoke(app, ["inspect", str(trained_run.root), "--checkpoint", "last",
                                 "--input", str(tmp_path / "fresh.npy"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["views"][0]["shape"] == [4, 20]
