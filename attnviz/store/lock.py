"""One writer per run: an advisory lock on the run directory, held while a run is written.

`attnviz train` holds it for the whole command, `attnviz explain` while it stores its report,
and the AttentionRecorder in a user's own fit while each of its callbacks writes (so a fit
that raises, which Keras ends without on_train_end, leaves no lock behind);
attnviz.store.run.RunWriter refuses to write a run whose lock this process does not hold.
The lock is flock(2) on the directory itself: the kernel drops it when the process dies, so a
killed writer never leaves a stale lock.
Within one process it is re-entrant: a writer opened under `exclusive` takes it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from attnviz.errors import AttnvizError

_held: dict[str, list[int]] = {}  # real path -> [descriptor, times taken]


def _key(root: Path) -> str:
    return os.path.realpath(root)


def holds(root: Path) -> bool:
    """Whether this process holds the lock of the run at `root`."""
    return _key(root) in _held


def acquire(root: Path) -> bool:
    """Take the lock of `root` (made if absent, with its parents); True when this call made
    the directory. Another process holding it is refused (AttnvizError, naming the way out);
    a directory that cannot be made or opened raises OSError, as the disk said it."""
    root = Path(root)
    key = _key(root)
    if key in _held:
        _held[key][1] += 1
        return False
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    handle = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(handle)
        raise AttnvizError(
            f"{root} is being written by another attnviz process right now (a train, an "
            "explain storing its report, or a fit's AttentionRecorder): wait for it to finish, "
            "or write to another directory") from None
    except BaseException:
        os.close(handle)
        raise
    _held[key] = [handle, 1]
    return created


def release(root: Path) -> None:
    """Give back one taking of the lock; the last one unlocks."""
    key = _key(root)
    held = _held.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] == 0:
        del _held[key]
        os.close(held[0])


@contextlib.contextmanager
def exclusive(root: Path) -> Iterator[None]:
    """Hold the lock of the run at `root` (made if absent) while the block runs. A directory
    this made is removed again when the block fails before writing anything into it: bad
    input leaves no empty folder. A path that is a file is left for the work to refuse."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        yield
        return
    try:
        created = acquire(root)
    except OSError as err:
        raise AttnvizError(f"cannot create --out {root}: {err.strerror or err}") from None
    try:
        yield
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                root.rmdir()  # only while empty: nothing the work wrote is removed
        raise
    finally:
        release(root)
