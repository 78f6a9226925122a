"""Task samples as files: what `attnviz data` writes for `inspect --input` and `score --mask`.

The samples come from a task's own generator with a seed, on the same random streams a run
uses, so they can be made again:

    attnviz data --samples 6 -o fresh.npz     x (6, 20, 1), y (6, 1), mask_delimiter (6, 20),
                                              mask_prefix (6, 20): explain's held-out samples
    attnviz data --probe --samples 10 -o p.npz    the probe batch of a run with seed 7

A path ending in .npz gets every array (the layout of a run's probe.npz), one ending in .npy
the inputs x alone, any other path a folder of x.npy, y.npy and one MASK.npy per mask (named
after the mask, as `score --mask` names a mask after its file). Numpy only.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnviz.analysis.tasks import (
    HELDOUT_STREAM,
    PROBE_STREAM,
    checked,
    config_for,
    task_data,
)
from attnviz.errors import AttnvizError
from attnviz.store.files import atomic_write_bytes, check_output_file, check_writable_dir
from attnviz.store.samples import TaskBatch


@dataclass(frozen=True)
class Written:
    paths: list[Path]  # the files written
    arrays: dict[str, tuple[int, ...]]  # name -> shape of each array written
    stream: str  # "held-out" or "probe": which of a run's random streams


def make_samples(task: str, samples: int, seq_len: int | None, seed: int | None,
                 probe: bool) -> TaskBatch:
    """`samples` samples of `task`: explain's held-out stream, or with `probe` the probe
    stream (fixed positions), of a run with this seed and L."""
    if samples < 1:
        raise AttnvizError(f"--samples {samples} must be at least 1")
    config = checked(config_for(task, seq_len=seq_len, seed=seed))
    return task_data(config, PROBE_STREAM if probe else HELDOUT_STREAM, samples)


def write_samples(batch: TaskBatch, output: Path, probe: bool = False) -> Written:
    """Write `batch` to an .npz, an .npy (x alone) or a folder of .npy files, atomically."""
    output = Path(output)
    arrays = {"x": batch.x, "y": batch.y,
              **{f"mask_{name}": mask for name, mask in batch.masks.items()}}
    if output.is_dir() and output.suffix in (".npz", ".npy"):
        raise AttnvizError(f"-o {output} is a directory: name a file, or drop the suffix")
    if output.suffix == ".npz":
        check_output_file(output, "-o")
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        files = {output: buffer.getvalue()}
    elif output.suffix == ".npy":
        check_output_file(output, "-o")
        arrays = {"x": batch.x}
        files = {output: _npy(batch.x)}
    else:
        if output.exists() and not output.is_dir():
            raise AttnvizError(f"-o {output} is a file: name a folder, an .npz or an .npy")
        check_writable_dir(output.parent, f"-o {output}")  # the folder itself may exist
        output.mkdir(parents=True, exist_ok=True)
        files = {output / f"{name.removeprefix('mask_')}.npy": _npy(array)
                 for name, array in arrays.items()}
    for path, data in files.items():
        atomic_write_bytes(path, data, make_folder=True)
    return Written(list(files), {name: tuple(array.shape) for name, array in arrays.items()},
                   "probe" if probe else "held-out")


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()

