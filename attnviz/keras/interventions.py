"""What if attention were elsewhere: a trained model's loss with the weights of one attention
call replaced, read and replaced through `attnviz.keras.capture`.

    learned       the weights the model computes, fed back in: its own loss
    uniform       each row uniform over its support (the positions the learned row gives any
                  weight, so padded keys stay at 0)
    permuted      each row's weights shuffled among its support, anew for every sample and
                  draw (Jain & Wallace 2019)
    mask:NAME     each row uniform over the mask's positions within its support (all of it on
                  a one-position mask); of self-attention, also the built-in masks prev,
                  self and first (and induction on token ids), each query's row its own:
                  "what if this layer attended only to the previous token?"
    argmax        all of each row on the learned row's largest weight
    adversarial   the attention farthest from the learned one (largest Jensen-Shannon
                  divergence) whose predictions stay within a tolerance of the learned
                  predictions, found by Adam on the attention logits for a fixed number of
                  steps (Jain & Wallace 2019)

Weights keep the shape the call computes them in, the softmax axis last: (B, L) for temporal
attention, (B, H, Lq, Lk) or (B, Lq, Lk) for Keras' attention layers; every head and every
query row of a multi-head call is replaced. Each intervention reports its loss on the given
samples and its mean JSD from the learned rows (nats, 0..ln 2, as `attnviz score`'s jsd).
Worked example, one row of L = 4 with support {0, 1, 2} (key 3 padded):

    learned [.7, .2, .1, 0]   uniform [1/3, 1/3, 1/3, 0]   argmax [1, 0, 0, 0]
    mask {1, 3}: [0, 1, 0, 0] (key 3 is outside the support)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

import attnviz.keras.backend as backend
from attnviz.errors import AttnvizError
from attnviz.keras.capture import BATCH_BYTES, batch_length, intercepted, slice_samples

DRAWS = 5  # permutations drawn per sample: the loss is their mean, with their spread
ADVERSARIAL_STEPS = 50  # Adam steps on the attention logits ...
ADVERSARIAL_SAMPLES = 500  # ... of at most this many samples (the first ones)
ADVERSARIAL_RATE = 1.0  # Adam's learning rate on the logits
ADVERSARIAL_TOLERANCE = 0.05  # predictions may move by this share of their spread (std)
ADVERSARIAL_PENALTY = 10.0  # hinge weight on moving past the tolerance
VERY_DIFFERENT = 0.2  # JSD (nats) from the learned row that counts as a very different
# attention: about half of a one-hot row's weight moved elsewhere ([1, 0] to [.5, .5]: 0.22)
ADVERSARIAL_NOISE = 10.0  # std of the noise on the starting logits: JSD's gradient is 0 at
# the learned weights themselves, and a far start finds farther attention (tuned on the
# founding case: noise 1 reached a mean JSD of 0.05 in 50 steps, noise 10 0.24)
SAMPLES_PER_CALL = 512  # samples per traced forward pass, and at most BATCH_BYTES of attention
_TINY = 1e-30


# ---- losses --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loss:
    """A per-sample loss: name as reported, and (y, outputs) -> (n,) float64."""

    name: str
    source: str  # where it comes from, as the report says it
    per_sample: Callable[[np.ndarray, np.ndarray], np.ndarray]

    def mean(self, y: np.ndarray, outputs: np.ndarray) -> float:
        return float(self.per_sample(y, outputs).mean())


def squared_error(y: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """Mean squared error of each sample over its output values."""
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    return ((np.asarray(outputs, np.float64).reshape(len(outputs), -1) - y) ** 2).mean(axis=1)


def compiled_loss(model) -> Loss | None:
    """The loss `model` was compiled with, per sample, as `model.evaluate` averages it (no
    sample weights, no regularisation terms); None when it has none or several."""
    loss = getattr(model, "loss", None)
    if loss is None or isinstance(loss, (list, tuple, dict)):
        return None
    function = keras.losses.get(loss) if isinstance(loss, str) else loss
    name = loss if isinstance(loss, str) else getattr(loss, "name", None) or getattr(
        function, "__name__", type(loss).__name__)
    if isinstance(function, keras.losses.Loss):
        # the loss object's own reduction would average: its call keeps samples apart
        call = function.call
    elif callable(function):
        call = function
    else:
        return None

    def per_sample(y: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        values = np.asarray(call(ops.convert_to_tensor(y), ops.convert_to_tensor(outputs)),
                            np.float64)
        return values.reshape(len(values), -1).mean(axis=1)

    return Loss(str(name), "the loss the model was compiled with", per_sample)


# ---- replacements (numpy) ------------------------------------------------------------------


def _rows_mask(mask: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """A (n, Lk) mask broadcast to every row of (n, ..., Lk) weights; a mask per query,
    (n, Lq, Lk), to every head's (n, ..., Lq, Lk)."""
    lead = weights.ndim - mask.ndim
    return mask.reshape(len(mask), *([1] * lead), *mask.shape[1:]).astype(bool)


