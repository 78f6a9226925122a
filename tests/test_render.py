"""attnviz.views.animation: colour lookup, frames and GIF writing, on plain numpy arrays."""

from __future__ import annotations

import imageio.v3 as iio
import matplotlib
import numpy as np
import pytest

from attnviz.errors import AttnvizError
from attnviz.views.colors import (
    BACKGROUND,
    CMAP_LEVELS,
    NOT_RECORDED,
    SEPARATOR,
    TEXT,
    colormap_lut,
    palette_for,
    to_indices,
    upscale,
)
from attnviz.views.encoders import HOLD_LAST_MS, frame_durations_ms, write_gif
from attnviz.views.frames import (
    HEADER_LINE_PX,
    HEADER_PAD_PX,
    TICK_PX,
    FrameData,
    frame_renderer,
    label_step,
    render_frames,
)

N, L = 3, 5  # samples, positions


def frame(epoch: int, rng: np.random.Generator, attribution: bool = False) -> FrameData:
    rows = rng.dirichlet(np.ones(L), size=N)  # (N, L)
    return FrameData(epoch=epoch, rows=rows,
                     attribution=rng.uniform(size=(N, L)) if attribution else None,
                     header=(f"epoch {epoch}/9", "mass on delimiter 0.5"))


@pytest.fixture
def mask() -> np.ndarray:
    mask = np.zeros((N, L), bool)
    mask[:, 2] = True
    return mask


@pytest.mark.parametrize("name", ["hot", "viridis", "gray"])
def test_lut_matches_matplotlib_byte_for_byte(name):
    expected = matplotlib.colormaps[name](np.linspace(0, 1, CMAP_LEVELS), bytes=True)[:, :3]
    np.testing.assert_array_equal(colormap_lut(name), expected)


def test_hot_lut_runs_from_dark_red_to_white():
    lut = colormap_lut("hot")
    assert lut.shape == (CMAP_LEVELS, 3) and lut.dtype == np.uint8
    assert tuple(lut[0]) == (10, 0, 0) and tuple(lut[-1]) == (255, 255, 255)


def test_unknown_cmap_names_valid_ones():
    with pytest.raises(AttnvizError, match="viridis"):
        colormap_lut("no-such-map")


def test_mistyped_cmap_gets_a_did_you_mean():
    with pytest.raises(AttnvizError, match=r"unknown --cmap 'virdis' \(did you mean viridis\?\)"):
        colormap_lut("virdis")


def test_palette_holds_the_lut_then_the_reserved_colours():
    lut = colormap_lut("hot")
    palette = palette_for(lut)
    assert palette.shape == (256, 3)
    np.testing.assert_array_equal(palette[:CMAP_LEVELS], lut)
    reserved = {tuple(palette[i]) for i in (BACKGROUND, TEXT, SEPARATOR, NOT_RECORDED)}
    assert len(reserved) == 4


def test_to_indices_maps_zero_and_vmax_to_the_ends_and_clips():
    values = np.array([[0.0, 0.25, 0.5, 1.0, 3.0, -1.0]])
    assert to_indices(values, vmax=0.5).tolist() == [[0, 124, 247, 247, 247, 0]]


def test_upscale_repeats_cells_into_blocks():
    cells = np.arange(6, dtype=np.uint8).reshape(2, 3)
    pixels = upscale(cells, 4)
    np.testing.assert_array_equal(pixels, np.kron(cells, np.ones((4, 4), np.uint8)))


def test_frame_layout_attention_separator_and_mask(mask):
    rng = np.random.default_rng(0)
    frames = [frame(epoch, rng) for epoch in range(3)]
    scale = 4
    pictures = render_frames(frames, mask, scale=scale)
    layout = frame_renderer(frames, mask, scale=scale).layout
    header = 2 * HEADER_LINE_PX + 2 * HEADER_PAD_PX
    separator = 1
    assert layout.header == header and layout.mask_top == header + N * scale + separator
    text_width = 6 * len("mass on delimiter 0.5") + 2 * HEADER_PAD_PX  # wider than the grid
    assert [p.shape for p in pictures] == [(layout.height, text_width)] * 3
    grid = slice(layout.grid_left, layout.grid_left + L * scale)
    for data, picture in zip(frames, pictures, strict=True):
        attention = picture[header : header + N * scale, grid]
        np.testing.assert_array_equal(attention, upscale(to_indices(data.rows, 1.0), scale))
        assert (picture[header + N * scale, grid] == SEPARATOR).all()
        mask_pixels = picture[layout.mask_top : layout.ticks_top, grid]
        np.testing.assert_array_equal(mask_pixels == CMAP_LEVELS - 1, upscale(mask, scale))
        np.testing.assert_array_equal(mask_pixels == 0, upscale(~mask, scale))
        assert (picture[:header] == TEXT).any()
        assert set(np.unique(picture[:header])) <= {TEXT, BACKGROUND}
    assert not np.array_equal(pictures[0][:header], pictures[1][:header])  # epoch differs


