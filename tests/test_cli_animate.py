"""`attnviz animate` end to end on synthetic runs: the GIF read back, PNG frames, bad input."""

from __future__ import annotations

import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from attnviz.cli import app
from attnviz.views.colors import NOT_RECORDED, RESERVED_RGB
from attnviz.views.encoders import HOLD_LAST_MS
from attnviz.views.frames import HEADER_LINE_PX, HEADER_PAD_PX, FrameRenderer, Layout

from conftest import make_synthetic_run, many_heads_run

SCALE = 16  # the default --scale
N, L = 10, 20  # make_synthetic_run's probe size and sequence length
TOP = (255, 255, 255)  # 'hot' at 1.0
BOTTOM = (10, 0, 0)  # 'hot' at 0.0


def layout(samples: int = N, scale: int = SCALE, lines: int = 2, panel: bool = False,
           mask_name: str = "delimiter") -> Layout:
    """The frame layout `animate` uses for a synthetic run (its header lines are short)."""
    return FrameRenderer(np.zeros((samples, L), bool), [("x",) * lines], scale, 1.0, panel,
                         mask_name).layout


FRAME = layout()


def invoke(*args):
    return CliRunner().invoke(app, ["animate", *map(str, args)])


def read_gif(path) -> np.ndarray:
    return iio.imread(path, index=None)[..., :3]  # (frames, height, width, 3)


