"""What each head does, in numbers computed from positions and token ids alone: one value
per head of a multi-head layer's (n, H, Lq, Lk) weights. Formulas in docs/metrics.md
("Per-head statistics").

    entropy    mean over rows of H(row) / ln(the keys the query can see): 0 when each query
               looks at one key, 1 uniform over what it can see (keys k <= q when causal)
    first      mass on key 0 (the first token: [CLS], a sink)
    self       mass on key q for query q                   (self-attention: Lq = Lk only)
    prev       mass on key q - 1, over the queries q >= 1   (self-attention only)
    next       mass on key q + 1, over the queries q < L - 1 (self-attention only)
    distance   sum over keys of w_k |q - k|, in positions  (self-attention only)
    special    mass on the keys holding a special token: an id at position 0, or at the last
               real position, of every probe sample ([CLS], [SEP]; token ids only)
    induction  mass on the key after each earlier copy of the query's token, over the
               queries that have one                       (self-attention and token ids only)

Each mass is the structural mask's (attnviz.analysis.structural) averaged as `score --query
all` averages it: over each sample's queries that are real and have a key in the mask, then
over samples. A statistic that does not apply is None.
"""

from __future__ import annotations

import numpy as np

from attnviz.analysis import structural

STATISTICS = ("entropy", "first", "self", "prev", "next", "distance", "special", "induction")
# the range each is drawn over: (low, high); distance's high is the layer's Lk - 1
RANGES = {name: (0.0, 1.0) for name in STATISTICS if name != "distance"}


def row_entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats of each row of (n, L) distributions, with 0 ln 0 = 0."""
    logs = np.log(np.maximum(p, np.finfo(np.float32).tiny))  # 0 * ln(tiny) = 0
    return 0.0 - np.einsum("ij,ij->i", p, logs, dtype=np.float64)  # 0.0 - x: no -0.0


def head_statistics(weights: np.ndarray, tokens: np.ndarray | None = None,
                    padding: np.ndarray | None = None) -> dict[str, np.ndarray | None]:
    """{statistic: (H,) float64} of (n, H, Lq, Lk) weights; `tokens` and `padding` (n, Lk)
    are the probe's token ids and real positions, when it has them (structural.probe_tokens,
    probe_padding)."""
    n, heads, queries, keys = weights.shape
    rows = weights.astype(np.float32, copy=False)
    self_attention = queries == keys
    if tokens is not None and np.shape(tokens) != (n, keys):
        tokens = None
    if padding is not None and np.shape(padding) != (n, keys):
        padding = None
    real = structural.valid_queries(padding if self_attention else None, n, queries)
    entropy = row_entropy(rows.reshape(-1, keys)).reshape(n, heads, queries)
    visible = visible_keys(rows, padding)  # (n, Lq)
    stats: dict[str, np.ndarray | None] = dict.fromkeys(STATISTICS)
    # a query that sees one key has no choice to make: left out, unless none has more
    choosing = real & (visible > 1)
    stats["entropy"] = (_per_sample_mean(entropy / np.log(np.maximum(visible, 2))[:, None],
                                         choosing) if choosing.any() else np.zeros(heads))

    def mass(name: str) -> np.ndarray:
        mask = structural.structural_mask(name, n, queries, keys, tokens, padding)
        if mask.ndim == 2:
            mask = np.broadcast_to(mask[:, None], (n, queries, keys))
        on_mask = np.einsum("nhqk,nqk->nhq", rows, mask.astype(np.float32))
        return _per_sample_mean(on_mask, real & mask.any(axis=-1))

    stats["first"] = mass("first")
    if self_attention:
        for name in ("self", "prev", "next"):
            stats[name] = mass(name) if keys > 1 or name == "self" else np.zeros(heads)
        gaps = np.abs(np.arange(queries)[:, None] - np.arange(keys)[None, :]).astype(np.float32)
        stats["distance"] = _per_sample_mean(np.einsum("nhqk,qk->nhq", rows, gaps), real)
    if tokens is not None:
        ids = special_ids(tokens, padding)
        if ids:
            on_special = np.isin(tokens, ids) & (True if padding is None else padding)
            stats["special"] = _per_sample_mean(
                np.einsum("nhqk,nk->nhq", rows, on_special.astype(np.float32)), real)
        if self_attention and keys > 2:
            stats["induction"] = mass("induction")
    return stats


def visible_keys(weights: np.ndarray, padding: np.ndarray | None = None) -> np.ndarray:
    """(n, Lq) how many keys each query can attend to: the real keys (all without a padding
    mask), and of them only keys k <= q when the layer is causal (not one weight above the
    diagonal, in any head or sample)."""
    n, _, queries, keys = weights.shape
    real = np.ones((n, keys), bool) if padding is None else np.asarray(padding, bool)
    if queries == keys and not np.triu(weights, 1).any():
        return np.cumsum(real, axis=1)
    return np.broadcast_to(real.sum(axis=1, keepdims=True), (n, queries))


def _per_sample_mean(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(H,) the mean of (n, H, Lq) values over each sample's valid (n, Lq) queries, then over
    the samples that have one (NaN when none has)."""
    valid = valid.astype(np.float64)[:, None, :]
    count = valid.sum(axis=-1)  # (n, 1)
    per_sample = (values * valid).sum(axis=-1, dtype=np.float64) / np.maximum(count, 1)
    has = count[:, 0] > 0
    if not has.any():
        return np.full(values.shape[1], np.nan)
    return per_sample[has].mean(axis=0)


