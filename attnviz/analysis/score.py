"""Alignment of attention with ground-truth masks (numpy only).

Every metric is computed per sample on rows of shape (n, L) that sum to 1, then averaged;
formulas, ranges and tie rules are in docs/metrics.md. `score_run` streams a run's epochs
one at a time, so memory stays one epoch deep however long the history is.

Worked example, one sample with L = 4:

    attention [.5, .5, 0, 0], mask [1, 1, 0, 0]  ->  mass 1, topk-f1 1, jsd 0
    attention [.25, .25, .25, .25], same mask    ->  mass .5, topk-precision .5 (all tie)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from attnviz.analysis import structural
from attnviz.analysis.heads import (
    ALL_LABELS,
    LABEL_NUMBER,
    default_gate,
    first_held,
    label_bound,
    label_rows,
    row_entropy,
)
from attnviz.errors import AttnvizError, did_you_mean
from attnviz.store.arrays import load_array
from attnviz.store.layers import SELF, TEMPORAL, kind_of, shown_kind

ROW_SUM_TOLERANCE = 1e-2  # float16 attention of L = 512 sums to 1 only within ~1e-3
SPAN_IOU = 0.5  # ERASER: a predicted span matches a true span when their IoU >= 0.5


@dataclass(frozen=True)
class Metric:
    name: str
    better: str  # "higher" or "lower": so a threshold on it is a minimum or a maximum
    low: float  # the range of the metric, both ends attainable
    high: float
    summary: str  # one line, for tables and docs
    per_mask: bool = True  # False: the same number whatever the mask (shown once)
    same_as: str | None = None  # equal to this metric by definition (shown under its name)
    # True: reads only the order of the weights, so attention that is uniform but for a hair
    # above the mask scores 1.0; never a gate on its own (rank_only_gates)
    rank_only: bool = False


METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("mass", "higher", 0.0, 1.0, "attention mass on the mask"),
        # k predicted and k true positions: precision = recall = F1, one number
        Metric("topk-precision", "higher", 0.0, 1.0,
               "share of the top-k positions (k = mask size) inside the mask",
               same_as="topk-f1", rank_only=True),
        Metric("topk-recall", "higher", 0.0, 1.0, "share of the mask inside the top-k positions",
               same_as="topk-f1", rank_only=True),
        Metric("topk-f1", "higher", 0.0, 1.0, "share of the top-k positions (k = mask size) "
               "inside the mask: ERASER's token F1, precision and recall at once",
               rank_only=True),
        Metric("auprc", "higher", 0.0, 1.0, "average precision of attention ranking the mask",
               rank_only=True),
        Metric("iou-f1", "higher", 0.0, 1.0,
               "ERASER span F1: top-k spans matching mask spans at IoU >= 0.5", rank_only=True),
        Metric("jsd", "lower", 0.0, math.log(2.0),
               "Jensen-Shannon divergence from the uniform distribution on the mask"),
        Metric("entropy", "lower", 0.0, 1.0, "attention entropy divided by ln L (any mask)",
               per_mask=False),
    )
}
METRIC_NAMES = tuple(METRICS)
# What tables show: each number once. Mask-independent ones once per view, not per mask.
SHOWN_PER_MASK = tuple(name for name, m in METRICS.items() if m.per_mask and not m.same_as)
SHOWN_ONCE = tuple(name for name, m in METRICS.items() if not m.per_mask)


# ---- rows and masks ------------------------------------------------------------------------


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
    if query == "all":
        raise AttnvizError("--query all scores every query row (score only); a view draws "
                           "one row per sample: use last, mean or a query index")
    if not 0 <= int(query) < per_head.shape[1]:
        raise AttnvizError(f"--query {query} is out of range 0..{per_head.shape[1] - 1}")
    return per_head[:, int(query), :]


def mass(rows: np.ndarray, mask: np.ndarray) -> float:
    """Mean over samples of the attention mass that falls on the mask."""
    return float(np.where(mask, rows, 0.0).sum(axis=-1).mean())


def parse_query(query: str | int) -> str | int:
    """--query as scoring takes it: "last", "mean", "all" or a non-negative index."""
    if query in ("last", "mean", "all"):
        return query
    try:
        index = int(query)
    except (TypeError, ValueError):
        index = -1
    if index < 0:
        raise AttnvizError(f"--query {query!r}: use last, mean, all or a query position 0..L-1")
    return index


def parse_head(head: str | int) -> str | int:
    """--head as attention_rows takes it: "mean" or a head index."""
    if head == "mean":
        return head
    try:
        return int(head)
    except (TypeError, ValueError):
        raise AttnvizError(f"--head {head!r}: use a head index or mean") from None


def check_recorded_heads(run, head: str | None, layer: str | None = None) -> None:
    """Refuse a --head other than the mean of a run that recorded only the mean of its heads."""
    info = run.layer_info(layer)
    if (info["kind"] != TEMPORAL and info.get("record_heads") == "mean"
            and head not in (None, "mean", "0")):
        raise AttnvizError(f"--head {head}: {run.root} recorded only the mean of its heads "
                           "(--record-heads mean): use --head mean")


def check_attention(attention: np.ndarray, source: str, normalize: bool = False) -> np.ndarray:
    """Refuse attention that is not a distribution per row; return float32 rows summing to 1."""
    _check_shape(attention, source)
    with np.errstate(over="ignore"):  # beyond float32's range becomes Inf, refused just below
        attention = np.asarray(attention, dtype=np.float32)
    if not np.isfinite(attention).all():
        raise AttnvizError(f"{source}: attention contains NaN or Inf: record it again")
    if (attention < 0).any():
        raise AttnvizError(
            f"{source}: attention has negative weights: pass softmax weights, not logits"
        )
    sums = attention.sum(axis=-1, keepdims=True, dtype=np.float64).astype(np.float32)
    if normalize:
        if (sums <= 0).any():
            raise AttnvizError(f"{source}: some attention rows are all zero: they cannot be "
                               "normalised: drop those samples")
    elif np.abs(sums - 1.0).max() > ROW_SUM_TOLERANCE:
        raise AttnvizError(
            f"{source}: attention rows sum to {sums.min():.4g}..{sums.max():.4g}, not 1: pass "
            "softmax weights, or --normalize to divide each row by its sum"
        )
    # Rows within the tolerance are divided by their sum too, so every metric sees a
    # distribution and stays inside its range.
    return attention / sums


def _check_shape(attention: np.ndarray, source: str) -> None:
    if attention.ndim not in (2, 4) or 0 in attention.shape:
        raise AttnvizError(
            f"{source}: attention has shape {attention.shape}: expected (n, L) temporal "
            "attention or (n, heads, L, L) self-attention"
        )


def check_mask(mask: np.ndarray, shape: tuple[int, int], source: str, queries: int = 1,
               allow_empty: bool = False) -> np.ndarray:
    """Refuse a mask that is not 0/1 of `shape` (n, Lk), or (n, Lq, Lk) when the attention
    has `queries` > 1 query rows, or that marks nothing for a sample. A query mask may leave
    rows empty (those queries are not scored); `allow_empty` (built-in masks) lets a sample
    mark nothing, and it is left out of the averages."""
    n, keys = shape
    wanted = [tuple(shape)] + ([(n, queries, keys)] if queries > 1 else [])
    if mask.shape not in wanted:
        query_shape = f", or (n, {queries}, {keys}) per query" if queries > 1 else ""
        raise AttnvizError(
            f"{source}: mask has shape {mask.shape} but the attention rows are {tuple(shape)} "
            f"(n samples, L key positions{query_shape}): save a mask of that shape"
        )
    if mask.dtype != bool:
        if not np.issubdtype(mask.dtype, np.number) or not np.isin(mask, (0, 1)).all():
            raise AttnvizError(f"{source}: mask values must be 0/1 or bool")
        mask = mask.astype(bool)
    marks = mask.reshape(n, -1).any(axis=1)
    if allow_empty:
        if not marks.any():
            raise AttnvizError(f"{source}: marks no position in any sample: nothing to score "
                               "against")
        return mask
    empty = np.flatnonzero(~marks)
    if empty.size:
        raise AttnvizError(
            f"{source}: {empty.size} sample(s) mark no position (first: sample {empty[0]}): "
            "every metric needs at least one; drop those samples"
        )
    return mask


# ---- metrics per sample --------------------------------------------------------------------


def sample_scores(rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Every metric of every sample: (len(METRICS), n) float64, in METRIC_NAMES order.

    `rows` (n, L) are non-negative and sum to 1; `mask` (n, L) bool marks >= 1 position per
    sample. auprc is NaN for samples whose mask is all one class.
    """
    return _score_masks(rows, [Truth.of(mask)])[0]


