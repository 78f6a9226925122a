"""What `attnviz inspect` shows: a run's (or a model's) attention, summarised (numpy only).

An `Inspection` holds facts about the source (run, task, losses, baselines; or model file
and input) and one `View` per attention map. A view keeps the weights as recorded (or as
the layer returns them) and the (n, L) rows the heatmap draws. Worked example, L = 4:

    rows [[.1, .7, .1, .1], [.0, .0, .0, 1.]], mask "m" [[0, 1, 0, 0], [0, 0, 0, 1]]
    -> mass on m (.7 + 1) / 2 = .85, argmax histogram [0, 1, 0, 1],
       entropy_nats (0.94 + 0) / 2 = 0.47, entropy 0.47 / ln 4 = 0.34 (as `score`'s)

Reading a checkpoint or a model file needs Keras: that is attnviz.keras.inspect_model, which builds
on this module. This module never imports TensorFlow, so inspecting a run's recorded
attention starts at once.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from attnviz.analysis import structural
from attnviz.analysis.heads import label_rows, row_entropy
from attnviz.analysis.rollout import rollout
from attnviz.analysis.score import (
    attention_rows,
    check_recorded_heads,
    mass,
    parse_head,
    parse_query,
)
from attnviz.analysis.tokens import given_labels, load_tokens, position_labels
from attnviz.errors import AttnvizError
from attnviz.store.arrays import UNREADABLE, check_numeric, load_untrusted
from attnviz.store.files import atomic_path, check_output_file
from attnviz.store.run import Run

DEFAULT_SAMPLES = 20  # heatmap rows shown unless --samples says otherwise
INPUT_SUFFIXES = (".npy", ".npz", ".csv")


@dataclass(frozen=True)
class InspectOptions:
    """The options of `attnviz inspect`, as the command line gives them."""

    epoch: str | None = None  # a recorded epoch or "last" (runs)
    step: str | None = None  # a recorded step or "last" (runs recorded by steps)
    checkpoint: str | None = None  # an epoch, "last" or a file under RUN/checkpoints
    input: Path | None = None  # .npy, .npz or .csv
    key: str | None = None  # the array of an .npz
    layers: tuple[str, ...] = ()  # attention calls by path "outer/inner" or glob "*/attention"
    unsafe: bool = False  # load models with Lambda layers (runs their code)
    imports: tuple[str, ...] = ()  # user code defining the model's layers (.py or module)
    head: str | None = None  # self-attention: a head index or "mean"
    query: str | None = None  # self-attention: a query index, "last" or "mean"
    samples: int | None = None  # heatmap rows
    rollout: bool = False  # one view: attention followed through every self-attention layer
    tokens: Path | None = None  # --tokens FILE.json: labels of the positions


@dataclass(frozen=True)
class RowSummary:
    """Statistics of (n, L) attention rows, averaged over the n samples."""

    masses: dict[str, float]  # mask name -> mean attention mass on it
    entropy: float | None  # mean entropy / ln L (score's entropy): 0 one position, 1 uniform;
    # None when rows have negative values
    entropy_nats: float | None  # the same, not divided by ln L
    argmax_histogram: list[int]  # samples whose largest weight falls at each position


@dataclass(frozen=True)
class View:
    """One attention map: weights as the source holds them and the rows a heatmap draws."""

    name: str  # "attention" for a run; the captured call's layer path for a model
    layer_class: str | None  # the Keras class of the layer, when read from a model
    weights: np.ndarray  # (n, L), (n, Lq, Lk) or (n, heads, Lq, Lk), float32
    rows: np.ndarray  # (n, L) float32
    reduction: str | None  # how weights became rows, e.g. "mean of 2 heads, query 19 (last)"
    summary: RowSummary
    heads: list[dict] = field(default_factory=list)  # head_stats: one dict per head


@dataclass(frozen=True)
class Inspection:
    kind: str  # "run" (recorded attention), "checkpoint" or "model"
    facts: dict  # JSON-ready: what was inspected (see docs/inspect.md)
    views: list[View]
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # (n, L) bool, probe only
    samples: int = DEFAULT_SAMPLES  # heatmap rows to show
    tokens: list[list[str]] | None = None  # labels of each sample's positions (tokens.py)

    def to_json(self) -> dict:
        shown = min(self.samples, self.views[0].rows.shape[0]) if self.views else 0
        return {
            "kind": self.kind,
            **self.facts,
            "masks": {name: mask[:shown].astype(int).tolist() for name, mask in self.masks.items()},
            "tokens": None if self.tokens is None else self.tokens[:shown],
            "views": [_view_json(view, shown) for view in self.views],
        }


def _view_json(view: View, shown: int) -> dict:
    summary = view.summary
    return {
        "name": view.name,
        "layer_class": view.layer_class,
        "shape": list(view.weights.shape),
        "reduction": view.reduction,
        "mass": summary.masses,
        "entropy": summary.entropy,
        "entropy_nats": summary.entropy_nats,
        "argmax_histogram": summary.argmax_histogram,
        "heads": view.heads,
        "rows": np.round(view.rows[:shown].astype(np.float64), 6).tolist(),
    }


# ---- statistics of rows --------------------------------------------------------------------


def summarize(rows: np.ndarray, masks: dict[str, np.ndarray] | None = None) -> RowSummary:
    """Mass on each mask, entropy and the argmax histogram of (n, L) rows."""
    seq_len = rows.shape[-1]
    entropy = entropy_nats = None
    if not (rows < 0).any():
        sums = rows.sum(axis=-1, keepdims=True, dtype=np.float64)
        # a layer named with --layer may not sum to 1: the entropy of the rows as shares
        entropy_nats = float(row_entropy(rows / np.where(sums > 0, sums, 1.0)).mean())
        entropy = entropy_nats / math.log(seq_len) if seq_len > 1 else 0.0
    histogram = np.bincount(rows.argmax(axis=-1), minlength=seq_len)
    return RowSummary(
        masses={name: mass(rows, mask) for name, mask in (masks or {}).items()},
        entropy=entropy, entropy_nats=entropy_nats,
        argmax_histogram=[int(count) for count in histogram],
    )


def head_stats(weights: np.ndarray, tokens: np.ndarray | None = None,
               padding: np.ndarray | None = None) -> list[dict]:
    """Per head of (n, L) or (n, heads, Lq, Lk) weights: entropy as a share of the uniform
    row's (0 all on one position, 1 uniform), over every sample and query, and the key
    position that is the argmax of most rows. Multi-head weights also get what the head does
    (analysis.heads): its label, the number it rests on and every statistic."""
    weights = np.asarray(weights, dtype=np.float64)
    labelled = weights.ndim == 4 and not (weights < 0).any()
    labels = label_rows(weights, tokens, padding) if labelled else None
    if weights.ndim == 2:
        weights = weights[:, None, None, :]
    elif weights.ndim == 3:
        weights = weights[:, None]
    keys = weights.shape[-1]
    stats = []
    for head in range(weights.shape[1]):
        rows = weights[:, head].reshape(-1, keys)
        rows = rows[rows.sum(axis=1) > 0]  # padded queries have no weights
        if not len(rows) or (rows < 0).any():
            stats.append({"entropy": None, "argmax": None})
            continue
        rows = rows / rows.sum(axis=1, keepdims=True)
        entropy = float(row_entropy(rows).mean() / math.log(keys)) if keys > 1 else 0.0
        argmax = int(np.bincount(rows.argmax(axis=1), minlength=keys).argmax())
        stats.append({"entropy": entropy, "argmax": argmax})
        if labels is not None:
            stats[-1].update(label=labels[head]["label"], label_value=labels[head]["value"],
                             statistics=labels[head]["statistics"])
    return stats


def to_rows(weights: np.ndarray, head: str | None = None,
            query: str | None = None) -> tuple[np.ndarray, str | None]:
    """(n, L) rows of attention weights, and how they were reduced (None: as they are).

    (n, L) is kept; (n, L, 1) is squeezed; (n, Lq, Lk) keeps one query row; (n, H, Lq, Lk)
    averages heads (or keeps `head`) and keeps one query row ("last" by default).
    """
    weights = np.asarray(weights, dtype=np.float32)
    if weights.ndim == 3 and weights.shape[-1] == 1:
        weights = weights[..., 0]
    if weights.ndim == 2:
        if head is not None or query is not None:
            raise AttnvizError(
                f"--head and --query apply to self-attention; these weights are "
                f"{weights.shape} (one row per sample): drop them"
            )
        return weights, None
    if weights.ndim == 3:
        if head is not None:
            raise AttnvizError(f"--head: these weights {weights.shape} have no heads: drop it")
        weights = weights[:, None]  # (n, 1, Lq, Lk)
    if weights.ndim == 5:  # grouped heads, as capture stores them: head kv * groups + g
        weights = weights.reshape(weights.shape[0], -1, *weights.shape[3:])
    if weights.ndim == 6:  # attention over two axes (rows over both sum to 1): row-major
        sums = weights.sum(axis=(-2, -1))
        if np.allclose(sums[sums > 0], 1.0, atol=1e-3):
            n, h, q1, q2, k1, k2 = weights.shape
            weights = weights.reshape(n, h, q1 * q2, k1 * k2)
    if weights.ndim != 4:
        raise AttnvizError(
            f"attention of shape {weights.shape} cannot be drawn as rows: attnviz reads (n, L), "
            "(n, Lq, Lk), (n, heads, Lq, Lk), grouped heads (n, kv_heads, groups, Lq, Lk) and "
            "attention over several axes (n, heads, q1, q2, k1, k2); save the weights yourself "
            "to look at others"
        )
    heads, queries = weights.shape[1], weights.shape[2]
    chosen_head = parse_head(head or "mean")
    chosen_query = parse_query(query or "last")
    rows = attention_rows(weights, chosen_head, chosen_query)
    parts = []
    if heads > 1:
        parts.append(f"mean of {heads} heads" if chosen_head == "mean" else f"head {chosen_head}")
    parts.append({"last": f"query {queries - 1} (last)", "mean": "mean over queries"}.get(
        chosen_query, f"query {chosen_query}"))
    return rows, ", ".join(parts)


def view_of(name: str, weights: np.ndarray, options: InspectOptions,
            masks: dict[str, np.ndarray] | None = None, layer_class: str | None = None,
            inputs=None) -> View:
    """A View of `weights`, reduced to rows as --head and --query say; `inputs` (the probe's
    or the model's) give each head's token ids and padding."""
    if not np.isfinite(weights).all():  # no entropy, no colour: refuse rather than draw NaN
        raise AttnvizError(f"{name}: the weights contain NaN or Inf: a model that diverged "
                           "has no attention to show")
    rows, reduction = to_rows(weights, options.head, options.query)
    tokens = padding = None
    if inputs is not None:
        tokens, padding = structural.probe_tokens(inputs), structural.probe_padding(inputs)
    return View(name, layer_class, np.asarray(weights, dtype=np.float32), rows, reduction,
                summarize(rows, masks), head_stats(weights, tokens, padding))


def with_rollout(inspection: Inspection, options: InspectOptions) -> Inspection:
    """The inspection with one view instead of its layers': their rollout (analysis.rollout),
    reduced to rows as --query says."""
    layers = [view for view in inspection.views
              if view.weights.ndim == 4 and view.weights.shape[2] == view.weights.shape[3]]
    if not layers:
        raise AttnvizError("--rollout follows self-attention (n, heads, L, L) from layer to "
                           "layer, and none of these attention calls is that: drop --rollout")
    if options.head is not None:
        raise AttnvizError("--rollout averages the heads of every layer: drop --head")
    flow = rollout([view.weights for view in layers])
    view = view_of("rollout", flow, options, inspection.masks or None)
    names = ", ".join(view.name for view in layers)
    view = replace(view, reduction=f"rollout of {len(layers)} layers ({names}), "
                   f"{view.reduction}")
    return replace(inspection, views=[view])


def samples_shown(options: InspectOptions) -> int:
    if options.samples is None:
        return DEFAULT_SAMPLES
    if options.samples < 1:
        raise AttnvizError(f"--samples {options.samples} must be at least 1")
    return options.samples


# ---- runs ----------------------------------------------------------------------------------


def run_facts(run: Run, point: int) -> dict:
    """What trained, epochs trained and the loss at `point` (an epoch, or a step on a run
    recorded by steps) next to the task's baselines."""
    config = run.config
    step = None
    epoch = point
    if run.axis == "step":
        step, epoch = point, run.point_epoch(point)
    record = run.history[epoch - 1] if 1 <= epoch <= run.epochs_done else None
    if step is not None and run.epoch_of(step) is None:  # inside an epoch: its steps' loss
        record = {"loss": run.point_losses().get(step), "val_loss": None}
    if config is not None:
        model = {"encoder": config.encoder, "attention": config.attention,
                 "units": config.units, "seq_len": config.seq_len,
                 "heads": config.heads if config.attention == "self" else None}
    else:
        info = run.model_info
        model = {"name": info.get("name"), "class": info.get("class"),
                 "parameters": info.get("parameters"), "source": info.get("source")}
    return {
        "run": str(run.root),
        "task": run.task["name"] if run.task else None,
        "model": model,
        "layers": run.layer_names,
        "epochs_trained": run.epochs_done,
        "epochs_planned": run.epochs_planned,
        "epoch": epoch,
        "step": step,
        "loss": None if record is None else {"loss": record["loss"],
                                             "val_loss": record["val_loss"]},
        "baselines": [{"name": b["name"], "mse": b["mse"]} for b in run.baselines],
    }


def inspect_run(run: Run, options: InspectOptions) -> Inspection:
    """The recorded probe attention of `options.epoch` (default: the last recorded), of every
    recorded layer or of those --layer selects."""
    for flag, value in (("--input", options.input), ("--key", options.key),
                        ("--unsafe", options.unsafe or None),
                        ("--import", options.imports or None)):
        if value is not None:
            raise AttnvizError(
                f"{flag} reads a checkpoint or a model file: add --checkpoint N (or last) to "
                f"recompute {run.root}'s attention on new data"
            )
    point = chosen_point(run, options)
    names = run.pick_layers(options.layers)
    views = []
    for name in names:
        check_recorded_heads(run, options.head, name)
        views.append(view_of(name, run.attention_at(point, name), options, run.masks_for(name),
                             run.layer(name)["class"], run.probe.x))
    masks = run.masks_for(names[0])
    return Inspection("run", run_facts(run, point), views, masks, samples_shown(options),
                      position_labels(run, options.tokens))


def input_labels(path: Path | None, x, views: list[View]) -> list[list[str]] | None:
    """Labels of the positions of inputs `x`: --tokens `path`, else their token ids."""
    if not views:
        return None
    n = views[0].rows.shape[0]
    if path is not None:
        return given_labels(load_tokens(path), x, n, [view.rows.shape[-1] for view in views],
                            f"--tokens {path}")
    ids = structural.probe_tokens(x)
    return None if ids is None else [[str(token) for token in row] for row in ids[:n].tolist()]


def chosen_point(run: Run, options: InspectOptions) -> int:
    """--step or --epoch as a point on the run's axis (a run recorded by steps: --epoch N is
    the record at epoch N's end)."""
    if options.step is None:
        return run.resolve_epoch_point(options.epoch)
    if options.epoch is not None:
        raise AttnvizError("--epoch and --step both pick the record to show: give one")
    if run.axis != "step":
        raise AttnvizError(f"--step: {run.root} records at epoch ends only (train "
                           "--record-steps N records inside epochs): use --epoch")
    return run.resolve_point(options.step)


def checkpoint_epoch(run: Run, name: str) -> int:
    """--checkpoint as an epoch: a number, 'last', or a file name under RUN/checkpoints."""
    if name == "last":
        if not run.checkpoints:
            raise AttnvizError(f"{run.root} has no checkpoint yet")
        return run.checkpoints[-1]
    match = re.fullmatch(r"(?:checkpoints/)?epoch_(\d+)\.keras|(\d+)", name)
    if match is None:
        listed = ", ".join(f"epoch_{e:04d}.keras" for e in run.checkpoints) or "none"
        raise AttnvizError(f"--checkpoint {name!r}: give an epoch number, last, or a file "
                           f"under {run.root}/checkpoints ({listed})")
    return int(match.group(1) or match.group(2))


# ---- inputs --------------------------------------------------------------------------------


def load_input(path: Path, key: str | None = None) -> np.ndarray | dict[str, np.ndarray]:
    """The array in a .npy, .csv (numbers, one sample per line) or an .npz (`key`).

    An .npz without `key` gives its only array, or every array by name (one per model input).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p.name for p in path.glob("*") if p.suffix.lower() in INPUT_SUFFIXES)
        example = f" such as {path / ('x.npy' if 'x.npy' in files else files[0])}" if files else ""
        raise AttnvizError(f"--input {path} is a folder: pass one of its files{example}")
    if not path.is_file():
        raise AttnvizError(f"--input {path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        raise AttnvizError(f"--input {path}: use a .npy, .npz or .csv file")
    if key is not None and suffix != ".npz":
        raise AttnvizError(f"--key {key} picks an array of an .npz file, not of {path.name}")
    if suffix == ".csv":
        return _load_csv(path)
    loaded = load_untrusted(path, "--input", f"{suffix} file")
    if isinstance(loaded, np.ndarray):
        return _numeric(loaded, str(path))
    with loaded as archive:
        names = list(archive.files)
        if key is not None:
            if key not in names:
                raise AttnvizError(f"--key {key}: {path} holds {', '.join(names) or 'nothing'}")
            names = [key]
        if not names:
            raise AttnvizError(f"--input {path}: the archive holds no array")
        try:
            arrays = {name: _numeric(archive[name], f"{path}[{name}]") for name in names}
        except UNREADABLE as err:  # a member damaged past its header
            raise AttnvizError(f"--input {path}: not a readable .npz file ({err})") from None
    return arrays[names[0]] if len(arrays) == 1 else arrays


def _load_csv(path: Path) -> np.ndarray:
    """Numbers separated by commas, one sample per line; a header line is skipped."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            lines = [row for row in csv.reader(handle)
                     if row and any(cell.strip() for cell in row)]
    except (UnicodeDecodeError, csv.Error) as err:
        raise AttnvizError(f"--input {path}: not a text .csv file ({err})") from None
    if lines and not _numbers(lines[0]):
        lines = lines[1:]
    if not lines:
        raise AttnvizError(f"--input {path}: no rows of numbers")
    width = len(lines[0])
    for number, row in enumerate(lines, start=1):
        if len(row) != width:
            raise AttnvizError(f"--input {path}: data row {number} has {len(row)} values, the "
                               f"first has {width}")
        if not _numbers(row):
            raise AttnvizError(f"--input {path}: data row {number} is not all numbers: "
                               f"{','.join(row)[:60]}")
    return _numeric(np.array([[float(cell) for cell in row] for row in lines],
                             dtype=np.float32), str(path))


