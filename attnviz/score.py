"""Alignment of attention with ground-truth masks (numpy only).

Every metric is computed per sample on rows of shape (n, L) that sum to 1, then averaged;
formulas are in docs/metrics.md.
"""

from __future__ import annotations

import numpy as np

from attnviz.errors import AttnvizError


def attention_rows(
    attention: np.ndarray, head: int | str = "mean", query: int | str = "last"
) -> np.ndarray:
    """Reduce recorded attention to (n, L) rows over key positions.

    Temporal attention (n, L) is returned as is. Self-attention (n, H, Lq, Lk) is reduced
    over heads (`head`: an index or "mean") and queries (`query`: an index, "last" -- the
    position the model predicts from -- or "mean").
    """
    if attention.ndim == 2:
        return attention
    if attention.ndim != 4:
        raise AttnvizError(
            f"attention has shape {attention.shape}: expected (n, L) or (n, heads, L, L)"
        )
    heads = attention.shape[1]
    if head == "mean":
        per_head = attention.mean(axis=1)  # (n, Lq, Lk)
    else:
        if not 0 <= int(head) < heads:
            raise AttnvizError(f"--head {head} is out of range: this run has heads 0..{heads - 1}")
        per_head = attention[:, int(head)]
    if query == "last":
        return per_head[:, -1, :]
    if query == "mean":
        return per_head.mean(axis=1)
    if not 0 <= int(query) < per_head.shape[1]:
        raise AttnvizError(f"--query {query} is out of range 0..{per_head.shape[1] - 1}")
    return per_head[:, int(query), :]


def mass(rows: np.ndarray, mask: np.ndarray) -> float:
    """Mean over samples of the attention mass that falls on the mask."""
    return float(np.where(mask, rows, 0.0).sum(axis=-1).mean())
