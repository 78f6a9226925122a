"""What each head does, in numbers computed from positions alone: one value per head of a
multi-head layer's (n, H, Lq, Lk) weights, averaged over every sample and every query.
Formulas in docs/metrics.md ("Per-head statistics").

    entropy   mean over rows of H(row) / ln Lk: 0 when each query looks at one key, 1 uniform
    first     mass on key 0 (the first token: [CLS], a sink)
    self      mass on key q for query q                      (self-attention: Lq = Lk only)
    prev      mass on key q - 1, over the queries q >= 1      (self-attention only)
    distance  sum over keys of w_k |q - k|, in positions     (self-attention only)

Rows that are all zero (a query the model masked out) count as they are: 0 mass, 0 entropy.
"""

from __future__ import annotations

import numpy as np

from attnviz.analysis.score import row_entropy

STATISTICS = ("entropy", "first", "self", "prev", "distance")
# the range each is drawn over: (low, high); distance's high is the layer's Lk - 1
RANGES = {"entropy": (0.0, 1.0), "first": (0.0, 1.0), "self": (0.0, 1.0), "prev": (0.0, 1.0)}


def head_statistics(weights: np.ndarray) -> dict[str, np.ndarray | None]:
    """{statistic: (H,) float64} of (n, H, Lq, Lk) weights; a statistic of self-attention
    is None when Lq != Lk (cross-attention has no query position among its keys)."""
    n, heads, queries, keys = weights.shape
    rows = weights.astype(np.float32, copy=False)
    flat = rows.reshape(-1, keys)
    entropy = row_entropy(flat).reshape(n, heads, queries)
    scale = np.log(keys) if keys > 1 else 1.0
    stats: dict[str, np.ndarray | None] = {
        "entropy": (entropy / scale).mean(axis=(0, 2)),
        "first": rows[..., 0].mean(axis=(0, 2), dtype=np.float64),
        "self": None, "prev": None, "distance": None,
    }
    if queries == keys:
        diagonal = np.diagonal(rows, axis1=2, axis2=3)  # (n, H, L)
        stats["self"] = diagonal.mean(axis=(0, 2), dtype=np.float64)
        below = np.diagonal(rows, offset=-1, axis1=2, axis2=3)  # key q - 1 of query q
        stats["prev"] = (below.mean(axis=(0, 2), dtype=np.float64) if queries > 1
                         else np.zeros(heads))
        gaps = np.abs(np.arange(queries)[:, None] - np.arange(keys)[None, :]).astype(np.float32)
        stats["distance"] = np.einsum("nhqk,qk->h", rows, gaps, dtype=np.float64) / (
            n * queries)
    return stats


# A head's label, from its statistics, first match wins. The thresholds are starting points
# set on the planted heads of tests/test_heads.py and the synthetic 12 x 12 run, not yet on
# trained models (issue 22 asks for that): docs/metrics.md says so.
PEAKED = 0.5  # mass on one structural position that names the head
LOCAL = 1.5  # mean distance, in positions, of a head that looks nearby
BROAD = 0.8  # entropy / ln L of a head that spreads its attention


def head_label(stats: dict[str, float | None]) -> tuple[str, float]:
    """(label, the number it rests on) of one head: previous-token, self, first-token, local,
    broad or mixed."""
    for name, label in (("prev", "previous-token"), ("self", "self"), ("first", "first-token")):
        value = stats.get(name)
        if value is not None and value >= PEAKED:
            return label, float(value)
    distance = stats.get("distance")
    if distance is not None and distance <= LOCAL:
        return "local", float(distance)
    if stats["entropy"] >= BROAD:
        return "broad", float(stats["entropy"])
    return "mixed", float(stats["entropy"])


def head_labels(weights: np.ndarray) -> list[tuple[str, float]]:
    """The label of each head of (n, H, Lq, Lk) weights."""
    stats = head_statistics(weights)
    return [head_label({name: None if values is None else float(values[head])
                        for name, values in stats.items()})
            for head in range(weights.shape[1])]
