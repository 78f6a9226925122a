"""Capturing every attention call of a keras_hub BERT against one plain eager forward pass.

  plain     model(inputs, training=False): one eager forward pass of the batch
  capture   attnviz.capture.capture(model, inputs): the same pass under interception, the
            weights of every layer copied out as float32 numpy arrays
  probe     attnviz.capture.Probe: the capture traced into one tf.function (the recorder's)
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

    return keras_hub.models.BertBackbone(vocabulary_size=1000, num_layers=LAYERS,
                                         num_heads=HEADS, hidden_dim=HIDDEN,
                                         intermediate_dim=4 * HIDDEN,
                                         max_sequence_length=SEQ_LEN)


def run() -> list[dict]:
    import tensorflow as tf

    from attnviz.capture import Probe, capture

    model = _bert()
    rng = np.random.default_rng(0)
    inputs = {"token_ids": rng.integers(1, 1000, (BATCH, SEQ_LEN)).astype(np.int32),
              "segment_ids": np.zeros((BATCH, SEQ_LEN), np.int32),
              "padding_mask": np.ones((BATCH, SEQ_LEN), np.int32)}
    probe = Probe(model)
    tensors = {key: tf.constant(value) for key, value in inputs.items()}

    def plain():
        np.asarray(model(inputs, training=False)["sequence_output"])

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
        {"name": f"plain eager forward, BERT {LAYERS}x{HEADS} heads, {BATCH}x{SEQ_LEN} tokens",
         "value": base * 1000, "unit": "ms", "target": None, "ok": None},
        {"name": f"capture of all {calls} attention calls", "value": ours * 1000, "unit": "ms",
         "target": None, "ok": None},
        {"name": "capture / plain forward", "value": ours / base, "unit": "x", "target": 1.3,
         "ok": ours / base <= 1.3},
        {"name": "traced capture (Probe) / plain eager forward", "value": fast / base,
         "unit": "x", "target": None, "ok": None},
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
