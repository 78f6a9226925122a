"""Read (or replace) every attention softmax a Keras 3 model computes, wherever it runs.

Keras has no forward hooks, so attnviz intercepts for the span of one forward pass (a
context manager that restores everything in `finally`):

    Layer.__call__       a stack of the layers being called, so every softmax knows whose
                         `call` computed it, and the outputs of Softmax / Activation("softmax")
                         layers (masked softmax included)
    the backend's softmax  every softmax op, wherever it is called from (tf.nn.softmax on
                         TensorFlow, jax.nn.softmax on JAX, attnviz.keras.backend.softmax):
                         keras.ops.softmax, keras.activations.softmax and
                         keras.ops.dot_product_attention all reach it (MultiHeadAttention's
                         fast path too); the backend's own modules' calls are left alone

What counts as attention:
- a Softmax or Activation("softmax") layer, unless it produces an output of the model being
  run (a classifier's head); inside MultiHeadAttention (or Attention, AdditiveAttention,
  GroupQueryAttention) it is named after that layer;
- a softmax op called by a user's or a library's own layer (attnviz's TemporalAttention,
  keras_hub's layers, a TransformerBlock's call, a Lambda that is not the model's output) or
  by a Keras attention layer; softmax ops of Keras' other built-in layers
  (Dense(activation="softmax")) are not attention.

Each captured call is named by the path of its layer from the outside in: the names of the
layers calling it, joined by "/" as Keras' `layer.path` joins them, without the outer model's
name (e.g. "transformer_layer_0/self_attention_layer"). Unlike `layer.path`, which Keras fixes
when a layer is built, the path comes from the calls themselves, so it is the same however
the model was built or loaded. A second call of one layer in a forward pass gets "#2", etc.

MultiHeadAttention and GroupQueryAttention are made to take their explicit path (as with
return_attention_scores=True), so padded queries get rows of zeros as the layer itself
returns them. (A layer with flash attention cannot run on TensorFlow at all: TensorFlow has
no flash kernel, so there is nothing to turn off.)

Weights are stored with the softmax axis last: (batch, keys) for many-to-one attention,
(batch, heads, queries, keys) for the rest ((batch, queries, keys) gets a heads axis of 1;
grouped-query heads (batch, kv_heads, groups, queries, keys) fold into kv_heads * groups
heads; attention over several axes flattens its query and key positions, row-major). A
softmax inside TimeDistributed or an RNN cell runs once per time step and has no call of its
own: it is noted in `Captured.per_step` and refused (per_step_error). A Softmax layer that
Keras named itself ("softmax_3", a counter of the session) is named after the layer it sits
in, so a reloaded model's calls keep their names.

With `replace`, the softmax output of chosen calls is swapped for another distribution
before the rest of the forward pass uses it (interventions, `attnviz explain`).
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
from keras import ops

import attnviz.keras.backend as backend
from attnviz.errors import AttnvizError
from attnviz.keras.internals import (
    compute_attention,
    producer,
    scores_returned,
    set_compute_attention,
    with_scores_asked,
)
from attnviz.store.layers import matches, patterns_of

# Keras' own attention layers: a softmax inside them is attention and takes their name
KERAS_ATTENTION = (keras.layers.MultiHeadAttention, keras.layers.GroupQueryAttention,
                   keras.layers.Attention)  # AdditiveAttention subclasses Attention
DISTRIBUTION_TOLERANCE = 1e-3  # |row sum - 1| of a layer output accepted as attention
BATCH_BYTES = 64 << 20  # the memory one step of work may hold: captured weights of one forward
# batch here; interventions, attribution and explain size their chunks from it too
MAX_BYTES = 2 << 30  # refuse to hold more captured weights than this in memory
SURVEY = 2  # samples of the first pass, which sizes the others

Replacement = Callable[[object], object]  # backend tensor -> backend tensor


@dataclass(frozen=True)
class CallInfo:
    """One captured attention call: where, what computed it, and the shape stored."""

    name: str  # layer path, "#k" for the k-th call of one layer in a forward pass
    layer_class: str  # the Keras class of the layer that computed the softmax
    source: str  # "softmax layer" | "softmax op" | "layer output" (a layer named by --layer)
    shape: tuple[int, ...]  # (batch, keys) or (batch, heads, queries, keys), batch included

    def to_json(self) -> dict:
        return {"name": self.name, "layer_class": self.layer_class, "source": self.source,
                "shape": list(self.shape)}


# ---- the interception ----------------------------------------------------------------------


_ORIGINAL_CALL = keras.layers.Layer.__call__
_ORIGINAL_SOFTMAX, _BACKEND_MODULES = backend.softmax()
_ORIGINAL_MHA = compute_attention(keras.layers.MultiHeadAttention)
_ORIGINAL_GQA = compute_attention(keras.layers.GroupQueryAttention)
_LOCAL = threading.local()  # .capture: the Interceptor active on this thread
_INSTALL_LOCK = threading.Lock()
_installed = 0  # Interceptors active on all threads
_aliases: list[tuple[object, str]] = []  # (module, attribute) holding the backend's softmax
_aliases_seen = 0  # len(sys.modules) when _aliases was made


def _softmax_aliases() -> list[tuple[object, str]]:
    """Every module attribute that is the backend's softmax (tf.nn, tf.math, jax.nn, a user's
    own alias), but the backend's implementation modules, whose own code calls them."""
    global _aliases, _aliases_seen
    if len(sys.modules) != _aliases_seen:
        found = []
        for module_name, module in list(sys.modules.items()):
            if module_name.startswith(_BACKEND_MODULES) or module_name == __name__:
                continue
            names = getattr(module, "__dict__", None)
            if not isinstance(names, dict):
                continue
            found += [(module, key) for key, value in list(names.items())
                      if value is _ORIGINAL_SOFTMAX]
        _aliases, _aliases_seen = found, len(sys.modules)
    return _aliases


