"""The run directory: one object owns every path, reads and writes them, and checks them.

Layout (format version 1, documented in docs/run-format.md):

    RUN/config.json                  what was trained: config, task, baselines, attention shape
    RUN/probe.npz                    the probe batch: x, y and one mask_<name> per mask
    RUN/attention/epoch_0007.npy     probe attention after epoch 7 (epoch 0 = untrained)
    RUN/attribution/epoch_0007.npy   gradient x input on the probe batch (with --attribution)
    RUN/checkpoints/epoch_0005.keras model + optimizer state after epoch 5
    RUN/state.json                   the commit record: history, what is recorded, sha256 of
                                     every file above; written last, atomically, each epoch

A file not listed in state.json does not exist as far as readers are concerned, so a run
killed at any moment loads as of its last commit. Every read checks the file's sha256.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import shutil
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from attnviz import __version__
from attnviz.config import TrainConfig
from attnviz.errors import AttnvizError, RunFormatError
from attnviz.fsutil import atomic_path, atomic_write_bytes, atomic_write_json, sha256_file
from attnviz.tasks import TaskBatch

FORMAT_VERSION = 1
CONFIG = "config.json"
STATE = "state.json"
PROBE = "probe.npz"


def _epoch_name(kind: str, epoch: int, suffix: str) -> str:
    return f"{kind}/epoch_{epoch:04d}{suffix}"


def _checksum(obj: dict) -> str:
    body = {k: v for k, v in obj.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class Run:
    """A run directory, opened for reading or created for training."""

    def __init__(self, root: Path, header: dict, state: dict):
        self.root = Path(root)
        self.header = header
        self.state = state
        self.config = TrainConfig.from_dict(header["config"])
        self._probe: TaskBatch | None = None

    # ---- creating and opening ------------------------------------------------------------

    @classmethod
    def create(
        cls, root: Path, config: TrainConfig, task_info: dict, attention_info: dict,
        probe: TaskBatch, force: bool = False,
    ) -> Run:
        """Lay out a new run; refuse to touch an existing one unless `force`."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise AttnvizError(f"--out {root} is a file: choose a directory path")
        if root.is_dir() and any(root.iterdir()):
            if not force:
                raise AttnvizError(
                    f"{root} already holds files: use --resume to continue it, --force to "
                    "replace it, or another --out"
                )
            if not (root / CONFIG).is_file():
                raise AttnvizError(
                    f"{root} is not an attnviz run, so --force will not delete it: choose "
                    "another --out"
                )
            for child in (CONFIG, STATE, PROBE):
                (root / child).unlink(missing_ok=True)
            for sub in ("attention", "attribution", "checkpoints"):
                shutil.rmtree(root / sub, ignore_errors=True)
        for sub in ("", "attention", "checkpoints"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        if config.attribution:
            (root / "attribution").mkdir(exist_ok=True)
        header = {
            "format_version": FORMAT_VERSION,
            "attnviz_version": __version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "config": config.to_dict(),
            "task": task_info,
            "attention": attention_info,
        }
        files = {CONFIG: atomic_write_json(root / CONFIG, header)}
        buffer = io.BytesIO()
        np.savez(
            buffer, x=probe.x, y=probe.y,
            **{f"mask_{name}": mask for name, mask in probe.masks.items()},
        )
        files[PROBE] = atomic_write_bytes(root / PROBE, buffer.getvalue())
        state = {
            "format_version": FORMAT_VERSION, "history": [], "attention_epochs": [],
            "attribution_epochs": [], "checkpoints": [], "finished": False, "files": files,
        }
        run = cls(root, header, state)
        run._probe = probe
        run.commit()
        return run

    @classmethod
    def open(cls, root: Path) -> Run:
        """Open an existing run, checking its format and the checksums of its headers."""
        root = Path(root)
        if not root.exists():
            raise AttnvizError(f"no run at {root}: train one with `attnviz train --out {root}`")
        if not root.is_dir():
            raise AttnvizError(f"{root} is a file, not a run directory")
        state = _read_json(root / STATE, "the run's commit record")
        header = _read_json(root / CONFIG, "the run's config")
        for name, obj in ((STATE, state), (CONFIG, header)):
            version = obj.get("format_version")
            if not isinstance(version, int):
                raise RunFormatError(f"{root / name}: no format_version: not an attnviz run file")
            if version > FORMAT_VERSION:
                raise RunFormatError(
                    f"{root / name}: format version {version} is newer than this attnviz reads "
                    f"({FORMAT_VERSION}): upgrade attnviz"
                )
        if state.get("checksum") != _checksum(state):
            raise RunFormatError(f"{root / STATE}: checksum mismatch: the file was edited or torn")
        _require_keys(root / STATE, state, ("history", "attention_epochs", "attribution_epochs",
                                            "checkpoints", "finished", "files"))
        _require_keys(root / CONFIG, header, ("config", "task", "attention"))
        run = cls.__new__(cls)
        run.root, run.header, run.state, run._probe = root, header, state, None
        run._verify(CONFIG)
        try:
            run.config = TrainConfig.from_dict(header["config"])
            if "epochs" in state:
                run.config = TrainConfig.from_dict({**header["config"], "epochs": state["epochs"]})
        except AttnvizError as err:
            raise RunFormatError(f"{root / CONFIG}: {err}") from None
        return run

    # ---- reading -------------------------------------------------------------------------

    @property
    def history(self) -> list[dict]:
        return self.state["history"]

    @property
    def epochs_done(self) -> int:
        return len(self.state["history"])

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
    def task(self) -> dict:
        return self.header["task"]

    @property
    def mask_names(self) -> list[str]:
        return list(self.header["task"]["mask_names"])

    @property
    def attention_info(self) -> dict:
        return self.header["attention"]

    @property
    def probe(self) -> TaskBatch:
        if self._probe is None:
            data = self._load_npz(PROBE)
            try:
                x, y = data["x"], data["y"]
                masks = {name: data[f"mask_{name}"].astype(bool) for name in self.mask_names}
            except KeyError as err:
                raise RunFormatError(f"{self.root / PROBE}: missing array {err}") from None
            n, seq_len = self.config.probe_size, self.config.seq_len
            if x.shape != (n, seq_len, 1) or y.shape != (n, 1) or any(
                m.shape != (n, seq_len) for m in masks.values()
            ):
                raise RunFormatError(
                    f"{self.root / PROBE}: shapes do not match the config (n={n}, L={seq_len})"
                )
            self._probe = TaskBatch(x=x, y=y, masks=masks)
        return self._probe

    def mask(self, name: str | None = None) -> np.ndarray:
        """The (n, L) bool mask called `name` (default: the task's main mask)."""
        name = name or self.task["main_mask"]
        if name not in self.mask_names:
            raise AttnvizError(
                f"unknown mask {name!r} for task {self.config.task}: choose one of "
                f"{', '.join(self.mask_names)}"
            )
        return self.probe.masks[name]

    def resolve_epoch(self, spec: str | int | None, recorded: Iterable[int] | None = None) -> int:
        """Turn 'last', None or a number into a recorded epoch, or raise naming the choices."""
        recorded = sorted(self.state["attention_epochs"] if recorded is None else recorded)
        if not recorded:
            raise AttnvizError(f"{self.root}: no attention recorded yet: train it first")
        if spec is None or spec == "last":
            return recorded[-1]
        try:
            epoch = int(spec)
        except (TypeError, ValueError):
            raise AttnvizError(f"--epoch {spec!r} is not a number or 'last'") from None
        if epoch not in recorded:
            raise AttnvizError(
                f"epoch {epoch} was not recorded in {self.root}: recorded epochs are "
                f"{_ranges(recorded)}"
            )
        return epoch

    def attention(self, epoch: int) -> np.ndarray:
        """Probe attention recorded after `epoch`, float32, checked against its checksum."""
        if epoch not in self.state["attention_epochs"]:
            raise AttnvizError(f"epoch {epoch} has no recorded attention in {self.root}")
        return self._load_npy(_epoch_name("attention", epoch, ".npy"), self.attention_info["shape"])

    def iter_attention(
        self, epochs: Iterable[int] | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (epoch, attention) one epoch at a time, so memory stays one epoch deep."""
        for epoch in self.state["attention_epochs"] if epochs is None else epochs:
            yield epoch, self.attention(epoch)

    def attribution(self, epoch: int) -> np.ndarray:
        if epoch not in self.state["attribution_epochs"]:
            raise AttnvizError(
                f"epoch {epoch} has no recorded attribution in {self.root}: train with "
                "--attribution"
            )
        shape = [self.config.probe_size, self.config.seq_len]
        return self._load_npy(_epoch_name("attribution", epoch, ".npy"), shape)

    def checkpoint_path(self, epoch: int | None = None) -> Path:
        """The verified .keras checkpoint of `epoch` (default: the latest)."""
        checkpoints = self.state["checkpoints"]
        if not checkpoints:
            raise AttnvizError(f"{self.root} has no checkpoint yet")
        epoch = checkpoints[-1] if epoch is None else epoch
        if epoch not in checkpoints:
            raise AttnvizError(
                f"no checkpoint for epoch {epoch} in {self.root}: checkpoints are "
                f"{_ranges(checkpoints)}"
            )
        name = _epoch_name("checkpoints", epoch, ".keras")
        self._verify(name)
        return self.root / name

    def verify_all(self) -> None:
        """Check every file the run lists against its checksum."""
        for name in self.state["files"]:
            self._verify(name)

    # ---- writing (used by training) ------------------------------------------------------

    def save_attention(self, epoch: int, weights: np.ndarray) -> None:
        dtype = self.attention_info["dtype"]
        self._save_npy(_epoch_name("attention", epoch, ".npy"), weights.astype(dtype))
        self._add_epoch("attention_epochs", epoch)

    def save_attribution(self, epoch: int, values: np.ndarray) -> None:
        (self.root / "attribution").mkdir(exist_ok=True)
        self._save_npy(_epoch_name("attribution", epoch, ".npy"), values.astype(np.float32))
        self._add_epoch("attribution_epochs", epoch)

    def write_checkpoint(self, epoch: int, save) -> None:
        """Call `save(tmp_path)` to write a .keras file, then move it into place and list it."""
        name = _epoch_name("checkpoints", epoch, ".keras")
        with atomic_path(self.root / name, suffix=".keras") as tmp:
            save(tmp)
        self.state["files"][name] = sha256_file(self.root / name)
        self._add_epoch("checkpoints", epoch)

    def extend(self, epochs: int) -> None:
        """Train to `epochs` in total (resume with more --epochs); recorded in state.json, so
        config.json, written once, keeps its checksum."""
        self.state["epochs"] = epochs
        self.config = self.config.replace(epochs=epochs)
        self.commit()

    def commit(self, record: dict | None = None, finished: bool = False) -> None:
        """Append the epoch's history record (if any) and write state.json atomically."""
        if record is not None:
            if record["epoch"] != self.epochs_done + 1:
                raise RuntimeError(f"epoch {record['epoch']} committed after {self.epochs_done}")
            self.state["history"].append(record)
        self.state["finished"] = finished
        self.state["checksum"] = _checksum(self.state)
        atomic_write_json(self.root / STATE, self.state)

    def rollback_to(self, epoch: int) -> None:
        """Forget everything after `epoch` (the latest checkpoint) so resume redoes it once."""
        self.state["history"] = self.state["history"][:epoch]
        for key in ("attention_epochs", "attribution_epochs", "checkpoints"):
            kept = [e for e in self.state[key] if e <= epoch]
            for dropped in set(self.state[key]) - set(kept):
                folder = {"attention_epochs": "attention", "attribution_epochs": "attribution",
                          "checkpoints": "checkpoints"}[key]
                suffix = ".keras" if key == "checkpoints" else ".npy"
                self.state["files"].pop(_epoch_name(folder, dropped, suffix), None)
            self.state[key] = kept
        self.commit()

    # ---- internals -----------------------------------------------------------------------

    def _add_epoch(self, key: str, epoch: int) -> None:
        if epoch not in self.state[key]:
            self.state[key] = sorted([*self.state[key], epoch])

    def _save_npy(self, name: str, array: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        self.state["files"][name] = atomic_write_bytes(self.root / name, buffer.getvalue())

    def _verify(self, name: str) -> bytes | None:
        path = self.root / name
        expected = self.state["files"].get(name)
        if expected is None:
            raise RunFormatError(f"{path}: not listed in {STATE}: the run is inconsistent")
        if not path.is_file():
            raise RunFormatError(f"{path}: missing (or not a file), though {STATE} lists it")
        if name.endswith(".keras"):
            actual = sha256_file(path)
            data = None
        else:
            data = path.read_bytes()
            actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise RunFormatError(f"{path}: checksum mismatch: the file is torn or was modified")
        return data

    def _load_npy(self, name: str, shape: list[int]) -> np.ndarray:
        data = self._verify(name)
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise RunFormatError(f"{self.root / name}: not a readable .npy file ({err})") from None
        if list(array.shape) != list(shape):
            raise RunFormatError(
                f"{self.root / name}: shape {array.shape} but the run says {tuple(shape)}"
            )
        array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise RunFormatError(f"{self.root / name}: contains NaN or Inf")
        return array

    def _load_npz(self, name: str) -> dict[str, np.ndarray]:
        data = self._verify(name)
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise RunFormatError(f"{self.root / name}: not a readable .npz file ({err})") from None


def _read_json(path: Path, what: str) -> dict:
    if not path.exists():
        raise RunFormatError(
            f"{path}: missing, so {path.parent} is not a complete attnviz run ({what}); "
            "train it again with --force"
        )
    if not path.is_file():
        raise RunFormatError(f"{path}: is a directory, expected {what}")
    try:
        obj = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as err:
        raise RunFormatError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(obj, dict):
        raise RunFormatError(f"{path}: expected a JSON object")
    return obj


def _require_keys(path: Path, obj: dict, keys: tuple[str, ...]) -> None:
    missing = [key for key in keys if key not in obj]
    if missing:
        raise RunFormatError(f"{path}: missing keys {missing}")


def _ranges(epochs: list[int]) -> str:
    """Summarise sorted epochs as '0-20' or '0, 5, 10'."""
    if len(epochs) > 2 and epochs == list(range(epochs[0], epochs[-1] + 1)):
        return f"{epochs[0]}-{epochs[-1]}"
    return ", ".join(map(str, epochs))
