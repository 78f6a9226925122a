"""Writing files: atomic writes (a reader sees the old file or the new one, never a torn one),
and the checks every command makes of an output path before it does any work."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from attnviz.errors import AttnvizError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = "", make_folder: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path` (ending in `suffix`); on success fsync and rename
    it. `make_folder`: a command's output whose folder check_output_file allowed to be made
    (never a run's own file: a run deleted under a training is not made again)."""
    path = Path(path)
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + suffix)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give what open() would have given
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes, make_folder: bool = False) -> str:
    """Write `data` to `path` atomically and return its sha256 hex digest."""
    with atomic_path(path, make_folder=make_folder) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def atomic_write_json(path: Path, obj: object) -> str:
    """Write `obj` as indented JSON atomically and return its sha256 hex digest."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_writable_dir(directory: Path, option: str) -> None:
    """Refuse a folder to write into that is a file, lies under a file, or cannot be written.
    A folder that does not exist yet is fine when the nearest folder above it can be written:
    the writer makes it (atomic_path), so `--junit reports/a.xml` needs no mkdir first."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise AttnvizError(f"{option}: {directory} is a file, not a folder: choose another")
    existing = directory
    while not existing.exists():
        if existing.is_symlink():  # a dangling link: nothing can be made through it
            raise AttnvizError(f"{option}: {existing} is a broken link: choose another folder")
        existing = existing.parent
    if not existing.is_dir():
        raise AttnvizError(f"{option}: {existing} is a file, not a folder: choose another")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise AttnvizError(f"{option}: the folder {existing} is not writable: choose another")


def check_output_file(path: Path, option: str, what: str = "a file") -> Path:
    """Refuse an output file path that is a directory, or whose folder check_writable_dir
    refuses; `what` says what to name instead of a directory (e.g. "an .html file")."""
    path = Path(path)
    if path.is_dir():
        raise AttnvizError(f"{option} {path} is a directory: name {what}")
    check_writable_dir(path.parent, f"{option} {path}")
    return path
