"""How `attnviz score` shows a report: rich tables for people, one JSON object, JUnit XML.

The JSON object and the JUnit layout are documented in docs/metrics.md.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np

from attnviz.analysis.score import (
    METRIC_NAMES,
    METRICS,
    SHOWN_ONCE,
    SHOWN_PER_MASK,
    Check,
    ScoreReport,
)
from attnviz.store.files import atomic_write_bytes, check_output_file
from attnviz.store.layers import SELF

JSON_SCHEMA_VERSION = 1
SPARKS = "▁▂▃▄▅▆▇█"
CURVE_WIDTH = 40  # characters of an epoch curve; longer histories are sampled evenly


def head_label(head) -> str:
    return "-" if head is None else "mean" if head == "mean" else f"head {head}"


def _cell(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def _arrow(metric: str) -> str:
    return "↑" if METRICS[metric].better == "higher" else "↓"


def _epoch_label(epoch) -> str:
    return "-" if epoch is None else str(epoch)


# ---- rich tables ---------------------------------------------------------------------------


def tables(report: ScoreReport, checks: list[Check], width: int = 80) -> list:
    """Every table for the terminal, each number once, within `width` columns: metrics by
    mask, the mask-independent ones, per head, the epoch curve, thresholds."""
    shown = _metrics_table(report)
    if len(report.heads) > 1:
        for mask in report.masks:
            shown += _heads_table(report, mask)
    shown.append(_once_line(report))
    if report.head_labels:
        shown.append(_labels_line(report.head_labels[-1]))
    if len(report.epochs) > 1:
        shown += _curve_table(report, width)
    if checks:
        shown += _checks_table(report, checks)
    return shown


def titled(title: str, table, caption: str | None = None) -> list:
    """A table with its title and caption as lines of their own, which wrap at the
    terminal's width rather than at the (often narrower) table's. Rich markup is escaped."""
    from rich.text import Text

    return [Text(title), table, *([Text(caption)] if caption else [])]


def _metrics_table(report: ScoreReport):
    from rich.markup import escape

    parts = [report.source]
    if report.epochs[-1] is not None:
        parts.append(f"{report.axis} {report.epochs[-1]}")
    if report.kind == SELF:
        parts.append(f"self-attention, query {report.query}, "
                     + ("heads averaged" if len(report.heads) > 1 else "recorded head mean"))
    else:
        parts.append("temporal attention")
    table = _per_mask_metrics({escape(mask): mask for mask in report.masks},
                              lambda metric, mask: report.value(metric, mask))
    skipped = [f"{mask} {count}" for mask, count in report.auprc_skipped.items() if count]
    caption = (f"{report.samples} samples, averaged; ↑ higher is better, ↓ lower; "
               f"topk-f1 = topk-precision = topk-recall (k = mask size)"
               + (f"; auprc skipped samples whose mask is all one class: "
                  f"{', '.join(skipped)}" if skipped else ""))
    return titled("alignment · " + " · ".join(parts), table, caption)


def _per_mask_metrics(columns: dict, value: Callable[[str, object], float]):
    """A row per metric shown per mask and a column per {title: key}, each cell
    value(metric, key)."""
    from rich.table import Table

    table = Table()
    table.add_column("metric")
    for title in columns:
        table.add_column(title, justify="right")
    for metric in SHOWN_PER_MASK:
        table.add_row(_label(metric), *(_cell(value(metric, key)) for key in columns.values()))
    return table


def _label(metric: str) -> str:
    return f"{metric} {_arrow(metric)}"


def _once_line(report: ScoreReport):
    """The metrics that do not depend on the mask, once (per head view)."""
    from rich.text import Text

    mask = report.masks[0]
    parts = []
    for metric in SHOWN_ONCE:
        values = [f"{head_label(head) + ' ' if len(report.heads) > 1 else ''}"
                  f"{_cell(report.value(metric, mask, head))}" for head in report.heads]
        parts.append(f"{_label(metric)} {' · '.join(values)}")
    return Text("; ".join(parts) + "  (of ln L; the same for every mask)")


def _labels_line(rows: list[dict]):
    """What each head does at the last scored epoch (docs/metrics.md, Head labels)."""
    from rich.text import Text

    return Text("what each head does: " + " · ".join(
        f"head {row['head']} {row['label']} {row['value']:.2f}" for row in rows))


def _heads_table(report: ScoreReport, mask: str):
    table = _per_mask_metrics({head_label(head): head for head in report.heads},
                              lambda metric, head: report.value(metric, mask, head))
    return titled(f"per head · mask {mask} (mean = metrics of the head-averaged rows)", table)


def sparkline(values: np.ndarray, low: float, high: float, width: int = CURVE_WIDTH) -> str:
    """Values as block characters scaled to [low, high]; NaN is a space."""
    values = np.asarray(values, dtype=np.float64)
    if values.size > width:
        values = values[np.linspace(0, values.size - 1, width).round().astype(int)]
    levels = np.clip((values - low) / (high - low), 0.0, 1.0) * (len(SPARKS) - 1)
    return "".join(" " if math.isnan(v) else SPARKS[int(round(v))] for v in levels)


def _curve_table(report: ScoreReport, width: int):
    """One row per metric and mask (mask-independent metrics once): a sparkline sized so
    that the table fits `width` columns, and the first and last values."""
    from rich.markup import escape
    from rich.table import Table

    rows = [(metric, mask) for metric in SHOWN_PER_MASK for mask in report.masks]
    rows += [(metric, None) for metric in SHOWN_ONCE]
    label_width = max(len(_label(metric)) for metric, _ in rows)
    mask_width = max(len(mask) for mask in [*report.masks, "mask"])
    # 4 columns: 3 characters of border and padding each, and one more at the edge
    room = width - 13 - label_width - mask_width - len("0.000 → 0.000")
    curve_width = int(np.clip(room, 8, CURVE_WIDTH))
    view = " (head mean)" if report.kind == SELF else ""
    table = Table()
    for column in ("metric", "mask", "curve", "first → last"):
        table.add_column(column, no_wrap=True)
    for metric, mask in rows:
        info = METRICS[metric]
        curve = report.curve(metric, mask or report.masks[0])
        table.add_row(_label(metric), "any" if mask is None else escape(mask),
                      sparkline(curve, info.low, info.high, curve_width),
                      f"{_cell(curve[0])} → {_cell(curve[-1])}")
    return titled(f"over {report.axis}s {report.epochs[0]}-{report.epochs[-1]}{view}", table)


def _checks_table(report: ScoreReport, checks: list[Check]):
    from rich.markup import escape
    from rich.table import Table

    table = Table()
    for column in ("threshold", report.axis, "value", "result"):
        table.add_column(column, justify="right" if column in (report.axis, "value") else "left")
    if len(report.epochs) > 1:
        table.add_column(f"held since {report.axis}", justify="right")
    for check in checks:
        row = [escape(check.name), _epoch_label(check.epoch), _cell(check.value),
               "[green]pass[/]" if check.passed else "[bold red]FAIL[/]"]
        if len(report.epochs) > 1:
            row.append("-" if check.first_epoch is None else str(check.first_epoch))
        table.add_row(*row)
    return titled("thresholds", table)


def verdict(checks: list[Check]) -> str:
    """One line: how many thresholds were met (rich markup)."""
    missed = [check for check in checks if not check.passed]
    if not checks:
        return "no thresholds given (--min METRIC=X, --max METRIC=X): exit code 0"
    if not missed:
        return f"[green]all {len(checks)} threshold(s) met[/]"
    return f"[bold red]{len(missed)} of {len(checks)} threshold(s) missed[/]"


# ---- JSON ----------------------------------------------------------------------------------


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 6)


def as_json(report: ScoreReport, checks: list[Check]) -> dict:
    """The one JSON object of `attnviz score --json` (schema in docs/metrics.md)."""
    scores = [
        {"epoch": epoch, "mask": mask, "head": head,
         **{metric: _number(report.values[e, m, h, i]) for i, metric in enumerate(METRIC_NAMES)}}
        for e, epoch in enumerate(report.epochs)
        for m, mask in enumerate(report.masks)
        for h, head in enumerate(report.heads)
    ]
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "source": report.source,
        "kind": report.kind,
        "query": report.query,
        "samples": report.samples,
        "masks": report.masks,
        "heads": report.heads,
        "gated_head": report.heads[0],
        "axis": report.axis,
        "epochs": report.epochs,
        "metrics": {name: {"better": m.better, "range": [m.low, m.high], "summary": m.summary,
                           "per_mask": m.per_mask, "same_as": m.same_as,
                           "rank_only": m.rank_only}
                    for name, m in METRICS.items()},
        "auprc_skipped": report.auprc_skipped,
        "head_labels": None if report.head_labels is None else [
            {"epoch": epoch, "heads": rows}
            for epoch, rows in zip(report.epochs, report.head_labels, strict=True)],
        "scores": scores,
        "thresholds": [
            {"name": check.name, "metric": check.threshold.metric, "mask": check.mask,
             "head": check.head, "bound": check.threshold.bound,
             "threshold": check.threshold.value, "epoch": check.epoch,
             "value": _number(check.value), "passed": check.passed,
             "first_epoch": check.first_epoch}
            for check in checks
        ],
        "passed": all(check.passed for check in checks),
    }


# ---- JUnit XML -----------------------------------------------------------------------------


def junit_xml(results: list[tuple[ScoreReport, list[Check]]]) -> bytes:
    """One <testsuite> per scored layer with one <testcase> per threshold; a missed one
    holds a <failure>."""
    total = sum(len(checks) for _, checks in results)
    failures = sum(not check.passed for _, checks in results for check in checks)
    suites = ET.Element("testsuites", name="attnviz score", tests=str(total),
                        failures=str(failures), errors="0")
    for report, checks in results:
        _junit_suite(suites, report, checks)
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"


def _junit_suite(suites, report: ScoreReport, checks: list[Check]) -> None:
    failures = sum(not check.passed for check in checks)
    layer = f" {report.layer}" if report.layer else ""
    suite = ET.SubElement(suites, "testsuite", name=f"attnviz score {report.source}{layer}",
                          tests=str(len(checks)), failures=str(failures), errors="0",
                          skipped="0", time="0")
    properties = ET.SubElement(suite, "properties")
    for name, value in (("source", report.source), ("layer", report.layer or ""),
                        ("kind", report.kind), ("epoch", _epoch_label(report.epochs[-1])),
                        ("head", head_label(report.heads[0]))):
        ET.SubElement(properties, "property", name=name, value=value)
    for check in checks:
        case = ET.SubElement(suite, "testcase",
                             classname=f"attnviz.score.{check.mask or 'heads'}",
                             name=check.name, time="0")
        if not check.passed and check.threshold.head:
            nearest = ("no head has it" if check.head is None
                       else f"head {check.head} has {check.value:.4f}")
            failure = ET.SubElement(case, "failure", type="head-label",
                                    message=f"{check.name}: {nearest} at {report.axis} "
                                            f"{_epoch_label(check.epoch)}")
            failure.text = "what each head does: docs/metrics.md, Head labels"
        elif not check.passed:
            failure = ET.SubElement(
                case, "failure", type="threshold",
                message=f"{check.threshold.metric}@{check.mask} = {check.value:.4f} at "
                        f"{report.axis} {_epoch_label(check.epoch)}, needs "
                        f"{check.name.split(' ', 1)[1]}",
            )
            failure.text = METRICS[check.threshold.metric].summary


def write_junit(path: Path, results: list[tuple[ScoreReport, list[Check]]]) -> None:
    atomic_write_bytes(check_output_file(path, "--junit"), junit_xml(results), make_folder=True)
