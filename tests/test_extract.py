"""Extraction of attention weights from .keras files equals what each layer itself returns."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from attnviz import extract
from attnviz.errors import AttnvizError
from attnviz.inspect import InspectOptions
from attnviz.models import build_model

from conftest import tiny_config

pytestmark = pytest.mark.slow

L = 12
X = np.random.default_rng(0).uniform(0, 1, (5, L, 1)).astype(np.float32)


def extracted(model: keras.Model, path: str, tmp_path, x=X) -> tuple[np.ndarray, list[str]]:
    """Save `model`, reload it as attnviz does and read the layer at `path` on `x`."""
    file = tmp_path / "model.keras"
    model.save(file)
    loaded = extract.load_model(file)
    extractor, notes = extract.extraction_model(loaded, path)
    return extract.read_weights(extractor, extract.prepare_inputs(loaded, x, "x")), notes


def assert_same(actual: np.ndarray, expected) -> None:
    expected = np.asarray(expected)
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() < 1e-6


@pytest.mark.parametrize("score", ["luong", "bahdanau"])
def test_temporal_attention_of_an_attnviz_model(tmp_path, score):
    model = build_model(tiny_config(units=8, attention_units=8, seq_len=L, attention=score))
    states = keras.Model(model.input, model.get_layer("encoder").output)(X)
    _, expected = model.get_layer("attention")(states)
    weights, notes = extracted(model, "attention", tmp_path)
    assert_same(weights, expected)
    assert notes == []
    assert np.allclose(weights.sum(axis=1), 1.0, atol=1e-5)


def test_multi_head_self_attention_of_an_attnviz_model(tmp_path):
    model = build_model(tiny_config(units=8, seq_len=L, attention="self", heads=2))
    states = keras.Model(model.input, model.get_layer("encoder").output)(X)
    _, expected = model.get_layer("attention")(states, states, return_attention_scores=True)
    weights, _ = extracted(model, "attention", tmp_path)
    assert weights.shape == (5, 2, L, L)
    assert_same(weights, expected)


def test_multi_head_attention_called_without_scores_is_called_again(tmp_path):
    inputs = keras.Input((L, 1))
    query = layers.Dense(8, name="query")(inputs)
    value = layers.Dense(8, name="value")(inputs)
    mha = layers.MultiHeadAttention(num_heads=3, key_dim=4, name="mha")
    outputs = layers.Dense(1)(layers.GlobalAveragePooling1D()(mha(query, value)))
    model = keras.Model(inputs, outputs)
    q, v = keras.Model(inputs, [query, value])(X)
    _, expected = mha(q, v, return_attention_scores=True)
    weights, _ = extracted(model, "mha", tmp_path)
    assert weights.shape == (5, 3, L, L)
    assert_same(weights, expected)


@pytest.mark.parametrize("kind", [layers.Attention, layers.AdditiveAttention])
def test_dot_product_and_additive_attention_keep_their_call_arguments(tmp_path, kind):
    inputs = keras.Input((L, 1))
    query = layers.Dense(4, name="query")(inputs)
    value = layers.Dense(4, name="value")(inputs)
    attention = kind(name="scores")
    # use_causal_mask changes the weights, so it must reach the extraction call too
    attended = attention([query, value], use_causal_mask=True)
    model = keras.Model(inputs, layers.Dense(1)(layers.Flatten()(attended)))
    q, v = keras.Model(inputs, [query, value])(X)
    _, expected = attention([q, v], use_causal_mask=True, return_attention_scores=True)
    weights, _ = extracted(model, "scores", tmp_path)
    assert weights.shape == (5, L, L)
    assert np.triu(weights[0], k=1).max() == 0.0  # causal: nothing above the diagonal
    assert_same(weights, expected)


def test_attention_inside_a_nested_model(tmp_path):
    inner_in = keras.Input((L, 4))
    states = layers.Dense(6, name="inner_proj")(inner_in)
    mha = layers.MultiHeadAttention(num_heads=2, key_dim=3, name="mha")
    inner = keras.Model(inner_in, mha(states, states), name="block")
    inputs = keras.Input((L, 1))
    embedded = layers.Dense(4, name="embed")(inputs)
    outputs = layers.Dense(1)(layers.GlobalAveragePooling1D()(inner(embedded)))
    model = keras.Model(inputs, outputs)
    inner_states = keras.Model(inner_in, states)(keras.Model(inputs, embedded)(X))
    _, expected = mha(inner_states, inner_states, return_attention_scores=True)

    file = tmp_path / "nested.keras"
    model.save(file)
    loaded = extract.load_model(file)
    assert extract.attention_paths(loaded) == ["block/mha"]
    assert extract.resolve_layer(loaded, "mha") == "block/mha"
    weights, _ = extracted(model, "block/mha", tmp_path)
    assert_same(weights, expected)


def test_named_softmax_layer_in_a_nested_sequential(tmp_path):
    scorer = keras.Sequential([keras.Input((L, 1)), layers.Dense(1, name="score"),
                               layers.Flatten(name="flat"), layers.Softmax(name="weights")],
                              name="scorer")
    inputs = keras.Input((L, 1))
    model = keras.Model(inputs, layers.Dense(1)(scorer(inputs)))
    expected = scorer(X)  # the Softmax layer's own output: the Sequential's output
    weights, _ = extracted(model, "scorer/weights", tmp_path)
    assert_same(weights, expected)


def test_named_layer_whose_rows_do_not_sum_to_one_is_warned_about(tmp_path):
    inputs = keras.Input((L,))
    logits = layers.Dense(L, name="logits")(inputs)
    model = keras.Model(inputs, layers.Dense(1)(layers.Softmax(name="weights")(logits)))
    file = tmp_path / "m.keras"
    model.save(file)
    np.save(tmp_path / "x.npy", X[..., 0])
    softmax = extract.inspect_model(file, InspectOptions(input=tmp_path / "x.npy",
                                                         layer="weights"))
    assert softmax.views[0].warnings == ()
    assert_same(softmax.views[0].weights, keras.Model(inputs, model.get_layer("weights").output)(
        X[..., 0]))
    raw = extract.inspect_model(file, InspectOptions(input=tmp_path / "x.npy", layer="logits"))
    assert "may not be a probability map" in raw.views[0].warnings[0]


def test_every_attention_layer_is_read_when_no_layer_is_named(tmp_path):
    inputs = keras.Input((L, 1))
    states = layers.Dense(4)(inputs)
    first = layers.Attention(name="first")([states, states])
    second = layers.MultiHeadAttention(num_heads=2, key_dim=2, name="second")(first, first)
    model = keras.Model(inputs, layers.Dense(1)(layers.Flatten()(second)))
    file = tmp_path / "two.keras"
    model.save(file)
    np.save(tmp_path / "x.npy", X)
    inspection = extract.inspect_model(file, InspectOptions(input=tmp_path / "x.npy"))
    assert [view.name for view in inspection.views] == ["first", "second"]
    assert [view.weights.shape for view in inspection.views] == [(5, L, L), (5, 2, L, L)]
    assert [view.rows.shape for view in inspection.views] == [(5, L), (5, L)]


def test_model_with_two_inputs_reads_an_npz_by_input_name(tmp_path):
    encoder_in = keras.Input((L, 1), name="encoder")
    decoder_in = keras.Input((3, 1), name="decoder")
    attention = layers.Attention(name="cross")
    attended = attention([layers.Dense(4)(decoder_in), layers.Dense(4)(encoder_in)])
    model = keras.Model([encoder_in, decoder_in], layers.Flatten()(attended))
    file = tmp_path / "seq2seq.keras"
    model.save(file)
    decoder_x = X[:, :3]
    np.savez(tmp_path / "x.npz", encoder=X, decoder=decoder_x)
    inspection = extract.inspect_model(file, InspectOptions(input=tmp_path / "x.npz"))
    assert inspection.views[0].weights.shape == (5, 3, L)
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(AttnvizError, match=r"2 inputs \(encoder, decoder\)"):
        extract.inspect_model(file, InspectOptions(input=tmp_path / "x.npy"))


def test_lambda_layer_is_refused_without_unsafe(tmp_path):
    inputs = keras.Input((L, 1))
    model = keras.Model(inputs, layers.Lambda(lambda t: t * 2.0, name="double")(inputs))
    file = tmp_path / "lambda.keras"
    model.save(file)
    with pytest.raises(AttnvizError, match="--unsafe"):
        extract.load_model(file)
    assert extract.load_model(file, unsafe=True).get_layer("double") is not None


def test_model_without_attention_lists_its_layers(tmp_path):
    inputs = keras.Input((L, 1))
    model = keras.Model(inputs, layers.Dense(1, name="head")(layers.LSTM(4, name="lstm")(inputs)))
    file = tmp_path / "plain.keras"
    model.save(file)
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(AttnvizError, match=r"no attention layer.*lstm \(LSTM\), head \(Dense\)"):
        extract.inspect_model(file, InspectOptions(input=tmp_path / "x.npy"))


def test_input_of_the_wrong_shape_names_the_expected_shape(tmp_path):
    model = build_model(tiny_config(units=4, attention_units=4, seq_len=L))
    with pytest.raises(AttnvizError, match=r"\(5, 7, 1\): the model expects \(n, 12, 1\)"):
        extract.prepare_inputs(model, X[:, :7], "x.npy")
    assert extract.prepare_inputs(model, X[..., 0], "x.npy")[0].shape == (5, L, 1)


def test_corrupt_model_file_is_named(tmp_path):
    file = tmp_path / "torn.keras"
    model = build_model(tiny_config(units=4, attention_units=4, seq_len=L))
    model.save(file)
    file.write_bytes(file.read_bytes()[:200])
    with pytest.raises(AttnvizError, match="torn.keras"):
        extract.load_model(file)
