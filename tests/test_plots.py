"""The score figure shows each number once, as `score`'s tables do."""

import numpy as np

from attnviz.analysis.score import METRIC_NAMES, Check, ScoreReport, Threshold
from attnviz.views.plots import score_figure


def _report(masks=("delimiter", "prefix"), epochs=(1, 2, 3)) -> ScoreReport:
    values = np.random.default_rng(0).uniform(0, 0.5, (len(epochs), len(masks), 1,
                                                       len(METRIC_NAMES)))
    history = [{"epoch": epoch, "loss": 1.0 / epoch} for epoch in epochs]
    return ScoreReport(source="run", kind="temporal", query=None, heads=[None],
                       masks=list(masks), epochs=list(epochs), samples=4, values=values,
                       auprc_skipped={mask: 0 for mask in masks}, history=history)


def _check(metric: str, bound: str, value: float) -> Check:
    return Check(Threshold(metric, None, bound, value), "delimiter", None, 3, 0.5, True, 1)


def test_each_metric_once_entropy_once_and_topk_f1_for_its_twins():
    figure = score_figure(_report(), [_check("topk-precision", "min", 0.7),
                                      _check("entropy", "max", 0.4)])
    shown = [ax for ax in figure.axes if ax.get_visible()]
    titles = [ax.get_title().split(" (")[0] for ax in shown]
    assert titles == ["mass", "topk-f1", "auprc", "iou-f1", "jsd", "entropy", "loss"]
    panels = dict(zip(titles, shown, strict=True))
    solid = {title: [line for line in ax.lines if line.get_linestyle() == "-"]
             for title, ax in panels.items()}
    assert [len(solid[title]) for title in titles[:5]] == [2] * 5  # a line per mask
    assert len(solid["entropy"]) == 1  # the same for every mask: once
    assert "topk-precision" in panels["topk-f1"].get_title()
    assert "any mask" in panels["entropy"].get_title()
    # a threshold on topk-precision is drawn where topk-precision is shown: on topk-f1
    dashed = {title: [line.get_ydata()[0] for line in ax.lines if line.get_linestyle() == "--"]
              for title, ax in panels.items()}
    assert dashed["topk-f1"] == [0.7] and dashed["entropy"] == [0.4]
    assert not any(dashed[title] for title in ("mass", "auprc", "iou-f1", "jsd"))
