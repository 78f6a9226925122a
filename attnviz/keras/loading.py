"""Load a user's Keras 3 model (safe mode, their own code imported first) and fit inputs to it.

    --import FILE.py | package.module   imported before loading, so its layer classes are
                                         known; a class defined there and not registered is
                                         passed to Keras as a custom object by its name
    keras_hub models                     keras_hub is imported when the file uses its classes

Importing code runs it: `--import` is for code you trust, as `--unsafe` is for files.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np

from attnviz.errors import AttnvizError, raised_by_attnviz
from attnviz.keras.internals import all_layers, producer, takes_dict

_UNKNOWN = re.compile(r"Could not locate (?:class|function) '([^']+)'")
_imported: dict[str, dict[str, object]] = {}  # --import spec -> the objects it defines


# ---- user code -----------------------------------------------------------------------------


def import_code(specs: list[str] | tuple[str, ...]) -> dict[str, object]:
    """Import each --import (a .py file or a dotted module); return the Keras classes and
    functions they define, by name, as custom objects for loading."""
    custom: dict[str, object] = {}
    for spec in specs:
        if spec not in _imported:
            _imported[spec] = _defined_objects(import_module_of(spec))
        custom.update(_imported[spec])
    return custom


def import_module_of(spec: str, flag: str = "--import"):
    """Import a .py file (by path) or a module (by dotted name); its errors in one line."""
    path = Path(spec)
    try:
        if spec.endswith(".py"):
            if not path.is_file():
                raise AttnvizError(f"{flag} {spec}: no such file")
            digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
            name = f"attnviz_user_{path.stem}_{digest}"
            if name in sys.modules:
                return sys.modules[name]
            loader = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(loader)
            sys.modules[name] = module  # dataclasses and pickling look modules up by name
            # as Python runs a script: the modules beside it import (`from mylayers import X`)
            folder = str(path.resolve().parent)
            if folder not in sys.path:
                sys.path.insert(0, folder)
            try:
                loader.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
            return module
        return importlib.import_module(spec)
    except AttnvizError:
        raise
    except ModuleNotFoundError as err:
        if not spec.endswith(".py") and err.name and spec.startswith(err.name):
            raise AttnvizError(f"{flag} {spec}: no module named {err.name}: give a .py file "
                               "or a module on the Python path") from None
        raise AttnvizError(f"{flag} {spec} failed: {first_line(err)}") from None
    except BaseException as err:  # noqa: BLE001 (user code may raise anything, SystemExit too)
        if isinstance(err, KeyboardInterrupt):
            raise
        raise AttnvizError(f"{flag} {spec} failed: {type(err).__name__}: "
                           f"{first_line(err)}") from None


def _defined_objects(module) -> dict[str, object]:
    """Layers, models and functions that `module` defines itself (not those it imports)."""
    found = {}
    for name, value in vars(module).items():
        if getattr(value, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(value) and issubclass(value, (keras.layers.Layer, keras.Model,
                                                         keras.losses.Loss,
                                                         keras.metrics.Metric)):
            found[name] = value
        elif inspect.isfunction(value):
            found[name] = value
    return found


@contextlib.contextmanager
def model_failures(what: str) -> Iterator[None]:
    """The user's model (or code) raising is one line, `what` then the error's first line,
    not a traceback."""
    try:
        yield
    except (AttnvizError, OSError):
        raise  # OSError: a disk's answer (a full disk while a checkpoint is written), as it is
    except Exception as err:  # noqa: BLE001 (a user's layer may raise anything)
        if raised_by_attnviz(err):
            raise  # attnviz's own bug: a traceback, not "your model failed"
        raise AttnvizError(f"{what}: {type(err).__name__}: {first_line(err)}") from None


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return line if len(line) <= 200 else line[:197] + "..."


# ---- loading -------------------------------------------------------------------------------


def run_code(run) -> tuple[str, ...]:
    """The user's code a run's checkpoint needs, to import before loading it: the files that
    define the model's own layers (recorded when the run was created), and for a
    `train --model` run its --model file (FILE.py of FILE.py:FUNCTION) and its --import."""
    info = run.model_info
    fit = info.get("fit") or {}
    function = fit.get("function", "")
    where = function.rpartition(":")[0] if ":" in function else ""
    specs = (*info.get("code", ()), where, *fit.get("imports", ()))
    return tuple(dict.fromkeys(spec for spec in specs if spec))


def check_model_file(path: Path) -> Path:
    """Refuse a path that is not a .keras archive before anything is loaded."""
    path = Path(path)
    if not path.is_file():
        raise AttnvizError(f"{path}: no such model file")
    if path.suffix != ".keras":
        raise AttnvizError(f"{path}: attnviz reads Keras 3 .keras files: re-save the model "
                           "with model.save('model.keras')")
    if not zipfile.is_zipfile(path):
        raise AttnvizError(f"{path}: not a .keras model file (not a zip archive): is it "
                           "truncated?")
    return path


def load_model(path: Path, unsafe: bool = False, imports: tuple[str, ...] = (),
               compile: bool = False, script_classes: tuple[str, ...] = ()):
    """Load a .keras file in safe mode (no code stored in the file runs) unless `unsafe`,
    after importing the user's code (`imports`) and keras_hub when the file needs it; with
    `compile`, compiled as it was saved (its loss and metrics). `script_classes`: the classes
    a run's model took from its training script (__main__), which no import can reach."""
    path = check_model_file(path)
    custom = import_code(imports)
    _import_libraries(path)
    try:
        with warnings.catch_warnings():  # optimizer state that compile=False skips, etc.
            warnings.simplefilter("ignore")
            return keras.saving.load_model(path, custom_objects=custom,
                                           safe_mode=not unsafe, compile=compile)
    except ValueError as err:
        if "safe_mode" in str(err) or "unsafe" in str(err):
            raise AttnvizError(
                f"{path} holds a Lambda layer (Python code) and safe mode refuses to run it: "
                "pass --unsafe only if you trust whoever wrote the file"
            ) from None
        raise _load_error(path, err, imports, script_classes) from None
    except (TypeError, KeyError, AttributeError, OSError, EOFError,
            zipfile.BadZipFile) as err:
        raise _load_error(path, err, imports, script_classes) from None


