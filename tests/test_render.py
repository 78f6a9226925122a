"""attnviz.render: colour lookup, frame composition and GIF writing, on plain numpy arrays."""

from __future__ import annotations

import imageio.v3 as iio
import matplotlib
import numpy as np
import pytest

from attnviz.errors import AttnvizError
from attnviz.render import (
    BACKGROUND,
    CMAP_LEVELS,
    HEADER_LINE_PX,
    HEADER_PAD_PX,
    HOLD_LAST_MS,
    NOT_RECORDED,
    SEPARATOR,
    TEXT,
    FrameData,
    colormap_lut,
    frame_durations_ms,
    palette_for,
    render_frames,
    to_indices,
    upscale,
    write_gif,
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
    header = 2 * HEADER_LINE_PX + 2 * HEADER_PAD_PX
    separator = 1
    height = header + N * scale + separator + N * scale
    text_width = 6 * len("mass on delimiter 0.5") + 2 * HEADER_PAD_PX  # wider than 5 cells x 4
    assert [p.shape for p in pictures] == [(height, text_width)] * 3
    for data, picture in zip(frames, pictures, strict=True):
        attention = picture[header : header + N * scale, : L * scale]
        np.testing.assert_array_equal(attention, upscale(to_indices(data.rows, 1.0), scale))
        assert (picture[header + N * scale, : L * scale] == SEPARATOR).all()
        mask_pixels = picture[header + N * scale + separator :, : L * scale]
        np.testing.assert_array_equal(mask_pixels == CMAP_LEVELS - 1, upscale(mask, scale))
        np.testing.assert_array_equal(mask_pixels == 0, upscale(~mask, scale))
        assert (picture[:header] == TEXT).any()
        assert set(np.unique(picture[:header])) <= {TEXT, BACKGROUND}
    assert not np.array_equal(pictures[0][:header], pictures[1][:header])  # epoch differs


def test_attribution_panel_sits_right_of_the_attention(mask):
    rng = np.random.default_rng(1)
    frames = [frame(0, rng), frame(1, rng, attribution=True)]
    scale = 16
    plain = render_frames(frames[:1], mask, scale=scale)[0]
    pictures = render_frames(frames, mask, scale=scale)
    gap = scale // 2
    assert pictures[0].shape[1] == 2 * L * scale + gap > plain.shape[1]
    header = pictures[0].shape[0] - 2 * N * scale - 2
    panel = (slice(header, header + N * scale), slice(L * scale + gap, None))
    assert (pictures[0][panel] == NOT_RECORDED).all()  # epoch 0 has no attribution
    np.testing.assert_array_equal(pictures[1][panel],
                                  upscale(to_indices(frames[1].attribution, 1.0), scale))
    mask_right = pictures[1][header + N * scale + 2 :, L * scale + gap :]
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


def test_mp4_frames_are_even_sized_and_the_last_repeats(tmp_path, mask, monkeypatch):
    """ffmpeg itself is an optional extra; this checks what attnviz hands to it."""
    import imageio.v2

    from attnviz import render

    written = []

    class Writer:
        def __init__(self, path, **options):
            self.path, self.options = path, options

        def append_data(self, rgb):
            written.append(rgb)

        def close(self):
            self.path.write_bytes(b"mp4")

    monkeypatch.setattr(render, "has_ffmpeg", lambda: True)
    monkeypatch.setattr(imageio.v2, "get_writer", Writer)
    rng = np.random.default_rng(3)
    pictures = render_frames([frame(epoch, rng) for epoch in range(3)], mask, scale=3)
    assert pictures[0].shape[0] % 2 == 1  # odd height, to be padded
    palette = palette_for(colormap_lut("hot"))
    render.write_mp4(tmp_path / "a.mp4", pictures, palette, fps=5)
    assert len(written) == 2 + 10  # the last frame held 2 s at 5 fps
    height, width = pictures[0].shape
    assert all(rgb.shape == (height + 1, width + width % 2, 3) for rgb in written)
    np.testing.assert_array_equal(written[0][:height, :width], palette[pictures[0]])
    assert (tmp_path / "a.mp4").read_bytes() == b"mp4"
