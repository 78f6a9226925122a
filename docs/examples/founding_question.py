"""The founding question's script in Keras 3, with one line added: attnviz's recorder.

The asker's data, model and training, as in their question; their keract + matplotlib
callback is replaced by `AttentionRecorder`, which writes a run directory that `attnviz
animate`, `score`, `inspect` and `explain` read:

    python docs/examples/founding_question.py runs/founding-question
    attnviz animate runs/founding-question
    attnviz score runs/founding-question --mask delimiter --min mass=0.8

`--epochs` and `--samples` make it smaller (the tests run it at a few hundred samples).
"""

from __future__ import annotations

import argparse

import keras
import numpy as np
from founding_attention import build_model  # the `attention` package's layer, in Keras 3

from attnviz.keras import AttentionRecorder


def add_numbers_before_delimiter(n, seq_length, rng, delimiter=0.0, index_1=None):
    """The asker's task: y is the sum of the values before the delimiter."""
    x = rng.uniform(0, 1, (n, seq_length))
    y = np.zeros((n, 1))
    for i in range(n):
        a = rng.choice(range(1, seq_length)) if index_1 is None else index_1
        y[i] = np.sum(x[i, 0:a])
        x[i, a] = delimiter
    return np.expand_dims(x, -1).astype("float32"), y.astype("float32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the run directory to write")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--samples", type=int, default=20_000)
    args = parser.parse_args()

    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    seq_length = 20
    x_train, y_train = add_numbers_before_delimiter(args.samples, seq_length, rng)
    x_val, y_val = add_numbers_before_delimiter(args.samples // 5, seq_length, rng)
    x_test, y_test = add_numbers_before_delimiter(10, seq_length, rng, 0, 4)
    # Both ground truths in play: the delimiter the script marked, and the values before
    # it that the asker expected attention on.
    delimiter = np.zeros((10, seq_length), bool)
    delimiter[:, 4] = True
    prefix = np.zeros((10, seq_length), bool)
    prefix[:, :4] = True

    model = build_model(seq_length, units=100)
    model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=args.epochs,
              batch_size=64, verbose=2,
              callbacks=[AttentionRecorder(args.out, probe=x_test, y=y_test,
                                           masks={"delimiter": delimiter, "prefix": prefix})])


if __name__ == "__main__":
    main()
