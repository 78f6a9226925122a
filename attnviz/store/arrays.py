"""Reading .npy and .npz files nobody vouches for: headers first, data only if it can be there.

np.load believes the header: a 100-byte .npy whose header says shape (10**12,) makes numpy
allocate 4 TB before it notices the data is missing (a MemoryError, not a clear message).
`check_promised_sizes` reads only the headers and refuses one that promises more bytes than
the file (or the .npz member) holds. Pickles are refused by np.load(allow_pickle=False).
"""

from __future__ import annotations

import io
import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from attnviz.errors import AttnvizError, RunFormatError

MAGIC = b"\x93NUMPY"
# what zipfile raises on a damaged archive besides BadZipFile: bad compression method,
# encryption, a corrupt deflate stream, a truncated member
ZIP_ERRORS = (zipfile.BadZipFile, NotImplementedError, RuntimeError, zlib.error, EOFError,
               KeyError)


def read_header(handle) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the header of the .npy at `handle`'s position; ValueError if bad."""
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    else:
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    return shape, dtype


def check_promised_sizes(path: Path) -> None:
    """Raise ValueError if the .npy at `path`, or a member of the .npz, promises more data
    than it holds; other files are left for np.load to judge."""
    try:
        with open(path, "rb") as handle:
            start = handle.read(len(MAGIC))
            handle.seek(0)
            if start == MAGIC:
                _check(handle, os.fstat(handle.fileno()).st_size, Path(path).name)
            elif zipfile.is_zipfile(handle):
                with zipfile.ZipFile(handle) as archive:
                    for info in archive.infolist():
                        with archive.open(info) as member:
                            if member.read(len(MAGIC)) != MAGIC:
                                raise ValueError(f"{info.filename} is not a .npy array")
                        with archive.open(info) as member:
                            _check(member, info.file_size, info.filename)
    except ZIP_ERRORS as err:
        raise ValueError(f"a damaged archive ({type(err).__name__}: {err})") from None


def _check(handle, size: int, name: str) -> None:
    shape, dtype = read_header(handle)
    if dtype.hasobject:
        return  # a pickle: np.load(allow_pickle=False) refuses it with its own message
    promised = math.prod(shape) * dtype.itemsize
    held = size - handle.tell()
    if promised > held:
        raise ValueError(f"{name}'s header promises shape {shape} of {dtype} "
                         f"({promised:,} bytes) but it holds {max(held, 0):,}")


# errors numpy's .npy reader, np.load and zipfile raise on damaged bytes
UNREADABLE = (ValueError, OSError, *ZIP_ERRORS)


def read_npy(handle, source: Path | str, shape, kinds: str) -> np.ndarray:
    """One .npy array from `handle`, never a pickle. Its header is checked against `shape` and
    the dtype kinds `kinds` before any data is read: a damaged header could ask for terabytes."""
    try:
        found, dtype = read_header(handle)
    except UNREADABLE as err:
        raise RunFormatError(f"{source}: not a readable .npy file ({err})") from None
    if dtype.kind not in kinds or dtype.hasobject or dtype.subdtype is not None:
        expected = {"f": "floats", "u": "8-bit codes", "fiu": "numbers",
                    "biu": "0/1 or bool"}[kinds]
        raise RunFormatError(f"{source}: dtype {dtype} but the run stores {expected}")
    if list(found) != list(shape):
        raise RunFormatError(f"{source}: shape {tuple(found)} but the run says {tuple(shape)}")
    try:
        handle.seek(0)
        return np.lib.format.read_array(handle, allow_pickle=False)
    except UNREADABLE as err:
        raise RunFormatError(f"{source}: not a readable .npy file ({err})") from None


def read_npz(data: bytes, source: Path, wanted: dict[str, tuple]) -> dict[str, np.ndarray]:
    """The arrays `wanted` ({name: (shape, dtype kinds)}) of .npz bytes, each header checked."""
    arrays = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = set(archive.namelist())
            for key, (shape, kinds) in wanted.items():
                if f"{key}.npy" not in members:
                    raise RunFormatError(f"{source}: missing array '{key}'")
                with archive.open(f"{key}.npy") as member:
                    arrays[key] = read_npy(member, f"{source} (array {key})", shape, kinds)
    except UNREADABLE as err:
        raise RunFormatError(f"{source}: not a readable .npz file ({err})") from None
    return arrays


def load_untrusted(path: Path, what: str, kind: str = ".npy array"):
    """np.load a .npy or .npz nobody vouches for (headers checked first, no pickles)."""
    try:
        check_promised_sizes(path)  # a forged header would make np.load allocate terabytes
        return np.load(path, allow_pickle=False)
    except UNREADABLE as err:
        raise AttnvizError(f"{what} {path}: not a readable {kind} ({err})") from None


def check_numeric(array: np.ndarray, source: str) -> np.ndarray:
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise AttnvizError(f"{source}: dtype {array.dtype} is not numeric")
    return array


def load_array(path: Path, what: str) -> np.ndarray:
    """np.load a plain .npy (no pickles), naming the file and the fix when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise AttnvizError(f"{what} {path}: no such file")
    array = load_untrusted(path, what)
    if not isinstance(array, np.ndarray):
        array.close()
        raise AttnvizError(f"{what} {path}: is an .npz archive: save one array with np.save")
    return check_numeric(array, f"{what} {path}")
