"""How an explain report is shown: its tables as plain rows, for the terminal (rich) and for
`attnviz report` (HTML), and the verdict (no TensorFlow).

The JSON object is the report itself plus "learning" and "verdict"; docs/explain.md
documents them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableData:
    """One table of an explain report, its cells already formatted."""

    title: str
    columns: list[tuple[str, str]]  # (name, "left" | "right")
    rows: list[list[str]]
    caption: str = ""


def _cell(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def header(report: dict) -> str:
    """One line naming what was explained."""
    kind = report["attention_kind"]
    view = " (heads averaged, last query)" if kind == "self" else ""
    return (f"explain {report['run']} · epoch {report['epoch']} · {report['encoder']} + {kind}"
            f"{view} · {report['task']} · {report['samples']['heldout']} held-out samples, "
            f"probe batch {report['samples']['probe']}")


def tables(report: dict) -> list[TableData]:
    """Where attention and attribution sit, faithfulness, baselines."""
    return [_mass_table(report), _faithfulness_table(report), _baselines_table(report)]


def renderables(report: dict, verdict: list[str]) -> list:
    """A header line, the three tables and the verdict, in reading order; titles, captions
    and sentences wrap at the terminal's width."""
    from rich.table import Table
    from rich.text import Text

    shown: list = [Text(header(report))]
    for data in tables(report):
        table = Table()
        for index, (name, justify) in enumerate(data.columns):
            table.add_column(name, justify=justify, no_wrap=index == 0)  # row names stay whole
        for row in data.rows:
            table.add_row(*row)
        shown += [Text(data.title), table, *([Text(data.caption)] if data.caption else [])]
    bullets = Table.grid(padding=(0, 1, 0, 2))  # a hanging indent: "  • " then the sentence
    bullets.add_column(no_wrap=True)
    bullets.add_column()
    for sentence in verdict:
        bullets.add_row("•", Text(sentence))
    return [*shown, Text("verdict", style="bold"), bullets]


def _mass_table(report: dict) -> TableData:
    attention, ig, gxi = (report["attention"], report["integrated_gradients"],
                          report["gradient_x_input"])
    parts = (attention["heldout"], attention["probe"], ig["heldout"], gxi["heldout"])
    rows = [[mask, _cell(report["mask_share"][mask]), *(_cell(part["masks"][mask])
                                                        for part in parts)]
            for mask in report["masks"]]
    outside = 1.0 - sum(report["mask_share"].values())
    rows.append(["outside the masks", _cell(max(0.0, outside)),
                 *(_cell(part["outside"]) for part in parts)])
    rows.append(["tau_b vs attention", "", "", "", _cell(ig["heldout"]["tau_b"]),
                 _cell(gxi["heldout"]["tau_b"])])
    return TableData(
        title="where attention and attribution sit: share of each sample's total",
        columns=[("", "left"), *((name, "right") for name in (
            "uniform", "attention", "probe attention", "IG", "grad x input"))],
        rows=rows,
        caption=(f"held-out samples unless marked; uniform: what uniform attention would give; "
                 f"IG: integrated gradients from a constant {ig['baseline']:g} input in "
                 f"{ig['steps']} steps (completeness off by "
                 f"{100 * ig['completeness_error']:.2g} %)"),
    )


def _faithfulness_table(report: dict) -> TableData:
    faith = report["faithfulness"]
    k = faith["k"]
    return TableData(
        title=(f"faithfulness of the inputs at the attended positions: mean |change in "
               f"prediction|, erased inputs set to {faith['erase_value']:g}"),
        columns=[("", "left"), (f"top-{k} attended", "right"), (f"{k} random", "right")],
        rows=[["comprehensiveness (erase them)", _cell(faith["comprehensiveness"]["top"], 3),
               _cell(faith["comprehensiveness"]["random"], 3)],
              ["sufficiency (keep only them)", _cell(faith["sufficiency"]["top"], 3),
               _cell(faith["sufficiency"]["random"], 3)]],
        caption=f"targets of the held-out samples spread {faith['target_std']:.3f} std",
    )


def _baselines_table(report: dict) -> TableData:
    base = report["baselines"]
    se = base["heldout_mse_se"]
    rows = [["this model, held-out", f"{base['heldout_mse']:.4g}", "",
             "" if se is None else f"± {se:.2g} (standard error)"]]
    if base["val_loss"] is not None:
        rows.append([f"this model, val_loss at epoch {report['epoch']}",
                     f"{base['val_loss']:.4g}", "", ""])
    forced = report.get("forced_attention") or {"mse": {}}
    rows += [[f"this model, attention forced onto {mask}", f"{mse:.4g}", "",
              "held-out, its own layers"] for mask, mse in forced["mse"].items()]
    rows += [[predictor["name"], f"{predictor['mse']:.4g}", _cell(predictor["ratio"]),
              predictor["description"]] for predictor in base["predictors"]]
    return TableData(
        title="baselines: mean squared error",
        columns=[("predictor", "left"), ("MSE", "right"), ("model / it", "right"), ("", "left")],
        rows=rows,
    )