def _layer_call(layer, *args, **kwargs):
    capture = getattr(_LOCAL, "capture", None)
    if capture is None:
        return _ORIGINAL_CALL(layer, *args, **kwargs)
    return capture.layer_call(layer, args, kwargs)


def _softmax(logits, *args, **kwargs):
    capture = getattr(_LOCAL, "capture", None)
    if capture is None or capture.softmax_depth:
        return _ORIGINAL_SOFTMAX(logits, *args, **kwargs)
    return capture.softmax_op(logits, args, kwargs)


def _mha_attention(layer, *args, **kwargs):
    """MultiHeadAttention's attention with return_attention_scores=True: its explicit path."""
    if getattr(_LOCAL, "capture", None) is not None:
        args, kwargs = with_scores_asked(args, kwargs)
    return _ORIGINAL_MHA(layer, *args, **kwargs)


def _gqa_attention(layer, *args, **kwargs):
    """GroupQueryAttention's attention on its explicit path (it reads an attribute for it)."""
    if getattr(_LOCAL, "capture", None) is None:
        return _ORIGINAL_GQA(layer, *args, **kwargs)
    with scores_returned(layer):
        return _ORIGINAL_GQA(layer, *args, **kwargs)


def _set_call(method) -> None:
    keras.layers.Layer.__call__ = method


# (how to set it, the original, the patch)
_PATCHES = ((_set_call, _ORIGINAL_CALL, _layer_call),
            (lambda method: set_compute_attention(keras.layers.MultiHeadAttention, method),
             _ORIGINAL_MHA, _mha_attention),
            (lambda method: set_compute_attention(keras.layers.GroupQueryAttention, method),
             _ORIGINAL_GQA, _gqa_attention))
if backend.name() == "jax":  # keras.ops.dot_product_attention goes to jax's fused call
    import jax

    import attnviz.keras.fused as fused

    def _fused_attention(*args, **kwargs):
        if getattr(_LOCAL, "capture", None) is None:
            return fused.ORIGINAL(*args, **kwargs)
        return fused.explicit(_softmax, *args, **kwargs)

    def _set_fused(function) -> None:
        jax.nn.dot_product_attention = function

    _PATCHES = (*_PATCHES, (_set_fused, fused.ORIGINAL, _fused_attention))


