"""How `attnviz heads` shows what each head became: a table of the heads that do something
nameable (or every head), when each formed, and the verdict on an induction circuit."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from attnviz.analysis.circuits import Circuits

UNSPECIALISED = ("broad", "mixed")  # shown only with --all
SHOWN_OFFSET = 0.25  # a head's peak offset is shown when it holds this much of its mass


def renderables(circuits: Circuits, every_head: bool = False) -> list:
    shown = [head for head in circuits.heads
             if every_head or head.label not in UNSPECIALISED]
    left = len(circuits.heads) - len(shown)
    epochs, axis = circuits.epochs, circuits.axis
    out: list = [Text(f"{len(circuits.heads)} heads over {axis}s {epochs[0]}-{epochs[-1]}"
                      + ("" if circuits.loss_drop is None
                         else f"; the training loss dropped at {axis} {circuits.loss_drop}"))]
    if shown:
        table = Table(title=f"what each head does at the last {axis}, and since when",
                      title_justify="left")
        for column in ("layer", "head", "label", "number", f"formed at {axis}", "peak offset"):
            table.add_column(column, justify="left" if column in ("layer", "label") else
                             "right", no_wrap=column == "layer")
        for head in shown:
            table.add_row(head.layer, str(head.head), head.label, f"{head.value:.2f}",
                          "-" if head.formed is None else str(head.formed),
                          f"{head.offset:+d} ({head.offset_mass:.2f})"
                          if head.offset_mass >= SHOWN_OFFSET else "-")
        out.append(table)
    if left:
        out.append(Text(f"{left} broad or mixed heads not shown (--all shows them)"))
    out.append(Text(circuits.verdict, style="bold"))
    return out
