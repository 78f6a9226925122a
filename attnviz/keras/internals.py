"""Keras' private attributes: the one module of attnviz that touches them.

Keras 3 has no forward hooks, no public list of a model's nested layers and no public way
to ask an attention layer for its weights mid-call, so attnviz reads a few private names.
Checked against Keras 3.10 to 3.15.1 and keras_hub 0.21 to 0.32; the capture tests
(tests/test_capture*.py) fail when one of them moves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_COMPUTE_ATTENTION = "_compute_attention"  # MultiHeadAttention and GroupQueryAttention: the
# method that computes the softmax and the weighted sum, patched by attnviz.keras.capture
_MHA_SCORES_ARGUMENT = 5  # MultiHeadAttention._compute_attention(query, key, value,
# attention_mask, training, return_attention_scores, ...): the position of the last


def compute_attention(layer_class):
    """The class's own attention method (the one capture patches)."""
    return getattr(layer_class, _COMPUTE_ATTENTION)


def set_compute_attention(layer_class, method) -> None:
    """Put `method` in place of the class's attention method (capture's patch, and its undoing)."""
    setattr(layer_class, _COMPUTE_ATTENTION, method)


def with_scores_asked(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """MultiHeadAttention._compute_attention's arguments with return_attention_scores=True,
    wherever the caller passed it: the layer then takes its explicit path."""
    if len(args) > _MHA_SCORES_ARGUMENT:
        return (*args[:_MHA_SCORES_ARGUMENT], True, *args[_MHA_SCORES_ARGUMENT + 1:]), kwargs
    return args, {**kwargs, "return_attention_scores": True}


@contextmanager
def scores_returned(layer) -> Iterator[None]:
    """GroupQueryAttention returns its weights when an attribute says so (MultiHeadAttention
    takes an argument instead)."""
    asked = layer._return_attention_scores
    layer._return_attention_scores = True
    try:
        yield
    finally:
        layer._return_attention_scores = asked


def all_layers(model) -> list:
    """Every layer of the model, nested ones included, the model itself first."""
    return list(model._flatten_layers(include_self=True, recursive=True))


def producer(tensor):
    """The layer (operation) that produced a symbolic tensor, or None."""
    return getattr(getattr(tensor, "_keras_history", None), "operation", None)


def takes_dict(model) -> bool:
    """Whether a functional model was built on a dict of inputs."""
    return isinstance(getattr(model, "_inputs_struct", None), dict)


def restored_by_backup(model) -> bool:
    """Whether keras.callbacks.BackupAndRestore restored this fit from a backup (which may be
    from the middle of an epoch): Keras sets the model's initial epoch then."""
    return getattr(model, "_initial_epoch", None) is not None
