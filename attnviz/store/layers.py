"""What a run keeps of one attention call, and how a name picks calls: one place for each rule
every command shares.

    kind           TEMPORAL: (n, L) weights, one row per sample (many-to-one attention)
                   MULTI_HEAD: (n, heads, Lq, Lk), a row per query and head (self-attention)
    record_heads   "all" heads as captured, or their "mean" (heads 1: H times less disk)
    dtype          float32 for temporal rows; float16 for multi-head (half the disk; rows
                   still sum to 1 within 1e-3), or q8 (a quarter: attnviz.store.quant,
                   each weight and each span of keys within 0.4 % of the row's maximum)
    --layer        a call's path, or a glob over the paths (`'*layer_1*'`), in every command
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

import numpy as np

from attnviz.errors import AttnvizError
from attnviz.store import quant

TEMPORAL, MULTI_HEAD = "temporal", "multi-head"
SELF = "self"  # MULTI_HEAD as score's JSON, the report and config.json's v1 'attention' say it
RECORD_HEADS = ("all", "mean")
DTYPES = ("float16", "float32", quant.Q8)


def kind_of(shape: Sequence[int]) -> str:
    """TEMPORAL for (n, L) weights, MULTI_HEAD for (n, heads, Lq, Lk)."""
    return TEMPORAL if len(shape) == 2 else MULTI_HEAD


def shown_kind(kind: str) -> str:
    """The kind as score's JSON and the report name it: TEMPORAL or SELF."""
    return TEMPORAL if kind == TEMPORAL else SELF


def check_record_heads(value: str, flag: str = "--record-heads") -> str:
    if value not in RECORD_HEADS:
        raise AttnvizError(f"{flag} {value!r}: use 'all' or 'mean'")
    return value


def stored_layer(name: str, layer_class: str, shape: Sequence[int], record_heads: str,
                 compact: bool = False) -> dict:
    """config.json's entry for a call captured with `shape`: the shape and dtype it is stored
    in (attnviz.store.run adds its kind and folder); `compact`: multi-head maps as q8."""
    shape = list(shape)
    if record_heads == "mean" and len(shape) == 4:
        shape[1] = 1
    dtype = "float32" if len(shape) == 2 else quant.Q8 if compact else "float16"
    return {"name": name, "class": layer_class, "shape": shape, "dtype": dtype}


def file_shape(layer: dict) -> list[int]:
    """The shape of a layer's epoch file (q8 keeps each row's scale after its codes)."""
    shape = list(layer["shape"])
    return quant.stored_shape(shape) if layer["dtype"] == quant.Q8 else shape


def stored_bytes(layer: dict) -> int:
    """Bytes one recorded epoch of `layer` takes on disk (its .npy header aside)."""
    itemsize = 1 if layer["dtype"] == quant.Q8 else np.dtype(layer["dtype"]).itemsize
    return int(np.prod(file_shape(layer))) * itemsize


def to_stored(layer: dict, weights: np.ndarray) -> np.ndarray:
    """Weights as `layer`'s epoch file holds them."""
    if layer["dtype"] == quant.Q8:
        return quant.encode(weights)
    return np.asarray(weights).astype(layer["dtype"])


def from_stored(layer: dict, array: np.ndarray) -> np.ndarray:
    """An epoch file's array as float32 weights of `layer`'s shape."""
    if layer["dtype"] == quant.Q8:
        return quant.decode(array)
    return array.astype(np.float32)


def as_stored(weights: dict[str, np.ndarray], record_heads: str) -> dict[str, np.ndarray]:
    """Captured weights as the run stores them: with "mean", the mean of the heads."""
    if record_heads != "mean":
        return weights
    return {name: w.mean(axis=1, keepdims=True) if w.ndim == 4 else w
            for name, w in weights.items()}


def patterns_of(patterns: str | Sequence[str] | None) -> list[str] | None:
    """Layer patterns as a list: a string is one pattern (never a list of its characters)."""
    if patterns is None:
        return None
    return [patterns] if isinstance(patterns, str) else list(patterns)


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether --layer's patterns pick the call `name`: its exact path, or a glob of it."""
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)
