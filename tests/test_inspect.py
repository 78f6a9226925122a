"""The numpy side of `inspect`: summaries, reductions, inputs and the terminal heatmap."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from rich.console import Console

from attnviz.analysis import inspection as core
from attnviz.errors import AttnvizError
from attnviz.views.heatmap import SHADES, Heatmap

from conftest import make_synthetic_run


def test_summary_of_the_worked_example():
    rows = np.array([[0.1, 0.7, 0.1, 0.1], [0.0, 0.0, 0.0, 1.0]])
    mask = np.array([[0, 1, 0, 0], [0, 0, 0, 1]], dtype=bool)
    summary = core.summarize(rows, {"m": mask})
    assert summary.masses == {"m": pytest.approx(0.85)}
    assert summary.argmax_histogram == [0, 1, 0, 1]
    first = -(3 * 0.1 * math.log(0.1) + 0.7 * math.log(0.7))  # 0.9404 nats; the second row: 0
    assert summary.entropy_nats == pytest.approx(first / 2)
    assert summary.entropy == pytest.approx(first / 2 / math.log(4))  # score's unit


def test_uniform_rows_have_entropy_ln_l_and_negative_rows_have_none():
    assert core.summarize(np.full((3, 8), 1 / 8)).entropy == pytest.approx(1.0)
    assert core.summarize(np.full((3, 8), 1 / 8)).entropy_nats == pytest.approx(math.log(8))
    assert core.summarize(np.array([[-1.0, 2.0]])).entropy is None


def test_self_attention_is_reduced_to_the_last_query_averaged_over_heads():
    weights = np.zeros((2, 2, 3, 3), dtype=np.float32)
    weights[:, 0, -1] = [1.0, 0.0, 0.0]  # head 0, last query: all on position 0
    weights[:, 1, -1] = [0.0, 0.0, 1.0]
    rows, reduction = core.to_rows(weights)
    assert rows.tolist() == [[0.5, 0.0, 0.5]] * 2
    assert reduction == "mean of 2 heads, query 2 (last)"
    rows, reduction = core.to_rows(weights, head="1")
    assert rows.tolist() == [[0.0, 0.0, 1.0]] * 2 and reduction == "head 1, query 2 (last)"


def test_other_shapes_become_rows_or_are_refused():
    scores = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # (n, Lq, Lk)
    assert np.array_equal(core.to_rows(scores)[0], scores[:, -1])
    assert core.to_rows(np.ones((2, 5, 1)))[0].shape == (2, 5)  # (n, L, 1) softmax over L
    grouped = np.random.default_rng(0).dirichlet(np.ones(4), size=(2, 1, 3, 4))  # kv 1, 3 groups
    rows, how = core.to_rows(grouped, head="2")  # folded: head 2 is group 2 of kv head 0
    assert np.array_equal(rows, grouped[:, 0, 2, -1].astype(np.float32)) and "head 2" in how
    grid = np.full((2, 1, 2, 3, 2, 3), 1 / 6)  # attention over a 2 x 3 grid of positions
    assert core.to_rows(grid)[0].shape == (2, 6)
    with pytest.raises(AttnvizError, match="cannot be drawn as rows"):
        core.to_rows(np.ones((2, 2, 2, 2, 2, 2, 2)))
    with pytest.raises(AttnvizError, match="--head"):
        core.to_rows(np.ones((2, 5)), head="0")


def test_inspect_run_reads_the_recorded_epoch(tmp_path):
    run = make_synthetic_run(tmp_path / "run", epochs=5)
    last = core.inspect_run(run, core.InspectOptions())
    assert last.facts["epoch"] == 5 and last.facts["loss"] == pytest.approx(
        {"loss": 0.2, "val_loss": 0.22})
    assert last.views[0].summary.masses["delimiter"] == pytest.approx(1.0, abs=1e-6)
    assert list(last.masks) == ["delimiter", "prefix"]  # the main mask first
    untrained = core.inspect_run(run, core.InspectOptions(epoch="0"))
    assert untrained.facts["loss"] is None
    assert untrained.views[0].summary.masses["delimiter"] < 0.5
    with pytest.raises(AttnvizError, match="--checkpoint"):
        core.inspect_run(run, core.InspectOptions(input=tmp_path / "x.npy"))


def test_inspect_self_attention_run(tmp_path):
    run = make_synthetic_run(tmp_path / "run", attention="self", heads=2, seq_len=10)
    view = core.inspect_run(run, core.InspectOptions()).views[0]
    assert view.weights.shape == (10, 2, 10, 10) and view.rows.shape == (10, 10)
    assert view.reduction == "mean of 2 heads, query 9 (last)"


def test_checkpoint_names():
    run = type("FakeRun", (), {"checkpoints": [2, 3], "root": "r"})()
    assert core.checkpoint_epoch(run, "last") == 3
    assert core.checkpoint_epoch(run, "2") == 2
    assert core.checkpoint_epoch(run, "epoch_0002.keras") == 2
    with pytest.raises(AttnvizError, match="epoch_0002.keras, epoch_0003.keras"):
        core.checkpoint_epoch(run, "best")


def test_inputs_from_npy_npz_and_csv(tmp_path):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "one.npz", only=x)
    np.savez(tmp_path / "two.npz", a=x, b=x + 1)
    (tmp_path / "x.csv").write_text("p0,p1,p2\n0,1,2\n3,4,5\n")
    for name in ("x.npy", "one.npz", "x.csv"):
        assert np.array_equal(core.load_input(tmp_path / name), x)
    assert set(core.load_input(tmp_path / "two.npz")) == {"a", "b"}
    assert np.array_equal(core.load_input(tmp_path / "two.npz", key="b"), x + 1)


@pytest.mark.parametrize("name, content, key, message", [
    ("missing.npy", None, None, "no such file"),
    ("ragged.csv", "1,2,3\n4,5\n", None, "row 2 has 2 values"),
    ("words.csv", "1,2\na,b\n", None, "row 2 is not all numbers"),
    ("nan.npy", np.array([[1.0, np.nan]]), None, "NaN or Inf"),
    ("x.npy", np.ones((2, 3)), "a", "--key a picks an array of an .npz"),
    ("x.npz", {"a": np.ones(2)}, "b", "--key b: .* holds a"),
    ("x.txt", "1,2\n", None, "use a .npy, .npz or .csv"),
])
def test_bad_inputs_are_named(tmp_path, name, content, key, message):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, dict):
        np.savez(path, **content)
    elif content is not None:
        np.save(path, content)
    with pytest.raises(AttnvizError, match=message):
        core.load_input(path, key)


def render(heatmap: Heatmap, **console_options) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=100, **console_options).print(heatmap)
    return buffer.getvalue()


def test_heatmap_without_colour_uses_shade_characters():
    rows = np.array([[0.0, 0.3, 0.5, 0.7, 1.0]])
    mask = np.array([[0, 0, 0, 0, 1]], dtype=bool)
    text = render(Heatmap(rows, {"target": mask}, np.array([0, 0, 0, 0, 1])), no_color=True)
    lines = text.splitlines()
    assert lines[0].split() == ["pos", "0", "1", "2", "3", "4"]
    assert lines[1].endswith("   ░░░▒▒▒▓▓▓███")  # one shade per fifth, 3 characters a cell
    assert lines[3].startswith("target") and lines[3].endswith(" " * 12 + "███")
    assert lines[4].endswith("█" * 3) and lines[4].startswith("argmax")
    assert "\x1b[" not in text and all(shade in text for shade in SHADES[1:])


def test_the_legend_names_every_glyph_drawn_and_says_when_colours_are_rescaled():
    rows = np.array([[0.0, 0.05, 0.1, 0.2], [0.1, 0.1, 0.1, 0.1]])  # largest weight 0.2
    mask = np.array([[0, 0, 0, 1], [0, 0, 0, 1]], dtype=bool)
    histogram = np.array([0, 0, 1, 3])
    lines = render(Heatmap(rows, {"m": mask}, histogram), no_color=True).splitlines()
    legend_at = next(i for i, line in enumerate(lines) if line.startswith("scale"))
    drawn = {glyph for line in lines[1:legend_at] for glyph in line[len("argmax "):]} - {" ", "─"}
    legend = "\n".join(lines[legend_at:])
    assert drawn and drawn <= set(legend), drawn - set(legend)  # argmax bars and mask cells too
    assert "0.2 (rescaled to the largest weight shown, not 1)" in legend
    assert "█ a marked position" in legend and "of all 4 (█ = 3)" in legend
    full = render(Heatmap(np.array([[0.0, 1.0]])), no_color=True)
    assert "rescaled" not in full and full.splitlines()[-1].startswith("scale")


def test_heatmap_with_colour_uses_hot_backgrounds(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    rows = np.array([[0.0, 1.0]])
    text = render(Heatmap(rows), force_terminal=True, color_system="truecolor")
    assert "\x1b[48;2;255;255;255m" in text  # the top of 'hot' is white
    assert "\x1b[48;2;10;0;0m" in text  # its bottom is near-black red
    assert not any(shade in text.splitlines()[1] for shade in SHADES[1:])
    monkeypatch.setenv("NO_COLOR", "1")  # a terminal, but the user asked for no colour
    text = render(Heatmap(rows), force_terminal=True, color_system="truecolor")
    assert "\x1b[48;2" not in text and text.splitlines()[1].endswith("   ███")


def test_long_sequences_are_pooled_to_fit():
    rows = np.zeros((1, 300))
    rows[0, 150] = 1.0
    text = render(Heatmap(rows), no_color=True)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "max of 4 positions" in text
    assert "█" in text.splitlines()[1]  # the single peak survives pooling


def test_an_npz_damaged_past_its_headers_is_named(tmp_path):
    path = tmp_path / "damaged.npz"
    np.savez_compressed(path, x=np.arange(20000, dtype=np.float32))
    data = bytearray(path.read_bytes())
    middle = len(data) // 2  # inside the compressed member: its header still reads
    data[middle:middle + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(AttnvizError, match="not a readable .npz file"):
        core.load_input(path)


def test_weights_with_nan_are_refused_not_drawn():
    weights = np.array([[np.nan, 1.0], [0.5, 0.5]], dtype=np.float32)
    with pytest.raises(AttnvizError, match="layer: the weights contain NaN or Inf"):
        core.view_of("layer", weights, core.InspectOptions())


def test_an_input_folder_names_a_file_to_pass(tmp_path):
    """`attnviz data -o fresh` writes a folder: --input fresh names the file to give."""
    (tmp_path / "fresh").mkdir()
    np.save(tmp_path / "fresh" / "x.npy", np.zeros((2, 3)))
    np.save(tmp_path / "fresh" / "delimiter.npy", np.zeros((2, 3), bool))
    with pytest.raises(AttnvizError, match=r"--input .*fresh is a folder: pass one of its "
                                           r"files such as .*fresh/x\.npy"):
        core.load_input(tmp_path / "fresh")
