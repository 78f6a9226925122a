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
import re
import shutil
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from attnviz import __version__
from attnviz.config import TrainConfig
from attnviz.errors import AttnvizError, RunFormatError, did_you_mean
from attnviz.fsutil import atomic_path, atomic_write_bytes, atomic_write_json, sha256_file
from attnviz.npyguard import ZIP_ERRORS, read_header
from attnviz.tasks import TaskBatch

FORMAT_VERSION = 1
CONFIG = "config.json"
STATE = "state.json"
PROBE = "probe.npz"
# each list of recorded epochs in state.json: the folder and suffix of its files
EPOCH_FILES = {"attention_epochs": ("attention", ".npy"),
               "attribution_epochs": ("attribution", ".npy"),
               "checkpoints": ("checkpoints", ".keras")}
EPOCH_FOLDERS = tuple(folder for folder, _ in EPOCH_FILES.values())
# every name state.json may list: a run never reads a path outside these
LISTABLE = re.compile(r"config\.json|probe\.npz|(attention|attribution)/epoch_\d{4,}\.npy"
                      r"|checkpoints/epoch_\d{4,}\.keras")
EPOCH_FILE = re.compile(r"epoch_\d{4,}\.(npy|keras)")
# what fsutil.atomic_path leaves behind when a write is killed: .NAME.RANDOM.tmp[SUFFIX]
TEMP_FILE = re.compile(r"\.(config\.json|state\.json|probe\.npz|epoch_\d{4,}\.(npy|keras))"
                       r"\.[A-Za-z0-9_]+\.tmp(\.keras)?")
SHA256 = re.compile(r"[0-9a-f]{64}")
# errors numpy's .npy reader and zipfile raise on damaged bytes
_UNREADABLE = (ValueError, OSError, *ZIP_ERRORS)


def _epoch_file(key: str, epoch: int) -> str:
    """The name of `epoch`'s file in the folder of state.json's list `key`."""
    folder, suffix = EPOCH_FILES[key]
    return f"{folder}/epoch_{epoch:04d}{suffix}"


