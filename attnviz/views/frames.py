"""Frames: attention rows, masks and a header drawn as 2-D uint8 palette indices.

Every frame is a 2-D uint8 array of indices into one 256-colour palette: the first
`CMAP_LEVELS` entries are the colour map, the rest draw the header, lines and gaps. Values
become indices through a lookup, cells become pixels through integer upscaling, and the
GIF is written with that palette as its only colour table, so nothing is quantised per frame.

Layout of a frame (pixels; `s` = --scale, n samples, L positions):

    header               epoch / loss / mass text                    HEADER_LINE_PX per line
    0 1 2 ... (samples)  attention  n*s x L*s  [gap  |attribution|]  colour bar, 0 to vmax
                         separator  a grey line, max(1, s // 8) tall
    MASK NAME            mask       n*s x L*s  [gap  mask again   ]
    position             ticks and position numbers under the columns

Everything but the header text and the attention cells is drawn once, into a template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from attnviz.errors import AttnvizError
from attnviz.views.colors import (
    BACKGROUND,
    CMAP_LEVELS,
    NOT_RECORDED,
    SEPARATOR,
    TEXT,
    to_indices,
    upscale,
)

HEADER_LINE_PX = 12  # one line of Pillow's 6 x 11 px bitmap font plus leading
HEADER_PAD_PX = 4
LABEL_PAD_PX = 4  # between a label and what it names
TICK_PX = 3  # tick marks under the mask rows
BAR_WIDTH_PX = 10  # the colour bar
AXIS_NAME = "position"  # the row label of the position numbers


@dataclass(frozen=True)
class FrameData:
    """What one frame shows: one recorded epoch."""

    epoch: int
    rows: np.ndarray  # (n, L) attention rows over key positions, in [0, 1]
    attribution: np.ndarray | None  # (n, L) |attribution| / row max; None: not recorded
    header: tuple[str, ...]  # lines of text above the picture


@dataclass(frozen=True)
class Layout:
    """Where everything sits in a frame, in pixels."""

    samples: int  # n, probe rows shown
    positions: int  # L
    scale: int  # pixels per cell side
    panel: bool  # an attribution panel to the right of the attention
    header: int  # header height
    text_width: int  # widest header line
    label_width: int  # widest row label: sample numbers, the mask's name, AXIS_NAME
    bar_label_width: int  # widest colour-bar label

    @property
    def grid_left(self) -> int:
        return self.label_width + 2 * LABEL_PAD_PX

    @property
    def grid_width(self) -> int:
        return self.positions * self.scale

    @property
    def gap(self) -> int:
        return max(2, self.scale // 2)

    @property
    def separator(self) -> int:
        return max(1, self.scale // 8)

    @property
    def panel_left(self) -> int:
        return self.grid_left + self.grid_width + self.gap

    @property
    def content_right(self) -> int:
        return self.panel_left + self.grid_width if self.panel else self.grid_left + self.grid_width

    @property
    def bar_left(self) -> int:
        return self.content_right + max(self.gap, 2 * LABEL_PAD_PX)

    @property
    def width(self) -> int:
        bar = self.bar_left + BAR_WIDTH_PX + LABEL_PAD_PX + self.bar_label_width + HEADER_PAD_PX
        return max(bar, self.text_width + 2 * HEADER_PAD_PX)

    @property
    def attention_top(self) -> int:
        return self.header

    @property
    def mask_top(self) -> int:
        return self.header + self.samples * self.scale + self.separator

    @property
    def ticks_top(self) -> int:
        return self.mask_top + self.samples * self.scale

    @property
    def height(self) -> int:
        return self.ticks_top + TICK_PX + HEADER_LINE_PX + HEADER_PAD_PX

    @property
    def columns(self) -> list[int]:
        """The left edge of each grid: the attention's, and the attribution panel's."""
        return [self.grid_left, self.panel_left] if self.panel else [self.grid_left]


def label_step(cell_px: int, label_px: int) -> int:
    """Label every k-th cell, k in 1, 2, 5, 10, 20, 50, ..., so that labels never touch."""
    for magnitude in (1, 10, 100, 1000, 10_000, 100_000):
        for step in (magnitude, 2 * magnitude, 5 * magnitude):
            if step * cell_px >= label_px:
                return step
    return 1_000_000


class FrameRenderer:
    """Turns FrameData into palette-index frames; the parts that never change are drawn once."""

    def __init__(self, mask: np.ndarray, headers: Sequence[Sequence[str]], scale: int,
                 vmax: float, panel: bool, mask_name: str = "mask",
                 names: Sequence[str] | None = None):

        # the bitmap font: ten times faster to draw than FreeType, and two-tone, so palette-safe
        self.font = bitmap_font()
        self.vmax = vmax
        lines = max(len(header) for header in headers)
        samples, positions = mask.shape
        self.bar_labels = [f"{vmax:.3g}", f"{vmax / 2:.3g}", "0"]  # top, middle, bottom
        # what names each position under the columns: its index, or its token
        self.positions = list(names) if names is not None else [
            str(p) for p in range(mask.shape[1])]
        self.layout = layout = Layout(
            samples=samples, positions=positions, scale=scale, panel=panel,
            header=lines * HEADER_LINE_PX + 2 * HEADER_PAD_PX,
            text_width=self._widest(line for header in headers for line in header),
            label_width=self._widest([str(samples - 1), mask_name, AXIS_NAME]),
            bar_label_width=self._widest(self.bar_labels),
        )
        template = np.full((layout.height, layout.width), BACKGROUND, np.uint8)
        mask_pixels = upscale(np.where(mask, CMAP_LEVELS - 1, 0).astype(np.uint8), scale)
        rule = slice(layout.mask_top - layout.separator, layout.mask_top)
        template[rule, layout.grid_left : layout.content_right] = SEPARATOR
        for left in layout.columns:
            template[layout.mask_top : layout.ticks_top, left : left + layout.grid_width] = (
                mask_pixels)
        self.template = self._draw_axes(template, mask_name)

    def _widest(self, texts) -> int:
        return max((int(np.ceil(self.font.getlength(text))) for text in texts), default=0)

    def _draw_axes(self, template: np.ndarray, mask_name: str) -> np.ndarray:
        """Sample numbers, the mask's name, position ticks and the colour bar, once."""
        from PIL import Image, ImageDraw

        layout, scale = self.layout, self.layout.scale
        text = Image.new("L", (layout.width, layout.height), 0)
        draw = ImageDraw.Draw(text)
        right = layout.grid_left - LABEL_PAD_PX

        def label(x_right: float, y_centre: float, words: str, centred: bool = False) -> None:
            width = self.font.getlength(words)
            x = x_right - width / 2 if centred else x_right - width
            top = max(layout.header, round(y_centre - HEADER_LINE_PX / 2))  # header: per frame
            draw.text((round(x), top), words, fill=255, font=self.font)

        for sample in range(0, layout.samples, label_step(scale, HEADER_LINE_PX)):
            label(right, layout.attention_top + (sample + 0.5) * scale, str(sample))
        label(right, layout.mask_top + layout.samples * scale / 2, mask_name)
        numbers_centre = layout.ticks_top + TICK_PX + HEADER_LINE_PX / 2 + 1
        label(right, numbers_centre, AXIS_NAME)
        step = label_step(scale, self._widest(self.positions) + LABEL_PAD_PX)
        for left in layout.columns:
            for position in range(0, layout.positions, step):
                centre = left + position * scale + scale // 2
                template[layout.ticks_top : layout.ticks_top + TICK_PX, centre] = SEPARATOR
                label(centre, numbers_centre, self.positions[position], centred=True)
        # the colour bar beside the attention rows: vmax at the top, 0 at the bottom
        height = layout.samples * scale
        levels = np.rint(np.linspace(CMAP_LEVELS - 1, 0, height)).astype(np.uint8)
        top, bar = layout.attention_top, slice(layout.bar_left, layout.bar_left + BAR_WIDTH_PX)
        template[top : top + height, bar] = levels[:, None]
        bar_right = layout.bar_left + BAR_WIDTH_PX + LABEL_PAD_PX
        places = [top + HEADER_LINE_PX / 2, top + height / 2, top + height - HEADER_LINE_PX / 2]
        shown = [0, 1, 2] if height >= 3 * HEADER_LINE_PX else [0, 2] if (
            height >= 2 * HEADER_LINE_PX) else [0]
        for index in shown:
            words = self.bar_labels[index]
            label(bar_right + self.font.getlength(words), places[index], words)
        template[np.asarray(text) > 127] = TEXT
        return template

    def render(self, frame: FrameData) -> np.ndarray:
        """One (height, width) uint8 frame of palette indices."""
        layout = self.layout
        image = self.template.copy()
        image[: layout.header] = self._header(frame.header)
        rows = slice(layout.attention_top, layout.attention_top + layout.samples * layout.scale)
        grid = slice(layout.grid_left, layout.grid_left + layout.grid_width)
        image[rows, grid] = upscale(to_indices(frame.rows, self.vmax), layout.scale)
        if layout.panel:
            panel = slice(layout.panel_left, layout.content_right)
            if frame.attribution is None:
                image[rows, panel] = NOT_RECORDED
            else:
                image[rows, panel] = upscale(to_indices(frame.attribution, 1.0), layout.scale)
        return image

    def _header(self, lines: Sequence[str]) -> np.ndarray:
        return header_strip(self.font, self.layout.width, self.layout.header, lines)