def _normalised(chosen: np.ndarray) -> np.ndarray:
    counts = chosen.sum(axis=-1, keepdims=True)
    return np.divide(chosen, counts, out=np.zeros(chosen.shape, np.float32),
                     where=counts > 0).astype(np.float32)


def uniform(learned: np.ndarray) -> np.ndarray:
    """Each row uniform over its support."""
    return _normalised(learned > 0)


def on_mask(learned: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Each row uniform over the mask's positions within its support; rows the mask misses
    keep their learned weights. Returns the weights and how many samples kept some row."""
    chosen = (learned > 0) & _rows_mask(mask, learned)
    replaced = _normalised(chosen)
    missed = ~chosen.any(axis=-1, keepdims=True) & (learned > 0).any(axis=-1, keepdims=True)
    kept = missed.reshape(len(learned), -1).any(axis=1)
    return np.where(missed, learned, replaced).astype(np.float32), int(kept.sum())


def argmax(learned: np.ndarray) -> np.ndarray:
    """All of each row on its largest weight; rows of zeros (padded queries) stay zero."""
    top = learned.argmax(axis=-1)[..., None]
    hot = np.zeros(learned.shape, np.float32)
    np.put_along_axis(hot, top, 1.0, axis=-1)
    return np.where(learned.sum(axis=-1, keepdims=True) > 0, hot, 0.0).astype(np.float32)


def permuted(learned: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each row's weights shuffled among its support (the zeros outside it stay in place)."""
    support = learned > 0
    keys = np.where(support, rng.random(learned.shape), np.inf)
    shuffled = np.argsort(keys, axis=-1, kind="stable")  # the support in random order first
    places = np.argsort(~support, axis=-1, kind="stable")  # the support in order first
    out = np.empty_like(learned)
    np.put_along_axis(out, places, np.take_along_axis(learned, shuffled, axis=-1), axis=-1)
    return out


def jsd(learned: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per sample: the mean Jensen-Shannon divergence (nats) of its rows from the learned
    rows, over the rows that hold any weight."""
    p, q = np.asarray(learned, np.float64), np.asarray(other, np.float64)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> np.ndarray:
        safe = np.where(a > 0, a, 1.0)
        return np.where(a > 0, a * (np.log(safe) - np.log(np.where(a > 0, m, 1.0))), 0.0).sum(-1)

    rows = np.clip(0.5 * (kl(p) + kl(q)), 0.0, math.log(2.0)).reshape(len(p), -1)
    valid = (p.sum(axis=-1) > 0).reshape(len(p), -1)
    return np.where(valid, rows, 0.0).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)


# ---- forward passes through capture --------------------------------------------------------


class Intervener:
    """Compiled forward passes of `model` that read, or replace, the weights of one captured
    attention call (`call`, a capture name such as "attention"), compiled by the backend
    (tf.function, jax.jit) for any number of samples."""

    def __init__(self, model, call: str):
        self.model = model
        self.call = call
        self._dtypes = None  # numpy dtypes of the inputs, as the passes were compiled for
        self._weights_shape = None  # the call's weights of one sample, batch first

    # -- compiled bodies: run(x) is the model's forward pass --

    def _read_pass(self, run, x) -> tuple[object, list, list[str]]:
        """The model's output on `x`, the weights its call `self.call` computed, and the name
        of every call it computed."""
        with intercepted() as interceptor:
            outputs = _single(run(x))
        found = [tensor for name, _, _, tensor in interceptor.records if name == self.call]
        return outputs, found, [name for name, *_ in interceptor.records]

    def _learned_pass(self, run, x):
        outputs, found, _ = self._read_pass(run, x)
        return outputs, ops.cast(found[0], "float32")

    def _replaced_pass(self, run, x, weights):
        def replace(learned):
            return ops.reshape(ops.cast(weights, learned.dtype), ops.shape(learned))

        with intercepted(replace={self.call: replace}):
            return _single(run(x))

    def _objective(self, run, x, logits, bias, learned, target, tolerance):
        """sum_i (JSD_i - penalty * max(0, change_i / tol - 1)), differentiable in the
        logits; with (weights, change, JSD) per sample."""
        weights = ops.softmax(logits + bias, axis=-1)
        outputs = self._replaced_pass(run, x, weights)
        change = _per_sample_max(ops.abs(ops.cast(outputs, "float32") - target))
        divergence = _jsd_ops(learned, weights)
        objective = ops.sum(divergence - ADVERSARIAL_PENALTY * ops.relu(change / tolerance
                                                                         - 1.0))
        return objective, (weights, change, divergence)

    def _trace(self, x) -> None:
        """Run one sample eagerly (the call must be there), then compile every pass."""
        if self._dtypes is not None:
            return
        outputs, found, names = self._read_pass(lambda x: self.model(x, training=False),
                                                slice_samples(x, 0, 1))
        if not found:
            calls = ", ".join(dict.fromkeys(names)) or "none"
            raise AttnvizError(f"the model computes no attention call {self.call} on these "
                               f"inputs; the calls it computes are: {calls}")
        self._dtypes = keras.tree.map_structure(lambda array: np.asarray(array).dtype, x)
        self._weights_shape = tuple(found[0].shape)
        self._learned = backend.compiled(self.model, self._learned_pass)
        self._replaced = backend.compiled(self.model, self._replaced_pass)
        self._step = backend.gradient(self.model, self._objective, wrt=1)

    # -- numpy in, numpy out, in bounded passes --

    def _chunks(self, n: int):
        row_bytes = 16 * int(np.prod(self._weights_shape[1:]))  # weights, logits, moments
        size = max(1, min(SAMPLES_PER_CALL, BATCH_BYTES // max(row_bytes, 1)))
        for start in range(0, n, size):
            yield start, min(n, start + size)

    def _inputs(self, x, start: int, stop: int):
        """Samples start..stop of `x`, in the dtypes the passes were compiled for."""
        return keras.tree.map_structure(
            lambda array, dtype: np.asarray(array[start:stop], dtype), x, self._dtypes)

    def learned(self, x) -> tuple[np.ndarray, np.ndarray]:
        """(the model's outputs, the call's weights) on `x`, float32, batch first; the
        weights in the shape the call computes them in."""
        self._trace(x)
        outputs, weights = [], []
        for start, stop in self._chunks(batch_length(x)):
            out, w = self._learned(self._inputs(x, start, stop))
            outputs.append(out)
            weights.append(w)
        return np.concatenate(outputs).astype(np.float32), np.concatenate(weights)

    def outputs(self, x, weights: np.ndarray) -> np.ndarray:
        """The model's outputs on `x` with the call's weights replaced by `weights`."""
        self._trace(x)
        return np.concatenate([
            self._replaced(self._inputs(x, start, stop),
                           np.asarray(weights[start:stop], np.float32))
            for start, stop in self._chunks(len(weights))]).astype(np.float32)

    # -- the adversarial search --

    def adversarial(self, x, learned: np.ndarray, outputs: np.ndarray, tolerance: float,
                    rng: np.random.Generator, steps: int = ADVERSARIAL_STEPS) -> np.ndarray:
        """Per sample, the weights farthest from `learned` found in `steps` Adam steps of
        ascent on the objective, whose outputs differ from `outputs` by at most `tolerance`
        (the learned weights where no step stayed within it)."""
        support = learned > 0
        bias = np.where(support, 0.0, -1e9).astype(np.float32)
        start = np.log(np.where(support, np.maximum(learned, 1e-12), 1.0)) + np.where(
            support, rng.normal(0.0, ADVERSARIAL_NOISE, learned.shape), 0.0)
        self._trace(x)
        found = []
        for begin, end in self._chunks(len(learned)):
            part = self._inputs(x, begin, end)
            logits = start[begin:end].astype(np.float32)
            first = np.zeros_like(logits)
            second = np.zeros_like(logits)
            best_weights = learned[begin:end].astype(np.float32)
            best_jsd = np.zeros(end - begin, np.float32)
            constants = (bias[begin:end], learned[begin:end].astype(np.float32),
                         outputs[begin:end].astype(np.float32), np.float32(tolerance))
            for step in range(1, steps + 1):
                (weights, change, divergence), gradient = self._step(part, logits, *constants)
                weights, change, divergence, gradient = (
                    np.asarray(a, np.float32) for a in (weights, change, divergence, gradient))
                # keep, per sample, the farthest weights whose predictions stay within
                better = (change <= tolerance) & (divergence > best_jsd)
                best_weights = np.where(better.reshape(-1, *[1] * (weights.ndim - 1)),
                                        weights, best_weights)
                best_jsd = np.where(better, divergence, best_jsd)
                first = 0.9 * first + 0.1 * gradient  # Adam, ascending
                second = 0.999 * second + 0.001 * np.square(gradient)
                corrected = (first / (1.0 - 0.9 ** step)) / (
                    np.sqrt(second / (1.0 - 0.999 ** step)) + 1e-8)
                logits = (logits + ADVERSARIAL_RATE * corrected).astype(np.float32)
            found.append(best_weights)
        return np.concatenate(found)


def _per_sample_max(values):
    return ops.max(ops.reshape(values, (ops.shape(values)[0], -1)), axis=1)


def _jsd_ops(learned, weights):
    """`jsd` in keras.ops, differentiable in `weights`."""
    middle = 0.5 * (learned + weights)
    log_middle = ops.log(ops.maximum(middle, _TINY))

    def kl(a):
        return ops.sum(ops.where(a > 0, a * (ops.log(ops.maximum(a, _TINY)) - log_middle),
                                 0.0), axis=-1)

    rows = 0.5 * (kl(learned) + kl(weights))
    n = ops.shape(rows)[0]
    rows = ops.reshape(rows, (n, -1))
    valid = ops.cast(ops.reshape(ops.sum(learned, axis=-1) > 0, (n, -1)), "float32")
    return ops.sum(rows * valid, axis=1) / ops.maximum(ops.sum(valid, axis=1), 1.0)


def _single(outputs):
    flat = keras.tree.flatten(outputs)
    if len(flat) != 1:
        raise AttnvizError(f"the model returns {len(flat)} outputs: interventions measure "
                           "models with one output")
    return flat[0]