@dataclass(frozen=True)
class Truth:
    """A ground-truth mask and what scoring needs from it, computed once for every epoch."""

    mask: np.ndarray  # (n, L) bool
    marked: np.ndarray  # (n,) k, the mask size of each sample
    outside: np.ndarray  # (n, L) uint32: 1 outside the mask (the label in the sort keys)
    positions: np.ndarray  # flat indices of the mask positions, row by row
    rows: np.ndarray  # the sample of each mask position
    run_starts: np.ndarray  # flat index of the first position of each run of the mask
    run_lengths: np.ndarray

    @classmethod
    def of(cls, mask: np.ndarray) -> Truth:
        mask = np.ascontiguousarray(mask, dtype=bool)
        positions = np.flatnonzero(mask)
        _, run_starts, run_lengths = _runs(positions, mask.shape[1])
        return cls(mask, mask.sum(axis=1), (~mask).astype(np.uint32), positions,
                   positions // mask.shape[1], run_starts, run_lengths)


def _score_masks(rows: np.ndarray, truths: Sequence[Truth]) -> np.ndarray:
    """sample_scores of `rows` against each truth: (len(truths), len(METRICS), n)."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    n, seq_len = rows.shape
    samples = np.arange(n)
    # For x >= 0 the float32 bit pattern orders like x, so (bits << 1) | label sorts by
    # score with a label in the lowest bit: one np.sort ranks scores and carries labels,
    # exactly and 10x faster than argsort. & drops the sign bit of -0.0.
    shifted_bits = (rows.view(np.uint32) & np.uint32(0x7FFFFFFF)) << 1  # (n, L)
    entropy = row_entropy(rows)
    out = np.empty((len(truths), len(METRICS), n))
    for truth, scores in zip(truths, out, strict=True):
        marked = truth.marked
        on_mask = rows.ravel()[truth.positions].astype(np.float64)  # attention on the mask
        scores[0] = np.bincount(truth.rows, weights=on_mask, minlength=n)

        # The label is 1 *outside* the mask, so among tied scores the outside positions rank
        # first: ties count against the attention. ~ reverses the order of uint32, so sorting
        # ~keys ascending ranks best first, with the low bit now 1 *inside* the mask.
        keys = shifted_bits | truth.outside  # (n, L)
        ranked = ~keys
        ranked.sort(axis=1)  # (n, L) best first
        positive = np.flatnonzero((ranked & 1) == 1)  # mask positions by row, best first
        positive_row, rank = np.divmod(positive, seq_len)
        hits = np.bincount(positive_row, weights=rank < marked[positive_row], minlength=n)
        # k predicted and k true positions: precision, recall and F1 coincide (ERASER's
        # token F1).
        scores[1] = scores[2] = scores[3] = hits / marked
        scores[4] = _average_precision(ranked, positive, positive_row, rank, marked)

        kth = ~ranked[samples, marked - 1]  # (n,) the key at rank k
        top = keys >= kth[:, None]  # (n, L) the top-k prediction...
        after = ~ranked[samples, np.minimum(marked, seq_len - 1)]
        if ((after < kth) | (marked == seq_len)).all():
            scores[5] = _span_iou_f1(np.flatnonzero(top), truth)
        else:  # ...unless identical keys straddle rank k: then take the leftmost of them
            tied = keys == kth[:, None]
            left = marked - (top & ~tied).sum(axis=1)
            top &= ~tied | (np.cumsum(tied, axis=1, dtype=np.int32) <= left[:, None])
            scores[5] = _span_iou_f1(np.flatnonzero(top), truth)

        # JSD(P, U) with U uniform on the mask and M = (P + U) / 2: off the mask M = P / 2,
        # which adds ln 2 * (1 - mass) / 2, so only mask positions need logarithms.
        uniform = 1.0 / marked[truth.rows]
        midpoint = 0.5 * (on_mask + uniform)
        terms = uniform * np.log(uniform / midpoint)
        terms += on_mask * np.log(np.where(on_mask > 0, on_mask, 1.0) / midpoint)
        jsd = 0.5 * (math.log(2.0) * (1.0 - scores[0])
                     + np.bincount(truth.rows, weights=terms, minlength=n))
        scores[6] = np.clip(jsd, 0.0, math.log(2.0))  # rounding can step a hair outside
        scores[7] = entropy / math.log(seq_len) if seq_len > 1 else 0.0
    return out


def _average_precision(
    ranked: np.ndarray, positive: np.ndarray, positive_row: np.ndarray, rank: np.ndarray,
    marked: np.ndarray,
) -> np.ndarray:
    """AP of each row from its ranking; tied scores are one threshold, so each positive is
    credited with the precision at the end of its tie group."""
    n, seq_len = ranked.shape
    score = ranked.ravel()[positive] >> 1  # equal exactly when the scores are equal
    row_start = np.cumsum(marked) - marked  # where each row's positives begin in `positive`
    found = np.arange(positive.size) - row_start[positive_row] + 1  # positives so far
    # Mask positions rank last within a tie, so a tie group ends at its last positive.
    group_last = np.ones(positive.size, dtype=bool)
    group_last[:-1] = (positive_row[1:] != positive_row[:-1]) | (score[1:] != score[:-1])
    last_index = np.where(group_last, np.arange(positive.size), positive.size)
    group_end = np.minimum.accumulate(last_index[::-1])[::-1]
    precision = found[group_end] / (rank[group_end] + 1.0)
    average = np.bincount(positive_row, weights=precision, minlength=n) / marked
    return np.where(marked < seq_len, average, np.nan)


def _runs(positions: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of consecutive flat positions within a row: (run of each, run starts, lengths)."""
    new_run = np.ones(positions.size, dtype=bool)
    new_run[1:] = (positions[1:] != positions[:-1] + 1) | (positions[1:] % seq_len == 0)
    run = np.cumsum(new_run) - 1
    return run, positions[new_run], np.bincount(run, minlength=int(new_run.sum()))


def _span_iou_f1(predicted: np.ndarray, truth: Truth) -> np.ndarray:
    """Per row, ERASER's IoU F1 between the runs of the `predicted` flat positions and the
    runs of the mask."""
    n, seq_len = truth.mask.shape
    pred_run, pred_starts, pred_lengths = _runs(predicted, seq_len)
    in_mask = truth.mask.ravel()[predicted]
    both = predicted[in_mask]
    pair_pred = pred_run[in_mask]
    pair_true = np.searchsorted(truth.run_starts, both, side="right") - 1
    # Two runs (intervals) overlap in one interval, so each (predicted, true) pair of runs
    # is one stretch of consecutive entries of `both`.
    new_pair = np.ones(both.size, dtype=bool)
    new_pair[1:] = (pair_pred[1:] != pair_pred[:-1]) | (pair_true[1:] != pair_true[:-1])
    first = np.flatnonzero(new_pair)
    overlap = np.diff(np.append(first, both.size))
    pair_pred, pair_true = pair_pred[first], pair_true[first]
    union = pred_lengths[pair_pred] + truth.run_lengths[pair_true] - overlap
    match = overlap >= SPAN_IOU * union
    pred_matched = np.zeros(pred_starts.size)
    pred_matched[pair_pred[match]] = 1.0
    true_matched = np.zeros(truth.run_starts.size)
    true_matched[pair_true[match]] = 1.0
    pred_row, true_row = pred_starts // seq_len, truth.run_starts // seq_len
    precision = (np.bincount(pred_row, weights=pred_matched, minlength=n)
                 / np.bincount(pred_row, minlength=n))
    recall = (np.bincount(true_row, weights=true_matched, minlength=n)
              / np.bincount(true_row, minlength=n))
    total = precision + recall
    return np.where(total > 0, 2.0 * precision * recall / np.where(total > 0, total, 1.0), 0.0)


def mean_scores(scores: np.ndarray) -> np.ndarray:
    """Average (metrics, ..., n) per-sample scores over samples, ignoring skipped (NaN) ones."""
    valid = ~np.isnan(scores)
    count = valid.sum(axis=-1)
    total = np.where(valid, scores, 0.0).sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


# ---- scoring runs and arrays ---------------------------------------------------------------


@dataclass(frozen=True)
class ScoreReport:
    """Mean metrics of every scored epoch, mask and head view."""

    source: str  # the run directory or the attention file
    kind: str  # "temporal" (n, L) or "self" (n, H, L, L): multi-head, per head
    query: str | int | None  # self-attention: the query row scored; None for temporal
    heads: list  # [None] for temporal; ["mean", 0, 1, ...] for self ("mean" is gated)
    masks: list[str]  # the first one is what a threshold without @MASK applies to
    epochs: list  # scored epochs, ascending ([None] for arrays outside a run)
    samples: int
    values: np.ndarray  # (epochs, masks, heads, metrics) float64; NaN where undefined
    auprc_skipped: dict[str, int]  # per mask: samples whose mask is all one class
    history: list[dict]  # the run's per-epoch loss records ([] for arrays)
    layer: str | None = None  # the run's recorded layer scored (None for arrays)
    mask_choices: tuple[str, ...] = ()  # every mask --mask could name (a run's)
    # multi-head self-attention: per scored epoch, what each head does (heads.label_rows)
    head_labels: list[list[dict]] | None = None
    axis: str = "epoch"  # what `epochs` count: "step" for a run recorded by steps
    epoch_ends: dict[int, int] | None = None  # by steps: epoch -> the step it ended at

    def value(self, metric: str, mask: str, head=None, epoch_index: int = -1) -> float:
        head = self.heads[0] if head is None else head
        return float(self.values[epoch_index, self.masks.index(mask), self.heads.index(head),
                                 METRIC_NAMES.index(metric)])

    def curve(self, metric: str, mask: str, head=None) -> np.ndarray:
        """The metric over the scored epochs, for the gated head view unless `head`."""
        head = self.heads[0] if head is None else head
        return self.values[:, self.masks.index(mask), self.heads.index(head),
                           METRIC_NAMES.index(metric)]

    def select(self, epoch: str | int) -> ScoreReport:
        """The report at --epoch `epoch`: "all" keeps every scored epoch, else one of them."""
        if epoch == "all" or len(self.epochs) == 1:
            return self
        point = int(epoch) if epoch != "last" else None
        if point is not None and self.epoch_ends is not None:
            point = self.epoch_ends[point]
        index = len(self.epochs) - 1 if point is None else self.epochs.index(point)
        labels = None if self.head_labels is None else self.head_labels[index:index + 1]
        return replace(self, epochs=[self.epochs[index]], values=self.values[index:index + 1],
                       head_labels=labels)


def score_stream(
    stream: Iterable[tuple[int | None, np.ndarray]], masks: dict[str, np.ndarray], query,
    source: str, normalize: bool = False, padding: np.ndarray | None = None,
) -> Scored:
    """Score (epoch, attention) pairs one at a time.

    `masks` are (n, Lk) key masks (the same keys for every query) or (n, Lq, Lk) query
    masks, already checked. With `query` "all", every query row of self-attention is scored
    and averaged per sample over its valid queries (not padding, at least one key marked),
    then over samples; otherwise the one row `query` picks. `padding` (n, L) bool marks the
    real positions. Each epoch is one vectorised pass per mask over all its head views, so
    memory stays one epoch deep.
    """
    query = parse_query(query)
    plans = None
    epochs, values, heads = [], [], [None]
    for epoch, raw in stream:
        where = source if epoch is None else f"{source} epoch {epoch}"
        attention = check_attention(raw, where, normalize)
        rows, heads = _head_rows(attention, query)  # (V, n, Q, Lk)
        if plans is None:  # the masks' rows and truths, once for every epoch
            plans = [_MaskRows.of(mask, query, attention, padding, len(heads))
                     for mask in masks.values()]
        per_view = np.stack([plan.scores(rows) for plan in plans])  # (M, metrics, V, n)
        values.append(np.moveaxis(mean_scores(per_view), 1, -1))  # (M, V, metrics)
        epochs.append(epoch)
        del raw, attention, rows  # release this epoch before the next one is read
    skipped = {name: plan.skipped() for name, plan in zip(masks, plans or [], strict=True)}
    return Scored(epochs, heads, np.array(values), skipped)


@dataclass(frozen=True)
class Scored:
    epochs: list  # as the stream gave them
    heads: list  # the head views: [None] temporal, ["mean", 0, 1, ...] self-attention
    values: np.ndarray  # (epochs, masks, views, metrics) float64, NaN where undefined
    skipped: dict[str, int]  # per mask: samples auprc skipped (their rows mark every key)


@dataclass(frozen=True)
class _MaskRows:
    """The query rows one mask scores, over every head view: which (sample, query) rows
    count, and the truth of those rows tiled over the views."""

    valid: np.ndarray  # (n, Q) bool
    truth: Truth  # of the valid rows, tiled over the V views
    group: np.ndarray  # (V * rows,) view * n + sample of each scored row
    views: int

    @classmethod
    def of(cls, mask: np.ndarray, query, attention: np.ndarray, padding: np.ndarray | None,
           views: int) -> _MaskRows:
        n, keys = attention.shape[0], attention.shape[-1]
        queries = attention.shape[-2] if attention.ndim == 4 else 1
        chosen = _query_index(query, queries)  # None: every query row
        if mask.ndim == 3 and chosen is None and query != "all" and attention.ndim == 4:
            raise AttnvizError("--query mean averages the queries, but a query mask marks "
                               "other keys for each query: use --query all, last or an index")
        real = (np.ones((n, queries), dtype=bool) if padding is None or attention.ndim != 4
                or np.shape(padding) != (n, queries) else np.asarray(padding, dtype=bool))
        if chosen is not None:  # one query row
            real = real[:, chosen:chosen + 1]
            mask = mask[:, chosen:chosen + 1] if mask.ndim == 3 else mask[:, None]
        elif query == "mean" or attention.ndim == 2:  # the mean of the queries: one row
            real = np.ones((n, 1), dtype=bool)
            mask = mask[:, None]
        else:
            mask = np.broadcast_to(mask[:, None], (n, queries, keys)) if mask.ndim == 2 else mask
        valid = real & mask.any(axis=-1)
        picked = mask[valid]  # (rows, Lk)
        samples = np.nonzero(valid)[0]
        group = (np.arange(views)[:, None] * n + samples[None, :]).ravel()
        return cls(valid, Truth.of(np.tile(picked, (views, 1))), group, views)

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """(metrics, V, n): each metric averaged over each sample's scored rows (NaN where a
        sample has none, or where every one is undefined)."""
        picked = rows[:, self.valid]  # (V, rows, Lk)
        scores = _score_masks(picked.reshape(-1, picked.shape[-1]), [self.truth])[0]
        n = self.valid.shape[0]
        defined = ~np.isnan(scores)
        total = np.stack([np.bincount(self.group, np.where(ok, row, 0.0), self.views * n)
                          for row, ok in zip(scores, defined, strict=True)])
        count = np.stack([np.bincount(self.group, ok, self.views * n) for ok in defined])
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        return mean.reshape(len(METRICS), self.views, n)

    def skipped(self) -> int:
        """Samples whose every scored row marks every key: auprc is undefined for them."""
        n = self.valid.shape[0]
        samples = np.nonzero(self.valid)[0]
        full = self.truth.marked[:samples.size] == self.truth.mask.shape[1]
        scored = np.bincount(samples, minlength=n)
        return int(((scored > 0) & (np.bincount(samples, full, n) == scored)).sum())


def _query_index(query, queries: int) -> int | None:
    """The one query row `query` scores, or None for "all" and "mean"."""
    if query == "last":
        return queries - 1
    if query in ("all", "mean"):
        return None
    if not 0 <= int(query) < queries:
        raise AttnvizError(f"--query {query} is out of range 0..{queries - 1}")
    return int(query)


def _head_rows(attention: np.ndarray, query) -> tuple[np.ndarray, list]:
    """(V, n, Q, L) query rows for each head view, the head average first, then each head:
    every query with `query` "all" (Q = Lq), else the one row attention_rows gives (Q = 1)."""
    if attention.ndim == 2:
        return attention[None, :, None], [None]
    heads = attention.shape[1]
    if query == "all":
        per_head = np.moveaxis(attention, 1, 0)  # (H, n, Lq, Lk)
    else:
        per_head = np.stack([attention_rows(attention, head, query)
                             for head in range(heads)])[:, :, None]
    if heads == 1:  # one recorded head: the run recorded the mean of its heads
        return per_head, ["mean"]
    # The head average of rows equals the rows of the head-averaged attention.
    return np.concatenate([per_head.mean(axis=0, keepdims=True), per_head]), ["mean",
                                                                            *range(heads)]


def score_run(run, masks: Sequence[str] | None = None, epoch: str | int = "last",
              query: str | int | None = None, layer: str | None = None) -> ScoreReport:
    """Score a run's recorded attention of `layer` (default: its first): `epoch` is "last",
    "all" or an epoch number. Masks are the run's or built-in (structural) names, default
    every run mask that fits the layer's keys, or the built-in ones when the run has none
    (default_masks). `query` None: "all" when a query mask is scored, else "last"."""
    info = run.layer(layer)
    names = list(masks) if masks else default_masks(run, info)
    if not names:
        raise AttnvizError(f"{run.root} has no mask over the {info['shape'][-1]} positions of "
                           f"layer {info['name']} to score against: record the run with masks "
                           "(masks={...} in the callback, mask_NAME in --data), or name a "
                           f"built-in one: --mask {' --mask '.join(structural.KEY_MASKS[:2])}")
    if len(set(names)) != len(names):
        raise AttnvizError(f"--mask given twice: {', '.join(names)}")
    mask_arrays = run_masks(run, info, names)
    query = default_query(query, mask_arrays)
    if epoch not in ("all", "last") and not str(epoch).isdigit():
        raise AttnvizError(f"--epoch {epoch!r}: use last, all or a recorded epoch number")
    if epoch == "all":
        epochs = run.points
        if not epochs:
            raise AttnvizError(f"{run.root}: no attention recorded yet: train it first")
    else:
        epochs = [run.resolve_epoch_point(epoch)]
    kind = shown_kind(info["kind"])
    tokens = structural.probe_tokens(run.probe.x)
    padding = structural.probe_padding(run.probe.x)
    labels: list[list[dict]] | None = [] if len(info["shape"]) == 4 else None

    def stream():
        for epoch, attention in run.iter_points(epochs, info["name"]):
            if labels is not None:
                labels.append(label_rows(attention, tokens, padding))
            yield epoch, attention

    scored = score_stream(stream(), mask_arrays, query, str(run.root), padding=padding)
    return ScoreReport(
        source=str(run.root), kind=kind, query=parse_query(query) if kind == SELF else None,
        heads=scored.heads, masks=names, epochs=scored.epochs, samples=int(info["shape"][0]),
        values=scored.values, auprc_skipped=scored.skipped, history=loss_history(run),
        layer=info["name"], mask_choices=(*run.mask_names, *structural.NAMES),
        head_labels=labels, axis=run.axis,
        epoch_ends=None if run.axis == "epoch" else {
            e: run.epoch_step(e) for e in run.attention_epochs if run.epoch_step(e) is not None},
    )


def loss_history(run) -> list[dict]:
    """The losses `score --plot` draws, on the run's axis: the history's per-epoch records,
    or by steps {"step", "loss", "val_loss"} at every recorded step."""
    if run.axis == "epoch":
        return list(run.history)
    records = []
    for point, loss in run.point_losses().items():
        epoch = run.epoch_of(point)
        val = run.history[epoch - 1].get("val_loss") if epoch else None
        records.append({"step": point, "loss": loss, "val_loss": val})
    return records


def default_masks(run, info: dict) -> list[str]:
    """The masks `score` takes when none is named: every run mask that fits the layer's keys,
    main first; for a run recorded without any, the built-in masks that apply to the layer."""
    fitting = list(run.masks_for(info["name"]))
    if fitting or run.mask_names:
        return fitting
    names = ["prev", "self", "next"] if info["kind"] != TEMPORAL else []
    names += ["first", "last"]
    tokens = structural.probe_tokens(run.probe.x)
    if tokens is not None and tokens.shape[-1] == info["shape"][-1] and "prev" in names:
        names.append("induction")
    padding = structural.probe_padding(run.probe.x)
    if padding is not None and not padding.all():
        names.append("pad")
    return names


def run_masks(run, info: dict, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Each named mask for a run's layer, checked: the run's own first, then the built-in
    masks computed from positions and the probe's token ids and padding."""
    shape = info["shape"]
    n, keys = shape[0], shape[-1]
    queries = shape[-2] if len(shape) > 2 else 1
    arrays = {}
    for name in names:
        where = f"mask {name} (layer {info['name']})"
        if name in run.mask_names:
            arrays[name] = check_mask(run.mask(name), (n, keys), where)
            continue
        if not structural.is_structural(name):
            choices = [*run.mask_names, *structural.NAMES]
            own = (f"the run's masks are {', '.join(run.mask_names)}; " if run.mask_names
                   else f"{run.root} was recorded without masks; ")
            raise AttnvizError(f"unknown mask {name!r}{did_you_mean(name, choices)}: {own}"
                               f"built in: {', '.join(structural.NAMES)}")
        if info["kind"] == TEMPORAL and structural.is_query_mask(name):
            raise AttnvizError(f"mask {name} marks keys per query, and layer {info['name']} "
                               "is temporal attention (one row per sample): use first, last, "
                               "pad or token:ID")
        x = run.probe.x
        arrays[name] = check_mask(structural.structural_mask(
            name, n, queries, keys, structural.probe_tokens(x), structural.probe_padding(x)),
            (n, keys), where, queries=queries, allow_empty=True)
    return arrays


def default_query(query: str | int | None, masks: dict[str, np.ndarray]) -> str | int:
    """--query when not given: every query when a mask marks keys per query, else the last."""
    if query is not None:
        return query
    return "all" if any(mask.ndim == 3 for mask in masks.values()) else "last"


def score_files(attention_path: Path, mask_paths: Sequence[str],
                query: str | int | None = None, normalize: bool = False) -> ScoreReport:
    """Score a user's (n, L) or (n, H, L, L) attention .npy against mask .npy files ((n, L)
    or (n, L, L)) or built-in masks by name (self, prev, next, first, last)."""
    if not mask_paths:
        raise AttnvizError("--attention needs --mask M.npy: an (n, L) 0/1 array of the "
                           "ground-truth positions, or a built-in mask such as prev or first")
    attention = load_array(Path(attention_path), "--attention")
    _check_shape(attention, str(attention_path))
    n, keys = attention.shape[0], attention.shape[-1]
    queries = attention.shape[-2] if attention.ndim == 4 else 1
    masks = {}
    for mask_path in mask_paths:
        built_in = structural.is_structural(mask_path) and not Path(mask_path).exists()
        name = mask_path if built_in else Path(mask_path).stem
        if name in masks:
            raise AttnvizError(f"two --mask files are named {name}: rename one")
        if built_in:
            if attention.ndim == 2 and structural.is_query_mask(name):
                raise AttnvizError(f"mask {name} marks keys per query, and {attention_path} "
                                   "is temporal attention (n, L): use first or last")
            masks[name] = check_mask(structural.structural_mask(name, n, queries, keys),
                                     (n, keys), f"mask {name}", queries=queries,
                                     allow_empty=True)
        else:
            masks[name] = check_mask(load_array(Path(mask_path), "--mask"), (n, keys),
                                     f"--mask {mask_path}", queries=queries)
    source = str(attention_path)
    query = default_query(query, masks)
    scored = score_stream([(None, attention)], masks, query, source, normalize)
    kind = shown_kind(kind_of(attention.shape))
    labels = ([label_rows(check_attention(attention, source, normalize))]
              if attention.ndim == 4 else None)
    return ScoreReport(
        source=source, kind=kind, query=parse_query(query) if kind == SELF else None,
        heads=scored.heads, masks=list(masks), epochs=scored.epochs,
        samples=int(attention.shape[0]), values=scored.values, auprc_skipped=scored.skipped,
        history=[], head_labels=labels,
    )


def score_target(run_dir: Path | None, attention: Path | None, masks: Sequence[str],
                 epoch: str = "last", query: str | int | None = None, normalize: bool = False,
                 over_epochs: bool = False, layer: str | None = None) -> list[ScoreReport]:
    """What `attnviz score` scores: a run directory (one report per layer that `layer`
    selects: a name or a glob, default the run's first), or --attention with --mask files.

    `over_epochs` scores every recorded epoch whatever `epoch` is (for plots); narrow the
    report with `ScoreReport.select(epoch)`.
    """
    if attention is not None:
        if run_dir is not None:
            raise AttnvizError(f"give a RUN or --attention, not both: drop {run_dir} to score "
                               f"{attention}, or drop --attention")
        if epoch != "last":
            raise AttnvizError("--epoch picks a run's recorded epoch: --attention files have "
                               "none, drop --epoch")
        if layer is not None:
            raise AttnvizError("--layer picks a run's recorded layer: --attention files have "
                               "one, drop --layer")
        return [score_files(attention, masks, query, normalize)]
    if run_dir is None:
        raise AttnvizError("nothing to score: give a RUN directory, or --attention A.npy "
                           "--mask M.npy")
    if normalize:
        raise AttnvizError("--normalize applies to --attention files: a run records softmax "
                           "weights already")
    from attnviz.store.run import Run

    run = Run.open(run_dir)
    if over_epochs and epoch != "all":
        run.resolve_epoch_point(epoch)  # refuse an unrecorded --epoch before scoring them all
    names = run.pick_layers([layer]) if layer is not None else [run.layer()["name"]]
    return [score_run(run, masks, "all" if over_epochs else epoch, query, name)
            for name in names]


# ---- thresholds ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    metric: str  # a metric, or with head=True a head label
    mask: str | None  # None: the first scored mask
    bound: str  # "min" (metric >= value) or "max" (metric <= value)
    value: float
    head: bool = False  # --head-label: some head has this label, its number within value


@dataclass(frozen=True)
class Check:
    """One threshold judged on the last scored epoch, for the gated head view."""

    threshold: Threshold
    mask: str | None  # None: a --head-label gate
    head: str | int | None  # "mean" for self-attention, None for temporal; a head's index
    # for --head-label (the head nearest the gate; None when no head has the label)
    epoch: int | None
    value: float
    passed: bool
    first_epoch: int | None  # from this epoch on the threshold holds to the end; None: never

    @property
    def name(self) -> str:
        sign = ">=" if self.threshold.bound == "min" else "<="
        metric = self.threshold.metric
        if self.threshold.head:
            return (f"head label {metric}: {LABEL_NUMBER[metric]} {sign} "
                    f"{self.threshold.value:g}")
        on = f"@{self.mask}" if METRICS[metric].per_mask else ""  # entropy: any mask
        return f"{metric}{on} {sign} {self.threshold.value:g}"


def parse_threshold(spec: str, bound: str) -> Threshold:
    """Parse `--min METRIC[@MASK]=X` or `--max ...`, checking the metric's direction and range."""
    flag = f"--{bound}"
    target, sep, number = spec.partition("=")
    metric, _, mask = target.strip().partition("@")
    if not sep or not metric:
        raise AttnvizError(f"{flag} {spec!r}: write METRIC=X or METRIC@MASK=X, e.g. "
                           f"{flag} {'mass' if bound == 'min' else 'jsd'}=0.5")
    if metric not in METRICS:
        raise AttnvizError(f"{flag} {spec!r}: unknown metric {metric!r}"
                           f"{did_you_mean(metric, METRIC_NAMES)}: choose one of "
                           f"{', '.join(METRIC_NAMES)}")
    info = METRICS[metric]
    wanted = "min" if info.better == "higher" else "max"
    if bound != wanted:
        raise AttnvizError(f"{flag} {spec!r}: {metric} is better when {info.better}, so its "
                           f"threshold is a {wanted}imum: write --{wanted} {spec}")
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if not info.low <= value <= info.high:
        raise AttnvizError(f"{flag} {spec!r}: {metric} lies in [{info.low:g}, {info.high:.4g}]: "
                           "give a number in that range")
    return Threshold(metric, mask.strip() or None, bound, value)


def parse_thresholds(minimums: Sequence[str], maximums: Sequence[str],
                     head_labels: Sequence[str] = ()) -> list[Threshold]:
    return ([parse_threshold(spec, "min") for spec in minimums]
            + [parse_threshold(spec, "max") for spec in maximums]
            + [parse_head_gate(spec) for spec in head_labels])


def parse_head_gate(spec: str) -> Threshold:
    """`--head-label LABEL[=X]`: some head is labelled LABEL, its number >= X (<= X for
    local, a distance); X defaults to the number the label is given at."""
    label, sep, number = spec.partition("=")
    label = label.strip()
    if label not in ALL_LABELS:
        raise AttnvizError(f"--head-label {spec!r}: unknown label {label!r}"
                           f"{did_you_mean(label, ALL_LABELS)}: choose one of "
                           f"{', '.join(ALL_LABELS)}")
    try:
        value = float(number) if sep else default_gate(label)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise AttnvizError(f"--head-label {spec!r}: write LABEL=X with X a number >= 0, "
                           "e.g. --head-label induction=0.8")
    return Threshold(label, None, label_bound(label), value, head=True)


def rank_only_gates(thresholds: Sequence[Threshold]) -> list[str]:
    """The rank-only metrics gated when no threshold reads how much attention there is
    (mass, jsd, entropy): such gates pass attention that is uniform but for a hair above the
    mask, a model that attends to nothing. Empty when the gates are sound (or absent)."""
    metrics = [t for t in thresholds if not t.head]
    if any(not METRICS[t.metric].rank_only for t in metrics):
        return []
    return list(dict.fromkeys(t.metric for t in metrics))


def first_sustained_epoch(epochs: Sequence, values: np.ndarray, threshold: float,
                          bound: str = "min") -> int | None:
    """The first epoch from which `values` meet `threshold` through the last epoch, or None."""
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        meets = values >= threshold if bound == "min" else values <= threshold
    return first_held(epochs, meets)


def check_thresholds(report: ScoreReport, thresholds: Sequence[Threshold]) -> list[Check]:
    """Judge each threshold on the report's last epoch and find when it was first held."""
    checks = []
    head = report.heads[0]
    for threshold in thresholds:
        if threshold.head:
            checks.append(_check_head_label(report, threshold))
            continue
        mask = threshold.mask or report.masks[0]
        if mask not in report.masks:
            if mask in report.mask_choices:
                raise AttnvizError(f"threshold on mask {mask!r}, which is not scored: scored "
                                   f"masks are {', '.join(report.masks)}; add --mask {mask}")
            choices = report.mask_choices or report.masks
            raise AttnvizError(f"threshold on unknown mask {mask!r}{did_you_mean(mask, choices)}: "
                               f"the masks are {', '.join(choices)}")
        curve = report.curve(threshold.metric, mask)
        value = float(curve[-1])
        if math.isnan(value):
            raise AttnvizError(f"{threshold.metric}@{mask} is undefined: every sample's mask "
                               "is all one class: drop that threshold")
        first = (first_sustained_epoch(report.epochs, curve, threshold.value, threshold.bound)
                 if report.epochs[0] is not None else None)
        passed = value >= threshold.value if threshold.bound == "min" else value <= threshold.value
        checks.append(Check(threshold, mask, head, report.epochs[-1], value, passed, first))
    return checks


def _check_head_label(report: ScoreReport, threshold: Threshold) -> Check:
    """Whether some head carries the label with its number within the gate, at the last
    scored epoch; the head that comes nearest is named either way."""
    if not report.head_labels:
        raise AttnvizError(f"--head-label {threshold.metric}: {report.source} "
                           f"{report.layer or ''} is not multi-head self-attention, whose heads "
                           "have labels: drop --head-label".replace("  ", " "))
    sign = 1.0 if threshold.bound == "min" else -1.0

    def best(rows: list[dict]) -> tuple[dict | None, bool]:
        labelled = [row for row in rows if row["label"] == threshold.metric]
        if not labelled:
            return None, False
        row = max(labelled, key=lambda row: sign * row["value"])
        return row, sign * row["value"] >= sign * threshold.value

    held = [best(rows)[1] for rows in report.head_labels]
    row, passed = best(report.head_labels[-1])
    value = math.nan if row is None else row["value"]
    first = first_held(report.epochs, held) if report.epochs[0] is not None else None
    return Check(threshold, None, None if row is None else row["head"], report.epochs[-1],
                 value, passed, first)
