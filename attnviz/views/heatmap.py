"""A terminal heatmap of attention rows for rich: colour like matplotlib's 'hot', or shades.

    pos      0  1  2  3  4  5 ...          position indices (ticks thin out as L grows)
    0       ░░    ░░ ████                  one row per sample
    1             ░░ ████
    ─────
    prefix  ██ ██ ██                       each mask's rows below, filled where it is true
    argmax              ▁▁ ██              how many samples peak at each position
    scale   0 [ ░▒▓█] 0.97 (rescaled to the largest weight shown, not 1)
    masks   █ a marked position
    argmax  ▁▂▃▄▅▆▇█ samples whose largest weight is there, of all 2 (█ = 2)

With colour (a truecolor or 256-colour terminal, no NO_COLOR) each cell is a background
colour; without it cells are the shade characters ' ░▒▓█', one per fifth of the scale. The
legend names every glyph drawn, and says when the colours are scaled to the largest weight
shown (imshow's automatic scale) rather than to 1.
"""

from __future__ import annotations

import math

import numpy as np
from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style

from attnviz.views.colors import colormap_lut

SHADES = " ░▒▓█"  # no colour: value / vmax in [0, .2), [.2, .4), ... [.8, 1]
BARS = " ▁▂▃▄▅▆▇█"  # the argmax histogram, relative to its largest count
TICK_STEPS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
_HOT = colormap_lut("hot", 256)  # (256, 3) uint8, as matplotlib draws 'hot'


def hot(values: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 colours of values in [0, 1] under matplotlib's 'hot' colour map."""
    index = np.rint(np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0) * 255)
    return _HOT[index.astype(int)]


def shade(values: np.ndarray) -> np.ndarray:
    """The shade character index (0..4) of values in [0, 1]."""
    return np.clip((np.asarray(values) * len(SHADES)).astype(int), 0, len(SHADES) - 1)


class Heatmap:
    """(n, L) rows as coloured (or shaded) cells, the masks below, and an argmax histogram."""

    def __init__(self, rows: np.ndarray, masks: dict[str, np.ndarray] | None = None,
                 histogram: np.ndarray | None = None, vmax: float | None = None):
        self.rows = np.asarray(rows, dtype=np.float64)  # (n, L)
        self.masks = masks or {}  # name -> (n, L) bool, each drawn as rows under the samples
        self.histogram = histogram  # (L,) counts
        top = float(self.rows.max()) if self.rows.size else 0.0
        self.rescaled = vmax is None and top > 0  # like imshow: the top colour is the largest
        self.vmax = vmax if vmax is not None else (top if top > 0 else 1.0)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        colour = console.color_system is not None and not console.no_color
        n, seq_len = self.rows.shape
        label_width = max(len(label) for label in [str(n - 1), *self.masks, "argmax"]) + 1
        width, pool = _layout(seq_len, options.max_width - label_width)
        columns = math.ceil(seq_len / pool)

        def pooled(values: np.ndarray, reduce=np.max) -> np.ndarray:
            padded = np.zeros(columns * pool)
            padded[:seq_len] = values
            return reduce(padded.reshape(columns, pool), axis=1)

        def cells(label: str, values: np.ndarray) -> list[Segment]:  # values in [0, 1]
            out = [Segment(label.ljust(label_width))]
            if colour:
                for rgb in hot(values):
                    out.append(Segment(" " * width, Style(bgcolor=Color.from_rgb(*rgb))))
            else:
                out.append(Segment("".join(SHADES[i] * width for i in shade(values))))
            return [*out, Segment.line()]

        yield Segment("pos".ljust(label_width) + _ticks(columns, pool, width) + "\n",
                      Style(dim=True))
        for index, row in enumerate(self.rows):
            yield from cells(str(index), pooled(row) / self.vmax)
        if self.masks:
            yield Segment("─" * (label_width + columns * width) + "\n", Style(dim=True))
            for name, mask in self.masks.items():
                for index, row in enumerate(mask):
                    yield from cells("" if index else name, pooled(row.astype(np.float64)))
        most = 0
        if self.histogram is not None:
            counts = pooled(np.asarray(self.histogram, dtype=np.float64), np.sum)
            most = int(counts.max())
            bars = np.ceil(counts / max(most, 1) * (len(BARS) - 1)).astype(int)
            yield Segment("argmax".ljust(label_width) + "".join(BARS[b] * width for b in bars)
                          + "\n")
        yield from self._legend(colour, label_width, pool, most)

    def _legend(self, colour: bool, label_width: int, pool: int, most: int) -> RenderResult:
        """A line for every kind of glyph drawn: the scale, the mask cells, the bars."""
        dim = Style(dim=True)
        yield Segment("scale".ljust(label_width) + "0 ")
        if colour:
            for rgb in hot(np.linspace(0.0, 1.0, 16)):
                yield Segment(" ", Style(bgcolor=Color.from_rgb(*rgb)))
        else:
            yield Segment(f"[{SHADES}]")
        note = ""
        if f"{self.vmax:.3g}" != "1":  # a top of 0.9999 is shown as 1: nothing to say
            note = (" (rescaled to the largest weight shown, not 1)" if self.rescaled
                    else " (the top colour, not 1)")
        yield Segment(f" {self.vmax:.3g}{note}\n")
        if pool > 1:
            yield Segment(" " * label_width + f"each column: the max of {pool} positions\n")
        if self.masks:
            yield Segment("masks".ljust(label_width))
            yield (Segment(" ", Style(bgcolor=Color.from_rgb(*hot(np.ones(1))[0]))) if colour
                   else Segment(SHADES[-1]))
            yield Segment(" a marked position\n", dim)
        if self.histogram is not None:
            yield Segment("argmax".ljust(label_width) + BARS[1:])
            total = int(np.sum(self.histogram))
            yield Segment(f" samples whose largest weight is there, of all {total} "
                          f"({BARS[-1]} = {most})\n", dim)


def _layout(seq_len: int, room: int) -> tuple[int, int]:
    """Characters per cell (3, 2 or 1) and positions pooled per column, to fit `room`."""
    for width in (3, 2, 1):
        if seq_len * width <= room:
            return width, 1
    return 1, math.ceil(seq_len / max(room, 1))


def _ticks(columns: int, pool: int, width: int) -> str:
    """Position indices over the columns, as dense as their digits allow."""
    digits = len(str((columns - 1) * pool))
    step = next((s for s in TICK_STEPS if s * width >= digits + 1), TICK_STEPS[-1])
    line = [" "] * (columns * width)
    for column in range(0, columns, step):
        label = str(column * pool)
        line[column * width:column * width + len(label)] = label
    return "".join(line[:columns * width])
