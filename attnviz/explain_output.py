"""How `attnviz explain` shows a report: rich tables and the verdict (no TensorFlow).

The JSON object is the report itself plus "verdict"; docs/explain.md documents both.
"""

from __future__ import annotations


def _cell(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def renderables(report: dict, verdict: list[str]) -> list:
    """A header line, the three tables and the verdict, in reading order; titles, captions
    and sentences wrap at the terminal's width."""
    from rich.table import Table
    from rich.text import Text

    kind = report["attention_kind"]
    view = " (heads averaged, last query)" if kind == "self" else ""
    header = Text(
        f"explain {report['run']} · epoch {report['epoch']} · {report['encoder']} + {kind}{view}"
        f" · {report['task']} · {report['samples']['heldout']} held-out samples, probe batch "
        f"{report['samples']['probe']}"
    )
    bullets = Table.grid(padding=(0, 1, 0, 2))  # a hanging indent: "  • " then the sentence
    bullets.add_column(no_wrap=True)
    bullets.add_column()
    for sentence in verdict:
        bullets.add_row("•", Text(sentence))
    return [header, *_mass_table(report), *_faithfulness_table(report),
            *_baselines_table(report), Text("verdict", style="bold"), bullets]


def _titled(title: str, table, caption: str | None = None) -> list:
    from rich.text import Text

    return [Text(title), table, *([Text(caption)] if caption else [])]


def _mass_table(report: dict):
    from rich.table import Table

    attention, ig, gxi = (report["attention"], report["integrated_gradients"],
                          report["gradient_x_input"])
    table = Table()
    table.add_column("", no_wrap=True)
    for name in ("uniform", "attention", "probe attention", "IG", "grad x input"):
        table.add_column(name, justify="right")
    for mask in report["masks"]:
        table.add_row(mask, _cell(report["mask_share"][mask]),
                      *(_cell(part["masks"][mask]) for part in (
                          attention["heldout"], attention["probe"], ig["heldout"],
                          gxi["heldout"])))
    outside = 1.0 - sum(report["mask_share"].values())
    table.add_row("outside the masks", _cell(max(0.0, outside)),
                  *(_cell(part["outside"]) for part in (
                      attention["heldout"], attention["probe"], ig["heldout"], gxi["heldout"])))
    table.add_row("tau_b vs attention", "", "", "", _cell(ig["heldout"]["tau_b"]),
                  _cell(gxi["heldout"]["tau_b"]), end_section=True)
    return _titled("where attention and attribution sit: share of each sample's total", table,
                   f"held-out samples unless marked; uniform: what uniform attention would "
                   f"give; IG: integrated gradients from a constant {ig['baseline']:g} input "
                   f"in {ig['steps']} steps (completeness off by "
                   f"{100 * ig['completeness_error']:.2g} %)")


def _faithfulness_table(report: dict):
    from rich.table import Table

    faith = report["faithfulness"]
    k = faith["k"]
    table = Table()
    table.add_column("")
    table.add_column(f"top-{k} attended", justify="right")
    table.add_column(f"{k} random", justify="right")
    table.add_row("comprehensiveness (erase them)",
                  _cell(faith["comprehensiveness"]["top"], 3),
                  _cell(faith["comprehensiveness"]["random"], 3))
    table.add_row("sufficiency (keep only them)", _cell(faith["sufficiency"]["top"], 3),
                  _cell(faith["sufficiency"]["random"], 3))
    return _titled(f"faithfulness of the inputs at the attended positions: mean |change in "
                   f"prediction|, erased inputs set to {faith['erase_value']:g}", table,
                   f"targets of the held-out samples spread {faith['target_std']:.3f} std")


def _baselines_table(report: dict):
    from rich.table import Table

    base = report["baselines"]
    table = Table()
    for name, justify in (("predictor", "left"), ("MSE", "right"), ("model / it", "right"),
                          ("", "left")):
        table.add_column(name, justify=justify)
    se = base["heldout_mse_se"]
    table.add_row("this model, held-out", f"{base['heldout_mse']:.4g}", "",
                  "" if se is None else f"± {se:.2g} (standard error)")
    if base["val_loss"] is not None:
        table.add_row(f"this model, val_loss at epoch {report['epoch']}",
                      f"{base['val_loss']:.4g}", "", "")
    forced = report.get("forced_attention") or {"mse": {}}
    for mask, mse in forced["mse"].items():
        table.add_row(f"this model, attention forced onto {mask}", f"{mse:.4g}", "",
                      "held-out, its own layers")
    for predictor in base["predictors"]:
        table.add_row(predictor["name"], f"{predictor['mse']:.4g}",
                      _cell(predictor["ratio"]), predictor["description"])
    return _titled("baselines: mean squared error", table)