def _load_error(path: Path, err: Exception, imports: tuple[str, ...],
                script_classes: tuple[str, ...] = ()) -> AttnvizError:
    unknown = _UNKNOWN.search(str(err))
    if unknown and unknown.group(1) in script_classes:
        name = unknown.group(1)
        return AttnvizError(
            f"{path} uses the class {name}, defined in the script that trained it (its "
            "__main__): importing that script would run the training again, so attnviz does "
            f"not; move {name} into a module of its own that the script imports, or put the "
            "script's training under `if __name__ == \"__main__\":`, then pass --import with "
            "that file")
    if unknown:
        name = unknown.group(1)
        tried = f" (--import {' '.join(imports)} does not define it)" if imports else ""
        return AttnvizError(f"{path} uses the class {name}, which attnviz does not know{tried}: "
                            f"pass --import FILE.py with the file that defines {name}")
    return AttnvizError(f"{path}: cannot load the model ({first_line(err)})")


def _import_libraries(path: Path) -> None:
    """Import attnviz's own layers (a built-in run's checkpoint) and keras_hub when the model
    file holds their classes: they register on import, so no --import is needed for them."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = archive.read("config.json").decode("utf-8", "replace")
    except (KeyError, OSError, zipfile.BadZipFile):
        return  # keras' own loader says what is wrong
    if '"attnviz>' in config:
        importlib.import_module("attnviz.keras.models")
    if '"keras_hub' not in config or "keras_hub" in sys.modules:
        return
    try:
        importlib.import_module("keras_hub")
    except ImportError:
        raise AttnvizError(f"{path} is a keras_hub model: install keras-hub "
                           "(pip install 'attnviz[hub]')") from None


# ---- inputs --------------------------------------------------------------------------------


def input_specs(model) -> dict[str, tuple[tuple, str]] | None:
    """{input name: (shape without batch, dtype)} of a functional model, in its order; None
    for a subclassed model, which declares no inputs."""
    try:
        tensors = model.inputs
    except (AttributeError, ValueError):
        return None
    if not tensors:
        return None
    return {_input_name(t): (tuple(t.shape[1:]), keras.backend.standardize_dtype(t.dtype))
            for t in tensors}


def _input_name(tensor) -> str:
    layer = producer(tensor)
    return getattr(layer, "name", None) or tensor.name


def _structure(model):
    """'dict' when the model takes a dict of inputs, 'list' for several, 'one' otherwise."""
    if takes_dict(model):
        return "dict"
    specs = input_specs(model)
    return "list" if specs and len(specs) > 1 else "one"


def numpy_inputs(inputs):
    """The model's inputs as numpy, in their structure (token ids and padding are read
    from them)."""
    if isinstance(inputs, dict):
        return {key: np.asarray(value) for key, value in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return [np.asarray(value) for value in inputs]
    return np.asarray(inputs)


def prepare_inputs(model, data, source: str, flag: str = "--input"):
    """`data` (an array, or a dict of arrays from an .npz) as the model takes it, checked
    against its inputs' shapes and dtypes. A (n, L) array for an (n, L, 1) input gets the
    channel axis; integer inputs (token ids) keep an integer dtype. Messages name the file
    as `flag` `source`."""
    source = f"{flag} {source}"
    specs = input_specs(model)
    if specs is None:  # a subclassed model: Keras says whether the array fits
        if isinstance(data, dict) and len(data) == 1:
            data = next(iter(data.values()))
        return data
    structure = _structure(model)
    names = list(specs)
    if structure == "one":
        if isinstance(data, dict):
            if len(data) != 1:
                raise AttnvizError(f"{source} holds {', '.join(data)} and the model "
                                   f"takes one input ({names[0]}): pick one with --key")
            data = next(iter(data.values()))
        return _fit_input(data, *specs[names[0]], f"{source}", names[0])
    if not isinstance(data, dict):
        raise AttnvizError(f"the model takes {len(names)} inputs ({', '.join(names)}): pass an "
                           ".npz holding one array per input, named like the inputs")
    missing = [name for name in names if name not in data]
    if missing:
        raise AttnvizError(f"{source} has no array {missing[0]!r}: the model's inputs are "
                           f"{', '.join(names)} and the file holds {', '.join(data)}")
    arrays = {name: _fit_input(data[name], *specs[name], f"{source}[{name}]", name)
              for name in names}
    if len({array.shape[0] for array in arrays.values()}) > 1:
        counts = ", ".join(f"{name} {array.shape[0]}" for name, array in arrays.items())
        raise AttnvizError(f"{source}: its arrays hold different numbers of samples "
                           f"({counts})")
    return arrays if structure == "dict" else [arrays[name] for name in names]


def _fit_input(array: np.ndarray, shape: tuple, dtype: str, source: str,
               name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == len(shape) and shape and shape[-1] == 1:
        array = array[..., None]
    fits = array.ndim == len(shape) + 1 and all(
        want is None or want == got for want, got in zip(shape, array.shape[1:], strict=True))
    if not fits:
        shown = "(n, " + ", ".join("?" if d is None else str(d) for d in shape) + ")"
        also = f"; {shown[:-4]}) is accepted too" if shape and shape[-1] == 1 else ""
        raise AttnvizError(f"{source} has shape {array.shape}: the model's input "
                           f"{name} expects {shown}, n samples{also}")
    if np.issubdtype(np.dtype(dtype), np.integer):
        if not np.issubdtype(array.dtype, np.integer):
            if not np.array_equal(array, np.round(array)):
                raise AttnvizError(f"{source}: the model's input {name} takes integers "
                                   f"({dtype}), the file holds fractions")
        return array.astype(dtype)
    return array.astype(dtype if np.issubdtype(np.dtype(dtype), np.floating) else np.float32)


def example_inputs(model, length: int = 8):
    """One sample to run the model on when no --input is given: ones (token id 1, nothing
    masked), unknown lengths set to `length`. None for a subclassed model."""
    specs = input_specs(model)
    if specs is None:
        return None
    arrays = {name: np.ones((1, *(length if d is None else d for d in shape)), dtype=dtype)
              for name, (shape, dtype) in specs.items()}
    structure = _structure(model)
    if structure == "one":
        return next(iter(arrays.values()))
    return arrays if structure == "dict" else list(arrays.values())


def describe_inputs(inputs) -> str:
    """'(2, 20, 1)' or 'token_ids (2, 16), padding_mask (2, 16)'."""
    if isinstance(inputs, dict):
        return ", ".join(f"{name} {tuple(array.shape)}" for name, array in inputs.items())
    if isinstance(inputs, (list, tuple)):
        return ", ".join(str(tuple(array.shape)) for array in inputs)
    return str(tuple(np.shape(inputs)))


def script_classes(model) -> list[str]:
    """The model's own layer classes defined in the running script (__main__): a checkpoint
    needs them, and importing the script to get them would run it."""
    return list(dict.fromkeys(
        type(layer).__name__ for layer in all_layers(model)
        if type(layer).__module__ == "__main__"))


def code_files(model) -> list[str]:
    """The .py files that define the model's own layer classes (not Keras', keras_hub's or
    attnviz's, nor a script's __main__), so a checkpoint can be loaded again without
    --import."""
    files = []
    for layer in all_layers(model):
        module = type(layer).__module__
        if module.split(".")[0] in ("keras", "keras_hub", "attnviz", "tensorflow", "__main__"):
            continue
        path = getattr(sys.modules.get(module), "__file__", None)
        if path and path.endswith(".py") and path not in files:
            files.append(str(Path(path).resolve()))
    return files


def model_summary(model) -> dict:
    """What a run or a report says about the model: class, name, parameters, inputs."""
    specs = input_specs(model) or {}
    return {
        "name": model.name,
        "class": type(model).__name__,
        "parameters": int(model.count_params()) if model.built else None,
        "inputs": {name: {"shape": [None, *shape], "dtype": dtype}
                   for name, (shape, dtype) in specs.items()},
    }