def _install() -> None:
    """Patch Keras and every alias of the backend's softmax (once, however many threads capture);
    a patch that fails undoes those made before it."""
    global _installed
    with _INSTALL_LOCK:
        if _installed == 0:
            try:
                for put, _, patched in _PATCHES:
                    put(patched)
                for module, key in _softmax_aliases():
                    setattr(module, key, _softmax)
            except BaseException:
                _restore()
                raise
        _installed += 1


def _uninstall() -> None:
    global _installed
    with _INSTALL_LOCK:
        _installed -= 1
        if _installed == 0:
            _restore()


def _restore() -> None:
    """Every patch undone: what interception looks like when no thread captures."""
    for put, original, _ in _PATCHES:
        put(original)
    for module, key in _aliases:
        if getattr(module, key, None) is _softmax:
            setattr(module, key, _ORIGINAL_SOFTMAX)


def _is_softmax_layer(layer) -> bool:
    if isinstance(layer, keras.layers.Softmax):
        return True
    return (isinstance(layer, keras.layers.Activation)
            and getattr(layer.activation, "__name__", None) == "softmax")


def _keras_builtin(layer) -> bool:
    return type(layer).__module__.startswith("keras.")


def _automatic_name(layer) -> bool:
    """Whether `layer` carries the name Keras made up for it ("softmax", "softmax_3"): a
    counter of the session, so another process (a checkpoint reloaded) numbers it otherwise."""
    base = re.sub(r"(?<!^)(?=[A-Z])", "_", type(layer).__name__).lower()
    return re.fullmatch(rf"{base}(_\d+)?", layer.name) is not None


# Keras layers that run the layer they wrap once per time step through `layer.call`
# (TimeDistributed), or a cell inside a loop (RNN and its subclasses, Bidirectional): a
# softmax there has no call of its own, so it is refused with this reason.
PER_STEP = (keras.layers.TimeDistributed, keras.layers.RNN, keras.layers.Bidirectional)


def _key_axes(layer) -> int:
    """How many trailing axes a Softmax layer normalises over together (MultiHeadAttention
    with attention_axes=(1, 2) normalises over 2)."""
    axis = getattr(layer, "axis", -1)
    return len(axis) if isinstance(axis, (tuple, list)) else 1


def _output_layers(model) -> set[int]:
    """ids of the layers that produce a functional model's outputs."""
    outputs = getattr(model, "outputs", None) or []
    producers = set()
    for tensor in outputs:
        layer = producer(tensor)
        if layer is not None:
            producers.add(id(layer))
    return producers


