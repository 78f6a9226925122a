"""Which inputs move a model's prediction: gradient x input and integrated gradients, on
the model's own forward pass, compiled by the backend (tf.function, jax.jit).

Used by `attnviz explain` and by `attnviz train --attribution` (recorded every epoch).
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
from keras import ops

import attnviz.keras.backend as backend
from attnviz.errors import AttnvizError
from attnviz.keras.capture import BATCH_BYTES

IG_STEPS = 64  # trapezoid steps of integrated gradients: completeness off by ~0.01 % for
# the founding case's LSTM, ~1.5 % for the ReLU kinks of the dense encoder
CELLS_PER_CALL = BATCH_BYTES // 32  # sequences x L^2 per traced call (about 32 bytes each:
# the gradients of one call), so a call holds about BATCH_BYTES

# model -> its traced functions. Each function reaches its model through a weak reference,
# so the cache never keeps a model alive.
_TRACED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _traced(model: keras.Model, gradient: bool):
    """One compiled function per model: (x, index) -> the output at `index` of each sample
    (B,), and with `gradient` also its gradient d/dx (B, L, ...)."""
    functions = _TRACED.setdefault(model, {})
    if gradient not in functions:
        def chosen(run, x, index):
            outputs = run(x)
            width = int(np.prod(outputs.shape[1:]))  # K outputs per sample (static)
            outputs = ops.reshape(outputs, (-1, width))  # (B, K)
            # the output at `index` as a one-hot sum: take_along_axis's gradient crashed
            # TensorFlow with oneDNN on (a segfault in integrated gradients' traced call)
            return ops.sum(outputs * ops.one_hot(index, width, dtype=outputs.dtype), axis=1)

        def objective(run, x, index):
            # Samples are independent at inference, so the gradient of the sum is per sample.
            prediction = chosen(run, x, index)
            return ops.sum(prediction), prediction

        functions[gradient] = (backend.gradient(model, objective, wrt=0) if gradient
                               else backend.compiled(model, chosen))
    return functions[gradient]


def _chunks(x: np.ndarray, index: np.ndarray):
    step = max(1, CELLS_PER_CALL // (x.shape[1] * x.shape[1]))
    for start in range(0, len(x), step):
        yield (backend.tensor(x[start:start + step], "float32"),
               backend.tensor(index[start:start + step], "int32"))


def _index(x: np.ndarray, index: np.ndarray | None) -> np.ndarray:
    return np.zeros(len(x), np.int32) if index is None else np.asarray(index, np.int32)


def predict(model: keras.Model, x: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
    """f(x) as (n,) float64: the output at `index` of each sample (default: the first)."""
    forward = _traced(model, gradient=False)
    return np.concatenate([forward(*chunk) for chunk in _chunks(x, _index(x, index))]
                          ).astype(np.float64)


def predictions_and_gradients(model: keras.Model, x: np.ndarray,
                              index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """f(x) (n,) and df/dx (n, L, ...), in chunks."""
    with_gradient = _traced(model, gradient=True)
    pairs = [with_gradient(*chunk) for chunk in _chunks(x, _index(x, index))]
    return (np.concatenate([np.asarray(p) for p, _ in pairs]),
            np.concatenate([np.asarray(g) for _, g in pairs]))


def l1_normalise(values: np.ndarray) -> np.ndarray:
    """Divide each row by the sum of its absolute values; all-zero rows stay zero."""
    total = np.abs(values).sum(axis=1, keepdims=True)
    return np.divide(values, total, out=np.zeros_like(values), where=total > 0)


def per_position(values: np.ndarray) -> np.ndarray:
    """(n, L, ...) -> (n, L): summed over the features of each position."""
    return values.reshape(*values.shape[:2], -1).sum(axis=-1)


def gradient_x_input(model: keras.Model, x: np.ndarray,
                     index: np.ndarray | None = None) -> np.ndarray:
    """(n, L) float32 gradient x input, signed, each row divided by its L1 norm.

    a_t = sum_f x_tf * df/dx_tf, then a_t / sum_s |a_s|. An input of 0.0 (the delimiter)
    always gets 0: use integrated gradients to see whether such a position matters.
    """
    x = np.asarray(x, dtype=np.float32)
    _, gradients = predictions_and_gradients(model, x, index)
    return l1_normalise(per_position(gradients * x)).astype(np.float32)


def integrated_gradients(
    model: keras.Model, x: np.ndarray, baseline: np.ndarray | float, steps: int = IG_STEPS,
    index: np.ndarray | None = None,
) -> np.ndarray:
    """(n, L) float32 integrated gradients from `baseline` to `x`, not normalised.

    IG_t = sum_f (x - x')_tf * integral_0^1 df/dx_tf(x' + alpha (x - x')) d alpha, with the
    integral by the trapezoid rule on `steps` intervals, so that sum_t IG_t ~= f(x) - f(x').
    """
    if steps < 1:
        raise AttnvizError(f"--steps must be at least 1, got {steps}")
    x = np.asarray(x, dtype=np.float32)
    index = _index(x, index)
    baseline = np.broadcast_to(np.asarray(baseline, dtype=np.float32), x.shape)
    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)  # (S,)
    weights = np.full(steps + 1, 1.0 / steps)
    weights[[0, -1]] *= 0.5
    per_chunk = max(1, CELLS_PER_CALL // (x.shape[1] * x.shape[1] * (steps + 1)))
    out = np.empty(x.shape[:2], dtype=np.float32)
    for start in range(0, len(x), per_chunk):
        xs, bs = x[start:start + per_chunk], baseline[start:start + per_chunk]
        path = bs[None] + alphas.reshape(-1, *[1] * x.ndim) * (xs - bs)[None]  # (S, c, L, ...)
        _, gradients = predictions_and_gradients(
            model, path.reshape(-1, *x.shape[1:]), np.tile(index[start:start + per_chunk],
                                                           steps + 1))
        average = np.tensordot(weights, gradients.reshape(path.shape), axes=1)  # (c, L, ...)
        out[start:start + per_chunk] = per_position((xs - bs) * average)
    return out


def completeness_gaps(
    model: keras.Model, x: np.ndarray, baseline: np.ndarray | float, attribution: np.ndarray,
    index: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per sample (sum_t IG_t - (f(x) - f(x')), f(x) - f(x')): completeness says gap ~ 0."""
    x = np.asarray(x, dtype=np.float32)
    baseline = np.broadcast_to(np.asarray(baseline, dtype=np.float32), x.shape)
    delta = predict(model, x, index) - predict(model, np.ascontiguousarray(baseline), index)
    return attribution.sum(axis=1, dtype=np.float64) - delta, delta


def completeness_error(
    model: keras.Model, x: np.ndarray, baseline: np.ndarray | float, attribution: np.ndarray,
    index: np.ndarray | None = None,
) -> float:
    """sum_i |gap_i| / sum_i |f(x_i) - f(x'_i)|: IG's completeness miss over a batch."""
    gap, delta = completeness_gaps(model, x, baseline, attribution, index)
    total = np.abs(delta).sum()
    return float(np.abs(gap).sum() / total) if total > 0 else 0.0
