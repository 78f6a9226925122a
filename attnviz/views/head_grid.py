"""Every head of one layer in one frame: `animate --head all`.

Each head is a panel of one probe sample's map, queries down and keys across, so a
previous-token head is a line under the diagonal, a sink a bright first column, a broad head
an even glow. Panels sit in a grid of about square shape, labelled once; the header of each
frame names the layer, the sample and the epoch. Frames are palette indices, as in
attnviz.views.frames, so the GIF keeps exact colours.

    header            view line, epoch / loss                      HEADER_LINE_PX per line
    head 0   head 1   head 2   head 3                              label line above each row
    [L x L]  [L x L]  [L x L]  [L x L]    colour bar, 0 to vmax
    head 4   ...
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from attnviz.errors import AttnvizError
from attnviz.views.colors import BACKGROUND, CMAP_LEVELS, TEXT, to_indices, upscale
from attnviz.views.frames import (
    BAR_WIDTH_PX,
    HEADER_LINE_PX,
    HEADER_PAD_PX,
    LABEL_PAD_PX,
    bitmap_font,
    header_strip,
)

PANEL_PX = 128  # the side a panel aims at when no --scale is given
GAP_PX = 6


@dataclass(frozen=True)
class HeadsFrame:
    """One epoch: every head's map of one sample."""

    epoch: int
    maps: np.ndarray  # (heads, Lq, Lk), rows in [0, 1]
    header: tuple[str, ...]


def grid_scale(queries: int, keys: int, scale: int | None) -> int:
    """Pixels per cell: `scale`, or what makes a panel about PANEL_PX on its longer side."""
    if scale is not None:
        return scale
    return max(1, PANEL_PX // max(queries, keys, 1))


def grid_shape(heads: int) -> tuple[int, int]:
    """(rows, columns) of panels: columns = ceil(sqrt(heads)), as square as it gets."""
    columns = math.ceil(math.sqrt(heads))
    return math.ceil(heads / columns), columns


class HeadsRenderer:
    """Draws HeadsFrames: labels, gaps and the colour bar once, into a template."""

    def __init__(self, heads: int, queries: int, keys: int, headers: Sequence[Sequence[str]],
                 scale: int, vmax: float):
        self.font = bitmap_font()
        self.scale, self.vmax = scale, vmax
        self.heads, self.rows_of_panels = heads, grid_shape(heads)
        rows, columns = self.rows_of_panels
        self.panel_w, self.panel_h = keys * scale, queries * scale
        self.header = max(len(h) for h in headers) * HEADER_LINE_PX + 2 * HEADER_PAD_PX
        self.left = HEADER_PAD_PX
        self.cell_w = max(self.panel_w, self._width(f"head {heads - 1}")) + GAP_PX
        self.cell_h = HEADER_LINE_PX + self.panel_h + GAP_PX
        grid_right = self.left + columns * self.cell_w
        bar_labels = [f"{vmax:.3g}", "0"]
        self.bar_left = grid_right + LABEL_PAD_PX
        width = max(self.bar_left + BAR_WIDTH_PX + LABEL_PAD_PX
                    + max(map(self._width, bar_labels)) + HEADER_PAD_PX,
                    max((self._width(line) for h in headers for line in h), default=0)
                    + 2 * HEADER_PAD_PX)
        height = self.header + rows * self.cell_h + HEADER_PAD_PX
        if width * height > 40_000_000:
            raise AttnvizError(f"one frame of {heads} heads would be {width} x {height} px: "
                               "pass a smaller --scale")
        self.template = self._template(width, height, bar_labels)

    def _width(self, text: str) -> int:
        return int(np.ceil(self.font.getlength(text)))

    def panel_origin(self, head: int) -> tuple[int, int]:
        """(top, left) of `head`'s map in a frame."""
        row, column = divmod(head, self.rows_of_panels[1])
        return (self.header + row * self.cell_h + HEADER_LINE_PX,
                self.left + column * self.cell_w)

    def _template(self, width: int, height: int, bar_labels: list[str]) -> np.ndarray:
        from PIL import Image, ImageDraw

        template = np.full((height, width), BACKGROUND, np.uint8)
        text = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(text)
        for head in range(self.heads):
            top, left = self.panel_origin(head)
            draw.text((left, top - HEADER_LINE_PX), f"head {head}", fill=255, font=self.font)
        top = self.header + HEADER_LINE_PX
        bar_height = max(self.panel_h, 2 * HEADER_LINE_PX)
        levels = np.rint(np.linspace(CMAP_LEVELS - 1, 0, bar_height)).astype(np.uint8)
        template[top : top + bar_height, self.bar_left : self.bar_left + BAR_WIDTH_PX] = (
            levels[:, None])
        label_x = self.bar_left + BAR_WIDTH_PX + LABEL_PAD_PX
        draw.text((label_x, top), bar_labels[0], fill=255, font=self.font)
        draw.text((label_x, top + bar_height - HEADER_LINE_PX), bar_labels[1], fill=255,
                  font=self.font)
        template[np.asarray(text) > 127] = TEXT
        return template

    def render(self, frame: HeadsFrame) -> np.ndarray:
        image = self.template.copy()
        image[: self.header] = header_strip(self.font, image.shape[1], self.header, frame.header)
        for head, cells in enumerate(frame.maps):
            top, left = self.panel_origin(head)
            image[top : top + self.panel_h, left : left + self.panel_w] = upscale(
                to_indices(cells, self.vmax), self.scale)
        return image


def render_heads(frames: Sequence[HeadsFrame], scale: int | None,
                 vmax: float) -> list[np.ndarray]:
    """Palette-index frames of every head of `frames`."""
    if not frames:
        raise AttnvizError("no frames to render: the run has no recorded attention")
    heads, queries, keys = frames[0].maps.shape
    renderer = HeadsRenderer(heads, queries, keys, [frame.header for frame in frames],
                             grid_scale(queries, keys, scale), vmax)
    return [renderer.render(frame) for frame in frames]
