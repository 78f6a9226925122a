"""keras.io's Transformer text classifier on synthetic tokens, recorded by attnviz.

The label says whether token 7 (the "keyword") occurs in the sequence; the mask marks where
it does, so `attnviz score` can tell whether the TransformerBlock's heads learned to look
at it:

    python docs/examples/transformer_classifier.py runs/keyword
    attnviz inspect runs/keyword
    attnviz score runs/keyword --mask keyword

`--epochs` and `--samples` make it smaller (the tests run it at a few hundred samples).
"""

from __future__ import annotations

import argparse

import keras
import numpy as np
from transformer_block import build_model

from attnviz.keras import AttentionRecorder

KEYWORD, VOCABULARY, MAXLEN = 7, 50, 24


def keyword_data(n: int, rng: np.random.Generator, share: float = 0.5):
    """Token ids 8..49, with the keyword put in `share` of the sequences at 1-3 places."""
    x = rng.integers(8, VOCABULARY, (n, MAXLEN))
    y = (rng.random(n) < share).astype(int)
    for i in np.flatnonzero(y):
        x[i, rng.choice(MAXLEN, rng.integers(1, 4), replace=False)] = KEYWORD
    return x.astype("int32"), y.astype("int32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the run directory to write")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--samples", type=int, default=4_000)
    args = parser.parse_args()

    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    x_train, y_train = keyword_data(args.samples, rng)
    x_val, y_val = keyword_data(args.samples // 4, rng)
    x_probe, y_probe = keyword_data(8, rng, share=1.0)  # every probe sample has a keyword
    model = build_model(maxlen=MAXLEN, vocab_size=VOCABULARY, embed_dim=16, num_heads=2,
                        ff_dim=32)
    model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=args.epochs,
              batch_size=32, verbose=2,
              callbacks=[AttentionRecorder(args.out, probe=x_probe, y=y_probe,
                                           masks={"keyword": x_probe == KEYWORD})])


if __name__ == "__main__":
    main()
