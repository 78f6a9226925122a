"""`attnviz inspect MODEL.keras`: users' models, their own code, inputs, and what is refused."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from keras import layers
from typer.testing import CliRunner

from attnviz.analysis.inspection import InspectOptions
from attnviz.cli import app
from attnviz.errors import AttnvizError
from attnviz.keras.inspect_model import inspect_model
from attnviz.keras.loading import load_model, prepare_inputs
from attnviz.keras.models import build_model

from conftest import EXAMPLES, tiny_config

pytestmark = pytest.mark.slow

L = 12
X = np.random.default_rng(0).uniform(0, 1, (5, L, 1)).astype(np.float32)
runner = CliRunner()


def inspect(*args):
    return runner.invoke(app, ["inspect", *map(str, args)])


def one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


@pytest.fixture(autouse=True)
def fresh_names():
    keras.backend.clear_session()


def test_attention_inside_a_nested_model_is_named_by_its_path(tmp_path):
    inner_in = keras.Input((L, 4))
    states = layers.Dense(6, name="inner_proj")(inner_in)
    mha = layers.MultiHeadAttention(num_heads=2, key_dim=3, name="mha")
    inner = keras.Model(inner_in, mha(states, states), name="block")
    inputs = keras.Input((L, 1))
    embedded = layers.Dense(4, name="embed")(inputs)
    keras.Model(inputs, layers.Dense(1)(layers.GlobalAveragePooling1D()(inner(embedded)))).save(
        tmp_path / "nested.keras")
    np.save(tmp_path / "x.npy", X)
    inspection = inspect_model(tmp_path / "nested.keras", InspectOptions(input=tmp_path / "x.npy"))
    assert [view.name for view in inspection.views] == ["block/mha"]
    assert inspection.views[0].weights.shape == (5, 2, L, L)


def test_softmax_layer_ending_a_nested_sequential_is_attention(tmp_path):
    scorer = keras.Sequential([keras.Input((L, 1)), layers.Dense(1, name="score"),
                               layers.Flatten(name="flat"), layers.Softmax(name="weights")],
                              name="scorer")
    inputs = keras.Input((L, 1))
    model = keras.Model(inputs, layers.Dense(1)(scorer(inputs)))
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", X)
    inspection = inspect_model(tmp_path / "m.keras", InspectOptions(input=tmp_path / "x.npy"))
    assert [view.name for view in inspection.views] == ["scorer/weights"]
    assert np.abs(inspection.views[0].weights - np.asarray(scorer(X))).max() < 1e-5


def test_every_attention_call_in_order_and_save_writes_them_all(tmp_path):
    inputs = keras.Input((L, 1))
    states = layers.Dense(4)(inputs)
    first = layers.Attention(name="first")([states, states])
    second = layers.MultiHeadAttention(num_heads=2, key_dim=2, name="second")(first, first)
    keras.Model(inputs, layers.Dense(1)(layers.Flatten()(second))).save(tmp_path / "two.keras")
    np.save(tmp_path / "x.npy", X)
    result = inspect(tmp_path / "two.keras", "--input", tmp_path / "x.npy", "--save",
                     tmp_path / "all.npz", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [view["name"] for view in report["views"]] == ["first", "second"]
    assert [view["shape"] for view in report["views"]] == [[5, 1, L, L], [5, 2, L, L]]
    assert [len(view["heads"]) for view in report["views"]] == [1, 2]
    saved = np.load(tmp_path / "all.npz")
    assert sorted(saved.files) == ["first", "second"] and saved["second"].dtype == np.float32
    one_line_error(inspect(tmp_path / "two.keras", "--input", tmp_path / "x.npy", "--save",
                           tmp_path / "w.npy"), "2 attention calls", ".npz", "--layer")
    assert not (tmp_path / "w.npy").exists()
    single = inspect(tmp_path / "two.keras", "--input", tmp_path / "x.npy", "--layer", "sec*",
                     "--save", tmp_path / "w.npy")
    assert single.exit_code == 0, single.output
    assert np.array_equal(np.load(tmp_path / "w.npy"), saved["second"])


def test_many_layers_get_a_layers_by_heads_table_and_one_heatmap(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    keras_hub.models.BertBackbone(vocabulary_size=40, num_layers=3, num_heads=2, hidden_dim=8,
                                  intermediate_dim=16, max_sequence_length=L).save(
        tmp_path / "bert.keras")
    padding = np.ones((3, L), np.int32)
    padding[:, 9:] = 0
    np.savez(tmp_path / "x.npz", token_ids=np.arange(3 * L).reshape(3, L) % 40,
             segment_ids=np.zeros((3, L), np.int64), padding_mask=padding)
    listing = inspect(tmp_path / "bert.keras", "--list")
    assert listing.exit_code == 0, listing.output
    for i in range(3):
        assert f"transformer_layer_{i}/self_attention_layer" in listing.output
    assert "(n, 2, 8, 8)" in listing.output and "generated sample" in listing.output
    shown = inspect(tmp_path / "bert.keras", "--input", tmp_path / "x.npz", "--query", "0")
    assert shown.exit_code == 0, shown.output
    assert "head 0" in shown.output and "head 1" in shown.output
    assert "3 attention calls; the first in full below" in shown.output
    assert shown.output.count("argmax at position") == 1  # one heatmap, not three
    one = inspect(tmp_path / "bert.keras", "--input", tmp_path / "x.npz", "--layer",
                  "*layer_2*", "--head", "1", "--json")
    view, = json.loads(one.output)["views"]
    assert view["name"] == "transformer_layer_2/self_attention_layer"
    assert view["reduction"].startswith("head 1")
    assert all(row[9:] == [0.0] * 3 for row in view["rows"])  # padded keys get nothing


def test_import_brings_the_users_classes_and_unknown_classes_name_the_fix(tmp_path):
    import sys

    sys.path.insert(0, str(EXAMPLES))
    try:
        import transformer_block
    finally:
        sys.path.remove(str(EXAMPLES))
    transformer_block.build_model(maxlen=L, vocab_size=40, embed_dim=8).save(
        tmp_path / "clf.keras")
    np.save(tmp_path / "tokens.npy", np.arange(2 * L).reshape(2, L) % 40)
    args = (tmp_path / "clf.keras", "--input", tmp_path / "tokens.npy")
    one_line_error(inspect(*args), "TokenAndPositionEmbedding",
                   "pass --import FILE.py with the file that defines")
    shown = inspect(*args, "--import", EXAMPLES / "transformer_block.py", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["views"][0]["name"].startswith(
        "transformer_block/multi_head_attention")
    (tmp_path / "broken.py").write_text("import keras\nraise RuntimeError('no GPU here')\n")
    one_line_error(inspect(*args, "--import", tmp_path / "broken.py"),
                   "--import", "broken.py", "RuntimeError: no GPU here")
    one_line_error(inspect(*args, "--import", tmp_path / "missing.py"), "missing.py",
                   "no such file")
    one_line_error(inspect(*args, "--import", "no_such_module_anywhere"),
                   "no module named no_such_module_anywhere")


def test_founding_questions_layer_trap_names_the_softmax(tmp_path):
    import sys

    sys.path.insert(0, str(EXAMPLES))
    try:
        import founding_attention
    finally:
        sys.path.remove(str(EXAMPLES))
    founding_attention.build_model(seq_len=L, units=8).save(tmp_path / "f.keras")
    np.save(tmp_path / "x.npy", X)
    args = (tmp_path / "f.keras", "--input", tmp_path / "x.npy", "--import",
            EXAMPLES / "founding_attention.py")
    one_line_error(inspect(*args, "--layer", "attention_weight"),
                   "not a distribution", "pass --layer attention_weight/attention_weight")
    right = inspect(*args, "--layer", "attention_weight/attention_weight", "--json")
    assert right.exit_code == 0, right.output
    assert json.loads(right.output)["views"][0]["shape"] == [5, L]


def test_model_with_two_inputs_reads_an_npz_by_input_name(tmp_path):
    encoder_in = keras.Input((L, 1), name="encoder")
    decoder_in = keras.Input((3, 1), name="decoder")
    attended = layers.Attention(name="cross")([layers.Dense(4)(decoder_in),
                                               layers.Dense(4)(encoder_in)])
    keras.Model([encoder_in, decoder_in], layers.Flatten()(attended)).save(
        tmp_path / "seq2seq.keras")
    np.savez(tmp_path / "x.npz", encoder=X, decoder=X[:, :3])
    inspection = inspect_model(tmp_path / "seq2seq.keras",
                               InspectOptions(input=tmp_path / "x.npz"))
    assert inspection.views[0].weights.shape == (5, 1, 3, L)
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(AttnvizError, match=r"2 inputs \(encoder, decoder\)"):
        inspect_model(tmp_path / "seq2seq.keras", InspectOptions(input=tmp_path / "x.npy"))
    np.savez(tmp_path / "wrong.npz", encoder=X, decoder=X[:, :4])
    with pytest.raises(AttnvizError, match=r"\[decoder\] has shape \(5, 4, 1\): the model's "
                       r"input decoder expects \(n, 3, 1\)"):
        inspect_model(tmp_path / "seq2seq.keras", InspectOptions(input=tmp_path / "wrong.npz"))
    np.savez(tmp_path / "keys.npz", encoder=X, target=X[:, :3])
    with pytest.raises(AttnvizError, match=r"no array 'decoder'.*inputs are encoder, decoder"):
        inspect_model(tmp_path / "seq2seq.keras", InspectOptions(input=tmp_path / "keys.npz"))


def test_token_ids_keep_an_integer_dtype_and_fractions_are_refused():
    inputs = keras.Input((L,), dtype="int32", name="tokens")
    model = keras.Model(inputs, layers.Embedding(40, 4)(inputs))
    assert prepare_inputs(model, np.arange(2 * L, dtype=np.float64).reshape(2, L),
                          "x").dtype == np.int32
    with pytest.raises(AttnvizError, match="takes integers"):
        prepare_inputs(model, np.full((2, L), 0.5), "x")


def test_lambda_layer_is_refused_without_unsafe(tmp_path):
    inputs = keras.Input((L, 1))
    keras.Model(inputs, layers.Lambda(lambda t: t * 2.0, name="double")(inputs)).save(
        tmp_path / "lambda.keras")
    with pytest.raises(AttnvizError, match="--unsafe"):
        load_model(tmp_path / "lambda.keras")
    assert load_model(tmp_path / "lambda.keras", unsafe=True).get_layer("double") is not None


def test_model_without_attention_lists_the_classes_it_called(tmp_path):
    inputs = keras.Input((L, 1))
    keras.Model(inputs, layers.Dense(1, name="head")(layers.LSTM(4, name="lstm")(inputs))).save(
        tmp_path / "plain.keras")
    np.save(tmp_path / "x.npy", X)
    one_line_error(inspect(tmp_path / "plain.keras", "--input", tmp_path / "x.npy"),
                   "no attention found", "LSTM", "Dense", "--layer")
    one_line_error(inspect(tmp_path / "plain.keras", "--input", tmp_path / "x.npy", "--layer",
                           "nope"), "--layer nope matches no attention call")


def test_input_of_the_wrong_shape_names_the_expected_shape():
    model = build_model(tiny_config(units=4, attention_units=4, seq_len=L))
    with pytest.raises(AttnvizError, match=r"\(5, 7, 1\): the model's input sequence expects "
                       r"\(n, 12, 1\)"):
        prepare_inputs(model, X[:, :7], "x.npy")
    assert prepare_inputs(model, X[..., 0], "x.npy").shape == (5, L, 1)


def test_corrupt_model_file_is_named(tmp_path):
    file = tmp_path / "torn.keras"
    build_model(tiny_config(units=4, attention_units=4, seq_len=L)).save(file)
    file.write_bytes(file.read_bytes()[:200])
    with pytest.raises(AttnvizError, match="torn.keras"):
        load_model(file)