def special_ids(tokens: np.ndarray, padding: np.ndarray | None = None) -> list[int]:
    """The token ids at position 0 of every sample, or at the last real position of every
    sample: [CLS] and [SEP], a BOS or an EOS token. None of two samples or fewer (one
    sample's first token would count as special)."""
    tokens = np.asarray(tokens)
    if tokens.shape[0] < 3:
        return []
    real = np.ones(tokens.shape, bool) if padding is None else np.asarray(padding, bool)
    last = tokens.shape[1] - 1 - np.argmax(real[:, ::-1], axis=1)
    ids = []
    for column in (tokens[:, 0], tokens[np.arange(len(tokens)), last]):
        if (column == column[0]).all():
            ids.append(int(column[0]))
    return sorted(set(ids))


# A head's label, from its statistics, first match wins. The thresholds are starting points
# set on the planted heads of tests/test_heads.py, the synthetic 12 x 12 run and the built-in
# induction run (docs/metrics.md, "Head labels", says which runs).
PEAKED = 0.5  # mass on one structural position that names the head
LOCAL = 1.5  # mean distance, in positions, of a head that looks nearby
BROAD = 0.8  # entropy / ln L of a head that spreads its attention
# induction before first-token: an induction head parks the queries that have no earlier
# copy of their token somewhere, often on the first token, and is still an induction head.
LABELS = (("prev", "previous-token"), ("next", "next-token"), ("self", "self"),
          ("induction", "induction"), ("first", "first-token"), ("special", "special-token"))
ALL_LABELS = (*(label for _, label in LABELS), "local", "broad", "mixed")


def head_label(stats: dict[str, float | None]) -> tuple[str, float]:
    """(label, the number it rests on) of one head: previous-token, next-token, self,
    induction, first-token, special-token, local, broad or mixed."""
    for name, label in LABELS:
        value = stats.get(name)
        if value is not None and value >= PEAKED:
            return label, float(value)
    distance = stats.get("distance")
    if distance is not None and distance <= LOCAL:
        return "local", float(distance)
    if stats["entropy"] >= BROAD:
        return "broad", float(stats["entropy"])
    return "mixed", float(stats["entropy"])


def head_labels(weights: np.ndarray, tokens: np.ndarray | None = None,
                padding: np.ndarray | None = None) -> list[tuple[str, float]]:
    """The label of each head of (n, H, Lq, Lk) weights."""
    stats = head_statistics(weights, tokens, padding)
    return [head_label({name: None if values is None else float(values[head])
                        for name, values in stats.items()})
            for head in range(weights.shape[1])]


# What the number of each label is, and which way a gate on it points.
LABEL_NUMBER = {**{label: name for name, label in LABELS}, "local": "distance",
                "broad": "entropy", "mixed": "entropy"}


def label_bound(label: str) -> str:
    """"min" when a larger number makes the label surer, "max" for local (a distance)."""
    return "max" if label == "local" else "min"


def default_gate(label: str) -> float:
    """The number a label is given at: the gate when --head-label names no X."""
    return {"local": LOCAL, "broad": BROAD, "mixed": 0.0}.get(label, PEAKED)


def first_held(epochs, held) -> int | None:
    """The first of `epochs` from which `held` (a bool per epoch) is true through the last,
    or None when the last is not."""
    if not len(held) or not held[-1]:
        return None
    misses = [i for i, ok in enumerate(held) if not ok]
    return epochs[misses[-1] + 1] if misses else epochs[0]


def label_rows(weights: np.ndarray, tokens: np.ndarray | None = None,
               padding: np.ndarray | None = None) -> list[dict]:
    """Per head of (n, H, Lq, Lk) weights: its label, the number it rests on and every
    statistic (None where it does not apply), JSON-ready."""
    stats = head_statistics(weights, tokens, padding)
    rows = []
    for head in range(weights.shape[1]):
        values = {name: None if value is None or not np.isfinite(value[head])
                  else round(float(value[head]), 6) for name, value in stats.items()}
        label, number = head_label(values)
        rows.append({"head": head, "label": label, "value": round(number, 6),
                     "statistics": values})
    return rows
