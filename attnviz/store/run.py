"""The run directory: one object owns every path, reads and writes them, and checks them.

Layout (format version 2, documented in docs/run-format.md):

    RUN/config.json                     what was recorded: the layers and their shapes, the
                                        probe's inputs and masks, the model; for a built-in
                                        task also its training config, task and baselines
    RUN/probe.npz                       the probe batch: x (or x/<input> per model input),
                                        y when known, and one mask_<name> per mask
    RUN/attention/00/epoch_0007.npy     probe attention of layer 0 after epoch 7 (epoch 0 =
                                        untrained); one folder per recorded layer
    RUN/attribution/epoch_0007.npy      gradient x input on the probe batch (--attribution)
    RUN/checkpoints/epoch_0005.keras    model + optimizer state after epoch 5
    RUN/explain.json                    the latest `attnviz explain` report (once it has run)
    RUN/state.json                      the commit record: history, what is recorded, sha256
                                        of every file above; written last, atomically

A file not listed in state.json does not exist as far as readers are concerned, so a run
killed at any moment loads as of its last commit. Every read checks the file's sha256.
Format 1 runs (one layer, attention/epoch_0007.npy) are read as a run of one layer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnviz import __version__
from attnviz.errors import AttnvizError, RunFormatError, did_you_mean
from attnviz.store import lock
from attnviz.store.arrays import read_npy, read_npz
from attnviz.store.config import TrainConfig
from attnviz.store.files import atomic_path, atomic_write_bytes, atomic_write_json, sha256_file
from attnviz.store.layers import (
    file_shape,
    from_stored,
    kind_of,
    matches,
    to_stored,
)
from attnviz.store.quant import Q8
from attnviz.store.samples import TaskBatch
from attnviz.store.schema import (
    CONFIG,
    EPOCH_FILE,
    EPOCH_FILES,
    EPOCH_FOLDERS,
    EXPLAIN,
    FORMAT_VERSION,
    HELDOUT,
    PROBE,
    RECORDING_DEFAULTS,
    STATE,
    TEMP_FILE,
    check_explain,
    check_state,
    check_version,
    epoch_file,
    read_json,
    read_run_header,
    step_file,
)


@dataclass(frozen=True)
class RunSpec:
    """What config.json says of a new run, besides the probe batch itself."""

    layers: list[dict]  # per recorded layer: name, class, shape (probe n first), dtype
    recording: dict  # epochs (None: unknown), record_every, checkpoint_every, record_heads
    main_mask: str | None = None  # the mask shown while training and scored first
    config: TrainConfig | None = None  # a built-in task's training config
    task: dict | None = None  # a built-in task: description, masks, baselines
    model: dict | None = None  # what trained: name, class, parameters, inputs, source
    tokens: list[list[str]] | None = None  # the probe positions' labels, one row per sample




def _checksum(obj: dict) -> str:
    body = {k: v for k, v in obj.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class Run:
    """A run directory, read: what every command but `train` and `explain` opens. It has no
    way to write; RunWriter has."""

    def __init__(self, root: Path, header: dict, state: dict):
        self.root = Path(root)
        self.header = header  # config.json as a format 2 header (format 1 is upgraded)
        self.state = state
        config = header.get("config")
        self.config: TrainConfig | None = None
        if config is not None:  # state.json's epochs: --resume --epochs extended the run
            self.config = TrainConfig.from_dict(config)
            if "epochs" in state:
                self.config = self.config.replace(epochs=state["epochs"]).validate()
        self._probe: TaskBatch | None = None

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, root: Path) -> Run:
        """Open an existing run, checking its format and the checksums of its headers."""
        root = Path(root)
        if not root.exists():
            raise AttnvizError(f"no run at {root}{did_you_mean(root, _sibling_runs(root))}: "
                               f"train one with `attnviz train --out {root}`")
        if not root.is_dir():
            raise AttnvizError(f"{root} is a file, not a run directory")
        if not (root / STATE).exists() and not (root / CONFIG).exists():
            raise AttnvizError(_not_a_run(root))
        state = read_json(root / STATE, "the run's commit record")
        check_version(root / STATE, state)
        header = read_run_header(root)
        if state.get("checksum") != _checksum(state):
            raise RunFormatError(f"{root / STATE}: checksum mismatch: the file was edited or torn")
        check_state(root / STATE, state, header)
        try:
            run = cls(root, header, state)
        except AttnvizError as err:
            raise RunFormatError(f"{root / STATE}: {err}") from None
        run._verify(CONFIG)
        return run

    # ---- reading -------------------------------------------------------------------------

    @property
    def history(self) -> list[dict]:
        return self.state["history"]

    @property
    def epochs_done(self) -> int:
        return len(self.state["history"])

    @property
    def epochs_planned(self) -> int | None:
        """Epochs the run is to have in all (None: a callback's run not told yet)."""
        return self.state.get("epochs", self.header["recording"]["epochs"])

    @property
    def recording(self) -> dict:
        return {**RECORDING_DEFAULTS, **self.header["recording"], "epochs": self.epochs_planned}

    @property
    def attention_epochs(self) -> list[int]:
        return list(self.state["attention_epochs"])

    @property
    def attribution_epochs(self) -> list[int]:
        return list(self.state["attribution_epochs"])

    @property
    def checkpoints(self) -> list[int]:
        return list(self.state["checkpoints"])

    @property
    def task(self) -> dict | None:
        """The built-in task (description, masks, baselines); None for a user's model."""
        return self.header.get("task")

    @property
    def baselines(self) -> list[dict]:
        return list(self.task["baselines"]) if self.task else []

    @property
    def model_info(self) -> dict:
        return self.header.get("model") or {}

    @property
    def script_classes(self) -> tuple[str, ...]:
        """The model's classes its training script defined (__main__), named by the recorder."""
        return tuple(self.model_info.get("script_classes") or ())

    @property
    def mask_names(self) -> list[str]:
        return list(self.header["probe"]["masks"])

    @property
    def main_mask(self) -> str | None:
        return self.header["probe"]["main_mask"]

    @property
    def layers(self) -> list[dict]:
        """The recorded layers: name, class, kind, shape, dtype, folder."""
        return list(self.header["layers"])

    @property
    def layer_names(self) -> list[str]:
        return [layer["name"] for layer in self.header["layers"]]

    def layer(self, name: str | None = None) -> dict:
        """The recorded layer called `name`; without a name the only one, or the first."""
        layers = self.header["layers"]
        if name is None:
            return layers[0]
        for layer in layers:
            if layer["name"] == name:
                return layer
        picked = self.select_layers(name)
        if len(picked) == 1:
            return picked[0]
        listed = ", ".join(self.layer_names)
        if picked:
            raise AttnvizError(f"--layer {name} matches {len(picked)} recorded layers: pick "
                               f"one of {listed}")
        raise AttnvizError(f"--layer {name}{did_you_mean(name, self.layer_names)}: "
                           f"{self.root} recorded no such layer; it recorded {listed}")

    def select_layers(self, pattern: str) -> list[dict]:
        """The recorded layers whose name is `pattern` or matches it as a glob."""
        return [layer for layer in self.header["layers"] if matches(layer["name"], [pattern])]

    def pick_layers(self, patterns: Sequence[str]) -> list[str]:
        """The names that --layer's patterns (paths or globs) pick, in the order given, once
        each; every recorded layer without a pattern. A pattern that picks nothing is refused,
        naming the layers the run recorded."""
        if not patterns:
            return self.layer_names
        names = []
        for pattern in patterns:
            picked = self.select_layers(pattern) or [self.layer(pattern)]  # layer() refuses
            names += [layer["name"] for layer in picked]
        return list(dict.fromkeys(names))

    def layer_info(self, name: str | None = None) -> dict:
        """A recorded layer's name, class, kind, shape and dtype, and how heads were
        recorded."""
        layer = self.layer(name)
        return {**layer, "record_heads": self.header["recording"]["record_heads"]}

    @property
    def probe(self) -> TaskBatch:
        if self._probe is None:
            self._probe = self._read_batch(PROBE, self.header["probe"])
        return self._probe

    @property
    def heldout(self) -> TaskBatch | None:
        """The held-out samples (inputs and targets) the recorder kept, or None."""
        info = self.header.get("heldout")
        return None if info is None else self._read_batch(HELDOUT, info)

    @property
    def heldout_given(self) -> int | None:
        """How many held-out samples the user gave (the run keeps the first of them)."""
        info = self.header.get("heldout")
        return None if info is None else info["given"]

    def _read_batch(self, name: str, info: dict) -> TaskBatch:
        """probe.npz or heldout.npz, every array checked against the header."""
        wanted = {key: (spec["shape"], "biu" if key.startswith("mask_") else "fiu")
                  for key, spec in _probe_arrays(info).items()}
        arrays = read_npz(self._verify(name), self.root / name, wanted)
        for key in wanted:
            if arrays[key].dtype.kind == "f" and not np.isfinite(arrays[key]).all():
                raise RunFormatError(f"{self.root / name}: array {key} contains NaN or Inf")
        for mask in info["masks"]:
            if not np.isin(arrays[f"mask_{mask}"], (0, 1)).all():
                raise RunFormatError(f"{self.root / name}: mask {mask} is not 0/1")
        masks = {mask: arrays[f"mask_{mask}"].astype(bool) for mask in info["masks"]}
        if info["structure"] == "dict":
            x = {key: arrays[f"x/{key}"] for key in info["inputs"]}
        elif info["structure"] == "list":
            x = [arrays[f"x/{key}"] for key in info["inputs"]]
        else:
            x = arrays["x"]
        return TaskBatch(x=x, y=arrays.get("y"), masks=masks)

    def mask(self, name: str | None = None) -> np.ndarray:
        """The (n, L) bool mask called `name` (default: the main mask)."""
        name = name or self.main_mask
        if name not in self.mask_names:
            if not self.mask_names:
                raise AttnvizError(f"unknown mask {name!r}: {self.root} was recorded without "
                                   "masks (record it with masks to score it)")
            raise AttnvizError(
                f"unknown mask {name!r}{did_you_mean(name, self.mask_names)} in {self.root}: "
                f"choose one of {', '.join(self.mask_names)}"
            )
        return self.probe.masks[name]

    def masks_for(self, layer: str | None = None) -> dict[str, np.ndarray]:
        """The masks that fit a layer's key positions, the main mask first."""
        keys = self.layer(layer)["shape"][-1]
        names = [m for m in [self.main_mask, *self.mask_names] if m]
        return {name: self.mask(name) for name in dict.fromkeys(names)
                if self.mask(name).shape[-1] == keys}

    def resolve_epoch(self, spec: str | int | None, recorded: Iterable[int] | None = None) -> int:
        """Turn 'last', None or a number into a recorded epoch, or raise naming the choices."""
        recorded = sorted(self.state["attention_epochs"] if recorded is None else recorded)
        return self._resolve(spec, recorded, "epoch", _ranges)

    def _resolve(self, spec: str | int | None, recorded: list[int], unit: str,
                 listed: Callable[[list[int]], str]) -> int:
        """'last', None or a number into one of `recorded` (epochs or steps, `unit`), or
        raise naming the choices as `listed` writes them."""
        if not recorded:
            raise AttnvizError(f"{self.root}: no attention recorded yet: train it first")
        if spec is None or spec == "last":
            return recorded[-1]
        try:
            point = int(spec)
        except (TypeError, ValueError):
            raise AttnvizError(f"--{unit} {spec!r} is not a number or 'last'") from None
        if point not in recorded:
            raise AttnvizError(f"{unit} {point} was not recorded in {self.root}: recorded "
                               f"{unit}s are {listed(recorded)}")
        return point

    def attention(self, epoch: int, layer: str | None = None) -> np.ndarray:
        """Probe attention of `layer` recorded after `epoch`, float32, checksum checked."""
        if epoch not in self.state["attention_epochs"]:
            raise AttnvizError(f"epoch {epoch} has no recorded attention in {self.root}")
        info = self.layer(layer)
        if info["dtype"] != Q8:
            return self._load_npy(epoch_file("attention_epochs", epoch, info["folder"]),
                                  info["shape"])
        return from_stored(info, self.q8_codes(epoch, layer))

    def q8_codes(self, epoch: int, layer: str | None = None) -> np.ndarray:
        """A q8 layer's epoch file as stored (attnviz.store.quant), checksum and scales
        checked: for a writer that keeps it q8 without quantising it twice."""
        if epoch not in self.state["attention_epochs"]:
            raise AttnvizError(f"epoch {epoch} has no recorded attention in {self.root}")
        info = self.layer(layer)
        if info["dtype"] != Q8:
            raise RuntimeError(f"layer {info['name']} is stored as {info['dtype']}, not q8")
        return self._q8_file(epoch_file("attention_epochs", epoch, info["folder"]), info)

    def _q8_file(self, name: str, info: dict) -> np.ndarray:
        codes = read_npy(io.BytesIO(self._verify(name)), self.root / name, file_shape(info), "u")
        if codes.dtype != np.uint8:
            raise RunFormatError(f"{self.root / name}: dtype {codes.dtype} but the run stores "
                                 "q8 (uint8)")
        scales = np.ascontiguousarray(codes[..., -2:]).view("<f2")
        if not (np.isfinite(scales).all() and (scales >= 0).all()):
            raise RunFormatError(f"{self.root / name}: a row's scale is NaN, Inf or negative")
        return codes

    def iter_attention(self, epochs: Iterable[int] | None = None,
                       layer: str | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (epoch, attention) one epoch at a time, so memory stays one epoch deep."""
        for epoch in self.state["attention_epochs"] if epochs is None else epochs:
            yield epoch, self.attention(epoch, layer)

    # ---- the run's axis: epochs, or steps when it records by steps ---------------------

    @property
    def axis(self) -> str:
        """What the run's records are numbered by: "step" when it records every N training
        steps (recording.every_steps), else "epoch"."""
        return "step" if self.recording.get("every_steps") else "epoch"

    @property
    def step_records(self) -> list[dict]:
        """The records taken inside epochs: {"step", "epoch" (epochs done before it), "loss"
        (the mean training loss over the steps since the record before)}."""
        return list(self.state.get("steps", []))

    def epoch_step(self, epoch: int) -> int | None:
        """The training steps done at the end of `epoch` (None where the run does not say)."""
        if epoch == 0:
            return 0
        return self.history[epoch - 1].get("step") if 0 < epoch <= self.epochs_done else None

    @property
    def points(self) -> list[int]:
        """Every recorded attention in training order, numbered on the run's axis: its
        epochs, or (by steps) the training steps done when each was read."""
        if self.axis == "epoch":
            return self.attention_epochs
        ends = {self.epoch_step(e) for e in self.state["attention_epochs"]} - {None}
        return sorted(ends | {record["step"] for record in self.state.get("steps", [])})

    def _source(self, point: int) -> tuple[str, int]:
        """("epoch", E) or ("step", S): where the record at `point` is kept."""
        if self.axis == "epoch":
            if point in self.state["attention_epochs"]:
                return "epoch", point
        else:
            for epoch in self.state["attention_epochs"]:
                if self.epoch_step(epoch) == point:
                    return "epoch", epoch
            if any(record["step"] == point for record in self.state.get("steps", [])):
                return "step", point
        raise AttnvizError(f"{self.axis} {point} has no recorded attention in {self.root}")

    def attention_at(self, point: int, layer: str | None = None) -> np.ndarray:
        """The attention of `layer` recorded at `point` on the run's axis (see points)."""
        kind, number = self._source(point)
        if kind == "epoch":
            return self.attention(number, layer)
        info = self.layer(layer)
        name = step_file(number, info["folder"])
        if info["dtype"] != Q8:
            return self._load_npy(name, info["shape"])
        return from_stored(info, self._q8_file(name, info))

    def q8_codes_at(self, point: int, layer: str | None = None) -> np.ndarray:
        """q8_codes of the record at `point` on the run's axis."""
        kind, number = self._source(point)
        if kind == "epoch":
            return self.q8_codes(number, layer)
        info = self.layer(layer)
        if info["dtype"] != Q8:
            raise RuntimeError(f"layer {info['name']} is stored as {info['dtype']}, not q8")
        return self._q8_file(step_file(number, info["folder"]), info)

    def iter_points(self, points: Iterable[int] | None = None,
                    layer: str | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (point, attention) one record at a time, in the order given (default: all)."""
        for point in self.points if points is None else points:
            yield point, self.attention_at(point, layer)

    def resolve_point(self, spec: str | int | None) -> int:
        """'last', None or a number into a recorded point on the run's axis, or raise naming
        the choices."""
        if self.axis == "epoch":
            return self.resolve_epoch(spec)
        return self._resolve(spec, self.points, "step", _few)

    def resolve_epoch_point(self, spec: str | int | None) -> int:
        """--epoch as a point on the run's axis: a recorded epoch, or on a run recorded by
        steps the record at epoch N's end ('last' or None: the last record)."""
        if self.axis == "epoch" or spec in (None, "last"):
            return self.resolve_point(spec)
        epoch = self.resolve_epoch(spec)
        point = self.epoch_step(epoch)
        if point is None:
            raise AttnvizError(f"{self.root} does not say at which step epoch {epoch} ended: "
                               "pick a record with --step")
        return point

    def point_epoch(self, point: int) -> int:
        """The epoch a point was recorded in: the epoch it ends, or (inside an epoch) the
        epoch being trained."""
        kind, number = self._source(point)
        if kind == "epoch":
            return number
        return next(r["epoch"] for r in self.state["steps"] if r["step"] == number) + 1

    def epoch_of(self, point: int) -> int | None:
        """The epoch whose end `point` records (None: a record inside an epoch)."""
        kind, number = self._source(point)
        return number if kind == "epoch" else None

    def point_title(self, point: int) -> str:
        """How a point is named to people: "epoch 5/20", or "step 650 · epoch 7/12"."""
        total = self.epochs_planned
        if self.axis == "epoch":
            return f"epoch {point}/{total}"
        return f"step {point} · epoch {self.point_epoch(point)}/{total}"

    def point_losses(self) -> dict[int, float | None]:
        """The training loss at each point: by epochs, the epoch's mean loss; by steps, the
        mean over the steps since the record before (the untrained model's: None)."""
        losses: dict[int, float | None] = {}
        for epoch in self.state["attention_epochs"]:
            point = epoch if self.axis == "epoch" else self.epoch_step(epoch)
            if point is not None:
                entry = self.history[epoch - 1] if epoch else {}
                losses[point] = entry.get("step_loss", entry.get("loss"))
        if self.axis == "step":
            losses.update({r["step"]: r.get("loss") for r in self.state.get("steps", [])})
        return dict(sorted(losses.items()))

    def attribution(self, epoch: int) -> np.ndarray:
        if epoch not in self.state["attribution_epochs"]:
            raise AttnvizError(
                f"epoch {epoch} has no recorded attribution in {self.root}: train with "
                "--attribution"
            )
        shape = self.header["probe"]["inputs"]["x"]["shape"][:2]
        return self._load_npy(epoch_file("attribution_epochs", epoch), shape)

    def checkpoint_path(self, epoch: int | None = None) -> Path:
        """The verified .keras checkpoint of `epoch` (default: the latest)."""
        checkpoints = self.state["checkpoints"]
        if not checkpoints:
            why = self.state.get("checkpoints_skipped")
            raise AttnvizError(f"{self.root} has no checkpoint" + (
                f": {why}" if why else " yet"))
        epoch = checkpoints[-1] if epoch is None else epoch
        if epoch not in checkpoints:
            raise AttnvizError(
                f"no checkpoint for epoch {epoch} in {self.root}: checkpoints are "
                f"{_ranges(checkpoints)}"
            )
        name = epoch_file("checkpoints", epoch)
        self._verify(name)
        return self.root / name

    def explain_report(self) -> dict | None:
        """The report `attnviz explain` stored in the run (see save_explain), or None."""
        if EXPLAIN not in self.state["files"]:
            return None
        path = self.root / EXPLAIN
        try:
            report = json.loads(self._verify(EXPLAIN))
        except (ValueError, RecursionError) as err:
            raise RunFormatError(f"{path}: not valid JSON ({type(err).__name__})") from None
        check_explain(path, report)
        return report

    # ---- internals -----------------------------------------------------------------------

    def _epoch_names(self, key: str, epoch: int) -> list[str]:
        if key == "attention_epochs":
            return [epoch_file(key, epoch, layer["folder"]) for layer in self.layers]
        return [epoch_file(key, epoch)]

    def _verify(self, name: str) -> bytes | None:
        path = self.root / name
        expected = self.state["files"].get(name)
        if expected is None:
            raise RunFormatError(f"{path}: not listed in {STATE}: the run is inconsistent")
        if not path.is_file():
            raise RunFormatError(f"{path}: missing (or not a file), though {STATE} lists it")
        try:
            if name.endswith(".keras"):
                actual = sha256_file(path)
                data = None
            else:
                data = path.read_bytes()
                actual = hashlib.sha256(data).hexdigest()
        except OSError as err:
            raise RunFormatError(f"{path}: cannot read it ({err.strerror})") from None
        if actual != expected:
            raise RunFormatError(f"{path}: checksum mismatch: the file is torn or was modified")
        return data

    def _load_npy(self, name: str, shape: list[int]) -> np.ndarray:
        array = read_npy(io.BytesIO(self._verify(name)), self.root / name, shape, "f")
        array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise RunFormatError(f"{self.root / name}: contains NaN or Inf")
        return array


# ---- writing ---------------------------------------------------------------------------------


class RunWriter(Run):
    """A run being written: created, resumed or amended. Handed out only to a process that
    holds the run's lock (attnviz.store.lock): `attnviz train`, `explain` storing its report,
    and the AttentionRecorder of a user's fit. Every write lands in a file state.json does
    not list yet; `commit` makes it exist for readers, atomically."""

    @classmethod
    def open(cls, root: Path) -> RunWriter:
        """Open an existing run to write to it (the caller holds its lock)."""
        _check_lock(root)
        return super().open(root)

    @classmethod
    def create(cls, root: Path, spec: RunSpec, probe: TaskBatch, force: bool = False,
               heldout: TaskBatch | None = None, heldout_given: int | None = None,
               ) -> RunWriter:
        """Lay out a new run; refuse to touch an existing one unless `force`. `heldout`:
        held-out samples with targets kept in the run for explain (the first of
        `heldout_given` the user gave). The caller holds the run's lock."""
        root = Path(root)
        header = _new_header(spec, probe)
        if heldout is not None:
            info = _probe_info(heldout, None)
            header["heldout"] = {**info, "given": max(heldout_given or 0, info["size"])}
        replace = check_new_run_dir(root, force)
        _check_lock(root)
        if replace:
            _remove_run_files(root)
        root.mkdir(parents=True, exist_ok=True)
        # config.json first: from then on `--resume` can start a killed creation again
        files = {CONFIG: atomic_write_json(root / CONFIG, header)}
        for layer in header["layers"]:
            (root / layer["folder"]).mkdir(parents=True, exist_ok=True)
        (root / "checkpoints").mkdir(exist_ok=True)
        if spec.config is not None and spec.config.attribution:
            (root / "attribution").mkdir(exist_ok=True)
        files[PROBE] = atomic_write_bytes(root / PROBE, _probe_bytes(probe))
        if heldout is not None:
            files[HELDOUT] = atomic_write_bytes(root / HELDOUT, _probe_bytes(heldout))
        state = {
            "format_version": FORMAT_VERSION, "history": [], "attention_epochs": [],
            "attribution_epochs": [], "checkpoints": [], "finished": False, "files": files,
        }
        run = cls(root, header, state)
        run._probe = probe
        run.commit()
        return run

    def remove_stale_files(self) -> list[Path]:
        """Delete what killed writes left behind: temporary files of the run's own names, and
        epoch files that state.json does not list (so they never existed for readers).

        Only the process that owns the run (training, on resume) may call this.
        """
        removed = []
        folders = ("", *EPOCH_FOLDERS, *(layer["folder"] for layer in self.layers))
        for folder in dict.fromkeys(folders):
            directory = self.root / folder
            if directory.is_symlink() or not directory.is_dir():
                continue
            for path in directory.iterdir():
                unlisted = bool(folder) and EPOCH_FILE.fullmatch(path.name) is not None and (
                    f"{folder}/{path.name}" not in self.state["files"])
                stale = TEMP_FILE.fullmatch(path.name) is not None or unlisted
                if stale and path.is_file() and not path.is_symlink():
                    path.unlink()
                    removed.append(path)
        return removed

    def save_attention(self, epoch: int, weights: dict[str, np.ndarray] | np.ndarray) -> None:
        """Write the attention of `epoch`: {layer name: weights}, or one array for the first
        (the only) layer."""
        if not isinstance(weights, dict):
            weights = {self.layers[0]["name"]: weights}
        for layer in self.layers:
            array = weights[layer["name"]]
            if list(array.shape) != list(layer["shape"]):
                raise RuntimeError(f"layer {layer['name']}: weights {array.shape}, the run "
                                   f"records {tuple(layer['shape'])}")
            self._save_npy(epoch_file("attention_epochs", epoch, layer["folder"]),
                           to_stored(layer, array))
        self._add_epoch("attention_epochs", epoch)

    def save_step_attention(self, step: int, epoch: int, weights: dict[str, np.ndarray],
                            loss: float | None) -> None:
        """Write a record taken inside an epoch, after `step` training steps in all and
        `epoch` whole epochs (recording by steps); the caller commits."""
        records = self.state.setdefault("steps", [])
        if records and records[-1]["step"] >= step:
            raise RuntimeError(f"step {step} recorded after step {records[-1]['step']}")
        for layer in self.layers:
            array = weights[layer["name"]]
            if list(array.shape) != list(layer["shape"]):
                raise RuntimeError(f"layer {layer['name']}: weights {array.shape}, the run "
                                   f"records {tuple(layer['shape'])}")
            self._save_npy(step_file(step, layer["folder"]), to_stored(layer, array))
        records.append({"step": step, "epoch": epoch, "loss": loss})

    def save_attribution(self, epoch: int, values: np.ndarray) -> None:
        (self.root / "attribution").mkdir(exist_ok=True)
        self._save_npy(epoch_file("attribution_epochs", epoch), values.astype(np.float32))
        self._add_epoch("attribution_epochs", epoch)

    def write_checkpoint(self, epoch: int, save) -> None:
        """Call `save(tmp_path)` to write a .keras file, then move it into place and list it."""
        name = epoch_file("checkpoints", epoch)
        (self.root / "checkpoints").mkdir(exist_ok=True)
        with atomic_path(self.root / name, suffix=".keras") as tmp:
            save(tmp)
        self.state["files"][name] = sha256_file(self.root / name)
        self._add_epoch("checkpoints", epoch)

    def skip_checkpoints(self, reason: str) -> None:
        """Record why this run keeps no checkpoints (a model Keras cannot reload)."""
        self.state["checkpoints_skipped"] = reason

    def save_explain(self, report: dict) -> None:
        """Store an explain report (its --json object) and commit: readers need no TensorFlow
        to show it. The caller holds the run's lock (attnviz.store.lock) and opened the run
        under it, so a commit of training is never overwritten."""
        self.state["files"][EXPLAIN] = atomic_write_json(self.root / EXPLAIN, report)
        self.commit()

    def extend(self, epochs: int) -> None:
        """Train to `epochs` in total (resume with more --epochs, or a callback told how many
        epochs fit runs); recorded in state.json, so config.json keeps its checksum."""
        if self.config is not None:
            self.config = self.config.replace(epochs=epochs).validate()  # before state says it
        self.state["epochs"] = epochs
        self.commit()

    def commit(self, record: dict | None = None) -> None:
        """Append the epoch's history record (if any) and write state.json atomically;
        `finished` says whether every planned epoch is trained. Only under the run's lock:
        the commit is what makes a write exist for readers."""
        _check_lock(self.root)
        if record is not None:
            if record["epoch"] != self.epochs_done + 1:
                raise RuntimeError(f"epoch {record['epoch']} committed after {self.epochs_done}")
            self.state["history"].append(record)
        planned = self.epochs_planned
        self.state["finished"] = planned is not None and self.epochs_done >= planned
        self.state["checksum"] = _checksum(self.state)
        atomic_write_json(self.root / STATE, self.state)

    def rollback_to(self, epoch: int) -> None:
        """Forget everything after `epoch` so training from there records each epoch once."""
        self.state["history"] = self.state["history"][:epoch]
        for key in EPOCH_FILES:
            for dropped in [e for e in self.state[key] if e > epoch]:
                for name in self._epoch_names(key, dropped):
                    self.state["files"].pop(name, None)
            self.state[key] = [e for e in self.state[key] if e <= epoch]
        if "steps" in self.state:  # records inside the epochs after `epoch` go too
            dropped = [r for r in self.state["steps"] if r["epoch"] >= epoch]
            for record in dropped:
                for layer in self.layers:
                    self.state["files"].pop(step_file(record["step"], layer["folder"]), None)
            self.state["steps"] = [r for r in self.state["steps"] if r["epoch"] < epoch]
        self.commit()

    def prune_checkpoints(self, keep: int) -> None:
        """Keep the last `keep` checkpoints (0: all): the older ones leave state.json first,
        then the disk, so a kill in between leaves only unlisted files (removed as stale)."""
        dropped = self.state["checkpoints"][:-keep] if keep else []
        if not dropped:
            return
        names = [epoch_file("checkpoints", epoch) for epoch in dropped]
        self.state["checkpoints"] = self.state["checkpoints"][len(dropped):]
        for name in names:
            self.state["files"].pop(name, None)
        self.commit()
        for name in names:
            (self.root / name).unlink(missing_ok=True)

    def _add_epoch(self, key: str, epoch: int) -> None:
        if epoch not in self.state[key]:
            self.state[key] = sorted([*self.state[key], epoch])

    def _save_npy(self, name: str, array: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        self.state["files"][name] = atomic_write_bytes(self.root / name, buffer.getvalue())


def _check_lock(root: Path) -> None:
    if not lock.holds(root):
        raise RuntimeError(f"{root} is written without its lock: take "
                           "attnviz.store.lock.exclusive(root) first")


# ---- the header of a new run, and its folder -------------------------------------------------


def _probe_arrays(info: dict) -> dict[str, dict]:
    """The arrays of probe.npz by key, with their shapes: x (or x/<input>), y, mask_<name>."""
    arrays = {("x" if info["structure"] == "array" else f"x/{name}"): spec
              for name, spec in info["inputs"].items()}
    if info.get("y") is not None:
        arrays["y"] = info["y"]
    for name, width in zip(info["masks"], info["mask_widths"], strict=True):
        arrays[f"mask_{name}"] = {"shape": [info["size"], width]}
    return arrays


def _probe_info(probe: TaskBatch, main_mask: str | None) -> dict:
    x = probe.x
    if isinstance(x, dict):
        structure, inputs = "dict", dict(x)
    elif isinstance(x, (list, tuple)):
        structure, inputs = "list", {f"input_{i}": array for i, array in enumerate(x)}
    else:
        structure, inputs = "array", {"x": x}
    sizes = {int(np.shape(array)[0]) for array in inputs.values()}
    if len(sizes) != 1:
        raise AttnvizError(f"the probe's inputs hold different numbers of samples: {sizes}")
    masks = list(probe.masks)
    if main_mask is not None and main_mask not in masks:
        raise AttnvizError(f"main mask {main_mask!r} is not one of the masks {masks}")
    return {
        "size": sizes.pop(), "structure": structure,
        "inputs": {name: {"shape": list(np.shape(a)), "dtype": str(np.asarray(a).dtype)}
                   for name, a in inputs.items()},
        "y": None if probe.y is None else {"shape": list(np.shape(probe.y)),
                                           "dtype": str(np.asarray(probe.y).dtype)},
        "masks": masks, "mask_widths": [int(m.shape[-1]) for m in probe.masks.values()],
        "main_mask": main_mask if main_mask is not None else (masks[0] if masks else None),
    }


def probe_digest(probe: TaskBatch) -> str:
    """The sha256 state.json lists for the probe.npz of `probe`: equal probes, equal digests."""
    return hashlib.sha256(_probe_bytes(probe)).hexdigest()


def _probe_bytes(probe: TaskBatch) -> bytes:
    info = _probe_info(probe, None)
    x = probe.x
    if info["structure"] == "array":
        arrays = {"x": x}
    else:
        values = x.values() if isinstance(x, dict) else x
        arrays = {f"x/{name}": array for name, array in zip(info["inputs"], values,
                                                            strict=True)}
    if probe.y is not None:
        arrays["y"] = probe.y
    arrays.update({f"mask_{name}": mask for name, mask in probe.masks.items()})
    buffer = io.BytesIO()
    np.savez(buffer, **{key: np.asarray(value) for key, value in arrays.items()})
    return buffer.getvalue()


def _new_header(spec: RunSpec, probe: TaskBatch) -> dict:
    if spec.config is not None:
        spec.config.validate()
    if not spec.layers:
        raise AttnvizError("no attention layer to record")
    probe_info = _probe_info(probe, spec.main_mask)
    if spec.tokens is not None:  # checked by attnviz.analysis.tokens
        probe_info["tokens"] = [list(row) for row in spec.tokens]
    keys = {int(layer["shape"][-1]) for layer in spec.layers}
    for name, width in zip(probe_info["masks"], probe_info["mask_widths"], strict=True):
        if width not in keys:
            raise AttnvizError(f"mask {name} covers {width} positions; the recorded layers "
                               f"attend over {', '.join(map(str, sorted(keys)))}")
    layers = [{"name": layer["name"], "class": layer["class"], "kind": kind_of(layer["shape"]),
               "shape": [int(d) for d in layer["shape"]], "dtype": layer["dtype"],
               "folder": f"attention/{index:02d}"} for index, layer in enumerate(spec.layers)]
    return {
        "format_version": FORMAT_VERSION,
        "attnviz_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": None if spec.config is None else spec.config.to_dict(),
        "task": spec.task,
        "model": spec.model,
        "recording": dict(spec.recording),
        "probe": probe_info,
        "layers": layers,
    }


def check_new_run_dir(root: Path, force: bool) -> bool:
    """Refuse a new run at `root` when it is a file, or holds files and `force` is off, or
    holds files that are no run (which --force never deletes). True when a run is there for
    `force` to replace."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise AttnvizError(f"--out {root} is a file: choose a directory path",
                           python=f"directory {root} is a file: choose a directory path")
    if not (root.is_dir() and _holds_files(root)):
        return False
    if not force:
        raise AttnvizError(
            f"{root} already holds files: use --resume to continue it, --force to "
            "replace it, or another --out",
            python=f"{root} already holds files that are not a run of this model: "
                   "record into another directory")
    if not ((root / CONFIG).is_file() or (root / STATE).is_file()):
        raise AttnvizError(
            f"{root} is not an attnviz run, so --force will not delete it: choose "
            "another --out",
            python=f"{root} is not an attnviz run, so overwrite=True will not delete "
                   "it: record into another directory")
    return True


def _holds_files(root: Path) -> bool:
    """Whether `root` holds anything but temporary files a killed creation left."""
    return any(TEMP_FILE.fullmatch(path.name) is None for path in root.iterdir())


def _sibling_runs(root: Path) -> list[Path]:
    """The runs beside `root`, the paths a mistyped run name was likely meant to be."""
    try:
        return [path for path in root.parent.iterdir() if (path / CONFIG).is_file()]
    except OSError:
        return []


def _remove_run_files(root: Path) -> None:
    """Delete a run for --force: state.json first (from then on nothing is committed),
    config.json last (until then a second --force, or --resume, still knows it for a run).
    Anything of the wrong kind where a run file belongs is left alone and named."""
    for name in (STATE, PROBE, HELDOUT, EXPLAIN, *EPOCH_FOLDERS, CONFIG):
        path = root / name
        folder = name in EPOCH_FOLDERS
        if path.is_symlink() or (path.exists() and path.is_dir() != folder):
            what = "a link" if path.is_symlink() else "a directory" if path.is_dir() else "a file"
            found = f"{path} is {what}, where a run keeps its own {name}: "
            raise AttnvizError(found + "--force will not delete it; remove it yourself",
                               python=found + "overwrite=True will not delete it; remove it "
                                              "yourself")
    for name in (STATE, PROBE, HELDOUT, EXPLAIN):
        (root / name).unlink(missing_ok=True)
    for name in EPOCH_FOLDERS:
        shutil.rmtree(root / name, ignore_errors=True)
    for path in root.iterdir():
        if TEMP_FILE.fullmatch(path.name) and path.is_file():
            path.unlink()
    (root / CONFIG).unlink(missing_ok=True)


def _not_a_run(root: Path) -> str:
    """Why `root`, a folder without a run's files, is not a run: a folder inside one (its
    checkpoints, its attention) names the run; any other says what a run is."""
    for parent in root.resolve().parents:
        if (parent / STATE).is_file() and (parent / CONFIG).is_file():
            shown = parent
            if not root.is_absolute() and parent.is_relative_to(Path.cwd()):
                shown = parent.relative_to(Path.cwd())
            return (f"{root} is a folder inside the run {shown}, not a run: give the run "
                    f"directory {shown}")
    return (f"{root} is not an attnviz run (it has no {STATE}): give a directory that "
            "`attnviz train` or AttentionRecorder wrote")


def _few(points: list[int]) -> str:
    """A long list of recorded points, its ends shown."""
    if len(points) <= 12:
        return ", ".join(map(str, points))
    return f"{', '.join(map(str, points[:6]))}, ..., {', '.join(map(str, points[-3:]))}"


def _ranges(epochs: list[int]) -> str:
    """Summarise sorted epochs as '0-20' or '0, 5, 10'."""
    if len(epochs) > 2 and epochs == list(range(epochs[0], epochs[-1] + 1)):
        return f"{epochs[0]}-{epochs[-1]}"
    return ", ".join(map(str, epochs))