class Interceptor:
    """While active on this thread: records attention softmaxes, and swaps in `replace`.

    `records` holds (name, layer class, source, tensor) in call order. `watch` names layer
    paths whose outputs are recorded as they are (a --layer that is not a softmax).
    `layers` maps the path of every layer called to the layer.
    """

    def __init__(self, replace: dict[str, Replacement] | None = None,
                 watch: Iterable[str] = ()):
        self.replace = dict(replace or {})
        self.watch = set(watch)
        self.stack: list[tuple[object, str]] = []  # (layer, path) being called, outermost first
        self.softmax_depth = 0  # >0 inside a recorded softmax: its inner ops are not recorded
        self.records: list[tuple[str, str, str, object]] = []  # ..., backend tensor
        self.layers: dict[str, object] = {}
        self.per_step: dict[str, str] = {}  # path -> the class of a PER_STEP layer whose
        # inner layer computed a softmax (refused: no call of its own to name)
        self._calls: dict[str, int] = {}
        self._model_outputs: dict[int, set[int]] = {}

    def __enter__(self) -> Interceptor:
        if getattr(_LOCAL, "capture", None) is not None:
            raise RuntimeError("attention capture is already active on this thread")
        _install()
        _LOCAL.capture = self
        return self

    def __exit__(self, *exc) -> None:
        _LOCAL.capture = None
        _uninstall()

    @property
    def seen(self) -> list[str]:
        """The classes of the layers called, in order, once each."""
        return list(dict.fromkeys(type(layer).__name__ for layer in self.layers.values()))

    # -- events --

    def layer_call(self, layer, args, kwargs):
        if not self.stack:
            path = layer.name  # the model being run
        elif len(self.stack) == 1:
            path = layer.name
        else:
            path = f"{self.stack[-1][1]}/{layer.name}"
        self.layers.setdefault(path, layer)
        softmax_layer = not self.softmax_depth and _is_softmax_layer(layer)
        parent = self.stack[-1] if self.stack else None
        self.stack.append((layer, path))
        self.softmax_depth += softmax_layer
        recorded = len(self.records)
        try:
            outputs = _ORIGINAL_CALL(layer, *args, **kwargs)
        finally:
            self.softmax_depth -= softmax_layer
            self.stack.pop()
        if softmax_layer and not self._is_model_output(layer, parent) and (
                not self._inside_per_step()):
            named_by_parent = parent is not None and (
                isinstance(parent[0], KERAS_ATTENTION)
                or (parent is not self.stack[0] and _automatic_name(layer)))
            owner = parent if named_by_parent else (layer, path)
            outputs = self._event(owner, "softmax layer", outputs, -1, _key_axes(layer))
        if (path in self.watch and not isinstance(outputs, (list, tuple, dict))
                and not any(record[0].split("#")[0] == path
                            for record in self.records[recorded:])):
            # a layer that outputs attention and computes none: its output is its attention
            # (one that computes a softmax is named by that softmax, call by call)
            self.records.append((self._name(path), type(layer).__name__, "layer output",
                                 outputs))
        return outputs

    def softmax_op(self, logits, args: tuple, kwargs: dict):
        self.softmax_depth += 1
        try:
            outputs = _ORIGINAL_SOFTMAX(logits, *args, **kwargs)
        finally:
            self.softmax_depth -= 1
        axis = backend.softmax_axis(args, kwargs)
        if not isinstance(axis, int) or "where" in kwargs:
            return outputs  # over several axes at once, or masked by jax's `where`: not the
            # shape keras.ops gives attention (it reshapes to one axis before calling)
        owner = self.stack[-1] if self.stack else None
        if owner is not None and isinstance(owner[0], keras.layers.TimeDistributed):
            wrapped = owner[0].layer  # called through its `call`: the softmax is its own
            if _keras_builtin(wrapped) and not isinstance(wrapped, KERAS_ATTENTION):
                return outputs  # TimeDistributed(Dense(activation="softmax")): a tagger's head
        elif owner is None or (_keras_builtin(owner[0]) and not isinstance(
                owner[0], (*KERAS_ATTENTION, keras.Model, keras.layers.Lambda))):
            return outputs  # outside any layer, or a built-in layer's activation
        if self._inside_per_step():
            return outputs
        if isinstance(owner[0], keras.layers.Lambda) and self._is_model_output(
                owner[0], self.stack[-2] if len(self.stack) > 1 else None):
            return outputs  # a Lambda softmax that is the model's output: a classifier's head
        return self._event(owner, "softmax op", outputs, axis)

    # -- helpers --

    def _inside_per_step(self) -> bool:
        """Whether the layers being called run inside a PER_STEP layer (noted in per_step)."""
        for layer, path in reversed(self.stack):
            if isinstance(layer, PER_STEP):
                self.per_step.setdefault(path, type(layer).__name__)
                return True
        return False

    def _is_model_output(self, layer, parent) -> bool:
        """Whether `layer` produces an output of the model being run (a classifier's head)."""
        if parent is None or parent is not self.stack[0]:
            return False
        key = id(parent[0])
        if key not in self._model_outputs:
            self._model_outputs[key] = _output_layers(parent[0])
        return id(layer) in self._model_outputs[key]

    def _name(self, path: str) -> str:
        count = self._calls[path] = self._calls.get(path, 0) + 1
        return path if count == 1 else f"{path}#{count}"

    def _event(self, owner: tuple[object, str], source: str, weights, axis: int,
               key_axes: int = 1):
        layer, path = owner
        name = self._name(path)
        rank = len(weights.shape)
        axis = axis % rank if rank else 0
        last = axis == rank - 1
        if key_axes > 1:  # multi-axis attention: its key positions flattened, row-major
            if name in self.replace:
                raise AttnvizError(f"{name} attends over {key_axes} axes at once: attnviz "
                                   "reads its weights but cannot replace them (explain's "
                                   "interventions); explain another layer with --layer")
            self.records.append((name, type(layer).__name__, source,
                                 _flatten_positions(weights, key_axes)))
            return weights
        if name in self.replace:
            moved = weights if last else ops.moveaxis(weights, axis, -1)
            replaced = ops.cast(self.replace[name](moved), weights.dtype)
            weights = replaced if last else ops.moveaxis(replaced, -1, axis)
        stored = weights if last else ops.moveaxis(weights, axis, -1)
        if len(stored.shape) == 5 and not isinstance(layer, keras.layers.MultiHeadAttention):
            # grouped-query heads (batch, kv_heads, groups, queries, keys): head kv * groups
            # + g, the layer's own query-head order. (MultiHeadAttention's rank 5 is attention
            # over an axis with another axis before it: no heads to fold; not stored.)
            shape = ops.shape(stored)
            stored = ops.reshape(stored, (-1, shape[1] * shape[2], shape[3], shape[4]))
        self.records.append((name, type(layer).__name__, source, stored))
        return weights