def bitmap_font():
    """Pillow's bitmap font: ten times faster to draw than FreeType, and two-tone, so
    palette-safe."""
    from PIL import ImageFont

    return getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)()


def header_strip(font, width: int, height: int, lines: Sequence[str]) -> np.ndarray:
    """A frame's header: `lines` of text, one HEADER_LINE_PX apart, as palette indices."""
    from PIL import Image, ImageDraw

    strip = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(strip)
    for number, line in enumerate(lines):
        draw.text((HEADER_PAD_PX, HEADER_PAD_PX + number * HEADER_LINE_PX), line,
                  fill=255, font=font)
    return np.where(np.asarray(strip) > 127, TEXT, BACKGROUND).astype(np.uint8)


def render_frames(frames: Sequence[FrameData], mask: np.ndarray, scale: int = 16,
                  vmax: float = 1.0, mask_name: str = "mask",
                  positions: Sequence[str] | None = None) -> list[np.ndarray]:
    """Palette-index frames for `frames`, with `mask` (n, L) drawn under the attention and
    labelled `mask_name`; `positions` names the columns (default: their indices)."""
    renderer = frame_renderer(frames, mask, scale, vmax, mask_name, positions)
    return [renderer.render(frame) for frame in frames]


def frame_renderer(frames: Sequence[FrameData], mask: np.ndarray, scale: int = 16,
                   vmax: float = 1.0, mask_name: str = "mask",
                   positions: Sequence[str] | None = None) -> FrameRenderer:
    """The renderer (and so the layout) of `frames`."""
    if not frames:
        raise AttnvizError("no frames to render: the run has no recorded attention")
    panel = any(frame.attribution is not None for frame in frames)
    return FrameRenderer(mask, [frame.header for frame in frames], scale, vmax, panel, mask_name,
                         positions)
