"""Labelled matplotlib figures of attention (Agg canvas, no pyplot state)."""

from __future__ import annotations

import numpy as np


def attention_figure(rows: np.ndarray, masks: dict[str, np.ndarray], title: str):
    """Attention rows (n, L) over the masks' rows (m, L) each, in 'hot', with a colour bar.

    Samples are rows and sequence positions columns, as in the founding case's
    `imshow(np.concatenate([attention_map, mask]), cmap='hot')`, with the mask rows drawn
    in their own panel so they keep the 0/1 scale while attention keeps its own.
    """
    from matplotlib.figure import Figure

    n, seq_len = rows.shape
    mask_rows = np.concatenate([mask for mask in masks.values()]) if masks else None
    heights = [n] + ([max(len(mask_rows), 0.15 * n)] if masks else [])
    figure = Figure(figsize=(max(5.0, 0.28 * seq_len + 2.5), 1.2 + 0.25 * sum(heights)),
                    layout="constrained")
    axes = figure.subplots(len(heights), 1, sharex=True, squeeze=False,
                           gridspec_kw={"height_ratios": heights})[:, 0]
    image = axes[0].imshow(rows, cmap="hot", aspect="auto", interpolation="nearest", vmin=0.0)
    axes[0].set_ylabel("sample")
    axes[0].set_yticks(range(n))
    axes[0].set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes[0], label="attention weight")
    if masks:
        axes[1].imshow(mask_rows.astype(float), cmap="hot", aspect="auto",
                       interpolation="nearest", vmin=0.0, vmax=1.0)
        starts = np.cumsum([0, *(len(mask) for mask in masks.values())])  # a block per mask
        axes[1].set_yticks((starts[:-1] + starts[1:]) / 2 - 0.5, list(masks), fontsize=8)
        axes[1].set_ylabel("mask")
        for start in starts[1:-1]:
            axes[1].axhline(start - 0.5, color="grey", linewidth=1)
    axes[-1].set_xlabel("sequence position")
    axes[-1].set_xticks(range(0, seq_len, max(1, seq_len // 20)))
    return figure