# ---- capturing on data ---------------------------------------------------------------------


@dataclass
class Captured:
    """The attention of every selected call on a batch of inputs."""

    calls: list[CallInfo]
    weights: dict[str, np.ndarray]  # name -> float32, batch first
    layers: dict[str, str] = field(default_factory=dict)  # path of every layer called -> class
    per_step: dict[str, str] = field(default_factory=dict)  # refused: see per_step_error


def _flatten_positions(weights, key_axes: int):
    """Attention normalised over its last `key_axes` axes together, with its key positions
    flattened (row-major) into one axis, and the axes between the heads and the keys (the
    query positions) into another: (B, H, q1..qk, k1..kk) -> (B, H, q1*..*qk, k1*..*kk), as
    MultiHeadAttention's attention_axes give it; a spatial softmax (B, h, w) over (h, w) ->
    (B, h*w)."""
    rank = len(weights.shape)
    shape = ops.shape(weights)  # the batch may be unknown while tracing; the rest is static
    keys = int(np.prod(shape[rank - key_axes:]))
    rest = rank - key_axes  # batch, then heads and query axes
    if rest <= 2:
        return ops.reshape(weights, (-1, *shape[1:rest], keys))
    queries = int(np.prod(shape[2:rest]))
    return ops.reshape(weights, (-1, shape[1], queries, keys))


def _standard(weights: np.ndarray) -> np.ndarray:
    """Weights as a run stores them: (B, Lq, Lk) gets a heads axis; the rest is kept
    (grouped heads are folded when captured, Interceptor._event)."""
    weights = np.asarray(weights, dtype=np.float32)
    return weights[:, None] if weights.ndim == 3 else weights


def forward(model, inputs, *, replace: dict[str, Replacement] | None = None,
            watch: Iterable[str] = (), training: bool = False):
    """One eager forward pass under interception: (outputs, the interceptor)."""
    with Interceptor(replace, watch) as interceptor:
        outputs = model(inputs, training=training)
    return outputs, interceptor


