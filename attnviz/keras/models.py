"""Keras 3 models whose attention weights are a real output of their attention layer.

The regression tasks' models read (B, L, 1) sequences and predict (B, 1):

    encoder (B, L, U) -> attention -> (B, A) -> Dropout -> Dense(1)

and its layer named "attention" returns (output, weights): weights (B, L) softmax over time
for `luong` and `bahdanau` (query = the last encoder state, like the `attention` package),
or (B, H, L, L) for `self` (keras.layers.MultiHeadAttention, every head kept).
"""

from __future__ import annotations

import keras
from keras import layers, ops

import attnviz.keras.backend as backend
from attnviz.analysis.tasks import ATTENTION_LAYER, attention_layer_names
from attnviz.store.config import TrainConfig


@keras.saving.register_keras_serializable(package="attnviz")
class TemporalAttention(layers.Layer):
    """Many-to-one attention over encoder states, queried by the last state.

    luong:    score_t = h_t . (W h_T)           bahdanau: score_t = v . tanh(W1 h_t + W2 h_T)
    weights = softmax_t(score)   context = sum_t weights_t h_t   out = tanh(Wc [context; h_T])
    """

    def __init__(self, units: int = 128, score: str = "luong", **kwargs):
        super().__init__(**kwargs)
        if score not in ("luong", "bahdanau"):
            raise ValueError(f"score must be 'luong' or 'bahdanau', got {score!r}")
        self.units = units
        self.score = score

    def build(self, input_shape):
        width = input_shape[-1]
        if self.score == "luong":
            self.query_proj = layers.Dense(width, use_bias=False, name="query_proj")
            self.query_proj.build((None, width))
        else:
            self.keys_proj = layers.Dense(self.units, use_bias=False, name="keys_proj")
            self.query_proj = layers.Dense(self.units, use_bias=False, name="query_proj")
            self.score_vector = layers.Dense(1, use_bias=False, name="score_vector")
            self.keys_proj.build(input_shape)
            self.query_proj.build((None, width))
            self.score_vector.build((None, None, self.units))
        self.output_proj = layers.Dense(
            self.units, activation="tanh", use_bias=False, name="output_proj"
        )
        self.output_proj.build((None, 2 * width))

    def call(self, states):  # states: (B, L, U)
        last = states[:, -1, :]  # (B, U)
        if self.score == "luong":
            scores = ops.einsum("blu,bu->bl", states, self.query_proj(last))  # (B, L)
        else:
            hidden = ops.tanh(self.keys_proj(states) + self.query_proj(last)[:, None, :])
            scores = ops.squeeze(self.score_vector(hidden), axis=-1)  # (B, L)
        weights = ops.softmax(scores, axis=-1)  # (B, L), rows sum to 1
        context = ops.einsum("bl,blu->bu", weights, states)  # (B, U)
        return self.output_proj(ops.concatenate([context, last], axis=-1)), weights

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units), (input_shape[0], input_shape[1])

    def get_config(self):
        return {**super().get_config(), "units": self.units, "score": self.score}


