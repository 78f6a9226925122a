"""Matplotlib figures of scores over epochs and of attention maps (imported only by the
commands that plot)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from attnviz.analysis.score import METRICS, SHOWN_ONCE, SHOWN_PER_MASK, Check, ScoreReport
from attnviz.errors import AttnvizError
from attnviz.store.files import atomic_path
from attnviz.store.layers import SELF

COLUMNS = 3  # panels per row of the score figure


def plot_scores(path: Path, report: ScoreReport, checks: list[Check]) -> None:
    """Write `score_figure` as a PNG."""
    figure = score_figure(report, checks)
    with atomic_path(path, suffix=".png", make_folder=True) as tmp:
        figure.savefig(tmp, format="png", dpi=90)


def score_figure(report: ScoreReport, checks: list[Check]):
    """A panel per metric over epochs (steps, for a run recorded by steps), each number
    once as `score`'s tables show it (one line per mask; entropy, the same for every mask,
    once; topk-f1 standing for topk-precision and topk-recall), thresholds dashed, and the
    loss."""
    from matplotlib.figure import Figure  # no pyplot: no global state, the Agg canvas
    from matplotlib.ticker import MaxNLocator

    if report.epochs[0] is None:
        raise AttnvizError("--plot draws metrics over epochs: it needs a RUN, not --attention")
    view = " (head mean)" if report.kind == SELF else ""
    metrics = [*SHOWN_PER_MASK, *SHOWN_ONCE]
    rows = math.ceil((len(metrics) + 1) / COLUMNS)
    figure = Figure(figsize=(13, 10 * rows / 3), layout="constrained")
    axes = figure.subplots(rows, COLUMNS).ravel()
    marker = "." if len(report.epochs) < 30 else None
    for ax, metric in zip(axes, metrics, strict=False):
        info = METRICS[metric]
        for mask in report.masks if info.per_mask else report.masks[:1]:
            ax.plot(report.epochs, report.curve(metric, mask), marker=marker, label=mask,
                    **({} if info.per_mask else {"color": "black"}))  # not a mask's colour
        for check in checks:
            judged = check.threshold.metric
            if not check.threshold.head and (METRICS[judged].same_as or judged) == metric:
                ax.axhline(check.threshold.value, linestyle="--", linewidth=1, color="grey")
        margin = 0.03 * (info.high - info.low)
        ax.set_ylim(info.low - margin, info.high + margin)
        ax.set_title(_panel_title(metric), fontsize=10)
        ax.set_xlabel(report.axis)
    axes[0].legend(title="mask", fontsize=8)
    _plot_loss(axes[len(metrics)], report.history, report.axis)
    for ax in axes[:len(metrics) + 1]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    for ax in axes[len(metrics) + 1:]:
        ax.set_visible(False)
    figure.suptitle(f"attnviz score · {report.source}{view}")
    return figure


def _panel_title(metric: str) -> str:
    """'topk-f1 (higher is better; = topk-precision = topk-recall)'."""
    info = METRICS[metric]
    same = [name for name, other in METRICS.items() if other.same_as == metric]
    notes = [f"{info.better} is better"]
    if same:
        notes.append("= " + " = ".join(same))
    if not info.per_mask:
        notes.append("any mask")
    return f"{metric} ({'; '.join(notes)})"


def _plot_loss(ax, history: list[dict], axis: str = "epoch") -> None:
    for key in ("loss", "val_loss"):
        points = [(h[axis], h[key]) for h in history if h.get(key) is not None]
        if points:
            ax.plot(*zip(*points, strict=True), label=key)
    if ax.lines:
        ax.set_yscale("log" if all(y > 0 for line in ax.lines for y in line.get_ydata())
                      else "linear")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no loss recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("loss", fontsize=10)
    ax.set_xlabel(axis)


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