def capture(model, inputs, *, layers: Sequence[str] | None = None, batch_size: int | None = None,
            replace: dict[str, Replacement] | None = None, watch: Iterable[str] = ()) -> Captured:
    """Run `model` on `inputs` (an array, a list or a dict of arrays, batch first) eagerly,
    batch by batch, and return the attention of every captured call (or of those `layers`
    select: exact paths or globs; a string is one).

    Without `batch_size`, the first pass reads SURVEY samples only: what one sample captures
    sizes the passes after it (about BATCH_BYTES each), and a capture over MAX_BYTES in all
    is refused then, before the memory is spent. The survey's samples are kept, not read
    again, and each pass is copied into one array per call allocated once: with s the bytes
    one sample's attention takes (float32, every selected call) and b = max(1, BATCH_BYTES
    // s) samples per pass, peak memory is about n * s (the result) + b * s (the pass's
    own tensors) + the model's activations of b samples."""
    layers = patterns_of(layers)
    n = batch_length(inputs)
    size = batch_size or min(n, SURVEY)
    calls: dict[str, CallInfo] = {}
    weights: dict[str, np.ndarray] = {}
    called: dict[str, str] = {}
    per_step: dict[str, str] = {}
    sized = batch_size is not None
    start = 0
    while start < n:
        batch = min(size, n - start)
        _, interceptor = forward(model, slice_samples(inputs, start, start + batch),
                                 replace=replace, watch=watch)
        chosen = [r for r in interceptor.records if layers is None or matches(r[0], layers)]
        if not sized:  # the survey: what one sample captures sizes every pass after it
            sized = True
            size = _batch_size(chosen, n)
        if start == 0:
            called = {path: type(layer).__name__ for path, layer in interceptor.layers.items()}
            per_step = dict(interceptor.per_step)
        for name, layer_class, source, tensor in chosen:
            array = _standard(np.asarray(tensor))
            if name not in calls:
                calls[name] = CallInfo(name, layer_class, source, (n, *array.shape[1:]))
                weights[name] = np.empty(calls[name].shape, np.float32)
            weights[name][start:start + batch] = array
        start += batch
    return Captured(list(calls.values()), weights, called, per_step)


