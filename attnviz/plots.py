"""Matplotlib figures of scores over epochs (imported only by the commands that plot)."""

from __future__ import annotations

from pathlib import Path

from attnviz.errors import AttnvizError
from attnviz.fsutil import atomic_path
from attnviz.score import METRIC_NAMES, METRICS, Check, ScoreReport


def plot_scores(path: Path, report: ScoreReport, checks: list[Check]) -> None:
    """Write a PNG: one panel per metric (one line per mask, thresholds dashed) and the loss."""
    from matplotlib.figure import Figure  # no pyplot: no global state, the Agg canvas

    if report.epochs[0] is None:
        raise AttnvizError("--plot draws metrics over epochs: it needs a RUN, not --attention")
    view = " (head mean)" if report.kind == "self" else ""
    figure = Figure(figsize=(13, 10), layout="constrained")
    axes = figure.subplots(3, 3).ravel()
    for ax, metric in zip(axes, METRIC_NAMES, strict=False):
        info = METRICS[metric]
        for mask in report.masks:
            ax.plot(report.epochs, report.curve(metric, mask), marker="." if
                    len(report.epochs) < 30 else None, label=mask)
        for check in checks:
            if check.threshold.metric == metric:
                ax.axhline(check.threshold.value, linestyle="--", linewidth=1, color="grey")
        margin = 0.03 * (info.high - info.low)
        ax.set_ylim(info.low - margin, info.high + margin)
        ax.set_title(f"{metric} ({info.better} is better)", fontsize=10)
        ax.set_xlabel("epoch")
    axes[0].legend(title="mask", fontsize=8)
    _plot_loss(axes[len(METRIC_NAMES)], report.history)
    for ax in axes[len(METRIC_NAMES) + 1:]:
        ax.set_visible(False)
    figure.suptitle(f"attnviz score · {report.source}{view}")
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=90)


def _plot_loss(ax, history: list[dict]) -> None:
    for key in ("loss", "val_loss"):
        points = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
        if points:
            ax.plot(*zip(*points, strict=True), label=key)
    if ax.lines:
        ax.set_yscale("log" if all(y > 0 for line in ax.lines for y in line.get_ydata())
                      else "linear")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no loss recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("loss", fontsize=10)
    ax.set_xlabel("epoch")