def _checksum(obj: dict) -> str:
    body = {k: v for k, v in obj.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class Run:
    """A run directory, opened for reading or created for training."""

    def __init__(self, root: Path, header: dict, state: dict, config: TrainConfig):
        self.root = Path(root)
        self.header = header
        self.state = state
        self.config = config
        self._probe: TaskBatch | None = None

    # ---- creating and opening ------------------------------------------------------------

    @classmethod
    def create(
        cls, root: Path, config: TrainConfig, task_info: dict, attention_info: dict,
        probe: TaskBatch, force: bool = False,
    ) -> Run:
        """Lay out a new run; refuse to touch an existing one unless `force`."""
        root, config = Path(root), config.validate()
        if root.exists() and not root.is_dir():
            raise AttnvizError(f"--out {root} is a file: choose a directory path")
        if root.is_dir() and _holds_files(root):
            if not force:
                raise AttnvizError(
                    f"{root} already holds files: use --resume to continue it, --force to "
                    "replace it, or another --out"
                )
            if not ((root / CONFIG).is_file() or (root / STATE).is_file()):
                raise AttnvizError(
                    f"{root} is not an attnviz run, so --force will not delete it: choose "
                    "another --out"
                )
            _remove_run_files(root)
        root.mkdir(parents=True, exist_ok=True)
        header = {
            "format_version": FORMAT_VERSION,
            "attnviz_version": __version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "config": config.to_dict(),
            "task": task_info,
            "attention": attention_info,
        }
        # config.json first: from then on `--resume` can start a killed creation again
        files = {CONFIG: atomic_write_json(root / CONFIG, header)}
        for sub in ("attention", "checkpoints", *(("attribution",) if config.attribution else ())):
            (root / sub).mkdir(exist_ok=True)
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
        run = cls(root, header, state, config)
        run._probe = probe
        run.commit()
        return run

    @classmethod
    def open(cls, root: Path) -> Run:
        """Open an existing run, checking its format and the checksums of its headers."""
        root = Path(root)
        if not root.exists():
            raise AttnvizError(f"no run at {root}{did_you_mean(root, _sibling_runs(root))}: "
                               f"train one with `attnviz train --out {root}`")
        if not root.is_dir():
            raise AttnvizError(f"{root} is a file, not a run directory")
        state = _read_json(root / STATE, "the run's commit record")
        _check_version(root / STATE, state)
        header, config = _read_header(root)
        if state.get("checksum") != _checksum(state):
            raise RunFormatError(f"{root / STATE}: checksum mismatch: the file was edited or torn")
        _check_state(root / STATE, state)
        run = cls(root, header, state, config)
        run._verify(CONFIG)
        if "epochs" in state:
            try:
                run.config = TrainConfig.from_dict({**header["config"], "epochs": state["epochs"]})
            except AttnvizError as err:
                raise RunFormatError(f"{root / STATE}: {err}") from None
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
            n, seq_len = self.config.probe_size, self.config.seq_len
            wanted = {"x": ((n, seq_len, 1), "fiu"), "y": ((n, 1), "fiu"),
                      **{f"mask_{name}": ((n, seq_len), "biu") for name in self.mask_names}}
            arrays = _read_npz(self._verify(PROBE), self.root / PROBE, wanted)
            for key in ("x", "y"):
                if not np.isfinite(arrays[key]).all():
                    raise RunFormatError(f"{self.root / PROBE}: array {key} contains NaN or Inf")
            masks = {name: arrays[f"mask_{name}"].astype(bool) for name in self.mask_names}
            self._probe = TaskBatch(x=arrays["x"], y=arrays["y"], masks=masks)
        return self._probe

    def mask(self, name: str | None = None) -> np.ndarray:
        """The (n, L) bool mask called `name` (default: the task's main mask)."""
        name = name or self.task["main_mask"]
        if name not in self.mask_names:
            raise AttnvizError(
                f"unknown mask {name!r}{did_you_mean(name, self.mask_names)} for task "
                f"{self.config.task}: choose one of {', '.join(self.mask_names)}"
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
        return self._load_npy(_epoch_file("attention_epochs", epoch), self.attention_info["shape"])

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
        return self._load_npy(_epoch_file("attribution_epochs", epoch), shape)

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
        name = _epoch_file("checkpoints", epoch)
        self._verify(name)
        return self.root / name

    def verify_all(self) -> None:
        """Check every file the run lists against its checksum."""
        for name in self.state["files"]:
            self._verify(name)

    def remove_stale_files(self) -> list[Path]:
        """Delete what killed writes left behind: temporary files of the run's own names, and
        epoch files that state.json does not list (so they never existed for readers).

        Only the process that owns the run (training, on resume) may call this.
        """
        removed = []
        for folder in ("", *EPOCH_FOLDERS):
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

    # ---- writing (used by training) ------------------------------------------------------

    def save_attention(self, epoch: int, weights: np.ndarray) -> None:
        dtype = self.attention_info["dtype"]
        self._save_npy(_epoch_file("attention_epochs", epoch), weights.astype(dtype))
        self._add_epoch("attention_epochs", epoch)

    def save_attribution(self, epoch: int, values: np.ndarray) -> None:
        (self.root / "attribution").mkdir(exist_ok=True)
        self._save_npy(_epoch_file("attribution_epochs", epoch), values.astype(np.float32))
        self._add_epoch("attribution_epochs", epoch)

    def write_checkpoint(self, epoch: int, save) -> None:
        """Call `save(tmp_path)` to write a .keras file, then move it into place and list it."""
        name = _epoch_file("checkpoints", epoch)
        with atomic_path(self.root / name, suffix=".keras") as tmp:
            save(tmp)
        self.state["files"][name] = sha256_file(self.root / name)
        self._add_epoch("checkpoints", epoch)

    def extend(self, epochs: int) -> None:
        """Train to `epochs` in total (resume with more --epochs); recorded in state.json, so
        config.json, written once, keeps its checksum."""
        self.config = self.config.replace(epochs=epochs).validate()  # before state.json says it
        self.state["epochs"] = epochs
        self.commit()

    def commit(self, record: dict | None = None) -> None:
        """Append the epoch's history record (if any) and write state.json atomically;
        `finished` says whether every configured epoch is trained."""
        if record is not None:
            if record["epoch"] != self.epochs_done + 1:
                raise RuntimeError(f"epoch {record['epoch']} committed after {self.epochs_done}")
            self.state["history"].append(record)
        self.state["finished"] = self.epochs_done >= self.config.epochs
        self.state["checksum"] = _checksum(self.state)
        atomic_write_json(self.root / STATE, self.state)

    def rollback_to(self, epoch: int) -> None:
        """Forget everything after `epoch` (the latest checkpoint) so resume redoes it once."""
        self.state["history"] = self.state["history"][:epoch]
        for key in EPOCH_FILES:
            for dropped in [e for e in self.state[key] if e > epoch]:
                self.state["files"].pop(_epoch_file(key, dropped), None)
            self.state[key] = [e for e in self.state[key] if e <= epoch]
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
        array = _read_npy(io.BytesIO(self._verify(name)), self.root / name, shape, "f")
        array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise RunFormatError(f"{self.root / name}: contains NaN or Inf")
        return array


def _read_npy(handle, source: Path | str, shape, kinds: str) -> np.ndarray:
    """One .npy array from `handle`, never a pickle. Its header is checked against `shape` and
    the dtype kinds `kinds` before any data is read: a damaged header could ask for terabytes."""
    try:
        found, dtype = read_header(handle)
    except _UNREADABLE as err:
        raise RunFormatError(f"{source}: not a readable .npy file ({err})") from None
    if dtype.kind not in kinds or dtype.hasobject or dtype.subdtype is not None:
        expected = {"f": "floats", "fiu": "numbers", "biu": "0/1 or bool"}[kinds]
        raise RunFormatError(f"{source}: dtype {dtype} but the run stores {expected}")
    if list(found) != list(shape):
        raise RunFormatError(f"{source}: shape {tuple(found)} but the run says {tuple(shape)}")
    try:
        handle.seek(0)
        return np.lib.format.read_array(handle, allow_pickle=False)
    except _UNREADABLE as err:
        raise RunFormatError(f"{source}: not a readable .npy file ({err})") from None


def _read_npz(data: bytes, source: Path, wanted: dict[str, tuple]) -> dict[str, np.ndarray]:
    """The arrays `wanted` ({name: (shape, dtype kinds)}) of .npz bytes, each header checked."""
    arrays = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = set(archive.namelist())
            for key, (shape, kinds) in wanted.items():
                if f"{key}.npy" not in members:
                    raise RunFormatError(f"{source}: missing array '{key}'")
                with archive.open(f"{key}.npy") as member:
                    arrays[key] = _read_npy(member, f"{source} (array {key})", shape, kinds)
    except _UNREADABLE as err:
        raise RunFormatError(f"{source}: not a readable .npz file ({err})") from None
    return arrays


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
    for name in (STATE, PROBE, *EPOCH_FOLDERS, CONFIG):
        path = root / name
        folder = name in EPOCH_FOLDERS
        if path.is_symlink() or (path.exists() and path.is_dir() != folder):
            what = "a link" if path.is_symlink() else "a directory" if path.is_dir() else "a file"
            raise AttnvizError(f"{path} is {what}, where a run keeps its own {name}: --force "
                               "will not delete it; remove it yourself")
    for name in (STATE, PROBE):
        (root / name).unlink(missing_ok=True)
    for name in EPOCH_FOLDERS:
        shutil.rmtree(root / name, ignore_errors=True)
    for path in root.iterdir():
        if TEMP_FILE.fullmatch(path.name) and path.is_file():
            path.unlink()
    (root / CONFIG).unlink(missing_ok=True)


def read_config(root: Path) -> TrainConfig:
    """The config of the run at `root` from config.json alone: to start a run again that was
    killed before its first commit."""
    return _read_header(Path(root))[1]


def _read_header(root: Path) -> tuple[dict, TrainConfig]:
    """config.json, checked: format version, keys, the config and its consistency."""
    path = root / CONFIG
    header = _read_json(path, "the run's config")
    _check_version(path, header)
    _require_keys(path, header, ("config", "task", "attention"))
    try:
        config = TrainConfig.from_dict(header["config"])
    except AttnvizError as err:
        raise RunFormatError(f"{path}: {err}") from None
    _check_header(path, header, config)
    return header, config


def _check_version(path: Path, obj: dict) -> None:
    version = obj.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise RunFormatError(f"{path}: no format_version: not an attnviz run file")
    if version > FORMAT_VERSION:
        raise RunFormatError(
            f"{path}: format version {version} is newer than this attnviz reads "
            f"({FORMAT_VERSION}): upgrade attnviz"
        )


def _check_header(path: Path, header: dict, config: TrainConfig) -> None:
    """The task and attention blocks: well formed and consistent with the config."""
    task, info = header["task"], header["attention"]
    _expect(isinstance(task, dict), path, "'task' is not an object")
    names = task.get("mask_names")
    _expect(_is_list(names, str) and names, path, "task 'mask_names' is not a list of names")
    _expect(task.get("main_mask") in names, path,
            f"task 'main_mask' {task.get('main_mask')!r} is not one of {names}")
    _expect(task.get("name") == config.task, path,
            f"task {task.get('name')!r} but the config trains {config.task!r}")
    baselines = task.get("baselines")
    _expect(isinstance(baselines, list) and all(
        isinstance(b, dict) and isinstance(b.get("name"), str) and _is_number(b.get("mse"))
        for b in baselines), path, "task 'baselines' is not a list of {name, mse}")
    _expect(isinstance(info, dict), path, "'attention' is not an object")
    kind = "self" if config.attention == "self" else "temporal"
    _expect(info.get("kind") == kind, path,
            f"attention kind {info.get('kind')!r} but the config's {config.attention} "
            f"attention is {kind!r}")
    _expect(info.get("dtype") in ("float16", "float32"), path,
            f"attention dtype {info.get('dtype')!r}: expected float16 or float32")
    n, seq_len = config.probe_size, config.seq_len
    shape = info.get("shape")
    fits = [[n, seq_len]] if kind == "temporal" else [[n, h, seq_len, seq_len]
                                                       for h in (config.heads, 1)]
    _expect(shape in fits, path, f"attention shape {shape} does not fit the config "
            f"(probe_size {n}, seq_len {seq_len})")


def _check_state(path: Path, state: dict) -> None:
    """The commit record: well-formed, its epochs consistent, every name one a run holds."""
    _require_keys(path, state, ("history", "attention_epochs", "attribution_epochs",
                                "checkpoints", "finished", "files"))
    history = state["history"]
    _expect(isinstance(history, list) and all(
        isinstance(h, dict) and _is_number(h.get("loss")) and _is_number(h.get("val_loss"))
        for h in history), path, "'history' is not a list of epoch records with losses")
    done = len(history)
    epochs = [h.get("epoch") for h in history]
    _expect(_is_list(epochs, int) and epochs == list(range(1, done + 1)), path,
            f"history epochs {epochs[:6]}... are not 1..{done} in order")
    for key, low in (("attention_epochs", 0), ("attribution_epochs", 0), ("checkpoints", 1)):
        values = state[key]
        _expect(_is_list(values, int) and values == sorted(set(values)), path,
                f"'{key}' is not a sorted list of epochs")
        _expect(all(low <= epoch <= done for epoch in values), path,
                f"'{key}' {values} lie outside the {done} epochs trained")
    _expect(isinstance(state["finished"], bool), path, "'finished' is not true or false")
    files = state["files"]
    _expect(isinstance(files, dict) and all(
        isinstance(digest, str) and SHA256.fullmatch(digest) for digest in files.values()),
        path, "'files' does not map names to sha256 digests")
    strangers = [name for name in files if not LISTABLE.fullmatch(name)]
    _expect(not strangers, path, f"lists {strangers[:1]}, which is no file of a run")
    needed = [CONFIG, PROBE, *(_epoch_file(key, epoch) for key in EPOCH_FILES
                               for epoch in state[key])]
    missing = [name for name in needed if name not in files]
    _expect(not missing, path, f"records {missing[0] if missing else ''} but no checksum of it")
    if "epochs" in state:
        _expect(isinstance(state["epochs"], int) and state["epochs"] >= done, path,
                f"'epochs' {state['epochs']!r} is not a count of at least {done}")


def _expect(condition, path: Path, problem: str) -> None:
    if not condition:
        raise RunFormatError(f"{path}: {problem}")


def _is_list(value, kind: type) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, kind) and not (kind is int and isinstance(item, bool)) for item in value)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
    except OSError as err:
        raise RunFormatError(f"{path}: cannot read it ({err.strerror})") from None
    except (ValueError, RecursionError) as err:  # RecursionError: absurdly deep nesting
        raise RunFormatError(f"{path}: not valid JSON ({type(err).__name__}: {err})") from None
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