def cells(frames: np.ndarray, top: int, left: int, scale: int = SCALE,
          samples: int = N) -> np.ndarray:
    """The grid at (top, left), sampled at the centre of each cell: (frames, samples, L, 3)."""
    rows = slice(top + scale // 2, top + samples * scale, scale)
    return frames[:, rows, left + scale // 2 : left + L * scale : scale]


def mask_pixels(frames: np.ndarray, frame: Layout = FRAME) -> np.ndarray:
    """The mask rows of every frame: (frames, N, L, 3)."""
    return cells(frames, frame.mask_top, frame.grid_left)


def test_gif_has_one_frame_per_epoch_and_loops(synthetic_run):
    result = invoke(synthetic_run.root)
    assert result.exit_code == 0, result.output
    path = synthetic_run.root / "attention.gif"
    assert f"wrote {path}: 6 frames (epochs 0-5)" in " ".join(result.stdout.split())
    frames = read_gif(path)
    assert frames.shape == (6, FRAME.height, FRAME.width, 3)
    assert FRAME.width > FRAME.content_right  # the colour bar is right of the grid
    assert iio.immeta(path)["loop"] == 0
    with Image.open(path) as gif:
        durations = []
        for index in range(gif.n_frames):
            gif.seek(index)
            durations.append(gif.info["duration"])
    assert durations == [100] * 5 + [HOLD_LAST_MS]


def test_mask_pixels_are_the_colour_maps_ends(synthetic_run):
    path = synthetic_run.root / "out.gif"
    assert invoke(synthetic_run.root, "-o", path).exit_code == 0
    mask = synthetic_run.mask()  # (N, L), the delimiter
    cells = mask_pixels(read_gif(path))
    assert (cells[:, mask] == TOP).all()
    assert (cells[:, ~mask] == BOTTOM).all()


def test_attention_reaches_the_top_colour_once_learned(synthetic_run):
    """The synthetic run ends with all mass on the delimiter: the last frame's attention rows
    then look exactly like the mask rows under them."""
    path = synthetic_run.root / "out.gif"
    assert invoke(synthetic_run.root, "-o", path).exit_code == 0
    rows = cells(read_gif(path)[-1:], FRAME.attention_top, FRAME.grid_left)[0]  # (N, L, 3)
    assert (rows[synthetic_run.mask()] == TOP).all()


def test_other_mask_and_every(synthetic_run):
    path = synthetic_run.root / "prefix.gif"
    result = invoke(synthetic_run.root, "-o", path, "--mask", "prefix", "--every", "2")
    assert result.exit_code == 0, result.output
    frames = read_gif(path)
    assert len(frames) == 4  # epochs 0, 2, 4 and the last, 5
    prefix = synthetic_run.mask("prefix")
    assert (mask_pixels(frames, layout(mask_name="prefix"))[:, prefix] == TOP).all()


def test_samples_and_scale_shrink_the_frame(synthetic_run):
    path = synthetic_run.root / "small.gif"
    assert invoke(synthetic_run.root, "-o", path, "--samples", "3", "--scale", "20").exit_code == 0
    small = layout(samples=3, scale=20)
    assert small.ticks_top == small.header + 3 * 20 + 20 // 8 + 3 * 20
    assert read_gif(path).shape[1:3] == (small.height, small.width)


def test_vmax_auto_and_cmap(synthetic_run):
    path = synthetic_run.root / "viridis.gif"
    result = invoke(synthetic_run.root, "-o", path, "--cmap", "viridis", "--vmax", "auto")
    assert result.exit_code == 0, result.output
    top = (253, 231, 36)  # viridis at 1.0
    on_mask = mask_pixels(read_gif(path))
    assert (on_mask[:, synthetic_run.mask()] == top).all()


def test_frames_dir_writes_one_png_per_frame(synthetic_run, tmp_path):
    gif, pngs = tmp_path / "a.gif", tmp_path / "frames"
    result = invoke(synthetic_run.root, "-o", gif, "--frames", pngs)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in pngs.iterdir())
    assert names == [f"epoch_{epoch:04d}.png" for epoch in range(6)]
    frames = read_gif(gif)
    for index, name in enumerate(names):
        np.testing.assert_array_equal(iio.imread(pngs / name)[..., :3], frames[index])


def test_self_attention_run_by_head_and_query(tmp_path):
    run = make_synthetic_run(tmp_path / "self", attention="self", heads=2)
    frame = layout(lines=3)  # a first header line names the head and the query
    for options in ([], ["--head", "1", "--query", "mean"], ["--head", "mean", "--query", "3"]):
        path = tmp_path / "self.gif"
        result = invoke(run.root, "-o", path, *options)
        assert result.exit_code == 0, result.output
        frames = read_gif(path)
        assert frames.shape == (6, frame.height, frame.width, 3)
        assert (mask_pixels(frames, frame)[:, run.mask()] == TOP).all()


def test_attribution_adds_a_panel_on_the_right(tmp_path):
    run = make_synthetic_run(tmp_path / "run")
    rng = np.random.default_rng(0)
    for epoch in (1, 5):
        run.save_attribution(epoch, rng.normal(size=(N, L)))
    run.commit()
    path = tmp_path / "panel.gif"
    result = invoke(run.root, "-o", path)
    assert result.exit_code == 0, result.output
    frames = read_gif(path)
    frame = layout(lines=3, panel=True)  # a third header line names the panels
    assert frame.header == 3 * HEADER_LINE_PX + 2 * HEADER_PAD_PX
    assert frame.panel_left == frame.grid_left + L * SCALE + SCALE // 2
    assert frames.shape == (6, frame.height, frame.width, 3)
    panel = frames[:, frame.attention_top : frame.attention_top + N * SCALE,
                   frame.panel_left : frame.content_right]
    assert (panel[0] == RESERVED_RGB[NOT_RECORDED]).all()  # epoch 0: nothing recorded
    assert (panel[1] == TOP).any()  # each row's largest |attribution| is the top colour
    right_mask = cells(frames, frame.mask_top, frame.panel_left)
    assert (right_mask[:, run.mask()] == TOP).all()


def test_replaces_an_existing_output_whole(synthetic_run, tmp_path):
    (tmp_path / "out").mkdir()
    path = tmp_path / "out" / "a.gif"
    path.write_bytes(b"old")
    assert invoke(synthetic_run.root, "-o", path).exit_code == 0
    assert len(read_gif(path)) == 6
    assert [p.name for p in path.parent.iterdir()] == ["a.gif"]  # no temporary left


def test_mp4_for_real(synthetic_run, tmp_path):
    import imageio.v2

    path = tmp_path / "a.mp4"
    result = invoke(synthetic_run.root, "-o", path, "--fps", "5")
    assert result.exit_code == 0, result.output
    reader = imageio.v2.get_reader(path, format="FFMPEG")
    try:
        frames = [np.asarray(rgb) for rgb in reader]
    finally:
        reader.close()
    assert len(frames) == 5 + HOLD_LAST_MS // 1000 * 5  # 6 epochs, the last one held 2 s
    assert frames[0].shape == (FRAME.height + FRAME.height % 2, FRAME.width + FRAME.width % 2, 3)


def test_mp4_without_ffmpeg_names_the_extra(synthetic_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if not installed
    path = tmp_path / "a.mp4"
    path.write_bytes(b"old video")
    result = invoke(synthetic_run.root, "-o", path)
    assert result.exit_code == 2
    assert "pip install 'attnviz[mp4]'" in result.stderr
    assert path.read_bytes() == b"old video"


def _without_attention(root):
    run = make_synthetic_run(root)
    run.state["attention_epochs"] = []
    run.commit()
    return root


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "no run at"),
        (["{empty}"], "no attention recorded"),
        (["{run}", "--mask", "nope"], "unknown mask 'nope'"),
        (["{run}", "--fps", "0"], "--fps 0 must be above 0"),
        (["{run}", "--fps", "-2"], "--fps -2 must be above 0"),
        (["{run}", "--fps", "60"], "faster than GIF viewers play"),
        (["{run}", "--every", "0"], "--every 0"),
        (["{run}", "--scale", "0"], "--scale 0"),
        (["{run}", "--samples", "0"], "--samples 0"),
        (["{run}", "--samples", "11"], "choose 1..10"),
        (["{run}", "--cmap", "nope"], "unknown --cmap 'nope'"),
        (["{run}", "--vmax", "0"], "--vmax 0"),
        (["{run}", "--vmax", "big"], "--vmax 'big'"),
        (["{run}", "--head", "0"], "apply to multi-head attention"),
        (["{run}", "-o", "{tmp}/a_file/a.gif"], "a_file is a file, not a folder"),
        (["{run}", "-o", "{tmp}/a.png"], "use .gif or .mp4"),
        (["{run}", "-o", "{tmp}"], "is a directory"),
        (["{run}", "--frames", "{tmp}/a_file"], "is a file"),
        (["{self}", "--head", "7"], "--head 7 is out of range"),
        (["{self}", "--query", "first"], "--query 'first'"),
        (["{run}", "--head", "all"], "--head all draws the heads of multi-head attention"),
        (["{self}", "--head", "all", "--query", "0", "--samples", "2"],
         "drop --query and --samples"),
        (["{self}", "--head", "all", "--sample", "10"], "the probe holds samples 0..9"),
        (["{self}", "--sample", "3"], "add --head all"),
        (["{self}", "--head", "all", "--scale", "500"], "pass a smaller --scale"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    places = {"missing": tmp_path / "missing", "tmp": tmp_path, "run": tmp_path / "run",
              "empty": tmp_path / "empty", "self": tmp_path / "self"}
    needed = " ".join(args)
    if "{run}" in needed:
        make_synthetic_run(places["run"])
    if "{empty}" in needed:
        _without_attention(places["empty"])
    if "{self}" in needed:
        make_synthetic_run(places["self"], attention="self")
    (tmp_path / "a_file").write_text("not a directory")
    result = invoke(*(arg.format(**places) for arg in args))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert result.stdout == ""


def test_failed_command_leaves_the_existing_output_alone(synthetic_run, tmp_path):
    path = tmp_path / "keep.gif"
    assert invoke(synthetic_run.root, "-o", path).exit_code == 0
    before = path.read_bytes()
    for bad in (["--mask", "nope"], ["--cmap", "nope"], ["--head", "0"], ["--samples", "99"]):
        result = invoke(synthetic_run.root, "-o", path, "--every", "2", *bad)
        assert result.exit_code == 2
        assert path.read_bytes() == before


def test_animate_does_not_import_tensorflow(synthetic_run):
    code = (
        "import sys; from typer.testing import CliRunner; from attnviz.cli import app; "
        f"r = CliRunner().invoke(app, ['animate', {str(synthetic_run.root)!r}]); "
        "print(r.exit_code, 'tensorflow' in sys.modules, 'keras' in sys.modules, "
        "'matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "False", "False", "False"]


def test_json_says_what_was_written(synthetic_run, tmp_path):
    import json

    from typer.testing import CliRunner

    from attnviz.cli import app

    out = tmp_path / "a.gif"
    result = CliRunner().invoke(app, ["animate", str(synthetic_run.root), "-o", str(out),
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["path"] == str(out) and report["frames"] == 6
    assert report["epochs"] == [0, 1, 2, 3, 4, 5] and report["bytes"] == out.stat().st_size


def test_frames_say_which_layer_head_and_query_they_show(tmp_path):
    """Of 144 heads, the title names the one drawn; a run with one view of its attention
    (the founding case) keeps its two header lines."""
    from attnviz.views.animation import AnimateOptions, collect_frames

    run = many_heads_run(tmp_path / "bert")
    frames, *_ = collect_frames(run, AnimateOptions(layer="*layer_3/*", head="5"))
    assert frames[0].header[0] == ("layer transformer_layer_3/self_attention/attention_softmax"
                                   " · head 5 of 12 · query 15 (last)")
    frames, *_ = collect_frames(run, AnimateOptions(layer="*layer_0/*", query="mean"))
    assert frames[0].header[0].endswith("mean of 12 heads · mean of queries")
    founding, *_ = collect_frames(make_synthetic_run(tmp_path / "luong"), AnimateOptions())
    assert founding[0].header[0].startswith("epoch 0/")


def test_head_all_draws_every_head_of_the_layer_in_a_grid(tmp_path):
    """Head h of layer l of the 12 x 12 run looks at key (l + h) % 16 from every query: in
    its panel, that column (and only that one) is drawn in the top colours."""
    from attnviz.views.animation import AnimateOptions, collect_heads
    from attnviz.views.head_grid import HeadsRenderer, grid_scale, grid_shape, render_heads

    run = many_heads_run(tmp_path / "bert")
    frames = collect_heads(run, AnimateOptions(layer="*layer_3/*", head="all", sample=2))
    assert [frame.epoch for frame in frames] == [0, 1] and frames[1].maps.shape == (12, 16, 16)
    assert frames[1].header[0] == ("layer transformer_layer_3/self_attention/attention_softmax"
                                   " · all 12 heads · sample 2 · queries (rows) x keys "
                                   "(columns), 16 x 16")
    assert grid_shape(12) == (3, 4) and grid_shape(144) == (12, 12) and grid_shape(1) == (1, 1)
    scale = grid_scale(16, 16, None)
    assert scale == 8  # a panel of 128 px
    pictures = render_heads(frames, None, 1.0)
    renderer = HeadsRenderer(12, 16, 16, [frame.header for frame in frames], scale, 1.0)
    for head in range(12):
        top, left = renderer.panel_origin(head)
        panel = pictures[1][top:top + 16 * scale, left:left + 16 * scale]
        columns = panel.reshape(16, scale, 16, scale).mean(axis=(0, 1, 3))
        assert int(np.argmax(columns)) == (3 + head) % 16
    assert not np.array_equal(pictures[0], pictures[1])  # epoch 0 is uniform, 1 is not


def test_head_all_in_a_fresh_process(tmp_path):
    import json

    run = many_heads_run(tmp_path / "bert", layers=2, heads=3)
    out = subprocess.run([sys.executable, "-m", "attnviz", "animate", str(run.root), "--head",
                          "all", "--layer", "*layer_1/*", "--json", "-o",
                          str(tmp_path / "heads.gif"), "--frames", str(tmp_path / "png")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    said = json.loads(out.stdout)
    assert said["frames"] == 2 and said["attribution"] is False
    frames = iio.imread(tmp_path / "heads.gif", index=None)
    assert frames.shape[:3] == (2, said["height"], said["width"])
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        "epoch_0000.png", "epoch_0001.png"]
