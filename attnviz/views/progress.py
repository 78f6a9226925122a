"""The rich live display of `attnviz train`: epochs, batches, loss and attention mass."""

from __future__ import annotations

import math

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text


def _fmt(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.3f}"


def epoch_line(entry: dict, total: int) -> str:
    """One plain line per epoch, within 80 columns: what a log file (or a non-terminal) gets.

    epoch 15/15: loss 0.918, val_loss 0.715, 4.8s; mass delimiter 0.90, prefix 0.03
    """
    masses = ", ".join(f"{name} {value:.2f}" for name, value in entry["mass"].items())
    return (f"epoch {entry['epoch']:>{len(str(total))}}/{total}: loss {_fmt(entry['loss'])}, "
            f"val_loss {_fmt(entry['val_loss'])}, {entry['seconds']:.1f}s"
            + (f"; mass {masses}" if masses else ""))


class TrainDisplay:
    """Bars for epochs and for the batches of the current epoch, and the latest numbers.

    On a terminal this is a live display; elsewhere (CI logs, pipes) one line per epoch.
    """

    def __init__(self, console: Console, total_epochs: int, start_epoch: int, steps: int):
        self.console = console
        self.total = total_epochs
        self.steps = steps
        self.progress = Progress(
            TextColumn("{task.description:>7}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[numbers]}"),
            console=console,
        )
        self.epochs = self.progress.add_task(
            "epochs", total=total_epochs, completed=start_epoch, numbers=""
        )
        self.batches = self.progress.add_task("batches", total=steps, numbers="")
        self.latest = Text("")
        self.live = Live(Group(self.progress, self.latest), console=console,
                         refresh_per_second=8, transient=False)

    def __enter__(self):
        if self.console.is_terminal:
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.console.is_terminal:
            return self.live.__exit__(*exc)
        return None

    def on_batch(self, batch: int, logs: dict) -> None:
        # Keras reports once per compiled call of `steps_per_execution` batches.
        self.progress.update(self.batches, completed=min(self.steps, batch + 1),
                             numbers=f"loss {_fmt(logs.get('loss'))}")

    def on_epoch(self, entry: dict) -> None:
        line = epoch_line(entry, self.total)
        if self.console.is_terminal:
            self.progress.update(self.epochs, completed=entry["epoch"])
            self.progress.reset(self.batches, total=self.steps, numbers="")
            self.latest.plain = line
        else:
            self.console.print(line, highlight=False, markup=False)
