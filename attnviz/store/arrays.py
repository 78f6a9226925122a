"""Reading .npy and .npz files nobody vouches for: headers first, data only if it can be there.

np.load believes the header: a 100-byte .npy whose header says shape (10**12,) makes numpy
allocate 4 TB before it notices the data is missing (a MemoryError, not a clear message).
`check_promised_sizes` reads only the headers and refuses one that promises more bytes than
the file (or the .npz member) holds. Pickles are refused by np.load(allow_pickle=False).
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

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
