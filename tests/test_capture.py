"""Capture reads every attention softmax a model computes, and equals what each layer returns.

Each model is saved and loaded again as attnviz loads it, then captured; the reference is the
layer's own `return_attention_scores=True` (or its softmax sublayer's output) on the same
tensors, within 1e-5. make test runs this file on both backends (KERAS_BACKEND=jax again).
"""

from __future__ import annotations

import sys

import keras
import numpy as np
import pytest
from keras import layers, ops

from attnviz.errors import AttnvizError
from attnviz.keras import capture
from attnviz.keras.loading import load_model
from attnviz.keras.models import build_model

from conftest import EXAMPLES, attention_model, tiny_config

pytestmark = pytest.mark.slow

L = 12
RNG = np.random.default_rng(0)
X = RNG.uniform(0, 1, (5, L, 1)).astype(np.float32)
TOKENS = RNG.integers(1, 40, (4, L)).astype(np.int32)
TOLERANCE = 1e-5
# the backend's own softmax and its module: tf.nn, or jax.nn on KERAS_BACKEND=jax
if keras.backend.backend() == "jax":
    import jax

    NN = jax.nn
else:
    import tensorflow as tf

    NN = tf.nn


@pytest.fixture(autouse=True)
def fresh_names():
    """Keras numbers automatic layer names per session: start each test from the same."""
    keras.backend.clear_session()


def reloaded(model: keras.Model, tmp_path, imports=()) -> keras.Model:
    file = tmp_path / "model.keras"
    model.save(file)
    return load_model(file, imports=imports)


def assert_close(actual: np.ndarray, expected) -> None:
    expected = np.asarray(expected, dtype=np.float32)
    if expected.ndim == 3:
        expected = expected[:, None]  # capture gives (B, Lq, Lk) a heads axis
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() < TOLERANCE


@pytest.mark.parametrize("score", ["luong", "bahdanau"])
def test_temporal_attention_of_an_attnviz_model(tmp_path, score):
    model = reloaded(build_model(tiny_config(units=8, attention_units=8, seq_len=L,
                                             attention=score)), tmp_path)
    result = capture.capture(model, X)
    assert [(c.name, c.layer_class, c.source, c.shape) for c in result.calls] == [
        ("attention", "TemporalAttention", "softmax op", (5, L))]
    assert_close(result.weights["attention"], attention_model(model)(X))


def test_multi_head_self_attention_of_an_attnviz_model(tmp_path):
    model = reloaded(build_model(tiny_config(units=8, seq_len=L, attention="self", heads=2)),
                     tmp_path)
    result = capture.capture(model, X)
    assert result.calls[0].shape == (5, 2, L, L)
    assert_close(result.weights["attention"], attention_model(model)(X))


