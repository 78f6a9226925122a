"""How `attnviz inspect` shows an Inspection: the terminal's facts, tables and heatmaps, the
--png figure, and the files --save and --png write."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from rich.color import Color
from rich.console import Console
from rich.style import Style
from rich.table import Table
from rich.text import Text

from attnviz.analysis.inspection import Inspection, View, save_weights, single_view
from attnviz.analysis.tokens import short
from attnviz.errors import AttnvizError
from attnviz.store.files import atomic_path, check_output_file
from attnviz.views.colors import colormap_lut
from attnviz.views.heatmap import Heatmap
from attnviz.views.plots import attention_figure


def write_files(inspection: Inspection, save: Path | None, png: Path | None) -> list[str]:
    """Write --save and --png; return the paths written."""
    written = []
    if save is not None:
        written.append(str(save_weights(inspection.views, save)))
    if png is not None:
        view = single_view(inspection, "--png")
        written.append(str(save_png(inspection, view, png, figure_title(inspection, view))))
    return written


def save_png(inspection: Inspection, view: View, path: Path, title: str) -> Path:
    """Write the labelled figure of the view's rows (and the masks below them) atomically."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise AttnvizError(f"--png {path}: name a .png file")
    check_output_file(path, "--png", "a .png file")
    shown = min(inspection.samples, view.rows.shape[0])
    figure = attention_figure(view.rows[:shown], shown_masks(inspection.masks, shown), title)
    with atomic_path(path, suffix=".png", make_folder=True) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return path


def shown_masks(masks: dict[str, np.ndarray], shown: int) -> dict[str, np.ndarray]:
    """The mask rows of the first `shown` samples; one row when they are all the same (a
    probe batch with fixed positions)."""
    return {name: mask[:1] if (mask[:shown] == mask[0]).all() else mask[:shown]
            for name, mask in masks.items()}


def title(inspection: Inspection, view: View) -> str:
    """One line naming what a heatmap or figure shows."""
    facts = inspection.facts
    if inspection.kind == "run":
        at = (f"epoch {facts['epoch']}" if facts.get("step") is None
              else f"step {facts['step']} (epoch {facts['epoch']})")
        where = f"{facts['run']} · {at}" + (
            f" · {view.name}" if len(facts["layers"]) > 1 else "")
    elif inspection.kind == "checkpoint":
        where = f"{facts['run']} · checkpoint epoch {facts['epoch']} · {facts['input']}"
    else:
        where = f"{Path(facts['model']).name} · {view.name} · {Path(facts['input']).name}"
    return where + (f" · {view.reduction}" if view.reduction else "")


def figure_title(inspection: Inspection, view: View) -> str:
    """The title of --png: what it shows, then (as animate's header) the loss at that epoch
    and the attention mass on the main mask."""
    loss = inspection.facts.get("loss")
    numbers = [] if loss is None or loss["loss"] is None else [f"loss {loss['loss']:.4g}"]
    if inspection.masks:
        main = next(iter(inspection.masks))  # probe_masks puts the main mask first
        numbers.append(f"mass on {main} {view.summary.masses[main]:.3f}")
    return "\n".join([title(inspection, view), *(["   ".join(numbers)] if numbers else [])])


MANY_VIEWS = 2  # more attention calls than this: one table of all, one heatmap


def renderables(inspection: Inspection, width: int = 80) -> list:
    """What the terminal shows: the facts, then per view its numbers and its heatmap (with
    many views, a layers x heads table, or a compact grid where that would not fit `width`
    columns, and the first view in full)."""
    out: list = [Text(line) for line in _fact_lines(inspection)]
    views = inspection.views
    if len(views) > MANY_VIEWS:
        stats = [view.heads for view in views]
        table = _heads_table(views, stats)
        if _width_of(table) > width:
            table = _heads_grid(views, stats, width)
        out += [Text(""), table,
                Text(f"{len(views)} attention calls; the first in full below: pick others with "
                     "--layer PATH (globs work: --layer '*layer_1*') and --head N")]
        views = views[:1]
    for view in views:
        out += _view_renderables(inspection, view)
    return out


def _view_renderables(inspection: Inspection, view: View) -> list:
    from rich.text import Text

    summary = view.summary
    n = view.rows.shape[0]
    out: list = [Text(""), Text(title(inspection, view), style="bold")]
    if view.layer_class:
        out.append(Text(f"{view.layer_class} → weights {tuple(view.weights.shape)}"))
    if summary.masses:
        table = Table(show_header=True, box=None, pad_edge=False)
        table.add_column("mask")
        table.add_column("mass", justify="right")
        for name, value in summary.masses.items():
            table.add_row(name, f"{value:.3f}")
        out.append(table)
    if summary.entropy is not None:
        out.append(Text(f"entropy {summary.entropy:.3f} of ln L, as score's "
                        f"({summary.entropy_nats:.3f} nats)"))
    out.append(Text("argmax at " + _argmax_text(summary.argmax_histogram, n)))
    heads = head_line(view)
    if heads:
        out.append(Text(heads))
    shown = min(inspection.samples, n)
    out += [Text(line) for line in top_keys(inspection.tokens, view.rows, shown)]
    if shown < n:
        out.append(Text(f"showing the first {shown} of {n} samples (--samples N)"))
    out.append(Heatmap(view.rows[:shown], shown_masks(inspection.masks, shown),
                       np.array(summary.argmax_histogram)))
    return out


