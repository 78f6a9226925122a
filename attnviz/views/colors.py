"""Colour: matplotlib colour maps as lookup tables, and the one 256-colour palette every
frame, GIF and TensorBoard image indexes (the first CMAP_LEVELS entries are the map, the rest
draw headers, lines and gaps). matplotlib is imported only for a map other than 'hot'."""

from __future__ import annotations

import numpy as np

from attnviz.errors import AttnvizError, did_you_mean

CMAP_LEVELS = 248  # palette entries for the colour map; 248..255 are for everything else
BACKGROUND = 248  # header and the gap between panels
TEXT = 249  # header text
SEPARATOR = 250  # the line between attention rows and mask rows
NOT_RECORDED = 251  # an attribution panel at an epoch whose attribution was not recorded
UNCHANGED = 255  # GIF only: transparent, so the previous frame's pixel shows through
RESERVED_RGB = {
    BACKGROUND: (24, 24, 24),
    TEXT: (240, 240, 240),
    SEPARATOR: (128, 128, 128),
    NOT_RECORDED: (56, 56, 64),
}
SOME_CMAPS = "hot, viridis, magma, inferno, gray, Blues"

# matplotlib's 'hot' segment data, so the default colour map needs no matplotlib import
_HOT = (
    ((0.0, 0.0416), (0.365079, 1.0), (1.0, 1.0)),  # red: (x, y) knots
    ((0.0, 0.0), (0.365079, 0.0), (0.746032, 1.0), (1.0, 1.0)),  # green
    ((0.0, 0.0), (0.746032, 0.0), (1.0, 1.0)),  # blue
)


def colormap_lut(name: str, levels: int = CMAP_LEVELS) -> np.ndarray:
    """(levels, 3) uint8 colours of matplotlib colour map `name`, sampled evenly from 0 to 1.

    Byte-identical to `matplotlib.colormaps[name](np.linspace(0, 1, levels), bytes=True)`;
    'hot' is computed here so the default path never imports matplotlib.
    """
    # matplotlib samples a 256-entry table at index int(v * 256), and truncates to bytes
    index = np.minimum((np.linspace(0.0, 1.0, levels) * 256).astype(int), 255)
    if name == "hot":
        grid = np.linspace(0.0, 1.0, 256)
        table = np.stack(
            [np.interp(grid, [x for x, _ in knots], [y for _, y in knots]) for knots in _HOT],
            axis=1,
        )  # (256, 3) floats in [0, 1]
        return (table[index] * 255).astype(np.uint8)
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise AttnvizError(
            f"unknown --cmap {name!r}{did_you_mean(name, matplotlib.colormaps)}: use a "
            f"matplotlib colour map, e.g. {SOME_CMAPS}"
        ) from None
    return cmap(np.linspace(0.0, 1.0, levels), bytes=True)[:, :3]


def palette_for(lut: np.ndarray) -> np.ndarray:
    """The (256, 3) uint8 palette: the colour map's levels, then the reserved colours."""
    palette = np.zeros((256, 3), np.uint8)
    palette[:CMAP_LEVELS] = lut
    for index, rgb in RESERVED_RGB.items():
        palette[index] = rgb
    return palette


def to_indices(values: np.ndarray, vmax: float) -> np.ndarray:
    """Map values in [0, vmax] onto colour-map palette indices (clipping outside)."""
    scaled = np.rint(values * ((CMAP_LEVELS - 1) / vmax))
    return np.clip(scaled, 0, CMAP_LEVELS - 1).astype(np.uint8)


def upscale(cells: np.ndarray, scale: int) -> np.ndarray:
    """Repeat each cell of a 2-D array into a scale x scale block of pixels."""
    rows, cols = cells.shape
    blocks = np.broadcast_to(cells[:, None, :, None], (rows, scale, cols, scale))
    return blocks.reshape(rows * scale, cols * scale)
