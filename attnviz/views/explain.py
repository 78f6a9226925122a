"""How an explain report is shown: its tables as plain rows, for the terminal (rich) and for
`attnviz report` (HTML), and the verdict (no TensorFlow).

The JSON object is the report itself plus "learning" and "verdict"; docs/explain.md
documents them.
"""

from __future__ import annotations

from dataclasses import dataclass

from attnviz.analysis.verdict import loss_label


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
    samples = report["samples"]
    view = f" ({report['attention_view']})" if report.get("attention_view") else ""
    if report["task"] is not None:
        return (f"explain {report['run']} · epoch {report['epoch']} · {report['encoder']} + "
                f"{report['attention_kind']}{view} · {report['task']} · {samples['heldout']} "
                f"held-out samples, probe batch {samples['probe']}")
    return (f"explain {report['run']} · epoch {report['epoch']} · {report['model']} · layer "
            f"{report['layer']}{view} · held-out: {report['heldout_source']} · probe batch "
            f"{samples['probe']}")


def tables(report: dict) -> list[TableData]:
    """Where attention and attribution sit, faithfulness, baselines, interventions: the
    ones measured."""
    shown = [_mass_table(report) if report["masks"] else None,
             _faithfulness_table(report) if report["faithfulness"] is not None else None,
             _baselines_table(report), _interventions_table(report)]
    return [table for table in shown if table is not None]


def renderables(report: dict, verdict: list[str]) -> list:
    """A header line, the tables and the verdict, in reading order; titles, captions and
    sentences wrap at the terminal's width."""
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
    batch = report["masks_on"]
    attention, ig, gxi = (report["attention"], report["integrated_gradients"],
                          report["gradient_x_input"])
    columns = {"attention": attention[batch]}
    if batch == "heldout":
        columns["probe attention"] = attention["probe"]
    if ig is not None:
        columns.update({"IG": ig[batch], "grad x input": gxi[batch]})
    parts = list(columns.values())
    rows = [[mask, _cell(report["mask_share"][mask]), *(_cell(part["masks"][mask])
                                                        for part in parts)]
            for mask in report["masks"]]
    outside = 1.0 - sum(report["mask_share"].values())
    rows.append(["outside the masks", _cell(max(0.0, outside)),
                 *(_cell(part["outside"]) for part in parts)])
    caption = ("held-out samples unless marked" if batch == "heldout" else
               "the probe batch: the held-out samples have no masks")
    caption += "; uniform: what uniform attention would give"
    if ig is not None:
        rows.append(["tau_b vs attention", *[""] * (len(columns) - 1),
                     _cell(ig["heldout"]["tau_b"]), _cell(gxi["heldout"]["tau_b"])])
        caption += (f"; IG: integrated gradients from a constant {ig['baseline']:.3g} input in "
                    f"{ig['steps']} steps (completeness off by "
                    f"{100 * ig['completeness_error']:.2g} %)")
    return TableData(
        title="where attention and attribution sit: share of each sample's total",
        columns=[("", "left"), *((name, "right") for name in ("uniform", *columns))],
        rows=rows,
        caption=caption,
    )


def _faithfulness_table(report: dict) -> TableData:
    faith = report["faithfulness"]
    k = faith["k"]
    return TableData(
        title=(f"faithfulness of the inputs at the attended positions: mean |change in "
               f"prediction|, erased inputs set to {faith['erase_value']:.3g}"
               + (f" ({report['erase_value_source']})" if report.get("erase_value_source")
                  not in (None, "the task's neutral value") else "")),
        columns=[("", "left"), (f"top-{k} attended", "right"), (f"{k} random", "right")],
        rows=[["comprehensiveness (erase them)", _cell(faith["comprehensiveness"]["top"], 3),
               _cell(faith["comprehensiveness"]["random"], 3)],
              ["sufficiency (keep only them)", _cell(faith["sufficiency"]["top"], 3),
               _cell(faith["sufficiency"]["random"], 3)]],
        caption=f"targets of the held-out samples spread {faith['target_std']:.3f} std",
    )


def _baselines_table(report: dict) -> TableData:
    base = report["baselines"]
    se = base["heldout_loss_se"]
    rows = [["this model, held-out", f"{base['heldout_loss']:.4g}", "",
             "" if se is None else f"± {se:.2g} (standard error)"]]
    if base["val_loss"] is not None:
        rows.append([f"this model, val_loss at epoch {report['epoch']}",
                     f"{base['val_loss']:.4g}", "", ""])
    rows += [[predictor["name"], f"{predictor['loss']:.4g}", _cell(predictor["ratio"]),
              predictor["description"]] for predictor in base["predictors"]]
    label = loss_label(report)
    return TableData(
        title=f"baselines: {'mean squared error' if label == 'MSE' else label}",
        columns=[("predictor", "left"), (label, "right"), ("model / it", "right"),
                 ("", "left")],
        rows=rows,
        caption="" if report["task"] is not None else (
            f"loss: {base['loss']} ({base['loss_source']}); no task, so no shortcut is known "
            "unless given with --baseline"),
    )


def _near_zero_note(report: dict) -> str:
    """A caption's warning when the learned loss is within the noise floor."""
    floor = report["baselines"].get("noise_floor")
    learned = next(e["loss"] for e in report["interventions"] if e["name"] == "learned")
    if floor is None or learned > floor:
        return ""
    return (f"; the learned loss is near zero (at most the noise floor {floor:.2g}), so the "
            "ratios compare noise and the verdict does not read them")


_WHAT = {"learned": "as the model computes it", "uniform": "uniform over each row",
         "permuted": "each row shuffled", "argmax": "one-hot on the learned top"}


def _interventions_table(report: dict) -> TableData:
    setup = report["intervention_setup"]
    rows = []
    for entry in report["interventions"]:
        name = entry["name"]
        loss = f"{entry['loss']:.4g}"
        if name == "permuted":
            loss += f" ± {entry['loss_spread']:.2g}"
            what = f"{_WHAT[name]}, {entry['draws']} draws"
        elif name.startswith("mask:"):
            what = (f"uniform over {name[5:]}" + (" (built in, per query)"
                                                  if entry.get("built_in") else "")
                    + (f" ({entry['kept']} kept)" if entry["kept"] else ""))
        elif name == "adversarial":
            what = (f"farthest within {entry['tolerance']:.2g} of the learned predictions: "
                    f"JSD >= {entry['very_different']:g} for {100 * entry['far']:.0f} % "
                    f"(the first {entry['samples']} samples, {entry['steps']} steps; / learned: "
                    f"against the learned {entry['learned_loss']:.4g} on them)")
        else:
            what = _WHAT[name]
        rows.append([name, loss, _cell(entry["ratio"]), _cell(entry["jsd"]), what])
    predictors = "; ".join(f"{p['name']} {p['loss']:.4g}"
                           for p in report["baselines"]["predictors"])
    label = loss_label(report)
    return TableData(
        title=(f"interventions: held-out {label} with the attention weights of layer "
               f"{setup['layer']} replaced ({setup['replaced']}), the rest of the model as "
               "trained"),
        columns=[("attention", "left"), (label, "right"), ("/ learned", "right"),
                 ("JSD", "right"), ("", "left")],
        rows=rows,
        caption=(f"{setup['samples']} held-out samples unless the row says otherwise; JSD from "
                 "the learned attention, in nats (at most 0.69)"
                 + (f"; baselines: {predictors}" if predictors else "")
                 + _near_zero_note(report)),
    )