TOP_KEYS, TOP_SAMPLES = 3, 3  # the keys named per sample, of the first samples


def top_keys(tokens: list[list[str]] | None, rows: np.ndarray, shown: int) -> list[str]:
    """Lines naming the tokens each of the first samples attends to most: "sample 0: cat @3
    0.41 · [SEP] @11 0.22 · the @1 0.10" (labels escaped and shortened)."""
    if tokens is None or not len(rows) or len(tokens[0]) != rows.shape[1]:
        return []
    lines = [f"most attended tokens (token @position weight), first {min(shown, TOP_SAMPLES)} "
             "samples:"]
    for index in range(min(shown, TOP_SAMPLES, len(tokens))):
        order = np.argsort(-rows[index], kind="stable")[:TOP_KEYS]
        lines.append(f"  sample {index}: " + " · ".join(
            f"{short(tokens[index][k])} @{k} {rows[index, k]:.2f}" for k in order))
    return lines


def _heads_table(views: list[View], stats: list[list[dict]]) -> Table:
    """Layers x heads: entropy (share of uniform's) and the most common argmax position."""
    heads = max(len(row) for row in stats)
    labelled = any("label" in cell for row in stats for cell in row)
    title = ("what each head does, and the number it rests on (docs/metrics.md, Head labels)"
             if labelled else "entropy (0 one position .. 1 uniform) @ most common argmax")
    table = Table(title=title, box=None, pad_edge=False, title_justify="left")
    table.add_column("attention call", no_wrap=True)
    for head in range(heads):
        table.add_column(f"head {head}" if heads > 1 else "all", justify="right")
    for view, row in zip(views, stats, strict=True):
        cells = [_table_cell(cell) for cell in row]
        table.add_row(view.name, *cells, *[""] * (heads - len(cells)))
    return table


def _table_cell(cell: dict) -> str:
    if "label" in cell:
        return f"{cell['label']} {cell['label_value']:.2f}"
    return "—" if cell["entropy"] is None else f"{cell['entropy']:.2f} @{cell['argmax']}"


# Three letters per label, for the 80-column grid.
CODES = {"previous-token": "prv", "next-token": "nxt", "self": "slf", "induction": "ind",
         "first-token": "1st", "special-token": "spc", "local": "loc", "broad": "brd",
         "mixed": "mix"}


def head_line(view: View) -> str | None:
    """What each head of one multi-head view does, on one (wrapping) line; None unlabelled."""
    cells = [f"{head} {cell['label']} {cell['label_value']:.2f}"
             for head, cell in enumerate(view.heads) if "label" in cell]
    return "heads: " + " · ".join(cells) if cells else None


def _heads_grid(views: list[View], stats: list[list[dict]], width: int) -> Table:
    """Layers x heads in `width` columns (12 x 12 in 80): each head's entropy as a percentage
    of a uniform row's, coloured as the heatmaps are (dark: on one position); long call
    paths are shortened in the middle, where they differ least."""
    heads = max(len(row) for row in stats)
    name_width = max(16, width - CELL * heads)
    names, ending = _distinct_parts([view.name for view in views], name_width - 1)
    labelled = any("label" in cell for row in stats for cell in row)
    title = ("what each head does: " + ", ".join(f"{code} {label}" for label, code in
                                                 CODES.items())
             + "; colour: entropy (dark: one position); numbers: --json" if labelled else
             "entropy per head, % of uniform (0 one position, 100 uniform); argmax: --json")
    if ending:
        title += f"\neach call's path ends in {ending}"
    table = Table(title=title, box=None, pad_edge=False, padding=0, title_justify="left")
    table.add_column("attention call", no_wrap=True, width=name_width)
    for head in range(heads):
        table.add_column(f"{head:>{CELL - 1}}", justify="right", width=CELL, no_wrap=True)
    for name, row in zip(names, stats, strict=True):
        cells = [_grid_cell(cell["entropy"], CODES.get(cell.get("label"))) for cell in row]
        table.add_row(name, *cells, *[""] * (heads - len(cells)))
    return table


CELL = 4  # a grid cell: "100" and a space
_HOT = colormap_lut("hot", 256)


