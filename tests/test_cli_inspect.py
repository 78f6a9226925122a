"""`attnviz inspect` end to end: runs, checkpoints, model files, files written, bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from attnviz.cli import app

from conftest import make_synthetic_run

runner = CliRunner()


def inspect(*args: str):
    return runner.invoke(app, ["inspect", *map(str, args)])


@pytest.fixture
def luong_run(tmp_path):
    return make_synthetic_run(tmp_path / "run", epochs=4)


def test_summary_and_heatmap_of_a_run(luong_run):
    result = inspect(luong_run.root)
    assert result.exit_code == 0, result.output
    text = result.output
    flat = " ".join(text.split())  # the summary wraps at 80 columns
    assert "task add-before-delimiter" in flat and "4/4 epochs trained" in flat
    assert "val_loss 0.275" in flat and "half-delimiter-index" in flat  # next to baselines
    assert "delimiter  1.000" in text  # mass: the synthetic run ends on the main mask
    assert "entropy" in text and "argmax at position" in text
    assert "█" in text and "\x1b[" not in text  # CliRunner is no terminal: shades
    assert "pos       0  1  2" in text


def test_json_holds_everything(luong_run):
    result = inspect(luong_run.root, "--epoch", "2", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {"kind", "run", "task", "model", "epochs_trained", "epoch", "loss", "baselines",
            "masks", "views", "written"} <= set(report)
    assert report["epoch"] == 2 and report["kind"] == "run"
    view = report["views"][0]
    assert {"mass", "entropy", "entropy_nats", "argmax_histogram", "rows", "shape"} <= set(view)
    assert view["shape"] == [10, 20] and len(view["rows"]) == 10
    assert sum(view["argmax_histogram"]) == 10
    assert set(view["mass"]) == set(report["masks"]) == {"delimiter", "prefix"}


def test_entropy_is_the_same_number_in_inspect_and_score(luong_run):
    """One name, one unit: entropy / ln L in both commands, text and JSON."""
    view = json.loads(inspect(luong_run.root, "--epoch", "2", "--json").output)["views"][0]
    scored = json.loads(CliRunner().invoke(app, ["score", str(luong_run.root), "--epoch", "2",
                                                 "--json"]).stdout)
    assert view["entropy"] == pytest.approx(scored["scores"][0]["entropy"], abs=1e-6)
    assert view["entropy_nats"] == pytest.approx(view["entropy"] * math.log(20))
    text = inspect(luong_run.root, "--epoch", "2").output
    assert f"entropy {view['entropy']:.3f} of ln L" in text


def test_png_and_save(luong_run, tmp_path):
    png, npy = tmp_path / "attention.png", tmp_path / "weights.npy"
    result = inspect(luong_run.root, "--png", png, "--save", npy)
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    assert np.array_equal(np.load(npy), luong_run.attention(4))
    assert f"wrote {png}" in result.output


def test_png_is_labelled(luong_run):
    """Position ticks, sample numbers, the masks' names, a colour scale, loss and mass."""
    from attnviz.analysis.inspection import InspectOptions, inspect_target
    from attnviz.views.inspection import figure_title
    from attnviz.views.plots import attention_figure

    inspection = inspect_target(luong_run.root, InspectOptions())
    view = inspection.views[0]
    title = figure_title(inspection, view)
    assert title.splitlines() == [
        f"{luong_run.root} · epoch 4",
        f"loss {luong_run.history[-1]['loss']:.4g}   mass on delimiter "
        f"{view.summary.masses['delimiter']:.3f}"]
    figure = attention_figure(view.rows, inspection.masks, title)
    figure.canvas.draw()
    heatmap, masks, colour_bar = figure.axes
    assert heatmap.get_title() == title and heatmap.get_ylabel() == "sample"
    assert [t.get_text() for t in heatmap.get_yticklabels()] == [str(i) for i in range(10)]
    assert [t.get_text() for t in masks.get_yticklabels()] == ["delimiter", "prefix"]
    assert masks.get_xlabel() == "sequence position"
    assert [t.get_text() for t in masks.get_xticklabels()] == [str(i) for i in range(20)]
    assert colour_bar.get_ylabel() == "attention weight"


def test_save_keeps_every_head_of_self_attention(tmp_path):
    run = make_synthetic_run(tmp_path / "run", attention="self", heads=2, seq_len=10)
    result = inspect(run.root, "--save", tmp_path / "w.npy", "--head", "1", "--query", "mean")
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "w.npy").shape == (10, 2, 10, 10)
    assert "head 1, mean over queries" in result.output


