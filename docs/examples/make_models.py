"""Three small models as people have them, random weights, saved where the docs read them.

    python docs/examples/make_models.py models

writes models/bert.keras (a keras_hub BERT backbone, 2 layers, 2 heads) with
models/bert_tokens.npz (token_ids, segment_ids, padding_mask: the last 4 tokens padded),
and models/classifier.keras (keras.io's Transformer classifier, examples/transformer_block.py)
with models/tokens.npy. Nothing is downloaded: keras_hub builds the backbone from its config.
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np


def main(out: Path) -> None:
    import keras_hub
    from transformer_block import build_model

    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    bert = keras_hub.models.BertBackbone(vocabulary_size=100, num_layers=2, num_heads=2,
                                         hidden_dim=16, intermediate_dim=32,
                                         max_sequence_length=12)
    bert.save(out / "bert.keras")
    padding = np.ones((3, 12), np.int32)
    padding[:, 8:] = 0
    np.savez(out / "bert_tokens.npz", token_ids=rng.integers(1, 100, (3, 12)).astype(np.int32),
             segment_ids=np.zeros((3, 12), np.int32), padding_mask=padding)
    classifier = build_model(maxlen=16, vocab_size=50, embed_dim=8)
    classifier.save(out / "classifier.keras")
    np.save(out / "tokens.npy", rng.integers(1, 50, (4, 16)).astype(np.int32))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
