"""Capturing every attention call of a keras_hub BERT, and of a Gemma (grouped-query heads,
a 5-D softmax), against one plain eager forward pass.

  plain     model(inputs, training=False): one eager forward pass of the batch
  capture   attnviz.keras.capture.capture(model, inputs): the same pass under interception, the
            weights of every layer copied out as float32 numpy arrays
  probe     attnviz.keras.capture.Probe: the capture traced into one tf.function (the recorder's)
Both on the same batch, interleaved, medians of REPEATS. Target (issue 11): capture costs at
most 1.3x the plain forward pass.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

LAYERS, HEADS, HIDDEN, SEQ_LEN, BATCH = 4, 4, 128, 128, 16
REPEATS = 15


def _bert():
    import keras_hub

    model = keras_hub.models.BertBackbone(vocabulary_size=1000, num_layers=LAYERS,
                                          num_heads=HEADS, hidden_dim=HIDDEN,
                                          intermediate_dim=4 * HIDDEN,
                                          max_sequence_length=SEQ_LEN)
    rng = np.random.default_rng(0)
    inputs = {"token_ids": rng.integers(1, 1000, (BATCH, SEQ_LEN)).astype(np.int32),
              "segment_ids": np.zeros((BATCH, SEQ_LEN), np.int32),
              "padding_mask": np.ones((BATCH, SEQ_LEN), np.int32)}
    return f"BERT {LAYERS}x{HEADS} heads", model, inputs, "sequence_output"


def _gemma():
    """Grouped-query attention: Gemma computes one 5-D softmax (batch, kv_heads, groups,
    queries, keys) per layer, which capture folds into heads."""
    import keras_hub

    model = keras_hub.models.GemmaBackbone(vocabulary_size=1000, num_layers=LAYERS,
                                           num_query_heads=HEADS, num_key_value_heads=1,
                                           hidden_dim=HIDDEN, intermediate_dim=4 * HIDDEN,
                                           head_dim=HIDDEN // HEADS)
    rng = np.random.default_rng(0)
    inputs = {"token_ids": rng.integers(1, 1000, (BATCH, SEQ_LEN)).astype(np.int32),
              "padding_mask": np.ones((BATCH, SEQ_LEN), np.int32)}
    return f"Gemma {LAYERS}x{HEADS} grouped heads (5-D)", model, inputs, None


def _measure(name, model, inputs, output_key) -> list[dict]:
    import tensorflow as tf

    from attnviz.keras.capture import Probe, capture

    probe = Probe(model)
    tensors = {key: tf.constant(value) for key, value in inputs.items()}

    def plain():
        outputs = model(inputs, training=False)
        np.asarray(outputs[output_key] if output_key else outputs)

    def captured():
        capture(model, inputs)

    def traced():
        probe(tensors)

    timings: dict = {plain: [], captured: [], traced: []}
    for function in timings:
        function()  # warm up: first calls build and trace
    for _ in range(REPEATS):
        for function, times in timings.items():
            started = time.perf_counter()
            function()
            times.append(time.perf_counter() - started)
    base, ours, fast = (statistics.median(timings[f]) for f in (plain, captured, traced))
    calls = len(capture(model, {k: v[:1] for k, v in inputs.items()}).calls)
    return [
        {"name": f"plain eager forward, {name}, {BATCH}x{SEQ_LEN} tokens",
         "value": base * 1000, "unit": "ms", "target": None, "ok": None},
        {"name": f"{name}: capture of all {calls} attention calls", "value": ours * 1000,
         "unit": "ms", "target": None, "ok": None},
        {"name": f"{name}: capture / plain forward", "value": ours / base, "unit": "x",
         "target": 1.3, "ok": ours / base <= 1.3},
        {"name": f"{name}: traced capture (Probe) / plain eager forward", "value": fast / base,
         "unit": "x", "target": None, "ok": None},
    ]


def run() -> list[dict]:
    return [row for build in (_bert, _gemma) for row in _measure(*build())]


if __name__ == "__main__":
    for row in run():
        print(row)
