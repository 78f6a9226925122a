"""Every command's normal output fits an 80-column terminal (error lines are one line each,
however long; tests/test_bad_input.py checks those)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from attnviz.cli import app

from conftest import make_synthetic_run, many_heads_run

runner = CliRunner()
WIDTH = 80


def lines_of(*args: str) -> list[str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": str(WIDTH), "NO_COLOR": "1"})
    assert result.exit_code in (0, 1), result.output  # 1: a threshold missed
    return result.output.splitlines()


def assert_fits(lines: list[str]) -> None:
    long = [line for line in lines if len(line) > WIDTH]
    assert not long, "\n".join(long)


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """Short relative paths, as a user types them, in a folder of its own."""
    monkeypatch.chdir(tmp_path)
    make_synthetic_run(tmp_path / "runs/luong", epochs=30)
    make_synthetic_run(tmp_path / "runs/self", epochs=5, attention="self", heads=4)
    return tmp_path


@pytest.mark.parametrize("args", [
    ("--help",), ("train", "--help"), ("score", "--help"),
    ("score", "runs/luong"),
    ("score", "runs/luong", "--epoch", "all", "--min", "mass=0.9", "--max", "entropy=0.5"),
    ("score", "runs/self", "--epoch", "all"),
    ("inspect", "runs/luong"),
    ("inspect", "runs/luong", "--samples", "1", "--epoch", "3"),
    ("inspect", "runs/self", "--head", "2"),
    ("animate", "runs/luong", "-o", "a.gif"),
    ("data", "-o", "fresh", "--samples", "3"),
])
def test_output_fits_80_columns(runs, args):
    assert_fits(lines_of(*args))


def test_rescaled_colours_are_said(runs):
    text = "\n".join(lines_of("inspect", "runs/luong", "--samples", "1", "--epoch", "3"))
    assert "(rescaled to the largest weight shown, not 1)" in text


@pytest.mark.slow
def test_train_and_explain_fit_80_columns(tmp_path, monkeypatch, trained_run):
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copytree(trained_run.root, "run")
    assert_fits(lines_of("train", "--out", "new", "--epochs", "1", "--samples", "256",
                         "--val-samples", "64", "--units", "8"))
    assert_fits(lines_of("explain", "run", "--samples", "100", "--steps", "8"))


def test_twelve_layers_of_twelve_heads_are_a_grid_in_80_columns(tmp_path, monkeypatch):
    """BERT-base's 144 heads: one row per layer, one cell per head, each head's label in
    three letters (no cell cut off; colour is its entropy), then the first call in full."""
    from attnviz.views.inspection import CODES

    monkeypatch.chdir(tmp_path)
    many_heads_run(tmp_path / "bert")
    lines = lines_of("inspect", "bert")
    assert_fits(lines)
    rows = [line for line in lines if line.startswith("transformer_layer_")
            and line.split()[0].endswith("…")]
    assert len(rows) == 12, "\n".join(lines)
    for layer, row in enumerate(rows):
        cells = row.split()[1:]
        assert len(cells) == 12 and set(cells) <= set(CODES.values()), row
        assert f"layer_{layer}/" in row  # the layer index survives the shortening
    # sharper in later layers: broad heads in the first layer, none in the last
    assert set(rows[0].split()[1:]) == {"brd"} and "brd" not in rows[-1].split()[1:]
    wide = runner.invoke(app, ["inspect", "bert"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert "broad 0.9" in wide.output  # room for the full table: label and number per head
