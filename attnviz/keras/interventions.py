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
import tensorflow as tf

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
        values = np.asarray(call(tf.convert_to_tensor(y), tf.convert_to_tensor(outputs)),
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
    """Traced forward passes of `model` that read, or replace, the weights of one captured
    attention call (`call`, a capture name such as "attention"). Each pass is traced once, for
    any number of samples (an input signature from the first inputs it is given)."""

    def __init__(self, model, call: str):
        self.model = model
        self.call = call
        self._specs = None  # (inputs, weights, outputs) TensorSpecs, batch dimension None

    # -- traced bodies --

    def _read_pass(self, x) -> tuple[object, list, list[str]]:
        """The model's output on `x`, the weights its call `self.call` computed, and the name
        of every call it computed."""
        with intercepted() as interceptor:
            outputs = _single(self.model(x, training=False))
        found = [tensor for name, _, _, tensor in interceptor.records if name == self.call]
        return outputs, found, [name for name, *_ in interceptor.records]

    def _learned_pass(self, x):
        outputs, found, _ = self._read_pass(x)
        return outputs, tf.cast(found[0], tf.float32)

    def _replaced_pass(self, x, weights):
        def replace(learned):
            return tf.reshape(tf.cast(weights, learned.dtype), tf.shape(learned))

        with intercepted(replace={self.call: replace}):
            return _single(self.model(x, training=False))

    def _trace(self, x) -> None:
        """Run one sample eagerly (the call must be there), then trace every pass for inputs
        shaped like `x`, weights and outputs shaped as that sample's."""
        if self._specs is not None:
            return
        outputs, found, names = self._read_pass(slice_samples(x, 0, 1))
        if not found:
            calls = ", ".join(dict.fromkeys(names)) or "none"
            raise AttnvizError(f"the model computes no attention call {self.call} on these "
                               f"inputs; the calls it computes are: {calls}")

        def spec(shape, dtype=tf.float32):
            return tf.TensorSpec((None, *shape[1:]), dtype)

        inputs = keras.tree.map_structure(
            lambda array: spec(np.shape(array), tf.as_dtype(np.asarray(array).dtype)), x)
        weights, out = spec(tuple(found[0].shape)), spec(tuple(outputs.shape))
        self._specs = (inputs, weights, out)
        self._learned = tf.function(self._learned_pass, input_signature=[inputs])
        self._replaced = tf.function(self._replaced_pass, input_signature=[inputs, weights])
        scalar, per_sample = tf.TensorSpec((), tf.float32), tf.TensorSpec((None,), tf.float32)
        self._step = tf.function(self._adversarial_step, input_signature=[
            inputs, weights, weights, weights, scalar, weights, weights, out, scalar,
            per_sample, weights])

    # -- numpy in, numpy out, in bounded passes --

    def _chunks(self, n: int):
        row_bytes = 16 * int(np.prod(self._specs[1].shape[1:]))  # weights, logits, moments
        size = max(1, min(SAMPLES_PER_CALL, BATCH_BYTES // max(row_bytes, 1)))
        for start in range(0, n, size):
            yield start, min(n, start + size)

    def _inputs(self, x, start: int, stop: int):
        """Samples start..stop of `x`, in the dtypes the passes were traced for."""
        return keras.tree.map_structure(
            lambda array, spec: np.asarray(array[start:stop], spec.dtype.as_numpy_dtype), x,
            self._specs[0])

    def learned(self, x) -> tuple[np.ndarray, np.ndarray]:
        """(the model's outputs, the call's weights) on `x`, float32, batch first; the
        weights in the shape the call computes them in."""
        self._trace(x)
        outputs, weights = [], []
        for start, stop in self._chunks(batch_length(x)):
            out, w = self._learned(self._inputs(x, start, stop))
            outputs.append(out.numpy())
            weights.append(w.numpy())
        return np.concatenate(outputs).astype(np.float32), np.concatenate(weights)

    def outputs(self, x, weights: np.ndarray) -> np.ndarray:
        """The model's outputs on `x` with the call's weights replaced by `weights`."""
        self._trace(x)
        return np.concatenate([
            self._replaced(self._inputs(x, start, stop),
                           tf.constant(weights[start:stop], tf.float32)).numpy()
            for start, stop in self._chunks(len(weights))]).astype(np.float32)

    # -- the adversarial search --

    def _adversarial_step(self, x, logits, first, second, step, bias, learned, target,
                          tolerance, best_jsd, best_weights):
        """One Adam step of ascent on sum_i (JSD_i - penalty * max(0, change_i / tol - 1));
        keeps, per sample, the farthest weights seen so far whose predictions stay within
        the tolerance."""
        with tf.GradientTape() as tape:
            tape.watch(logits)
            weights = tf.nn.softmax(logits + bias, axis=-1)
            outputs = self._replaced_pass(x, weights)
            change = _per_sample_max(tf.abs(tf.cast(outputs, tf.float32) - target))
            divergence = _jsd_tf(learned, weights)
            objective = tf.reduce_sum(
                divergence - ADVERSARIAL_PENALTY * tf.nn.relu(change / tolerance - 1.0))
        gradient = tape.gradient(objective, logits)
        first = 0.9 * first + 0.1 * gradient
        second = 0.999 * second + 0.001 * tf.square(gradient)
        corrected = (first / (1.0 - 0.9 ** step)) / (
            tf.sqrt(second / (1.0 - 0.999 ** step)) + 1e-8)
        better = (change <= tolerance) & (divergence > best_jsd)
        shape = tf.concat([tf.shape(better), tf.ones(tf.rank(weights) - 1, tf.int32)], 0)
        best_weights = tf.where(tf.reshape(better, shape), weights, best_weights)
        best_jsd = tf.where(better, divergence, best_jsd)
        return logits + ADVERSARIAL_RATE * corrected, first, second, best_jsd, best_weights

    def adversarial(self, x, learned: np.ndarray, outputs: np.ndarray, tolerance: float,
                    rng: np.random.Generator, steps: int = ADVERSARIAL_STEPS) -> np.ndarray:
        """Per sample, the weights farthest from `learned` found in `steps` Adam steps whose
        outputs differ from `outputs` by at most `tolerance` (the learned weights where no
        step stayed within it)."""
        support = learned > 0
        bias = np.where(support, 0.0, -1e9).astype(np.float32)
        start = np.log(np.where(support, np.maximum(learned, 1e-12), 1.0)) + np.where(
            support, rng.normal(0.0, ADVERSARIAL_NOISE, learned.shape), 0.0)
        self._trace(x)
        found = []
        for begin, end in self._chunks(len(learned)):
            part = self._inputs(x, begin, end)
            logits = tf.constant(start[begin:end], tf.float32)
            first = second = tf.zeros_like(logits)
            best_weights = tf.constant(learned[begin:end].astype(np.float32))
            best_jsd = tf.zeros(end - begin, tf.float32)
            constants = (tf.constant(bias[begin:end]),
                         tf.constant(learned[begin:end].astype(np.float32)),
                         tf.constant(outputs[begin:end].astype(np.float32)),
                         tf.constant(tolerance, tf.float32))
            for step in range(1, steps + 1):
                logits, first, second, best_jsd, best_weights = self._step(
                    part, logits, first, second, tf.constant(float(step)), *constants,
                    best_jsd, best_weights)
            found.append(best_weights.numpy())
        return np.concatenate(found)


def _per_sample_max(values):
    return tf.reduce_max(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)


def _jsd_tf(learned, weights):
    """`jsd` in TensorFlow, differentiable in `weights`."""
    middle = 0.5 * (learned + weights)
    log_middle = tf.math.log(tf.maximum(middle, _TINY))

    def kl(a):
        return tf.reduce_sum(tf.where(a > 0, a * (tf.math.log(tf.maximum(a, _TINY))
                                                  - log_middle), 0.0), axis=-1)

    rows = 0.5 * (kl(learned) + kl(weights))
    n = tf.shape(rows)[0]
    rows = tf.reshape(rows, [n, -1])
    valid = tf.cast(tf.reshape(tf.reduce_sum(learned, axis=-1) > 0, [n, -1]), tf.float32)
    return tf.reduce_sum(rows * valid, axis=1) / tf.maximum(tf.reduce_sum(valid, axis=1), 1.0)


def _single(outputs):
    flat = keras.tree.flatten(outputs)
    if len(flat) != 1:
        raise AttnvizError(f"the model returns {len(flat)} outputs: interventions measure "
                           "models with one output")
    return flat[0]

