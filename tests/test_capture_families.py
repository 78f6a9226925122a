"""Capture on the keras_hub families whose attention comes in other shapes: grouped-query
heads (Gemma, Gemma3: a 5-D softmax), Llama and Mistral, T5's encoder, decoder and cross
attention, DeBERTa-v3's disentangled attention, ViT's image patches; and Keras' own
multi-axis attention. Each model is tiny, random-init (no download), saved and loaded again
as attnviz loads it; each capture equals, within 1e-5, a reference read in the test by a
means of its own: the attention layer's softmax sublayer (or, for T5, keras.ops.nn.softmax)
wrapped on that one instance, with no attnviz interception active."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from attnviz.keras import capture
from attnviz.keras.loading import load_model

pytestmark = pytest.mark.slow
keras_hub = pytest.importorskip("keras_hub")

L = 10
RNG = np.random.default_rng(0)
TOKENS = RNG.integers(1, 40, (3, L)).astype(np.int32)
PADDING = np.ones((3, L), np.int32)
PADDING[0, 7:] = 0  # the first sample is padded: its last 3 keys must get nothing
TEXT = {"token_ids": TOKENS, "padding_mask": PADDING}
TOLERANCE = 1e-5


@pytest.fixture(autouse=True)
def fresh_names():
    keras.backend.clear_session()


def reloaded(model: keras.Model, tmp_path) -> keras.Model:
    model.save(tmp_path / "model.keras")
    return load_model(tmp_path / "model.keras")


def softmax_sublayer_outputs(model, inputs, attribute: str) -> list[np.ndarray]:
    """What each attention layer's softmax sublayer (`layer.<attribute>`) returns, in call
    order: its `call` is wrapped on that instance only, and attnviz is not involved."""
    seen: list[np.ndarray] = []
    wrapped = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        sub = getattr(layer, attribute, None)
        if isinstance(sub, keras.layers.Softmax) and sub not in wrapped:
            original = sub.call

            def call(*args, _original=original, **kwargs):
                out = _original(*args, **kwargs)
                seen.append(np.asarray(out, np.float32))
                return out

            sub.call = call
            wrapped.append(sub)
    assert wrapped, f"no layer of {model.name} has a Softmax {attribute}"
    try:
        model(inputs)
    finally:
        for sub in wrapped:
            del sub.call
    return seen


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert np.abs(actual - expected).max() < TOLERANCE


def assert_padded_keys_get_nothing(weights: np.ndarray) -> None:
    assert np.all(weights[0, ..., 7:] == 0)
    assert np.allclose(weights[1:].sum(axis=-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("family, build, kv, groups", [
    ("gemma", lambda: keras_hub.models.GemmaBackbone(
        vocabulary_size=50, num_layers=1, num_query_heads=4, num_key_value_heads=1,
        hidden_dim=16, intermediate_dim=32, head_dim=4), 1, 4),
    ("gemma3", lambda: keras_hub.models.Gemma3Backbone(
        vocabulary_size=50, image_size=16, num_layers=2, num_query_heads=4,
        num_key_value_heads=2, hidden_dim=16, intermediate_dim=32, head_dim=4,
        sliding_window_size=4), 2, 2),
])
def test_grouped_query_heads_fold_into_the_heads_axis(tmp_path, family, build, kv, groups):
    """(batch, kv_heads, groups, Lq, Lk) is stored as (batch, kv_heads x groups, Lq, Lk):
    head h = kv x groups + g, the order of the layer's own query heads."""
    model = reloaded(build(), tmp_path)
    result = capture.capture(model, TEXT)
    reference = softmax_sublayer_outputs(model, TEXT, "softmax")
    assert len(result.calls) == len(reference) >= 1
    for call, expected in zip(result.calls, reference, strict=True):
        assert expected.shape == (3, kv, groups, L, L)
        assert call.shape == (3, kv * groups, L, L)
        assert call.name.endswith("/attention")  # named by its layer, not "softmax_3"
        weights = result.weights[call.name]
        assert_close(weights, expected.reshape(3, kv * groups, L, L))
        assert_close(weights[:, 1], expected[:, 1 // groups, 1 % groups])  # head 1
        assert_padded_keys_get_nothing(weights)
        assert np.all(np.triu(weights, k=1) == 0)  # causal


@pytest.mark.parametrize("family, build", [
    ("llama", lambda: keras_hub.models.LlamaBackbone(
        vocabulary_size=50, num_layers=1, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=16, intermediate_dim=32)),
    ("mistral", lambda: keras_hub.models.MistralBackbone(
        vocabulary_size=50, num_layers=1, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=16, intermediate_dim=32, sliding_window=4)),
    ("deberta_v3", lambda: keras_hub.models.DebertaV3Backbone(
        vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=L, bucket_size=4)),
])
def test_llama_mistral_and_deberta(tmp_path, family, build, monkeypatch):
    model = reloaded(build(), tmp_path)
    result = capture.capture(model, TEXT)  # on JAX, through jax.nn.dot_product_attention
    for name in ("llama.llama_attention", "mistral.mistral_attention"):
        # the reference: the layer's own softmax sublayer, on its unfused path (on JAX
        # keras_hub calls keras.ops.dot_product_attention instead)
        monkeypatch.setattr(f"keras_hub.src.models.{name}.fused_attention_op_available",
                            lambda: False)
    reference = softmax_sublayer_outputs(model, TEXT, "_softmax")
    assert len(result.calls) == len(reference) == 1
    weights = result.weights[result.calls[0].name]
    assert_close(weights, reference[0])
    assert_padded_keys_get_nothing(weights)
    if family == "mistral":  # a sliding window of 4: nothing further back
        assert np.all(np.tril(weights[1:], k=-4) == 0)


def test_t5_encoder_decoder_and_cross_attention(tmp_path, monkeypatch):
    model = reloaded(keras_hub.models.T5Backbone(
        vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16),
        tmp_path)
    inputs = {"encoder_token_ids": TOKENS, "encoder_padding_mask": PADDING,
              "decoder_token_ids": TOKENS[:, :6], "decoder_padding_mask": PADDING[:, :6]}
    result = capture.capture(model, inputs)
    assert [(c.name, c.shape) for c in result.calls] == [
        ("transformer_encoder_layer_0/self_attention", (3, 2, L, L)),
        ("transformer_decoder_layer_0/self_attention", (3, 2, 6, 6)),
        ("transformer_decoder_layer_0/cross_attention", (3, 2, 6, L))]
    seen = []
    original = keras.ops.nn.softmax

    def softmax(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append(np.asarray(out, np.float32))
        return out

    monkeypatch.setattr(keras.ops.nn, "softmax", softmax)
    model(inputs)
    assert len(seen) == 3
    for call, expected in zip(result.calls, seen, strict=True):
        assert_close(result.weights[call.name], expected)
    assert np.all(np.triu(result.weights[result.calls[1].name], k=1) == 0)  # causal decoder
    assert np.all(result.weights[result.calls[2].name][0, ..., 7:] == 0)  # padded source


def test_vit_attends_over_patches_and_its_class_token(tmp_path):
    model = reloaded(keras_hub.models.ViTBackbone(
        image_shape=(8, 8, 3), patch_size=4, num_layers=1, num_heads=2, hidden_dim=8,
        mlp_dim=16), tmp_path)
    images = RNG.uniform(size=(3, 8, 8, 3)).astype(np.float32)
    result = capture.capture(model, images)
    assert len(result.calls) == 1 and result.calls[0].shape == (3, 2, 5, 5)  # 4 patches + CLS
    # reference: the layer's own scores, asked of this instance (its fast path skips them)
    attention = next(layer for layer in model._flatten_layers()
                     if isinstance(layer, layers.MultiHeadAttention))
    original, seen = attention._compute_attention, []

    def explicit(query, key, value, attention_mask=None, training=None, *args, **kwargs):
        output, scores = original(query, key, value, attention_mask, training, True)
        seen.append(np.asarray(scores, np.float32))
        return output, scores

    attention._compute_attention = explicit
    try:
        model(images)
    finally:
        del attention._compute_attention
    assert_close(result.weights[result.calls[0].name], seen[0])


def test_multi_axis_attention_is_stored_with_positions_flattened(tmp_path):
    """MultiHeadAttention(attention_axes=(1, 2)) normalises over a 3 x 4 grid of keys: it is
    stored as (batch, heads, 12 queries, 12 keys), positions in row-major order."""
    inputs = keras.Input((3, 4, 8))
    attention = layers.MultiHeadAttention(num_heads=2, key_dim=4, attention_axes=(1, 2),
                                          name="grid")
    model = keras.Model(inputs, layers.Dense(1)(layers.Flatten()(attention(inputs, inputs))))
    model = reloaded(model, tmp_path)
    x = RNG.normal(size=(2, 3, 4, 8)).astype(np.float32)
    result = capture.capture(model, x)
    assert [(c.name, c.shape) for c in result.calls] == [("grid", (2, 2, 12, 12))]
    _, expected = model.get_layer("grid")(x, x, return_attention_scores=True)  # (2,2,3,4,3,4)
    assert_close(result.weights["grid"], np.asarray(expected).reshape(2, 2, 12, 12))
    assert np.allclose(result.weights["grid"].sum(axis=-1), 1.0, atol=1e-5)