def test_frames_label_samples_the_mask_positions_and_the_colour_scale(mask):
    rng = np.random.default_rng(4)
    frames = [frame(epoch, rng) for epoch in range(2)]
    scale = 16
    picture = render_frames(frames, mask, scale=scale, mask_name="delimiter")[1]
    layout = frame_renderer(frames, mask, scale=scale, mask_name="delimiter").layout
    assert layout.label_width == 6 * len("delimiter")  # the widest row label
    margin = picture[:, : layout.grid_left - 1]
    for sample in range(N):  # a number left of every attention row
        top = layout.attention_top + sample * scale
        assert (margin[top : top + scale] == TEXT).any(), sample
    assert (margin[layout.mask_top : layout.ticks_top] == TEXT).any()  # the mask's name
    ticks = picture[layout.ticks_top : layout.ticks_top + TICK_PX]
    centres = [layout.grid_left + position * scale + scale // 2 for position in range(L)]
    assert (ticks[:, centres] == SEPARATOR).all()  # a tick under every column (L = 5)
    numbers = picture[layout.ticks_top + TICK_PX :, layout.grid_left : layout.content_right]
    assert (numbers == TEXT).any()
    bar = picture[layout.attention_top : layout.attention_top + N * scale,
                  layout.bar_left : layout.bar_left + 10]
    assert bar[0, 0] == CMAP_LEVELS - 1 and bar[-1, 0] == 0  # vmax on top, 0 at the bottom
    assert (np.diff(bar[:, 0].astype(int)) <= 0).all()
    assert (picture[:, layout.bar_left + 10 :] == TEXT).any()  # its numbers
    # the labels are drawn once: they are the same in every frame
    first = render_frames(frames, mask, scale=scale, mask_name="delimiter")[0]
    np.testing.assert_array_equal(first[layout.header :, : layout.grid_left],
                                  picture[layout.header :, : layout.grid_left])


@pytest.mark.parametrize(("cell_px", "label_px", "step"), [
    (16, 12, 1), (4, 12, 5), (5, 16, 5), (1, 16, 20), (16, 16, 1), (3, 40, 20)])
def test_labels_are_thinned_so_they_never_touch(cell_px, label_px, step):
    assert label_step(cell_px, label_px) == step


def test_attribution_panel_sits_right_of_the_attention(mask):
    rng = np.random.default_rng(1)
    frames = [frame(0, rng), frame(1, rng, attribution=True)]
    scale = 16
    plain = render_frames(frames[:1], mask, scale=scale)[0]
    pictures = render_frames(frames, mask, scale=scale)
    layout = frame_renderer(frames, mask, scale=scale).layout
    gap = scale // 2
    assert layout.panel_left == layout.grid_left + L * scale + gap
    assert pictures[0].shape[1] == plain.shape[1] + L * scale + gap
    header = layout.header
    panel = (slice(header, header + N * scale), slice(layout.panel_left, layout.content_right))
    assert (pictures[0][panel] == NOT_RECORDED).all()  # epoch 0 has no attribution
    np.testing.assert_array_equal(pictures[1][panel],
                                  upscale(to_indices(frames[1].attribution, 1.0), scale))
    mask_right = pictures[1][layout.mask_top : layout.ticks_top,
                             layout.panel_left : layout.content_right]
    np.testing.assert_array_equal(mask_right == CMAP_LEVELS - 1, upscale(mask, scale))


def test_render_without_frames_is_an_error(mask):
    with pytest.raises(AttnvizError, match="no recorded attention"):
        render_frames([], mask)


def test_last_frame_holds_longer():
    assert frame_durations_ms(4, fps=10) == [100, 100, 100, HOLD_LAST_MS]
    assert frame_durations_ms(2, fps=0.25) == [4000, 4000]


def test_gif_round_trip_is_exact_and_keeps_repeated_frames(tmp_path, mask):
    rng = np.random.default_rng(2)
    pictures = render_frames([frame(epoch, rng) for epoch in range(4)], mask, scale=3)
    pictures.insert(2, pictures[1].copy())  # an unchanged frame must still be its own frame
    palette = palette_for(colormap_lut("hot"))
    path = tmp_path / "a.gif"
    write_gif(path, pictures, palette, fps=10)
    decoded = iio.imread(path, index=None)[..., :3]  # (frames, h, w, 3)
    np.testing.assert_array_equal(decoded, np.stack([palette[p] for p in pictures]))
    assert iio.immeta(path)["loop"] == 0


def test_mp4_is_written_by_ffmpeg_with_even_sides_and_the_last_frame_held(tmp_path, mask):
    """Real ffmpeg: the imageio-ffmpeg wheel (the [mp4] extra, in [dev]) ships its binary."""
    import imageio.v2

    from attnviz.views.encoders import write_mp4

    rng = np.random.default_rng(3)
    pictures = render_frames([frame(epoch, rng) for epoch in range(3)], mask, scale=3)
    pictures = [picture[: (picture.shape[0] - 1) | 1, : (picture.shape[1] - 1) | 1]
                for picture in pictures]  # odd sides, which yuv420p needs padded
    height, width = pictures[0].shape
    assert height % 2 == 1 and width % 2 == 1
    palette = palette_for(colormap_lut("hot"))
    path = tmp_path / "a.mp4"
    write_mp4(path, pictures, palette, fps=5)
    reader = imageio.v2.get_reader(path, format="FFMPEG")
    try:
        meta = reader.get_meta_data()
        decoded = [np.asarray(rgb) for rgb in reader]
    finally:
        reader.close()
    assert meta["codec"] == "h264" and meta["fps"] == 5
    assert meta["size"] == (width + width % 2, height + height % 2)
    assert len(decoded) == 2 + HOLD_LAST_MS // 1000 * 5  # the last frame held 2 s at 5 fps
    for index, picture in zip((0, 1, -1), (pictures[0], pictures[1], pictures[2]), strict=True):
        error = np.abs(decoded[index][:height, :width].astype(int) - palette[picture]).mean()
        assert error < 12, (index, error)  # H.264 is lossy; a wrong frame is off by far more