def _numbers(row: list[str]) -> bool:
    try:
        [float(cell) for cell in row]
    except ValueError:
        return False
    return True


def _numeric(array: np.ndarray, source: str) -> np.ndarray:
    check_numeric(array, f"--input {source}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise AttnvizError(f"--input {source}: contains NaN or Inf")
    if array.ndim == 0 or array.shape[0] == 0:
        raise AttnvizError(f"--input {source}: has shape {array.shape}: no samples")
    return array


# ---- writing -------------------------------------------------------------------------------


def single_view(inspection: Inspection, flag: str) -> View:
    """The one view that --png draws; refuse when a model has several."""
    if len(inspection.views) != 1:
        names = ", ".join(view.name for view in inspection.views)
        raise AttnvizError(f"{flag} draws one attention map and the model has "
                           f"{len(inspection.views)} ({names}): pick one with --layer")
    return inspection.views[0]


def save_weights(views: list[View], path: Path) -> Path:
    """Write the weights as captured: one view to .npy, several to .npz keyed by name."""
    path = Path(path)
    if path.suffix not in (".npy", ".npz"):
        raise AttnvizError(f"--save {path}: name a .npy file (one attention call) or an .npz "
                           "file (one array per call)")
    if path.suffix == ".npy" and len(views) != 1:
        raise AttnvizError(f"--save {path}: {len(views)} attention calls were read: name an .npz "
                           "file to keep one array per call, or pick one with --layer")
    check_output_file(path, "--save")
    with atomic_path(path, suffix=path.suffix, make_folder=True) as tmp, open(tmp, "wb") as handle:
        if path.suffix == ".npy":
            np.save(handle, views[0].weights, allow_pickle=False)
        else:
            np.savez(handle, **{view.name: view.weights for view in views})
    return path


# ---- one entry point for the command line --------------------------------------------------


def is_model_file(target: Path) -> bool:
    return Path(target).suffix == ".keras" and not Path(target).is_dir()


def needs_keras(target: Path, options: InspectOptions) -> bool:
    """Whether inspecting `target` loads a model (so TensorFlow is imported): a model file, or
    a run's checkpoint (attnviz.keras.inspect_model does those)."""
    return is_model_file(target) or options.checkpoint is not None


def inspect_target(target: Path, options: InspectOptions) -> Inspection:
    """Inspect a run directory's recorded attention (no TensorFlow)."""
    target = Path(target)
    if target.is_file():
        raise AttnvizError(f"{target} is neither a run directory nor a .keras model file")
    return inspect_run(Run.open(target), options)
