"""Read attention weights out of Keras 3 models: a run's checkpoints or any .keras file.

For each attention layer one extraction model maps the model's inputs to the layer's
weights, sharing the model's layers:

    TemporalAttention (attnviz)          its call returns (output, weights): take weights
    MultiHeadAttention, Attention,       call the layer again on the tensors it was called
    AdditiveAttention                    with, adding return_attention_scores=True (unless
                                         its call already returned the scores)
    any layer named with --layer         its output (the last one, when it returns several)

A layer inside a nested model (functional or Sequential) is read by an extraction model
of the inner model, called on the tensors the outer model feeds the inner one; paths name
layers from the outside in: "encoder/attention".
"""

from __future__ import annotations

import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from attnviz.errors import AttnvizError
from attnviz.inspect import (
    Inspection,
    InspectOptions,
    checkpoint_epoch,
    load_input,
    probe_masks,
    run_facts,
    samples_shown,
    view_of,
)
from attnviz.models import ATTENTION_LAYER, TemporalAttention
from attnviz.run import Run

SCORE_LAYERS = (keras.layers.MultiHeadAttention, keras.layers.Attention)  # Additive subclasses
ATTENTION_LAYERS = (TemporalAttention, *SCORE_LAYERS)
SUPPORTED = "TemporalAttention, Attention, AdditiveAttention, MultiHeadAttention"
BATCH_BYTES = 64 << 20  # weights of one predict batch: (B, H, L, L) grows fast with L
MAX_BYTES = 2 << 30  # refuse to hold more weights than this in memory


@dataclass(frozen=True)
class LayerInfo:
    path: str  # layer names from the outer model inward, joined by "/"
    class_name: str
    attention: bool  # a supported attention layer, read without --layer
    output_shape: str  # as Keras reports it, None for the batch


# ---- loading -------------------------------------------------------------------------------


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


def load_model(path: Path, unsafe: bool = False) -> keras.Model:
    """Load a .keras file in safe mode (no code from the file runs) unless `unsafe`."""
    path = check_model_file(path)
    try:
        with warnings.catch_warnings():  # optimizer state that compile=False skips, etc.
            warnings.simplefilter("ignore")
            return keras.saving.load_model(path, safe_mode=not unsafe, compile=False)
    except ValueError as err:
        if "safe_mode" in str(err) or "unsafe" in str(err):
            raise AttnvizError(
                f"{path} holds a Lambda layer (Python code) and safe mode refuses to run it: "
                "pass --unsafe only if you trust whoever wrote the file"
            ) from None
        raise AttnvizError(f"{path}: cannot load the model ({_first_line(err)})") from None
    except (TypeError, KeyError, AttributeError, OSError, EOFError,
            zipfile.BadZipFile) as err:
        raise AttnvizError(f"{path}: cannot load the model ({_first_line(err)})") from None


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# ---- finding layers ------------------------------------------------------------------------


def layer_table(model: keras.Model, prefix: str = "") -> list[LayerInfo]:
    """Every layer, nested models' layers after their model, with their paths."""
    table = []
    for layer in model.layers:
        path = prefix + layer.name
        try:
            shape = str(layer.output.shape if not isinstance(layer.output, (list, tuple))
                        else tuple(t.shape for t in layer.output))
        except (AttributeError, ValueError):
            shape = "?"
        table.append(LayerInfo(path, type(layer).__name__,
                               isinstance(layer, ATTENTION_LAYERS), shape))
        if isinstance(layer, keras.Model):
            table += layer_table(layer, path + "/")
    return table


def attention_paths(model: keras.Model) -> list[str]:
    return [info.path for info in layer_table(model) if info.attention]