def _grid_cell(entropy: float | None, code: str | None = None) -> Text:
    if entropy is None:
        return Text("—".rjust(CELL - 1) + " ")
    rgb = _HOT[min(255, int(entropy * 255))]
    ink = "black" if sum(int(c) for c in rgb) > 384 else "white"
    shown = code or f"{round(100 * entropy):>{CELL - 1}}"
    return Text(shown, style=Style(
        color=ink, bgcolor=Color.from_rgb(*(int(c) for c in rgb)))) + Text(" ")


def _distinct_parts(names: list[str], width: int) -> tuple[list[str], str]:
    """The names in `width` characters, and the path ending they share, left out of each when
    they do not fit ("layer_0/self_attention/softmax" -> "layer_0/…"); a name still too long
    keeps its start and its end."""
    ending = ""
    if len(names) > 1 and max(map(len, names)) > width:
        parts = [name.split("/") for name in names]
        shared = 0
        while (shared < min(map(len, parts)) - 1
               and len({tuple(p[len(p) - shared - 1:]) for p in parts}) == 1):
            shared += 1
        if shared:
            ending = "/" + "/".join(parts[0][-shared:])
            names = ["/".join(p[:-shared]) + "/…" for p in parts]
    return [_shorten(name, width) for name in names], ending


def _shorten(name: str, width: int) -> str:
    """`name` in `width` characters: its start and its end, "…" between."""
    if len(name) <= width:
        return name
    tail = (width - 1) // 2
    return name[:width - 1 - tail] + "…" + name[len(name) - tail:]


def _width_of(table: Table) -> int:
    """The columns `table` takes drawn without a width limit."""
    console = Console(width=10_000, file=io.StringIO(), color_system=None)
    lines = console.render_lines(table, console.options, pad=False)
    return max((sum(len(segment.text) for segment in line) for line in lines), default=0)


def _fact_lines(inspection: Inspection) -> list[str]:
    facts = inspection.facts
    if inspection.kind == "model":
        return [f"model {facts['model']} · input {facts['input']} {facts['input_shape']}"
                f" · read in {facts['seconds']['extract']:.2f} s"]
    model = facts["model"]
    trained = f"{facts['epochs_trained']}/{facts['epochs_planned'] or '?'} epochs trained"
    if facts["task"] is not None:
        heads = f", {model['heads']} heads" if model["heads"] else ""
        lines = [f"run {facts['run']} · task {facts['task']} · {model['encoder']} + "
                 f"{model['attention']} ({model['units']} units{heads}) · L={model['seq_len']}"
                 f" · {trained}"]
    else:
        lines = [f"run {facts['run']} · model {model['name']} ({model['class']}, "
                 f"{model['parameters']} parameters) · {trained}"]
    loss = facts["loss"]
    baselines = facts["baselines"]
    at = (f"epoch {facts['epoch']}" if facts.get("step") is None
          else f"step {facts['step']} (epoch {facts['epoch']})")
    if loss is None:
        listed = " · ".join(f"{b['name']} {b['mse']:.4g}" for b in baselines)
        lines.append(f"{at}: untrained" + (
            f" · baselines (MSE): {listed}" if listed else ""))
    else:
        val = loss["val_loss"]
        shown = [f"loss {_number(loss['loss'])}", f"val_loss {_number(val)}"]
        if baselines and val is not None:
            shown.append("baselines (MSE): " + " · ".join(
                f"{b['name']} {b['mse']:.4g} ({'beaten' if val < b['mse'] else 'not beaten'})"
                for b in baselines))
        lines.append(f"{at}: " + " · ".join(shown))
    if inspection.kind == "checkpoint":
        lines.append(f"recomputed from checkpoint epoch {facts['epoch']} on {facts['input']} "
                     f"in {facts['seconds']['extract']:.2f} s")
    return lines


def _number(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def _argmax_text(histogram: list[int], n: int, top: int = 4) -> str:
    order = sorted(range(len(histogram)), key=lambda p: (-histogram[p], p))
    parts = [f"position {p} in {histogram[p]}/{n}" for p in order[:top] if histogram[p]]
    rest = n - sum(histogram[p] for p in order[:top])
    return ", ".join(parts) + (f", elsewhere {rest}/{n}" if rest else "")


def calls_renderable(calls: list, source: str):
    """The --list table: every attention call with its layer's class and its shape."""
    table = Table(box=None, pad_edge=False, title=f"attention calls on {source}",
                  title_justify="left")
    table.add_column("attention call", no_wrap=True)  # paths are what --layer takes: whole
    table.add_column("layer class")
    table.add_column("shape", no_wrap=True)
    for call in calls:
        table.add_row(call.name, call.layer_class,
                      "(n, " + ", ".join(map(str, call.shape[1:])) + ")")
    return table
