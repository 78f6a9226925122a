"""A run as one self-contained HTML file to explore and share: `attnviz report` (no TensorFlow).

The page holds everything inline: the run's numbers as JSON in a `<script type=
"application/json">`, the viewer (vanilla JS, attnviz/views/report_assets/report.js) and its styles.
A Content-Security-Policy lets only that script (by its sha256) run and no request leave the
page, and the viewer inserts every string with textContent, so a name in a run is text, never
markup. Worked example of the budget, the founding case (10 samples, L = 20, 16 recorded
epochs, one temporal layer):

    weights   16 epochs x 1 layer x 1 head x 10 x 1 x 20 weights x 8/3 B  =  8.5 KB
    scores    16 epochs x 1 head x 2 masks x 8 metrics x 7 B (JSON)       =  1.8 KB
    probe     10 x 20 inputs x 7 B, and 2 B a mask cell                    =  2.2 KB
    page      the viewer (script, styles, markup) and 4 KB of run facts    ~ 47 KB

Weights travel as base64 of little-endian uint16 (w x 65535, steps of 1.5e-5): 2 bytes a
weight, 8/3 once encoded, one string per (layer, epoch).

A run too large for that within --max-mb (a BERT-base fine-tune: 12 layers x 12 heads x
128 x 128 per sample and epoch) gets a compact page instead: every head's statistics at
every epoch (attnviz.analysis.heads: a few bytes a head), drawn as a layers x heads grid,
and maps only as many as fit: q8 (attnviz.store.quant, 4/3 byte a weight once encoded) of
the first samples, at every epoch when they fit, else of sample 0 at evenly spaced epochs
(the first and the last always). The viewer decodes a map only when it is shown, and says
which epoch's map it shows when the chosen one has none.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import html
import json
import math
import re
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from attnviz import __version__
from attnviz.analysis import structural
from attnviz.analysis.heads import STATISTICS, label_rows
from attnviz.analysis.score import METRICS, score_stream
from attnviz.analysis.tokens import position_labels
from attnviz.errors import AttnvizError, RunFormatError
from attnviz.store import quant
from attnviz.store.files import atomic_path, check_output_file
from attnviz.store.layers import SELF, shown_kind
from attnviz.store.run import Run
from attnviz.views.animation import check_every_and_samples, keep_every, resolve_samples
from attnviz.views.colors import colormap_lut

BYTES_PER_WEIGHT = 8 / 3  # uint16, base64-encoded
BYTES_PER_Q8 = 4 / 3  # a q8 code, base64-encoded (each row adds its 2-byte scale)
BYTES_PER_SCORE = 7  # "0.1234," in JSON
BYTES_PER_STAT = 7  # a head's statistic at an epoch
FACTS_BYTES = 4_000  # config, metric names, colour map, run facts, baselines
SUFFIXES = (".html", ".htm")


@dataclass(frozen=True)
class ReportOptions:
    """The `attnviz report` options; see docs/report.md."""

    output: Path | None = None  # an .html file; None: RUN/report.html
    every: int = 1  # keep every K-th recorded epoch (the last is always kept)
    layers: tuple[str, ...] = ()  # only these attention layers; (): all of them
    samples: int | None = None  # the first N probe samples; None: all
    cmap: str = "hot"  # a matplotlib colour map name
    max_mb: float = 25.0  # past this, a compact page; refuse one larger still
    tokens: Path | None = None  # --tokens FILE.json: labels of the positions


@dataclass(frozen=True)
class Report:
    """What `report` wrote."""

    path: Path
    size_bytes: int
    budget_bytes: int  # the size estimated before writing, from the budget above
    epochs: list[int]
    layers: list[str]
    heads: int  # (layer, head) pairs shown
    samples: int
    explained: bool  # the run's explain report is shown
    seconds: float
    maps: MapPlan  # which maps the page holds
    axis: str = "epoch"  # what `epochs` count: "step" for a run recorded by steps


@dataclass(frozen=True)
class MapPlan:
    """Which attention maps a page holds: "full" (every sample and epoch, uint16) or
    "compact" (q8, `samples` first samples at the epochs `epochs` indexes)."""

    mode: str
    samples: int
    epochs: tuple[int, ...]  # indexes into the page's epochs
    full_bytes: int  # what the full page would take

    def said(self, shown: list[int], probe: int, axis: str = "epoch") -> str | None:
        if self.mode == "full":
            return None
        at = (f"every {axis}" if len(self.epochs) == len(shown) else
              f"{axis}s {', '.join(str(shown[i]) for i in self.epochs)}")
        return (f"maps of {'sample 0' if self.samples == 1 else f'samples 0-{self.samples - 1}'}"
                f" of {probe} at {at}, every head's statistics at every {axis} (every map "
                f"would take {self.full_bytes / 1e6:,.0f} MB)")


# ---- the run, as the report reads it -----------------------------------------------------
# Everything that knows how a run stores its layers is in this section.


@dataclass(frozen=True)
class Layer:
    name: str
    kind: str  # "temporal": (n, L) per epoch; "self": (n, H, Lq, Lk)
    shape: tuple[int, ...]  # one epoch's array, n first

    @property
    def heads(self) -> int:
        return self.shape[1] if self.kind == SELF else 1

    @property
    def cells(self) -> int:
        """Weights of one sample at one epoch."""
        return math.prod(self.shape[1:])


def _layers(run: Run) -> list[Layer]:
    """The attention layers the run recorded."""
    return [Layer(layer["name"], shown_kind(layer["kind"]),
                  tuple(layer["shape"])) for layer in run.layers]


# ---- building -----------------------------------------------------------------------------


def write_report(run_dir: Path, options: ReportOptions) -> Report:
    """Read the run, check the budget, and write the HTML file atomically."""
    started = time.perf_counter()
    _check_options(options)
    lut = colormap_lut(options.cmap, 256)
    run = Run.open(run_dir)
    output = Path(options.output) if options.output else run.root / "report.html"
    _check_output(output)
    epochs = keep_every(run, options.every)
    layers = _select_layers(run, options.layers)
    samples = resolve_samples(options.samples, layers[0].shape[0])
    masks = _masks(run, layers, samples)
    maps = plan_maps(len(epochs), layers, samples, len(masks), options.max_mb * 1e6)
    budget = estimate_bytes(len(epochs), layers, samples, len(masks), maps)
    data = report_data(run, epochs, layers, samples, masks, lut, maps,
                       position_labels(run, options.tokens))
    page = render_html(data)
    with atomic_path(output, suffix=".html", make_folder=True) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Report(
        path=output, size_bytes=output.stat().st_size, budget_bytes=budget, epochs=epochs,
        layers=[layer.name for layer in layers], heads=sum(layer.heads for layer in layers),
        samples=samples, explained=data["explain"] is not None,
        seconds=time.perf_counter() - started, maps=maps, axis=run.axis,
    )


def estimate_bytes(epochs: int, layers: list[Layer], samples: int, masks: int,
                   maps: MapPlan | None = None) -> int:
    """The budget: the page, the probe, the scores of every head (and their mean) x mask and
    the statistics of every head at every epoch, and the maps: the weights of every layer x
    head at every epoch (full), or those `maps` holds (compact)."""
    fixed = _fixed_bytes(epochs, layers, samples, masks)
    if maps is None or maps.mode == "full":
        return int(fixed + sum(epochs * samples * layer.cells * BYTES_PER_WEIGHT
                               for layer in layers))
    return int(fixed + len(maps.epochs) * maps.samples * _q8_bytes(layers))


def _fixed_bytes(epochs: int, layers: list[Layer], samples: int, masks: int) -> float:
    page = sum(len(text.encode()) for text in _assets()) + FACTS_BYTES
    probe = samples * layers[0].shape[-1] * (7 + 2 * masks)
    views = sum(layer.heads + (layer.heads > 1) for layer in layers)
    scores = epochs * views * masks * len(METRICS) * BYTES_PER_SCORE
    stats = epochs * sum(layer.heads for layer in layers if layer.kind == SELF) * len(
        STATISTICS) * BYTES_PER_STAT
    return page + probe + scores + stats


def _q8_bytes(layers: list[Layer]) -> float:
    """One sample's maps of every layer at one epoch, as q8 in base64."""
    return sum((layer.cells + 2 * layer.cells // layer.shape[-1]) * BYTES_PER_Q8
               for layer in layers)


def plan_maps(epochs: int, layers: list[Layer], samples: int, masks: int,
              limit: float) -> MapPlan:
    """Every map at full precision when the page fits `limit` bytes; else as many q8 maps as
    fit: the first samples at every epoch, or sample 0 at evenly spaced epochs (the first
    and last always). Refused when not even the first and last epoch's maps fit."""
    full = estimate_bytes(epochs, layers, samples, masks)
    if full <= limit:
        return MapPlan("full", samples, tuple(range(epochs)), full)
    room = limit - _fixed_bytes(epochs, layers, samples, masks)
    fits = int(room // _q8_bytes(layers)) if room > 0 else 0  # sample-epochs of maps
    if fits >= epochs:
        return MapPlan("compact", min(samples, fits // epochs), tuple(range(epochs)), full)
    needed = min(epochs, 2)
    if fits < needed:
        least = _fixed_bytes(epochs, layers, samples, masks) + needed * _q8_bytes(layers)
        raise AttnvizError(
            f"the report would take about {least / 1e6:.0f} MB even with the maps of one "
            f"sample at the first and last epoch, over --max-mb {limit / 1e6:g}: thin it "
            "with --every K, --layer NAME or --samples N, or raise --max-mb")
    chosen = sorted({round(i * (epochs - 1) / (fits - 1)) for i in range(fits)})
    return MapPlan("compact", 1, tuple(chosen), full)


def report_data(run: Run, epochs: list[int], layers: list[Layer], samples: int,
                masks: dict[str, np.ndarray], lut: np.ndarray,
                maps: MapPlan | None = None,
                tokens: list[list[str]] | None = None) -> dict:
    """Everything the page shows, JSON-ready; `masks` as `_masks` gives them. Scores and
    statistics are of every sample; a compact page's maps, masks and probe rows are of the
    samples it holds maps of."""
    maps = maps or MapPlan("full", samples, tuple(range(len(epochs))), 0)
    shown = maps.samples
    task = run.task or {}
    probe = run.probe
    x = probe.x
    inputs = (x[:samples, :, 0] if isinstance(x, np.ndarray) and x.ndim == 3
              and x.shape[-1] == 1 else None)  # (n, L)
    tokens = position_labels(run) if tokens is None else tokens
    return {
        "title": str(run.root),
        "attnviz_version": __version__,
        "run": {
            "path": str(run.root),
            "written_by": run.header.get("attnviz_version"),
            "created": run.header.get("created"),
            "format_version": run.header.get("format_version"),
            "epochs_done": run.epochs_done,
            "epochs_planned": run.epochs_planned,
        },
        "config": run.config.to_dict() if run.config is not None else {
            "model": run.model_info, "recording": run.recording, "layers": run.layer_names},
        "task": {"name": task.get("name"), "description": task.get("description"),
                 "main_mask": task.get("main_mask")} if task else None,
        "baselines": [{"name": b["name"], "mse": b["mse"], "description": b["description"]}
                      for b in task.get("baselines", [])],
        "history": _history(run),
        "axis": run.axis,  # what DATA.epochs and history.x count: "epoch" or "step"
        "epochs": epochs,
        "samples": shown,
        "maps": {"mode": maps.mode, "probe_samples": samples, "epochs": list(maps.epochs),
                 "said": maps.said(epochs, samples, run.axis)},
        "statistics": list(STATISTICS),
        "inputs": None if inputs is None else np.round(
            inputs[:shown].astype(np.float64), 4).tolist(),
        "targets": None if probe.y is None or probe.y.ndim != 2 or probe.y.shape[1] != 1
        else np.round(probe.y[:shown, 0].astype(np.float64), 4).tolist(),
        "tokens": None if tokens is None else [row for row in tokens[:shown]],
        "masks": [{"name": name, "rows": mask[:shown].astype(int).tolist()}
                  for name, mask in masks.items()],
        "metrics": [{"name": m.name, "better": m.better, "low": m.low, "high": m.high,
                     "summary": m.summary, "per_mask": m.per_mask, "same_as": m.same_as}
                    for m in METRICS.values()],
        "layers": [_layer_data(run, layer, epochs, samples, masks, maps) for layer in layers],
        "colormap": lut.tobytes().hex(),
        "explain": _explain_data(run),
    }


def _history(run: Run) -> dict:
    """The loss curves on the run's axis: x (epochs, or steps), loss, val_loss."""
    if run.axis == "epoch":
        records = run.history
        return {"x": [r["epoch"] for r in records],
                **{key: [_finite(r.get(key)) for r in records] for key in ("loss", "val_loss")}}
    losses = run.point_losses()
    ends = [run.epoch_of(point) for point in losses]
    return {"x": list(losses), "loss": [_finite(loss) for loss in losses.values()],
            "val_loss": [_finite(run.history[e - 1].get("val_loss")) if e else None
                         for e in ends]}


def _tokens_and_padding(run: Run, samples: int) -> tuple:
    """The probe's token ids and padding of its first `samples` samples (None: it has none)."""
    tokens = structural.probe_tokens(run.probe.x)
    padding = structural.probe_padding(run.probe.x)
    return (None if tokens is None else tokens[:samples],
            None if padding is None else padding[:samples])


def _layer_data(run: Run, layer: Layer, epochs: list[int], samples: int,
                masks: dict[str, np.ndarray], maps: MapPlan) -> dict:
    """A layer's maps (encoded, as `maps` says), its heads' statistics at every epoch, and
    its scores against the masks over its keys, read in one pass."""
    masks = {name: mask for name, mask in masks.items() if mask.shape[-1] == layer.shape[-1]}
    encoded, statistics, labels, largest = [], [], [], 0.0
    with_maps = set(maps.epochs)
    stored_q8 = run.layer(layer.name)["dtype"] == quant.Q8

    def stream():
        nonlocal largest
        for index, epoch in enumerate(epochs):
            weights = run.attention_at(epoch, layer.name)[:samples]
            largest = max(largest, float(weights.max()))
            if maps.mode == "full":
                encoded.append(_encode(weights))
            elif index not in with_maps:
                encoded.append(None)
            elif stored_q8:  # as recorded: q8 of q8 would round twice
                codes = run.q8_codes_at(epoch, layer.name)[:maps.samples]
                encoded.append(base64.b64encode(codes.tobytes()).decode("ascii"))
            else:
                encoded.append(_encode_q8(weights[:maps.samples]))
            if layer.kind == SELF:
                rows = label_rows(weights, *_tokens_and_padding(run, samples))
                statistics.append([[_finite(row["statistics"][name], 4) for name in STATISTICS]
                                   for row in rows])
                labels.append([[row["label"], _finite(row["value"], 4)] for row in rows])
            yield epoch, weights

    scores = None
    if masks:
        scored = score_stream(stream(), masks, "last", f"{run.root} {layer.name}")
        views, values = scored.heads, scored.values
        scores = {"views": views, "masks": list(masks),  # values: [epoch][mask][view][metric]
                  "values": [[[[_finite(value, 4) for value in view] for view in mask]
                              for mask in epoch] for epoch in values.tolist()]}
    else:
        for _ in stream():
            pass
    shape = layer.shape
    return {
        "name": layer.name, "kind": layer.kind, "heads": layer.heads,
        "queries": shape[2] if layer.kind == SELF else 1, "keys": shape[-1],
        "max": largest, "weights": encoded, "scores": scores,
        "encoding": "uint16" if maps.mode == "full" else "q8",
        "stats": statistics or None,  # [epoch][head][statistic], as DATA.statistics names
        "labels": labels or None,  # [epoch][head]: [label, the number it rests on]
    }


def _encode(weights: np.ndarray) -> str:
    quantised = np.rint(np.clip(weights, 0.0, 1.0) * 65535).astype("<u2")
    return base64.b64encode(quantised.tobytes()).decode("ascii")


def _encode_q8(weights: np.ndarray) -> str:
    return base64.b64encode(quant.encode(np.clip(weights, 0.0, None)).tobytes()).decode("ascii")


def _masks(run: Run, layers: list[Layer], samples: int) -> dict[str, np.ndarray]:
    """The probe's masks that fit the key positions of any of `layers` (main first), first
    `samples` rows: each layer is drawn and scored with those over its own keys."""
    fitting = {}
    for layer in layers:
        fitting.update(run.masks_for(layer.name))
    order = dict.fromkeys([run.main_mask, *run.mask_names])
    return {name: fitting[name][:samples] for name in order if name in fitting}


def _explain_data(run: Run) -> dict | None:
    """The stored explain report as the page shows it: header, verdict, formatted tables."""
    from attnviz.views.explain import header, tables

    report = run.explain_report()
    if report is None:
        return None
    try:
        return {"epoch": report["epoch"], "header": header(report), "verdict": report["verdict"],
                "tables": [dataclasses.asdict(table) for table in tables(report)]}
    except (KeyError, TypeError, ValueError) as err:
        raise RunFormatError(f"{run.root / 'explain.json'}: not an explain report this attnviz "
                             f"reads ({type(err).__name__}: {err}): run attnviz explain "
                             "again") from None


def _finite(value, digits: int | None = None):
    """A JSON-safe number: None for NaN, Inf and missing values."""
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits) if digits is not None else value


# ---- the page -----------------------------------------------------------------------------


def render_html(data: dict) -> str:
    """The page: data, script and styles inline; only the script may run, nothing is fetched."""
    page, style, script = _assets()
    policy = ("default-src 'none'; img-src data: blob:; base-uri 'none'; form-action 'none'; "
              f"script-src '{_sha256(script)}'; style-src '{_sha256(style)}'")
    parts = {
        "policy": html.escape(policy),
        "title": html.escape(f"attnviz report · {data['title']}"),
        "style": style,
        "data": embed_json(data),
        "script": script,
        "axis": "step" if data.get("axis") == "step" else "epoch",
    }
    # one pass over the template: what is put in is never searched for placeholders again
    return re.sub(r"\{\{(\w+)\}\}", lambda match: parts[match[1]], page)


@functools.cache
def _assets() -> tuple[str, str, str]:
    """The page's markup, styles and script (attnviz/views/report_assets)."""
    folder = resources.files("attnviz.views") / "report_assets"
    return tuple((folder / name).read_text(encoding="utf-8")
                 for name in ("report.html", "report.css", "report.js"))


def embed_json(data: dict) -> str:
    """JSON that is safe inside <script>: no '<', '>' or '&' that could end it or open a
    comment, whatever the strings hold (they become \\u escapes, the same string to JSON)."""
    text = json.dumps(data, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


# ---- options ------------------------------------------------------------------------------


def _check_options(options: ReportOptions) -> None:
    check_every_and_samples(options.every, options.samples)
    if not options.max_mb > 0:
        raise AttnvizError(f"--max-mb {options.max_mb:g} must be above 0")


def _check_output(output: Path) -> None:
    check_output_file(output, "-o", "an .html file")
    if output.suffix.lower() not in SUFFIXES:
        raise AttnvizError(f"-o {output}: name an .html file (the report is one HTML page)")


def _select_layers(run: Run, wanted: tuple[str, ...]) -> list[Layer]:
    """The layers each --layer names (a path or a glob, as in every command); all without."""
    chosen = set(run.pick_layers(wanted))
    return [layer for layer in _layers(run) if not wanted or layer.name in chosen]
