"""`attnviz train --model FILE.py:FUNCTION --data DATA.npz`: the user's model and data.

DATA.npz holds, as numpy arrays (a model with several inputs: one array per input, keyed
`x/<input name>`, likewise `x_val/...` and `probe/...`):

    x, y              training inputs and targets (required)
    x_val, y_val      validation data (optional)
    probe             the samples whose attention is recorded (default: the first 10 of
                      x_val, else of x)
    y_probe           the probe's targets (optional; the default probe takes them from y)
    mask_<NAME>       a 0/1 ground truth (n_probe, keys) per mask, for `attnviz score`; with
                      the default probe, masks of one row per sample of x_val (else x), as
                      `attnviz data` writes them, are taken for their first 10 rows
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnviz.errors import AttnvizError, raised_by_attnviz
from attnviz.store.arrays import ZIP_ERRORS, check_promised_sizes

PROBE_SIZE = 10


@dataclass
class UserData:
    x: object  # an array, or {input name: array}
    y: np.ndarray
    x_val: object | None
    y_val: np.ndarray | None
    probe: object
    y_probe: np.ndarray | None
    masks: dict[str, np.ndarray]
    sha256: str  # of DATA.npz, so a resumed run trains on the same data


def split_spec(spec: str) -> tuple[str, str]:
    """'path/file.py:build' or 'package.module:build' -> (module or file, function)."""
    where, colon, function = spec.rpartition(":")
    if not colon or not where or not function.isidentifier():
        raise AttnvizError(f"--model {spec}: give FILE.py:FUNCTION (or module:FUNCTION), "
                           "e.g. --model my_model.py:build_model")
    if where.endswith(".py") and not Path(where).is_file():
        raise AttnvizError(f"--model {spec}: no such file {where}")
    return where, function


def build(spec: str, imports: tuple[str, ...] = ()):
    """Import FILE.py (and --import), call FUNCTION(); it must return a compiled keras.Model."""
    import keras

    from attnviz.keras.loading import first_line, import_code, import_module_of

    where, name = split_spec(spec)
    import_code(imports)
    module = import_module_of(where, "--model")
    function = getattr(module, name, None)
    if not callable(function):
        raise AttnvizError(f"--model {spec}: {where} defines no function {name}")
    try:
        model = function()
    except Exception as err:  # noqa: BLE001 (the user's code may raise anything)
        if raised_by_attnviz(err):
            raise
        raise AttnvizError(f"--model {spec}: {name}() raised {type(err).__name__}: "
                           f"{first_line(err)}") from None
    if not isinstance(model, keras.Model):
        raise AttnvizError(f"--model {spec}: {name}() returned {type(model).__name__}, not a "
                           "keras.Model")
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", True):
        raise AttnvizError(f"--model {spec}: {name}() returned an uncompiled model: call "
                           "model.compile(optimizer=..., loss=...) before returning it")
    return model


def load_data(path: Path, heldout: bool = False) -> UserData:
    """DATA.npz, checked: x and y present, sample counts agree, masks 0/1 over the probe.
    With `heldout` (explain's --data: held-out samples only), x_val and y_val may stand
    alone: x and y are needed only when they are absent."""
    path = Path(path)
    if not path.is_file():
        raise AttnvizError(f"--data {path}: no such file")
    try:
        check_promised_sizes(path)
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, *ZIP_ERRORS) as err:
        raise AttnvizError(f"--data {path}: not a readable .npz file ({err})") from None
    x_val, y_val = _gather(arrays, "x_val"), arrays.get("y_val")
    needed = ("x", "y") if not heldout or x_val is None or y_val is None else ()
    for required in needed:
        if _gather(arrays, required) is None:
            wanted = ("x_val and y_val, or x and y" if heldout else
                      "x and y (and optionally x_val, y_val, probe, mask_NAME)")
            raise AttnvizError(f"--data {path} holds no {required!r}: it needs {wanted}; it "
                               f"holds {', '.join(arrays) or 'nothing'}")
    x, y = _gather(arrays, "x"), arrays.get("y")
    if x is not None and y is not None:
        _same_count(path, "x", x, "y", y)
    if (x_val is None) != (y_val is None):
        raise AttnvizError(f"--data {path}: give both x_val and y_val, or neither")
    if x_val is not None:
        _same_count(path, "x_val", x_val, "y_val", y_val)
    probe, y_probe = _gather(arrays, "probe"), arrays.get("y_probe")
    masks = {key[len("mask_"):]: value for key, value in arrays.items()
             if key.startswith("mask_")}
    if probe is None:
        source, targets = (x_val, y_val) if x_val is not None else (x, y)
        if source is not None and targets is not None:
            probe, y_probe = _head(source, PROBE_SIZE), targets[:PROBE_SIZE]
            if not heldout:  # explain reads masks over all the held-out samples
                # masks over every sample of the probe's source (`attnviz data` writes them
                # so) are the probe's masks: its first samples', as the probe is
                masks = {name: mask[:PROBE_SIZE] if mask.ndim >= 1 and mask.shape[0] == _count(
                    source) and _count(source) != PROBE_SIZE else mask
                    for name, mask in masks.items()}
    return UserData(x, y, x_val, y_val, probe, y_probe, masks,
                    hashlib.sha256(path.read_bytes()).hexdigest())


def _gather(arrays: dict, key: str):
    """arrays[key], or {name: arrays['key/name']} for a model with several inputs."""
    if key in arrays:
        return arrays[key]
    prefix = key + "/"
    parts = {name[len(prefix):]: value for name, value in arrays.items()
             if name.startswith(prefix)}
    return parts or None


def _count(value) -> int:
    return len(next(iter(value.values()))) if isinstance(value, dict) else len(value)


def _same_count(path: Path, a: str, x, b: str, y) -> None:
    if isinstance(x, dict) and len({len(v) for v in x.values()}) > 1:
        raise AttnvizError(f"--data {path}: the arrays of {a} hold different numbers of samples")
    if _count(x) != len(y):
        raise AttnvizError(f"--data {path}: {a} holds {_count(x)} samples and {b} {len(y)}")


def _head(value, n: int):
    if isinstance(value, dict):
        return {name: array[:n] for name, array in value.items()}
    return value[:n]
