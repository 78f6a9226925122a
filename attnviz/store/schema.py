"""The run directory's format: its file names, and the checks every file passes before a
run is read (config.json, state.json), with format 1 headers upgraded to format 2 in memory.
Documented in docs/run-format.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

from attnviz.errors import AttnvizError, RunFormatError
from attnviz.store.config import TrainConfig
from attnviz.store.layers import DTYPES, MULTI_HEAD, RECORD_HEADS, TEMPORAL, kind_of, shown_kind
from attnviz.store.quant import Q8

FORMAT_VERSION = 2
# what a run's 'recording' says when it predates these keys: every checkpoint kept, each with
# its optimizer state, no size limit
RECORDING_DEFAULTS = {"keep_checkpoints": 0, "checkpoint_optimizer": True, "max_run_mb": None,
                      "every_steps": None}
CONFIG = "config.json"
STATE = "state.json"
PROBE = "probe.npz"
HELDOUT = "heldout.npz"  # optional: held-out samples the recorder kept, for explain
EXPLAIN = "explain.json"
# each list of recorded epochs in state.json: the folder and suffix of its files (attention
# has a folder per layer below this one, "attention/00", except in format 1 runs)
EPOCH_FILES = {"attention_epochs": ("attention", ".npy"),
               "attribution_epochs": ("attribution", ".npy"),
               "checkpoints": ("checkpoints", ".keras")}
EPOCH_FOLDERS = tuple(folder for folder, _ in EPOCH_FILES.values())
# every name state.json may list: a run never reads a path outside these
LISTABLE = re.compile(r"config\.json|probe\.npz|heldout\.npz|explain\.json"
                      r"|attention/(\d{2,}/)?epoch_\d{4,}\.npy|attention/\d{2,}/step_\d{8,}\.npy"
                      r"|attribution/epoch_\d{4,}\.npy|checkpoints/epoch_\d{4,}\.keras")
LAYER_FOLDER = re.compile(r"attention/\d{2,}")
EPOCH_FILE = re.compile(r"epoch_\d{4,}\.(npy|keras)|step_\d{8,}\.npy")
# what store.files.atomic_path leaves behind when a write is killed: .NAME.RANDOM.tmp[SUFFIX]
TEMP_FILE = re.compile(r"\.(config\.json|state\.json|probe\.npz|heldout\.npz|explain\.json"
                       r"|epoch_\d{4,}\.(npy|keras)|step_\d{8,}\.npy)"
                       r"\.[A-Za-z0-9_]+\.tmp(\.keras)?")
SHA256 = re.compile(r"[0-9a-f]{64}")


def epoch_file(key: str, epoch: int, folder: str | None = None) -> str:
    """The name of `epoch`'s file in the folder of state.json's list `key` (attention: in
    the layer's `folder`)."""
    default, suffix = EPOCH_FILES[key]
    return f"{folder or default}/epoch_{epoch:04d}{suffix}"


def step_file(step: int, folder: str) -> str:
    """The name of the attention file a layer's `folder` holds for a record taken after
    `step` training steps, inside an epoch (recording by steps)."""
    return f"{folder}/step_{step:08d}.npy"


def read_run_header(root: Path) -> dict:
    """config.json, checked, as a format 2 header (a format 1 one is upgraded in memory)."""
    path = Path(root) / CONFIG
    header = read_json(path, "the run's config")
    check_version(path, header)
    if header["format_version"] == 1:
        header = upgrade_v1(path, header)
    check_header(path, header)
    return header


def read_config(root: Path) -> TrainConfig | None:
    """The training config of the run at `root` from config.json alone: to start a run again
    that was killed before its first commit. None for a run of a user's model."""
    config = read_run_header(Path(root))["config"]
    return None if config is None else TrainConfig.from_dict(config)


def upgrade_v1(path: Path, header: dict) -> dict:
    """A format 1 header (one layer, a built-in task) in format 2's shape."""
    require_keys(path, header, ("config", "task", "attention"))
    try:
        config = TrainConfig.from_dict(header["config"])
    except AttnvizError as err:
        raise RunFormatError(f"{path}: {err}") from None
    task, info = header["task"], header["attention"]
    expect(isinstance(task, dict) and isinstance(info, dict), path,
            "'task' and 'attention' must be objects")
    n, seq_len = config.probe_size, config.seq_len
    kind = TEMPORAL if config.attention != "self" else MULTI_HEAD
    expect(info.get("kind") == shown_kind(kind), path,
            f"attention kind {info.get('kind')!r} but the config's {config.attention} "
            "attention is not that")
    names = task.get("mask_names")
    expect(is_list(names, str) and names, path, "task 'mask_names' is not a list of names")
    return {
        **header,
        "model": {"name": f"{config.encoder}_{config.attention}", "class": "Functional",
                  "source": "attnviz train"},
        "recording": {"epochs": config.epochs, "record_every": config.record_every,
                      "checkpoint_every": config.checkpoint_every,
                      "record_heads": config.record_heads},
        "probe": {"size": n, "structure": "array",
                  "inputs": {"x": {"shape": [n, seq_len, 1], "dtype": "float32"}},
                  "y": {"shape": [n, 1], "dtype": "float32"}, "masks": list(names),
                  "mask_widths": [seq_len] * len(names), "main_mask": task.get("main_mask")},
        "layers": [{"name": "attention",
                    "class": "TemporalAttention" if kind == TEMPORAL else "MultiHeadAttention",
                    "kind": kind, "shape": info.get("shape"), "dtype": info.get("dtype"),
                    "folder": "attention"}],
    }


def check_version(path: Path, obj: dict) -> None:
    version = obj.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise RunFormatError(f"{path}: no format_version: not an attnviz run file")
    if version > FORMAT_VERSION:
        raise RunFormatError(
            f"{path}: format version {version} is newer than this attnviz reads "
            f"({FORMAT_VERSION}): upgrade attnviz"
        )


def check_batch(path: Path, batch, what: str) -> None:
    """The header of probe.npz or heldout.npz: a size, inputs of that many samples, targets
    and masks described."""
    expect(isinstance(batch, dict) and isinstance(batch.get("size"), int) and batch["size"] >= 1,
            path, f"'{what}' has no size")
    n = batch["size"]
    expect(batch.get("structure") in ("array", "dict", "list"), path,
            f"{what} 'structure' is not array, dict or list")
    inputs = batch.get("inputs")
    expect(isinstance(inputs, dict) and inputs and all(
        isinstance(spec, dict) and is_shape(spec.get("shape")) and spec["shape"][0] == n
        for spec in inputs.values()), path, f"{what} 'inputs' are not shapes of {n} samples")
    expect(batch["structure"] != "array" or list(inputs) == ["x"], path,
            f"a {what} of one array names it x")
    y = batch.get("y")
    expect(y is None or (isinstance(y, dict) and is_shape(y.get("shape"))), path,
            f"{what} 'y' is not a shape")
    masks, widths = batch.get("masks"), batch.get("mask_widths")
    expect(is_list(masks, str) and is_list(widths, int) and len(masks) == len(widths),
            path, f"{what} 'masks' and 'mask_widths' differ")


def check_header(path: Path, header: dict) -> None:
    """A format 2 header: well formed, its parts consistent with each other."""
    require_keys(path, header, ("config", "task", "model", "recording", "probe", "layers"))
    config = header["config"]
    if config is not None:
        try:
            config = TrainConfig.from_dict(config)
        except AttnvizError as err:
            raise RunFormatError(f"{path}: {err}") from None
    task = header["task"]
    if task is not None:
        expect(isinstance(task, dict) and config is not None and task.get("name") ==
                config.task, path, "'task' does not belong to the config's task")
        baselines = task.get("baselines")
        expect(isinstance(baselines, list) and all(
            isinstance(b, dict) and isinstance(b.get("name"), str) and is_number(b.get("mse"))
            for b in baselines), path, "task 'baselines' is not a list of {name, mse}")
    expect(header["model"] is None or isinstance(header["model"], dict), path,
            "'model' is not an object")
    recording = header["recording"]
    expect(isinstance(recording, dict) and isinstance(recording.get("record_every"), int)
            and recording["record_every"] >= 1 and isinstance(recording.get("checkpoint_every"),
                                                              int)
            and recording["checkpoint_every"] >= 0, path,
            "'recording' needs record_every of at least 1 and checkpoint_every of at least 0")
    tokens = header["probe"].get("tokens") if isinstance(header["probe"], dict) else None
    expect(tokens is None or (isinstance(tokens, list) and len(tokens) ==
                              header["probe"].get("size") and all(is_list(row, str)
                                                                  for row in tokens)), path,
           "probe 'tokens' is not one list of labels per probe sample")
    every_steps = recording.get("every_steps")
    expect(every_steps is None or (isinstance(every_steps, int) and every_steps >= 1), path,
           "'recording' every_steps is not a count of steps (at least 1) or null")
    epochs = recording.get("epochs")
    expect(epochs is None or (isinstance(epochs, int) and epochs >= 0), path,
            f"recording 'epochs' {epochs!r} is not a count")
    expect(recording.get("record_heads") in RECORD_HEADS, path,
            f"recording 'record_heads' is not one of {RECORD_HEADS}")
    keep = recording.get("keep_checkpoints", 0)
    limit = recording.get("max_run_mb")
    expect(isinstance(keep, int) and not isinstance(keep, bool) and keep >= 0
           and isinstance(recording.get("checkpoint_optimizer", True), bool)
           and (limit is None or is_number(limit) and limit > 0), path,
           "recording 'keep_checkpoints' is not a count, 'checkpoint_optimizer' not true or "
           "false, or 'max_run_mb' not a size")
    probe = header["probe"]
    check_batch(path, probe, "probe")
    n = probe["size"]
    heldout = header.get("heldout")
    if heldout is not None:
        check_batch(path, heldout, "heldout")
        expect(heldout.get("y") is not None and not heldout["masks"]
                and isinstance(heldout.get("given"), int) and heldout["given"] >= heldout["size"],
                path, "'heldout' needs targets, no masks, and how many samples were given")
    masks, widths = probe.get("masks"), probe.get("mask_widths")
    expect(is_list(masks, str) and is_list(widths, int) and len(masks) == len(widths)
            and len(set(masks)) == len(masks), path, "probe 'masks' and 'mask_widths' differ")
    expect(probe.get("main_mask") in (None, *masks), path,
            f"probe 'main_mask' {probe.get('main_mask')!r} is not one of {masks}")
    layers = header["layers"]
    expect(isinstance(layers, list) and layers, path, "'layers' lists no layer")
    for layer in layers:
        expect(isinstance(layer, dict) and isinstance(layer.get("name"), str)
                and isinstance(layer.get("class"), str), path, "a layer has no name or class")
        shape = layer.get("shape")
        expect(is_shape(shape) and len(shape) in (2, 4) and shape[0] == n, path,
                f"layer {layer['name']}: shape {shape} is not (n, L) or (n, heads, Lq, Lk) "
                f"with n = {n}")
        expect(layer.get("kind") == kind_of(shape), path,
                f"layer {layer['name']}: kind {layer.get('kind')!r} does not fit its shape")
        expect(layer.get("dtype") in DTYPES and (
            layer.get("dtype") != Q8 or len(shape) == 4), path,
            f"layer {layer['name']}: dtype {layer.get('dtype')!r}: expected float16, float32 "
            "or q8 (q8 for (n, heads, queries, keys) only)")
        folder = layer.get("folder")
        expect(folder == "attention" if header["format_version"] == 1 else
                isinstance(folder, str) and LAYER_FOLDER.fullmatch(folder) is not None, path,
                f"layer {layer['name']}: folder {folder!r} is not one of a run's")
    names = [layer["name"] for layer in layers]
    folders = [layer["folder"] for layer in layers]
    expect(len(set(names)) == len(names) and len(set(folders)) == len(folders), path,
            "two layers share a name or a folder")
    if config is not None:
        first = layers[0]["shape"]
        expect(first[0] == config.probe_size and first[-1] == config.seq_len and (
            len(first) == 2) == (config.attention != "self"), path,
            f"attention shape {first} does not fit the config (probe_size "
            f"{config.probe_size}, seq_len {config.seq_len})")


def is_shape(value) -> bool:
    return is_list(value, int) and bool(value) and all(d >= 0 for d in value)


def check_state(path: Path, state: dict, header: dict) -> None:
    """The commit record: well-formed, its epochs consistent, every name one a run holds."""
    require_keys(path, state, ("history", "attention_epochs", "attribution_epochs",
                                "checkpoints", "finished", "files"))
    history = state["history"]
    expect(isinstance(history, list) and all(
        isinstance(h, dict) and all(h.get(key) is None or is_number(h.get(key))
                                    for key in ("loss", "val_loss"))
        for h in history), path, "'history' is not a list of epoch records with losses")
    done = len(history)
    epochs = [h.get("epoch") for h in history]
    expect(is_list(epochs, int) and epochs == list(range(1, done + 1)), path,
            f"history epochs {epochs[:6]}... are not 1..{done} in order")
    for key, low in (("attention_epochs", 0), ("attribution_epochs", 0), ("checkpoints", 1)):
        values = state[key]
        expect(is_list(values, int) and values == sorted(set(values)), path,
                f"'{key}' is not a sorted list of epochs")
        expect(all(low <= epoch <= done for epoch in values), path,
                f"'{key}' {values} lie outside the {done} epochs trained")
    steps = state.get("steps", [])
    expect(isinstance(steps, list) and all(
        isinstance(s, dict) and is_list([s.get("step"), s.get("epoch")], int)
        and 0 <= s["epoch"] <= done and (s.get("loss") is None or is_number(s["loss"]))
        for s in steps), path, "'steps' is not a list of step records (step, epoch, loss)")
    numbers = [s["step"] for s in steps]
    expect(numbers == sorted(set(numbers)) and all(n > 0 for n in numbers), path,
           "'steps' are not in increasing order of their step")
    expect(all(h.get("step") is None or isinstance(h.get("step"), int) for h in history),
           path, "a history record's 'step' is not a count of steps")
    expect(isinstance(state["finished"], bool), path, "'finished' is not true or false")
    files = state["files"]
    expect(isinstance(files, dict) and all(
        isinstance(digest, str) and SHA256.fullmatch(digest) for digest in files.values()),
        path, "'files' does not map names to sha256 digests")
    strangers = [name for name in files if not LISTABLE.fullmatch(name)]
    expect(not strangers, path, f"lists {strangers[:1]}, which is no file of a run")
    needed = [CONFIG, PROBE, *([HELDOUT] if header.get("heldout") is not None else [])]
    needed += [epoch_file("attention_epochs", epoch, layer["folder"])
               for epoch in state["attention_epochs"] for layer in header["layers"]]
    needed += [step_file(record["step"], layer["folder"])
               for record in steps for layer in header["layers"]]
    needed += [epoch_file(key, epoch) for key in ("attribution_epochs", "checkpoints")
               for epoch in state[key]]
    missing = [name for name in needed if name not in files]
    expect(not missing, path, f"records {missing[0] if missing else ''} but no checksum of it")
    if "epochs" in state:
        expect(isinstance(state["epochs"], int) and state["epochs"] >= done, path,
                f"'epochs' {state['epochs']!r} is not a count of at least {done}")
    skipped = state.get("checkpoints_skipped")
    expect(skipped is None or isinstance(skipped, str), path,
            "'checkpoints_skipped' is not a reason")


def expect(condition, path: Path, problem: str) -> None:
    if not condition:
        raise RunFormatError(f"{path}: {problem}")


def is_list(value, kind: type) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, kind) and not (kind is int and isinstance(item, bool)) for item in value)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_json(path: Path, what: str) -> dict:
    if not path.exists():
        raise RunFormatError(
            f"{path}: missing, so {path.parent} is not a complete attnviz run ({what}); "
            "train it again with --force"
        )
    if not path.is_file():
        raise RunFormatError(f"{path}: is a directory, expected {what}")
    try:
        obj = json.loads(path.read_bytes())
    except OSError as err:
        raise RunFormatError(f"{path}: cannot read it ({err.strerror})") from None
    except (ValueError, RecursionError) as err:  # RecursionError: absurdly deep nesting
        raise RunFormatError(f"{path}: not valid JSON ({type(err).__name__}: {err})") from None
    if not isinstance(obj, dict):
        raise RunFormatError(f"{path}: expected a JSON object")
    return obj


def require_keys(path: Path, obj: dict, keys: tuple[str, ...]) -> None:
    missing = [key for key in keys if key not in obj]
    if missing:
        raise RunFormatError(f"{path}: missing keys {missing}")


def check_explain(path: Path, report) -> None:
    """What a reader of explain.json relies on: an object with the epoch it explained and its
    verdict as sentences (the rest is explain's to define: docs/explain.md)."""
    expect(isinstance(report, dict) and is_list(report.get("verdict"), str)
           and isinstance(report.get("epoch"), int), path,
           "not an explain report (no 'verdict' or 'epoch'): run attnviz explain again")