def test_inspecting_a_run_does_not_import_tensorflow(luong_run):
    code = (
        "import sys; from typer.testing import CliRunner; from attnviz.cli import app; "
        f"result = CliRunner().invoke(app, ['inspect', {str(luong_run.root)!r}]); "
        "assert result.exit_code == 0, result.output; "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("args, message", [
    (["missing-run"], "no run at missing-run"),
    (["missing.keras", "--input", "x.npy"], "missing.keras: no such model file"),
    (["{run}", "--epoch", "9"], "epoch 9 was not recorded"),
    (["{run}", "--input", "x.npy"], "add --checkpoint"),
    (["{run}", "--save", "w.txt"], "name a .npy file"),
    (["{run}", "--checkpoint", "best"], "give an epoch number"),
    (["{run}", "--list"], "--list reads a .keras model file"),
])
def test_bad_input_is_one_line_and_exit_2(luong_run, args, message):
    result = inspect(*(arg.format(run=luong_run.root) for arg in args))
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and message in result.output


# ---- with TensorFlow -------------------------------------------------------------------


@pytest.mark.slow
def test_checkpoint_recomputes_the_recorded_attention(trained_run, tmp_path):
    probe = trained_run.probe.x[..., 0]  # (n, L): the channel axis is added
    np.save(tmp_path / "x.npy", probe)
    result = inspect(trained_run.root, "--checkpoint", "2", "--input", tmp_path / "x.npy",
                     "--save", tmp_path / "w.npy")
    assert result.exit_code == 0, result.output
    assert "recomputed from checkpoint epoch 2" in result.output
    assert np.abs(np.load(tmp_path / "w.npy") - trained_run.attention(2)).max() < 1e-5
    default = json.loads(inspect(trained_run.root, "--checkpoint", "epoch_0002.keras",
                                 "--json").output)
    assert default["input"] == "probe batch" and default["checkpoint"] == 2
    assert default["views"][0]["mass"]["delimiter"] == pytest.approx(
        trained_run.history[1]["mass"]["delimiter"], abs=1e-5)


@pytest.mark.slow
def test_checkpoint_with_input_of_the_wrong_shape(trained_run, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 7, 1), dtype=np.float32))
    result = inspect(trained_run.root, "--checkpoint", "last", "--input", tmp_path / "x.npy")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "expects (n, 20, 1)" in result.output


@pytest.mark.slow
def test_model_file_listing_reading_and_refusals(tmp_path):
    import keras
    from keras import layers

    inputs = keras.Input((6, 1))
    states = layers.Dense(4, name="states")(inputs)
    attended = layers.MultiHeadAttention(num_heads=2, key_dim=2, name="mha")(states, states)
    keras.Model(inputs, layers.Flatten()(attended)).save(tmp_path / "mha.keras")
    keras.Model(inputs, layers.Dense(1, name="out")(layers.Flatten()(states))).save(
        tmp_path / "plain.keras")
    (tmp_path / "x.csv").write_text("\n".join(",".join(["0.5"] * 6) for _ in range(3)))

    listing = inspect(tmp_path / "mha.keras", "--list")
    assert listing.exit_code == 0 and "MultiHeadAttention" in listing.output
    shown = inspect(tmp_path / "mha.keras", "--input", tmp_path / "x.csv", "--png",
                    tmp_path / "mha.png")
    assert shown.exit_code == 0, shown.output
    assert "mean of 2 heads, query 5 (last)" in shown.output
    assert (tmp_path / "mha.png").stat().st_size > 0
    none = inspect(tmp_path / "plain.keras", "--input", tmp_path / "x.csv")
    assert none.exit_code == 2 and len(none.output.strip().splitlines()) == 1
    assert "no attention found" in none.output and "Dense" in none.output


@pytest.mark.slow
def test_built_in_checkpoints_load_in_a_fresh_process(trained_run, tmp_path):
    """A user runs `inspect` in a process of its own, where attnviz's layers (LSTM + Luong's
    TemporalAttention, the dense encoder's PositionEmbedding) were never imported: their
    checkpoints load without --import, as a run and as a .keras file."""
    from conftest import train_tiny

    dense = train_tiny(tmp_path / "dense", encoder="dense", epochs=1, checkpoint_every=1)
    commands = [[str(trained_run.root), "--checkpoint", "2"],
                [str(trained_run.root / "checkpoints" / "epoch_0002.keras"), "--list"],
                [str(dense.root / "checkpoints" / "epoch_0001.keras"), "--list"]]
    from concurrent.futures import ThreadPoolExecutor

    def inspected(args):
        return subprocess.run([sys.executable, "-m", "attnviz", "inspect", *args],
                              capture_output=True, text=True,
                              env={**os.environ, "COLUMNS": "120"})

    with ThreadPoolExecutor(max_workers=2) as pool:  # a process each, two at a time
        results = list(pool.map(inspected, commands))
    for args, result in zip(commands, results, strict=True):
        assert result.returncode == 0, (args, result.stderr)
        assert "--import" not in result.stderr
        assert "TemporalAttention" in result.stdout, result.stdout