def _batch_size(records: list, n: int) -> int:
    """Samples per forward pass so one pass captures about BATCH_BYTES, from a pass's records;
    refuse past MAX_BYTES for all `n` samples."""
    per_sample = sum(4 * int(np.prod(r[3].shape[1:])) for r in records)
    if per_sample * n > MAX_BYTES:
        found = (f"the attention of {n} samples would take {per_sample * n / 2**30:.1f} GB: pass "
                 f"at most {MAX_BYTES // per_sample} samples, or select fewer layers with ")
        raise AttnvizError(found + "--layer", python=found + "layers=")
    return max(1, min(n, BATCH_BYTES // max(per_sample, 1)))


def survey(model, inputs) -> Captured:
    """Every attention call, and every layer called, on the first two samples."""
    return capture(model, slice_samples(inputs, 0, 2))


def unnumbered(path: str) -> str:
    """A call's path without Keras' automatic name suffixes ("multi_head_attention_1"): a
    model rebuilt in another session, or a second time in one, numbers them otherwise."""
    return re.sub(r"_\d+(?=/|#|$)", "", path)


def select(calls: Sequence[CallInfo], patterns: str | Sequence[str] | None) -> list[CallInfo]:
    """The calls that `patterns` (paths or globs; a string is one) name, in call order; all
    when None."""
    patterns = patterns_of(patterns)
    if not patterns:
        return list(calls)
    return [call for call in calls if matches(call.name, patterns)]


def batch_length(inputs) -> int:
    """Samples in `inputs`: an array, or a dict / list of arrays."""
    return int(keras.tree.flatten(inputs)[0].shape[0])


def slice_samples(inputs, start: int, stop: int):
    """Samples start..stop of `inputs`: an array, or a dict / list of arrays."""
    return keras.tree.map_structure(lambda array: array[start:stop], inputs)


# ---- a --layer that names a layer, not a captured call ---------------------------------------


def is_distribution(weights: np.ndarray) -> bool:
    """Non-negative rows that sum to 1 over the last axis."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim < 2 or weights.shape[-1] < 2 or (weights < 0).any():
        return False
    return bool(np.abs(weights.sum(axis=-1) - 1.0).max() <= DISTRIBUTION_TOLERANCE)


def resolve_layers(model, inputs, patterns: Sequence[str] | None) -> tuple[list[CallInfo],
                                                                           list[str]]:
    """The calls `patterns` select (on the first two samples), and the paths among them of
    layers that compute no softmax but output a distribution (read with `watch`).

    A pattern that selects nothing is refused: listing the captured calls, or, when it names
    a layer whose output is not attention, naming the softmax inside that layer.
    """
    patterns = patterns_of(patterns)
    surveyed = survey(model, inputs)
    calls = surveyed.calls
    if not patterns:
        if not calls:
            raise no_attention_error(surveyed.layers, surveyed.per_step)
        return calls, []
    chosen, watch = select(calls, patterns), []
    for pattern in patterns:
        if select(calls, [pattern]):
            continue
        path = _layer_path(surveyed.layers, pattern)
        if path is None:
            listed = ", ".join(call.name for call in calls) or "none"
            raise AttnvizError(f"--layer {pattern} matches no attention call and no layer; "
                               f"the attention calls are: {listed}")
        output = capture(model, slice_samples(inputs, 0, 2), layers=[path], watch=[path])
        weights = output.weights.get(path)
        if weights is not None and is_distribution(weights):
            watch.append(path)
            chosen += output.calls
            continue
        shape = "several tensors" if weights is None else str(tuple(weights.shape))
        inner = [call.name for call in calls if call.name.startswith(path + "/")]
        if inner:
            raise AttnvizError(
                f"--layer {pattern}: its output {shape} is not a distribution over positions, "
                f"so it is not attention; the softmax inside it is {inner[0]}: pass "
                f"--layer {inner[0]}")
        raise AttnvizError(f"--layer {pattern}: its output {shape} is not a distribution over "
                           "positions and it computes no softmax, so it is not attention")
    return chosen, watch


def _layer_path(layers: dict[str, str], name: str) -> str | None:
    """The path of the layer `name` names: a path, or a layer name used once."""
    if name in layers:
        return name
    matches = [path for path in layers if path.rsplit("/", 1)[-1] == name]
    return matches[0] if len(matches) == 1 else None


def no_attention_error(layers: dict[str, str], per_step: dict[str, str] | None = None
                       ) -> AttnvizError:
    """Why a model gave no attention to capture: a softmax run per time step (refused), or
    none inside a layer."""
    if per_step:
        return per_step_error(per_step)
    classes = ", ".join(dict.fromkeys(layers.values())) or "none"
    found = ("no attention found: the model computes no softmax inside a layer (layer classes "
             f"called: {classes}); if one of its layers outputs attention weights, name it with ")
    return AttnvizError(found + "--layer", python=found + "layers=['its name']")


def per_step_error(per_step: dict[str, str]) -> AttnvizError:
    """A softmax inside TimeDistributed or an RNN: computed once per time step, inside a loop
    or through the wrapped layer's `call`, so it has no call of its own to name, and a traced
    read cannot take tensors out of the loop."""
    path, kind = next(iter(per_step.items()))
    fix = ("apply the attention layer to the steps folded into the batch, (B, T, ...) reshaped "
           "to (B * T, ...)" if kind == "TimeDistributed" else
           "compute the attention outside the cell, over the sequence the RNN returns "
           "(return_sequences=True)")
    return AttnvizError(f"the attention inside {kind} {path} runs once per time step, so "
                        f"attnviz cannot capture it as one call: {fix}")


# ---- a traced capture, for reading the same probe batch again and again ----------------------


class Probe:
    """Capture traced once by the backend's compiler (tf.function, jax.jit: see
    attnviz.keras.backend.compiled): about a plain forward pass per read.

    The names are fixed by the first trace; the recorder reads the probe batch with it
    after every epoch (and every N steps), with the weights the model has then.
    """

    def __init__(self, model, layers: Sequence[str] | None = None):
        self.model = model
        self.layers = patterns_of(layers) or None
        self.calls: list[CallInfo] = []
        self._function = backend.compiled(model, self._traced)

    def _traced(self, run, inputs):
        with Interceptor(watch=self.layers or ()) as interceptor:
            run(inputs)
        chosen = [r for r in interceptor.records
                  if self.layers is None or matches(r[0], self.layers)]
        self.calls = [CallInfo(name, layer_class, source, tuple(tensor.shape))
                      for name, layer_class, source, tensor in chosen]
        return {name: ops.cast(tensor, "float32") for name, _, _, tensor in chosen}

    def __call__(self, inputs) -> dict[str, np.ndarray]:
        return {name: _standard(value) for name, value in self._function(inputs).items()}


@contextlib.contextmanager
def intercepted(replace: dict[str, Replacement] | None = None) -> Iterator[Interceptor]:
    """Interception for code that calls the model itself (gradients through replaced
    attention, for example)."""
    with Interceptor(replace) as interceptor:
        yield interceptor