def resolve_layer(model: keras.Model, name: str) -> str:
    """The path of the layer `name`: a path "outer/inner", or a name unique in the model."""
    table = layer_table(model)
    paths = [info.path for info in table]
    if name in paths:
        return name
    matches = [path for path in paths if path.rsplit("/", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise AttnvizError(f"--layer {name}: several layers have that name: give its path, "
                           f"one of {', '.join(matches)}")
    raise AttnvizError(f"--layer {name}: no such layer; the model's layers are "
                       f"{', '.join(paths)}")


def no_attention_error(path: Path, model: keras.Model) -> AttnvizError:
    listed = ", ".join(f"{info.path} ({info.class_name})" for info in layer_table(model))
    return AttnvizError(
        f"{path}: no attention layer found (attnviz reads {SUPPORTED}); its layers are "
        f"{listed}: name one whose output is a probability map with --layer"
    )


# ---- extraction models ---------------------------------------------------------------------


def extraction_model(model: keras.Model, path: str) -> tuple[keras.Model, list[str]]:
    """A model from `model`'s inputs to the weights of the layer at `path`, and warnings."""
    notes: list[str] = []
    weights = _symbolic_weights(model, path.split("/"), notes)
    inputs = model.inputs if len(model.inputs) > 1 else model.inputs[0]  # as read_weights feeds
    return keras.Model(inputs, weights, name="attention_weights"), notes


def _symbolic_weights(model: keras.Model, names: list[str], notes: list[str]):
    """The weights tensor of layer `names` (a path) in `model`'s graph."""
    layer = model.get_layer(names[0])
    node = _node_in(model, layer, notes)
    if len(names) > 1:
        if not isinstance(layer, keras.Model):
            raise AttnvizError(f"--layer: {layer.name} is a {type(layer).__name__}, not a "
                               "nested model")
        inner = keras.Model(layer.inputs, _symbolic_weights(layer, names[1:], notes))
        return inner(*node.arguments.args, **node.arguments.kwargs)
    if isinstance(layer, TemporalAttention):
        return node.outputs[1]
    if isinstance(layer, SCORE_LAYERS):
        if node.arguments.kwargs.get("return_attention_scores"):
            return node.outputs[1]
        return AttentionScores(layer)(*node.arguments.args, **node.arguments.kwargs)
    return node.outputs[-1]


class AttentionScores(keras.layers.Layer):
    """Calls a Keras attention layer with return_attention_scores=True; returns the scores.

    The layer itself is called (its weights, its arguments), but inside this wrapper: Keras
    cannot trace a second call of a layer whose first call returned a single tensor.
    """

    def __init__(self, attention: keras.layers.Layer, **kwargs):
        super().__init__(name=f"{attention.name}_scores", dtype=attention.dtype_policy,
                         **kwargs)
        self.attention = attention

    def call(self, *args, **kwargs):
        return self.attention(*args, **kwargs, return_attention_scores=True)[1]


def _node_in(model: keras.Model, layer, notes: list[str]):
    """The call of `layer` that belongs to `model`'s graph (Sequential: its inner graph)."""
    graph = getattr(model, "_functional", None) or model
    by_depth = getattr(graph, "_nodes_by_depth", None)
    if by_depth is None:
        raise AttnvizError(f"model {model.name} is a subclassed Model: attnviz reads the "
                           "graphs of functional and Sequential models")
    calls = [node for nodes in by_depth.values() for node in nodes if node.operation is layer]
    if not calls:
        raise AttnvizError(f"layer {layer.name} is not called in model {model.name}")
    if len(calls) > 1:
        notes.append(f"layer {layer.name} is called {len(calls)} times in {model.name}: "
                     "reading one of its calls")
    return calls[0]


def read_weights(extractor: keras.Model, inputs: list[np.ndarray]) -> np.ndarray:
    """The extraction model's output on `inputs`, in batches of about 64 MB, as float32."""
    n = inputs[0].shape[0]
    # unknown (None) dimensions are sized from the input's own shape
    known = [d if d is not None else max(inputs[0].shape[1:], default=1)
             for d in extractor.output.shape[1:]]
    per_sample = 4 * int(np.prod(known))
    if n * per_sample > MAX_BYTES:
        raise AttnvizError(f"the weights of {n} samples would take {n * per_sample / 2**30:.1f} "
                           f"GB: pass at most {MAX_BYTES // per_sample} samples")
    batch_size = int(np.clip(BATCH_BYTES // per_sample, 1, 1024))
    # eager calls: predict() traces a tf.function first, ~0.4 s, more than a probe batch takes
    batches = [
        extractor([array[start:start + batch_size] for array in inputs] if len(inputs) > 1
                  else inputs[0][start:start + batch_size], training=False)
        for start in range(0, n, batch_size)
    ]
    return np.concatenate([np.asarray(batch, dtype=np.float32) for batch in batches])


# ---- inputs --------------------------------------------------------------------------------


def prepare_inputs(model: keras.Model, data, source: str) -> list[np.ndarray]:
    """Arrays in the order of `model.inputs`, checked against their shapes and dtypes.

    A (n, L) array for an input of (None, L, 1) gets the channel axis added.
    """
    tensors = model.inputs
    if len(tensors) == 1:
        if isinstance(data, dict):
            raise AttnvizError(f"--input {source} holds {', '.join(data)}: pick one with --key")
        return [_fit_input(data, tensors[0], source)]
    names = [tensor.name for tensor in tensors]
    if not isinstance(data, dict) or set(names) - set(data):
        raise AttnvizError(f"the model has {len(names)} inputs ({', '.join(names)}): pass an "
                           ".npz holding one array per input, named like the inputs")
    arrays = [_fit_input(data[name], tensor, f"{source}[{name}]")
              for name, tensor in zip(names, tensors, strict=True)]
    if len({array.shape[0] for array in arrays}) > 1:
        raise AttnvizError(f"--input {source}: its arrays hold different numbers of samples")
    return arrays


def _fit_input(array: np.ndarray, tensor, source: str) -> np.ndarray:
    expected = tuple(tensor.shape)
    if array.ndim == len(expected) - 1 and expected[-1] == 1:
        array = array[..., None]
    fits = array.ndim == len(expected) and all(
        want is None or want == got for want, got in zip(expected[1:], array.shape[1:],
                                                         strict=True))
    if not fits:
        shown = "(n, " + ", ".join("?" if d is None else str(d) for d in expected[1:]) + ")"
        also = f"; {shown[:-4]}) is accepted too" if expected[-1] == 1 else ""
        raise AttnvizError(f"--input {source} has shape {array.shape}: the model expects "
                           f"{shown}, n samples{also}")
    dtype = np.dtype(keras.backend.standardize_dtype(tensor.dtype))
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(array.dtype, np.integer):
        if not np.array_equal(array, np.round(array)):
            raise AttnvizError(f"--input {source}: the model takes integers ({dtype}), the "
                               "file holds fractions")
    return array.astype(dtype)


# ---- inspecting ----------------------------------------------------------------------------


def inspect_model(path: Path, options: InspectOptions) -> Inspection:
    """Read the attention of every attention layer (or of --layer) of a .keras model."""
    check_model_file(path)
    if options.epoch is not None or options.checkpoint is not None:
        raise AttnvizError("--epoch and --checkpoint apply to run directories, not model files")
    if options.input is None:
        raise AttnvizError(f"{path}: give --input X.npy (.npz, .csv) to read attention on it, "
                           "or --list to see the model's layers")
    data = load_input(options.input, options.key)
    started = time.perf_counter()
    model = load_model(path, options.unsafe)
    loaded = time.perf_counter()
    inputs = prepare_inputs(model, data, str(options.input))
    paths = [resolve_layer(model, options.layer)] if options.layer else attention_paths(model)
    if not paths:
        raise no_attention_error(path, model)
    views = [_read_view(model, layer_path, inputs, options) for layer_path in paths]
    facts = {
        "model": str(path), "input": str(options.input),
        "input_shape": list(inputs[0].shape),
        "seconds": {"load": round(loaded - started, 4),
                    "extract": round(time.perf_counter() - loaded, 4)},
    }
    return Inspection("model", facts, views, {}, samples_shown(options))


def inspect_checkpoint(run: Run, options: InspectOptions) -> Inspection:
    """Recompute the attention of a run's checkpoint on --input (default: the probe batch)."""
    if options.epoch is not None:
        raise AttnvizError("--epoch picks recorded attention and --checkpoint recomputes it: "
                           "give one of them")
    epoch = checkpoint_epoch(run, options.checkpoint)
    if options.input is None:
        x, source, masks = run.probe.x, "probe batch", probe_masks(run)
    else:
        x, source, masks = load_input(options.input, options.key), str(options.input), {}
    started = time.perf_counter()
    model = load_model(run.checkpoint_path(epoch), options.unsafe)
    loaded = time.perf_counter()
    inputs = prepare_inputs(model, x, source)
    layer_path = resolve_layer(model, options.layer) if options.layer else ATTENTION_LAYER
    view = _read_view(model, layer_path, inputs, options, masks)
    facts = {
        **run_facts(run, epoch), "checkpoint": epoch, "input": source,
        "input_shape": list(inputs[0].shape),
        "seconds": {"load": round(loaded - started, 4),
                    "extract": round(time.perf_counter() - loaded, 4)},
    }
    return Inspection("checkpoint", facts, [view], masks, samples_shown(options))


def _read_view(model: keras.Model, layer_path: str, inputs: list[np.ndarray],
               options: InspectOptions, masks: dict | None = None):
    """Extract one layer's weights; rows of a layer that is not attention are checked."""
    extractor, notes = extraction_model(model, layer_path)
    layer = model
    for name in layer_path.split("/"):
        layer = layer.get_layer(name)
    return view_of(layer_path, read_weights(extractor, inputs), options, masks,
                   type(layer).__name__, check_rows=not isinstance(layer, ATTENTION_LAYERS),
                   notes=tuple(notes))