def test_multi_head_attention_called_without_scores_in_a_custom_layer(tmp_path):
    """keras.io's TransformerBlock: MHA inside the block's call, no scores asked for."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import transformer_block
    finally:
        sys.path.remove(str(EXAMPLES))
    model = reloaded(transformer_block.build_model(maxlen=L, vocab_size=40, embed_dim=8),
                     tmp_path, imports=(str(EXAMPLES / "transformer_block.py"),))
    result = capture.capture(model, TOKENS)
    block = model.get_layer("transformer_block")
    # the inner layer's name is Keras' automatic one (numbered when a session made others)
    name = f"transformer_block/{block.att.name}"
    assert [c.name for c in result.calls] == [name]
    embedded = model.get_layer("token_and_position_embedding")(TOKENS)
    _, expected = block.att(embedded, embedded, return_attention_scores=True)
    assert_close(result.weights[name], expected)


def test_founding_questions_layer_is_read_at_its_softmax_not_at_its_output(tmp_path):
    sys.path.insert(0, str(EXAMPLES))
    try:
        import founding_attention
    finally:
        sys.path.remove(str(EXAMPLES))
    model = reloaded(founding_attention.build_model(seq_len=L, units=8), tmp_path,
                     imports=(str(EXAMPLES / "founding_attention.py"),))
    result = capture.capture(model, X)
    assert [c.name for c in result.calls] == ["attention_weight/attention_weight"]
    outer = model.get_layer("attention_weight")
    states = model.layers[0](X)
    h_t = states[:, -1, :]
    expected = outer.softmax_normalizer(outer.luong_dot([h_t, outer.luong_w(states)]))
    assert_close(result.weights["attention_weight/attention_weight"], expected)
    # the trap: the outer layer shares the softmax's name and outputs (n, units)
    with pytest.raises(AttnvizError, match=r"--layer attention_weight: its output \(2, 128\) "
                       r"is not a distribution.*pass --layer attention_weight/attention_weight"):
        capture.resolve_layers(model, X, ["attention_weight"])


@pytest.mark.parametrize("kind", [layers.Attention, layers.AdditiveAttention])
def test_dot_product_and_additive_attention_with_a_causal_mask(tmp_path, kind):
    inputs = keras.Input((L, 1))
    query = layers.Dense(4, name="query")(inputs)
    value = layers.Dense(4, name="value")(inputs)
    attended = kind(name="scores")([query, value], use_causal_mask=True)
    model = reloaded(keras.Model(inputs, layers.Dense(1)(layers.Flatten()(attended))), tmp_path)
    q, v = keras.Model(model.inputs[0], [model.get_layer("query").output,
                                      model.get_layer("value").output])(X)
    _, expected = model.get_layer("scores")([q, v], use_causal_mask=True,
                                            return_attention_scores=True)
    weights = capture.capture(model, X).weights["scores"]
    assert_close(weights, expected)
    assert np.all(np.triu(weights[0, 0], k=1) == 0)  # no weight on future keys


def test_padded_keys_and_queries_get_zero_like_the_layer_returns(tmp_path):
    inputs = keras.Input((L,), dtype="int32")
    embedded = layers.Embedding(40, 8, mask_zero=True, name="embed")(inputs)
    attended = layers.MultiHeadAttention(2, 4, name="mha")(embedded, embedded)
    model = reloaded(keras.Model(inputs, layers.GlobalAveragePooling1D()(attended)), tmp_path)
    tokens = TOKENS.copy()
    tokens[:, 8:] = 0  # padding
    weights = capture.capture(model, tokens).weights["mha"]
    embed = model.get_layer("embed")
    states = embed(tokens)
    mask = embed.compute_mask(tokens)
    _, expected = model.get_layer("mha")(states, states, query_mask=mask, value_mask=mask,
                                         return_attention_scores=True)
    assert_close(weights, expected)
    assert np.all(weights[:, :, :8, 8:] == 0) and np.all(weights[:, :, 8:, :] == 0)
    assert np.allclose(weights[:, :, :8].sum(axis=-1), 1.0, atol=1e-5)


def test_keras_hub_bert_reads_every_layer_and_honours_the_padding_mask(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.BertBackbone(vocabulary_size=40, num_layers=2, num_heads=2,
                                             hidden_dim=8, intermediate_dim=16,
                                             max_sequence_length=L)
    model = reloaded(backbone, tmp_path)
    padding = np.ones((4, L), np.int32)
    padding[:, 9:] = 0
    inputs = {"token_ids": TOKENS, "segment_ids": np.zeros((4, L), np.int32),
              "padding_mask": padding}
    result = capture.capture(model, inputs)
    names = [f"transformer_layer_{i}/self_attention_layer" for i in range(2)]
    assert [c.name for c in result.calls] == names
    assert all(c.layer_class == "MultiHeadAttention" and c.shape == (4, 2, L, L)
               for c in result.calls)
    for name in names:
        assert np.all(result.weights[name][..., 9:] == 0)  # padded keys
    # reference: the first block's attention called on its input, as the block calls it
    hidden = keras.Model(model.inputs, model.get_layer("embeddings_dropout").output)(inputs)
    block = model.get_layer("transformer_layer_0")
    mask = padding[:, None, :].astype(bool) & np.ones((1, L, 1), bool)
    _, expected = block._self_attention_layer(hidden, hidden, attention_mask=mask,
                                              return_attention_scores=True)
    assert_close(result.weights[names[0]], expected)


def test_keras_hub_gpt2_causal_attention(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=40, num_layers=2, num_heads=2,
                                             hidden_dim=8, intermediate_dim=16,
                                             max_sequence_length=L)
    model = reloaded(backbone, tmp_path)
    result = capture.capture(model, {"token_ids": TOKENS,
                                     "padding_mask": np.ones((4, L), np.int32)})
    assert [c.name for c in result.calls] == [f"transformer_layer_{i}/self_attention"
                                              for i in range(2)]
    weights = result.weights["transformer_layer_0/self_attention"]
    assert np.all(np.triu(weights, k=1) == 0)  # causal: nothing on later tokens
    assert np.allclose(weights.sum(axis=-1), 1.0, atol=1e-5)


class Block(layers.Layer):
    """Self-attention with its softmax computed by keras.ops inside call, and a gate softmax
    over features that is no attention (still captured: it is a softmax in a custom layer)."""

    def build(self, input_shape):
        self.query = layers.Dense(4, name="query")
        self.key = layers.Dense(4, name="key")

    def call(self, x):  # (B, L, D)
        scores = ops.einsum("bqd,bkd->bqk", self.query(x), self.key(x))
        weights = ops.softmax(scores, axis=-1)  # (B, L, L)
        return ops.einsum("bqk,bkd->bqd", weights, x)


class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.block = Block(name="block")
        self.head = layers.Dense(1, name="head")

    def call(self, x):
        return self.head(self.block(self.block(x)))  # the same block called twice


def test_subclassed_model_with_a_layer_called_twice_keeps_each_call():
    model = Subclassed(name="sub")
    model(X)
    result = capture.capture(model, X)
    assert [c.name for c in result.calls] == ["block", "block#2"]
    first = model.block
    scores = ops.einsum("bqd,bkd->bqk", first.query(X), first.key(X))
    assert_close(result.weights["block"], ops.softmax(scores, axis=-1))
    assert not np.allclose(result.weights["block"], result.weights["block#2"])


def test_softmax_op_over_a_middle_axis_is_stored_with_that_axis_last():
    class BackendSoftmax(layers.Layer):
        def call(self, x):  # (B, L, 1): softmax over time with tf.nn or jax.nn
            return ops.sum(x * NN.softmax(x, axis=1), axis=1)

        def compute_output_shape(self, shape):
            return (shape[0], shape[2])

    inputs = keras.Input((L, 1))
    model = keras.Model(inputs, BackendSoftmax(name="pool")(inputs))
    weights = capture.capture(model, X).weights["pool"]
    assert weights.shape == (5, 1, 1, L)  # softmax axis moved last: (B, 1, L), one query
    exp = np.exp(X - X.max(axis=1, keepdims=True))
    expected = np.moveaxis(exp / exp.sum(axis=1, keepdims=True), 1, -1)  # (B, 1, L)
    assert np.abs(weights[:, 0] - expected).max() < TOLERANCE


def test_classifier_softmax_and_dense_activation_are_not_attention():
    inputs = keras.Input((L,))
    hidden = layers.Dense(6, activation="softmax", name="dense_softmax")(inputs)
    outputs = layers.Softmax(name="classes")(layers.Dense(3)(hidden))
    model = keras.Model(inputs, outputs)
    result = capture.capture(model, X[..., 0])
    assert result.calls == []
    with pytest.raises(AttnvizError, match=r"no attention found.*Dense.*Softmax.*--layer"):
        capture.resolve_layers(model, X[..., 0], None)
    # named with --layer, a layer whose output is a distribution is read as it is
    calls, watch = capture.resolve_layers(model, X[..., 0], ["classes"])
    assert watch == ["classes"] and [c.source for c in calls] == ["layer output"]


def test_a_lambda_softmax_is_attention_unless_it_is_the_models_output():
    inputs = keras.Input((L, 1))
    scores = layers.Flatten()(layers.Dense(1)(inputs))  # (B, L)
    weights = layers.Lambda(lambda s: keras.ops.softmax(s), name="weights")(scores)
    pooled = layers.Dot(axes=1)([weights, layers.Flatten()(inputs)])
    head = layers.Lambda(lambda z: keras.ops.softmax(z), name="classes")(layers.Dense(3)(pooled))
    model = keras.Model(inputs, head)
    result = capture.capture(model, X)
    assert [c.name for c in result.calls] == ["weights"]  # not "classes", the output
    assert np.allclose(result.weights["weights"].sum(axis=1), 1.0, atol=1e-5)


def test_layer_glob_and_unknown_layer():
    model = Subclassed(name="sub")
    model(X)
    calls, _ = capture.resolve_layers(model, X, ["block#*"])
    assert [c.name for c in calls] == ["block#2"]
    with pytest.raises(AttnvizError, match=r"--layer nothing matches no attention call.*"
                       r"block, block#2"):
        capture.resolve_layers(model, X, ["nothing"])


def test_replace_swaps_the_weights_the_rest_of_the_pass_uses(tmp_path):
    model = reloaded(build_model(tiny_config(units=8, attention_units=8, seq_len=L)), tmp_path)
    plain = np.asarray(model(X, training=False))
    same, _ = capture.forward(model, X, replace={"attention": lambda w: w})
    assert np.array_equal(np.asarray(same), plain)
    uniform = lambda w: ops.ones_like(w) / L  # noqa: E731
    outputs, _ = capture.forward(model, X, replace={"attention": uniform})
    assert np.allclose(capture.capture(model, X, replace={"attention": uniform})
                       .weights["attention"], 1 / L)
    assert not np.allclose(np.asarray(outputs), plain)


def test_probe_traced_equals_eager_capture(tmp_path):
    model = build_model(tiny_config(units=8, seq_len=L, attention="self", heads=2))
    probe = capture.Probe(model)
    traced = probe(ops.convert_to_tensor(X))
    eager = capture.capture(model, X)
    assert [c.name for c in probe.calls] == [c.name for c in eager.calls] == ["attention"]
    assert np.abs(traced["attention"] - eager.weights["attention"]).max() < TOLERANCE


def test_interception_is_undone_even_when_the_model_raises():
    class Broken(keras.Model):
        def call(self, x):
            ops.softmax(x)
            raise ValueError("broken on purpose")

    model = Broken(name="broken")
    with pytest.raises(ValueError, match="broken on purpose"):
        capture.capture(model, X[..., 0])
    assert keras.layers.Layer.__call__ is capture._ORIGINAL_CALL
    assert NN.softmax is capture._ORIGINAL_SOFTMAX
    assert keras.layers.MultiHeadAttention._compute_attention is capture._ORIGINAL_MHA


def test_batches_are_sized_to_memory_and_joined(monkeypatch):
    model = build_model(tiny_config(units=4, seq_len=L, attention="self", heads=2))
    x = np.repeat(X, 4, axis=0)  # 20 samples
    whole = capture.capture(model, x)
    in_pieces = capture.capture(model, x, batch_size=3)
    assert whole.weights["attention"].shape == (20, 2, L, L)
    assert np.abs(whole.weights["attention"] - in_pieces.weights["attention"]).max() < 1e-6
    per_sample = 4 * 2 * L * L  # float32 bytes one sample's attention takes
    monkeypatch.setattr(capture, "BATCH_BYTES", 6 * per_sample)  # six samples a pass
    passes = []
    forward = capture.forward
    monkeypatch.setattr(capture, "forward", lambda model, batch, **kw: (
        passes.append(len(batch)), forward(model, batch, **kw))[1])
    sized = capture.capture(model, x)
    assert passes == [2, 6, 6, 6]  # a survey of two sizes the batches; its samples are kept
    assert np.abs(sized.weights["attention"] - whole.weights["attention"]).max() < 1e-6
    monkeypatch.setattr(capture, "MAX_BYTES", 10 * per_sample)
    with pytest.raises(AttnvizError, match="the attention of 20 samples would take .*pass "
                       "at most 10 samples"):
        capture.capture(model, x)


class ContextAttention(layers.Layer):
    """A user's attention layer that returns one tensor, its context vector (B, D)."""

    def build(self, input_shape):
        self.score = layers.Dense(1, name="score")

    def call(self, x):  # (B, L, D)
        weights = ops.softmax(self.score(x)[..., 0], axis=-1)  # (B, L)
        return ops.einsum("bl,bld->bd", weights, x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


def test_probe_numbers_each_call_of_a_layer_by_its_own_softmax():
    """A layer called twice whose output is one tensor: `X#2` is its second softmax, never
    the first call's context vector (the watched output once shared the softmax counter)."""
    inputs = keras.Input((L, 3))
    attend = ContextAttention(name="att")
    first, second = attend(inputs), attend(layers.Dense(3)(inputs))
    model = keras.Model(inputs, layers.Dense(1)(ops.concatenate([first, second], axis=-1)))
    x = RNG.normal(size=(4, L, 3)).astype(np.float32)
    eager = capture.capture(model, x)
    assert [c.name for c in eager.calls] == ["att", "att#2"]
    probe = capture.Probe(model, ["att", "att#2"])
    traced = probe(ops.convert_to_tensor(x))
    assert [c.name for c in probe.calls] == ["att", "att#2"]
    for name in ("att", "att#2"):
        assert traced[name].shape == (4, L)  # a distribution over the L positions...
        assert np.abs(traced[name] - eager.weights[name]).max() < TOLERANCE  # ...the softmax's


class StepAttention(layers.Layer):
    """Attention over the last axis, meant to run once per time step."""

    def call(self, x):  # (B, K, D)
        weights = ops.softmax(ops.sum(x, axis=-1), axis=-1)  # (B, K)
        return ops.sum(x * weights[..., None], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


def test_attention_inside_time_distributed_is_refused_with_the_reason():
    inputs = keras.Input((5, 6, 4))
    model = keras.Model(inputs, layers.TimeDistributed(StepAttention(name="step"),
                                                       name="per_step")(inputs))
    with pytest.raises(AttnvizError) as refused:
        capture.resolve_layers(model, np.ones((2, 5, 6, 4), np.float32), None)
    message = str(refused.value)
    assert "per_step" in message and "TimeDistributed" in message
    assert "runs once per time step" in message and "\n" not in message


class AttentionCell(layers.Layer):
    """An RNN cell that attends over its input's features at every step."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.state_size = 4

    def call(self, x, states):  # x (B, D)
        weights = ops.softmax(x, axis=-1)
        return weights * x, [states[0]]


def test_attention_inside_an_rnn_cell_is_refused_with_the_reason():
    inputs = keras.Input((5, 4))
    model = keras.Model(inputs, layers.RNN(AttentionCell(), name="recurrent")(inputs))
    with pytest.raises(AttnvizError, match="inside RNN recurrent runs once per time step"):
        capture.resolve_layers(model, np.ones((2, 5, 4), np.float32), None)


def test_interception_on_one_thread_leaves_another_threads_model_alone():
    import threading

    model = build_model(tiny_config(units=4, seq_len=L, attention="self", heads=2))
    plain = np.asarray(model(X))
    started, results = threading.Barrier(2), {}

    def replaced():
        started.wait()
        for _ in range(5):
            outputs, _ = capture.forward(model, X, replace={
                "attention": lambda w: ops.ones_like(w) / w.shape[-1]})
        results["replaced"] = np.asarray(outputs)

    def untouched():
        started.wait()
        results["plain"] = [np.asarray(model(X)) for _ in range(5)]

    threads = [threading.Thread(target=replaced), threading.Thread(target=untouched)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(np.array_equal(out, plain) for out in results["plain"])
    assert not np.allclose(results["replaced"], plain)  # the replacement did act there


def test_a_partial_install_is_rolled_back(monkeypatch):
    class Stubborn:
        """A module whose softmax alias cannot be replaced."""

        softmax = capture._ORIGINAL_SOFTMAX

        def __setattr__(self, key, value):
            raise AttributeError("read-only")

    monkeypatch.setattr(capture, "_softmax_aliases", lambda: [(NN, "softmax"),
                                                              (Stubborn(), "softmax")])
    monkeypatch.setattr(capture, "_aliases", [(NN, "softmax"), (Stubborn(), "softmax")])
    with pytest.raises(AttributeError, match="read-only"):
        with capture.Interceptor():
            pass
    assert keras.layers.Layer.__call__ is capture._ORIGINAL_CALL
    assert NN.softmax is capture._ORIGINAL_SOFTMAX
    assert capture._installed == 0


def test_a_taggers_softmax_head_inside_time_distributed_is_no_attention():
    inputs = keras.Input((5, 4))
    hidden = layers.Attention(name="attend")([inputs, inputs])
    tags = layers.TimeDistributed(layers.Dense(3, activation="softmax"), name="tags")(hidden)
    result = capture.capture(keras.Model(inputs, tags), np.ones((2, 5, 4), np.float32))
    assert [c.name for c in result.calls] == ["attend"] and result.per_step == {}


def test_a_spatial_softmax_over_two_axes_is_one_row_of_positions():
    class Spatial(layers.Layer):
        def build(self, input_shape):
            self.soft = layers.Softmax(axis=(1, 2), name="soft")

        def call(self, x):  # (B, h, w)
            return self.soft(x)

    inputs = keras.Input((3, 4))
    model = keras.Model(inputs, layers.Dense(1)(layers.Flatten()(Spatial(name="spatial")(
        inputs))))
    x = RNG.normal(size=(2, 3, 4)).astype(np.float32)
    result = capture.capture(model, x)
    assert [(c.name, c.shape) for c in result.calls] == [("spatial/soft", (2, 12))]
    expected = np.exp(x.reshape(2, 12)) / np.exp(x.reshape(2, 12)).sum(axis=1, keepdims=True)
    assert np.abs(result.weights["spatial/soft"] - expected).max() < TOLERANCE
