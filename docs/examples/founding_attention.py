"""The founding question's model in Keras 3: an LSTM and the `attention` package's layer.

The `attention` package (5.0.0) does not run under Keras 3. This is its many-to-one Luong
layer ported: the same sublayers with the same names, so the outer layer and its softmax are
both called "attention_weight" (the trap keract fell into: the outer layer's (n, 128) output
is not attention). Only the package's Lambda for the last hidden state became a slice.

    attnviz inspect model.keras --import docs/examples/founding_attention.py --input x.npy
    attnviz train --model docs/examples/founding_attention.py:build_model --data data.npz
"""

from __future__ import annotations

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="founding")
class Attention(layers.Layer):
    """Many-to-one Luong attention: score_t = h_t . (W h_T), weights = softmax_t(score)."""

    def __init__(self, units: int = 128, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        # The sublayers are built here, not on first call, so that Keras can load their
        # weights back from a .keras checkpoint (attnviz explain and --resume need one).
        width = int(input_shape[-1])
        self.luong_w = layers.Dense(width, use_bias=False, name="luong_w")
        self.luong_w.build(input_shape)
        self.luong_dot = layers.Dot(axes=[1, 2], name="attention_score")
        self.softmax_normalizer = layers.Activation("softmax", name="attention_weight")
        self.dot_context = layers.Dot(axes=[1, 1], name="context_vector")
        self.concat_c_h = layers.Concatenate(name="attention_output")
        self.w_c = layers.Dense(self.units, use_bias=False, activation="tanh",
                                name="attention_vector")
        self.w_c.build((None, 2 * width))

    def call(self, inputs):  # (B, L, U)
        h_t = inputs[:, -1, :]  # (B, U): the last hidden state queries
        score = self.luong_dot([h_t, self.luong_w(inputs)])  # (B, L)
        alpha_s = self.softmax_normalizer(score)  # (B, L): the attention weights
        context_vector = self.dot_context([inputs, alpha_s])  # (B, U)
        return self.w_c(self.concat_c_h([context_vector, h_t]))  # (B, units)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def build_model(seq_len: int = 20, units: int = 100) -> keras.Model:
    """The asker's model, compiled as they compiled it."""
    model = keras.Sequential([
        keras.Input((seq_len, 1)),
        layers.LSTM(units, return_sequences=True),
        Attention(name="attention_weight"),
        layers.Dropout(0.2),
        layers.Dense(1, activation="linear"),
    ])
    model.compile(loss="mse", optimizer="adam")
    return model