@keras.saving.register_keras_serializable(package="attnviz")
class PositionEmbedding(layers.Layer):
    """Adds a learned vector per position, so a position-wise encoder knows where it is.
    The token model starts it as small as its token embedding ("uniform", Keras' Embedding
    default): larger position vectors steer training to positional solutions."""

    def __init__(self, initializer: str = "glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.initializer = initializer

    def build(self, input_shape):
        self.positions = self.add_weight(
            shape=tuple(input_shape[1:]), initializer=self.initializer, name="positions"
        )

    def get_config(self):
        return {**super().get_config(), "initializer": self.initializer}

    def call(self, inputs):  # (B, L, U)
        return inputs + self.positions[None]


@keras.saving.register_keras_serializable(package="attnviz")
class LastTimestep(layers.Layer):
    """(B, L, U) -> (B, U): the state at the last position, which predicts."""

    def call(self, inputs):
        return inputs[:, -1, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


def _encoder(config: TrainConfig, inputs):
    units = config.units
    if config.encoder == "lstm":
        return layers.LSTM(units, return_sequences=True, name="encoder")(inputs)
    if config.encoder == "gru":
        return layers.GRU(units, return_sequences=True, name="encoder")(inputs)
    if config.encoder == "bilstm":
        return layers.Bidirectional(
            layers.LSTM(units // 2 or 1, return_sequences=True), name="encoder"
        )(inputs)
    projected = layers.Dense(units, name="encoder")(inputs)  # position-wise, no recurrence
    return layers.Activation("relu")(PositionEmbedding(name="position_embedding")(projected))


def build_token_model(config: TrainConfig) -> keras.Model:
    """The token tasks' attention-only Transformer: token and learned position embeddings,
    then `layers` blocks of pre-LayerNorm causal multi-head attention added to the residual
    stream (no MLP), a final LayerNorm and the next token's logits (B, L, vocab). The
    smallest model in which an induction circuit (a previous-token head feeding an
    induction head in a later layer) can form (Olsson et al. 2022)."""
    tokens = keras.Input((config.seq_len,), dtype="int32", name="tokens")
    stream = layers.Embedding(config.vocab, config.units, name="token_embedding")(tokens)
    stream = PositionEmbedding("uniform", name="position_embedding")(stream)
    for index, name in enumerate(attention_layer_names(config)):
        normed = layers.LayerNormalization(name=f"norm_{index}")(stream)
        attended = layers.MultiHeadAttention(
            num_heads=config.heads, key_dim=max(1, config.units // config.heads), name=name,
        )(normed, normed, use_causal_mask=True)
        stream = layers.Add(name=f"residual_{index}")([stream, attended])
    logits = layers.Dense(config.vocab, name="unembed")(
        layers.LayerNormalization(name="norm_out")(stream))
    return keras.Model(tokens, logits, name=f"attention_only_{config.layers}")


def build_model(config: TrainConfig) -> keras.Model:
    """The model of `config`, uncompiled; layer "attention" returns (output, weights)."""
    if config.encoder == "embedding":
        return build_token_model(config)
    inputs = keras.Input((config.seq_len, 1), name="sequence")
    states = _encoder(config, inputs)  # (B, L, U)
    if config.attention == "self":
        attention = layers.MultiHeadAttention(
            num_heads=config.heads, key_dim=max(1, config.units // config.heads),
            name=ATTENTION_LAYER,
        )
        sequence, _ = attention(states, states, return_attention_scores=True)  # (B, L, U)
        summary = LastTimestep(name="last_timestep")(sequence)
    else:
        summary, _ = TemporalAttention(
            config.attention_units, score=config.attention, name=ATTENTION_LAYER
        )(states)
    hidden = layers.Dropout(config.dropout, name="dropout")(summary)
    outputs = layers.Dense(1, activation="linear", name="prediction")(hidden)
    return keras.Model(inputs, outputs, name=f"{config.encoder}_{config.attention}")


def compile_model(model: keras.Model, config: TrainConfig, optimizer=None) -> keras.Model:
    """MSE + Adam as in the founding case; pass `optimizer` to keep a restored one's state.

    Under a tf.distribute strategy, XLA and multi-step execution are turned off
    (`TrainConfig.effective`): with TensorFlow 2.21 both fail on recurrent layers across
    replicas ("You must feed a value for placeholder tensor ... while/cond"). Runs made
    before config.json recorded that still ask for them, hence `effective()` here too.
    """
    config = config.effective()
    rate = config.learning_rate
    if config.warmup_steps:  # linear from 0 to the rate, then constant (alpha 1: no decay)
        rate = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=1, alpha=1.0, warmup_target=config.learning_rate,
            warmup_steps=config.warmup_steps)
    if config.encoder == "embedding":  # next token, scored only where the task says
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    else:
        loss = "mse"
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(rate),
        loss=loss,
        # JAX runs a step uncompiled without jit (~100x slower); --jit is XLA on TensorFlow
        jit_compile=config.jit_compile or backend.name() == "jax",
        steps_per_execution=config.steps_per_execution,
    )
    return model
