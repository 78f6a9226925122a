"""AttentionRecorder: a user's own model.fit writes a run every attnviz command reads."""

from __future__ import annotations

import json
import warnings
import zipfile

import keras
import numpy as np
import pytest
from keras import layers
from typer.testing import CliRunner

from attnviz.analysis.tasks import get_task
from attnviz.cli import app
from attnviz.errors import AttnvizError
from attnviz.keras import AttentionRecorder
from attnviz.store.run import Run, RunWriter

from conftest import EXAMPLES, example, locked_elsewhere

pytestmark = pytest.mark.slow

runner = CliRunner()
L = 12


def founding_data(n: int = 256, seed: int = 0):
    task = get_task("add-before-delimiter")
    rng = np.random.default_rng(seed)
    return task.generate(n, L, rng), task.generate(64, L, rng), task.probe(6, L, rng)


def test_founding_model_records_every_epoch_and_every_command_reads_it(tmp_path):
    train, val, probe = founding_data()
    model = example("founding_attention").build_model(seq_len=L, units=8)
    recorder = AttentionRecorder(tmp_path / "run", probe=probe.x, masks=probe.masks, y=probe.y,
                                 checkpoint_every=2)
    assert not (tmp_path / "run").exists()  # nothing happens at construction
    model.fit(train.x, train.y, validation_data=(val.x, val.y), epochs=3, batch_size=64,
              callbacks=[recorder], verbose=0)
    run = Run.open(tmp_path / "run")
    assert run.layer_names == ["attention_weight/attention_weight"]
    assert run.attention_epochs == [0, 1, 2, 3] and run.checkpoints == [2, 3]
    assert [h["epoch"] for h in run.history] == [1, 2, 3] and run.state["finished"]
    assert run.task is None and run.mask_names == ["delimiter", "prefix"]
    assert run.layers[0]["shape"] == [6, L] and run.model_info["source"] == "callback"
    weights = run.attention(3)
    assert np.allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    assert run.history[-1]["mass"]["delimiter"] == pytest.approx(
        float((weights * probe.masks["delimiter"]).sum(axis=1).mean()), abs=1e-6)
    root = str(tmp_path / "run")
    scored = runner.invoke(app, ["score", root, "--json"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.output)["layer"] == "attention_weight/attention_weight"
    shown = runner.invoke(app, ["inspect", root, "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["model"]["class"] == "Sequential"
    gif = runner.invoke(app, ["animate", root, "-o", str(tmp_path / "a.gif")])
    assert gif.exit_code == 0, gif.output
    # the run recorded the file that defines the model's layer: no --import needed
    assert run.model_info["code"] == [str((EXAMPLES / "founding_attention.py").resolve())]
    again = runner.invoke(app, ["inspect", root, "--checkpoint", "last", "--json"])
    assert again.exit_code == 0, again.output
    recomputed = np.array(json.loads(again.output)["views"][0]["rows"])
    assert np.abs(recomputed - weights).max() < 1e-5


def test_transformer_classifier_on_tokens_records_heads_and_selected_layers(tmp_path):
    model = example("transformer_block").build_model(maxlen=L, vocab_size=30, embed_dim=8)
    rng = np.random.default_rng(1)
    x = rng.integers(1, 30, (128, L)).astype(np.int32)
    y = (x[:, 0] > 15).astype(np.int32)  # the class is in the first token
    first_token = np.zeros((4, L), bool)
    first_token[:, 0] = True
    recorder = AttentionRecorder(tmp_path / "run", probe=x[:4], masks={"first": first_token},
                                 layers=["*multi_head_attention*"], record_heads="mean",
                                 checkpoint_every=0)
    model.fit(x, y, epochs=2, batch_size=32, callbacks=[recorder], verbose=0)
    run = Run.open(tmp_path / "run")
    layer, = run.layers
    assert layer["name"].startswith("transformer_block/multi_head_attention")
    assert layer["shape"] == [4, 1, L, L] and layer["kind"] == "multi-head"
    assert run.checkpoints == [] and run.probe.x.dtype == np.int32
    assert run.history[0]["val_loss"] is None and "accuracy" in run.history[0]["metrics"]
    result = runner.invoke(app, ["score", str(tmp_path / "run"), "--min", "mass=0.99"])
    assert result.exit_code == 1  # a gate that the untrained-looking attention misses


def test_keras_hub_bert_classifier_records_every_layer(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.BertBackbone(vocabulary_size=30, num_layers=2, num_heads=2,
                                             hidden_dim=8, intermediate_dim=16,
                                             max_sequence_length=L,
                                             name="bert_backbone")  # not _1 after another
    inputs = backbone.input
    outputs = layers.Dense(1)(backbone(inputs)["pooled_output"])
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(2)
    x = {"token_ids": rng.integers(1, 30, (64, L)).astype(np.int32),
         "segment_ids": np.zeros((64, L), np.int32), "padding_mask": np.ones((64, L), np.int32)}
    x["padding_mask"][:, 10:] = 0
    probe = {key: value[:3] for key, value in x.items()}
    model.fit(x, rng.random((64, 1)), epochs=1, batch_size=16, verbose=0,
              callbacks=[AttentionRecorder(tmp_path / "run", probe=probe, checkpoint_every=0)])
    run = Run.open(tmp_path / "run")
    assert [layer["name"] for layer in run.layers] == [
        f"bert_backbone/transformer_layer_{i}/self_attention_layer" for i in range(2)]
    assert set(run.probe.x) == {"token_ids", "segment_ids", "padding_mask"}
    assert np.all(run.attention(1, run.layer_names[1])[..., 10:] == 0)  # padded keys


class Pooling(layers.Layer):
    """Attention pooling with no get_config for its `width`: Keras cannot rebuild it."""

    def __init__(self, width, **kwargs):
        super().__init__(**kwargs)
        self.query = self.add_weight(shape=(width,), name="query")

    def call(self, states):  # (B, L, U)
        weights = keras.ops.softmax(keras.ops.einsum("blu,u->bl", states, self.query))
        return keras.ops.einsum("bl,blu->bu", weights, states)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.encoder = layers.LSTM(8, return_sequences=True)
        self.pool = Pooling(8, name="pool")
        self.head = layers.Dense(1)

    def call(self, x):
        return self.head(self.pool(self.encoder(x)))


def test_subclassed_model_that_keras_cannot_reload_still_records(tmp_path):
    train, _, probe = founding_data(128)
    model = Subclassed()
    model.compile(optimizer="adam", loss="mse")
    model(train.x[:1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(train.x, train.y, epochs=2, batch_size=64, verbose=0,
                  callbacks=[AttentionRecorder(tmp_path / "run", probe=probe.x)])
    skipped = [w for w in caught if "checkpoints skipped" in str(w.message)]
    assert len(skipped) == 1
    run = Run.open(tmp_path / "run")
    assert run.layer_names == ["pool"] and run.attention_epochs == [0, 1, 2]
    assert run.checkpoints == [] and "cannot save and reload" in run.state["checkpoints_skipped"]
    result = runner.invoke(app, ["explain", str(tmp_path / "run")])
    assert result.exit_code == 2 and "cannot save and reload" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_bad_probe_masks_and_models_are_refused_before_anything_is_written(tmp_path):
    train, _, probe = founding_data(64)
    model = example("founding_attention").build_model(seq_len=L, units=4)

    def fit(**kwargs):
        model.fit(train.x, train.y, epochs=1, verbose=0,
                  callbacks=[AttentionRecorder(tmp_path / "run", **kwargs)])

    with pytest.raises(AttnvizError, match="the probe does not fit the model"):
        fit(probe=np.zeros((3, L + 5, 2), np.float32))
    with pytest.raises(AttnvizError, match=r"mask m has shape \(6, 5\): expected \(6, keys\)"):
        fit(probe=probe.x, masks={"m": np.zeros((6, 5))})
    with pytest.raises(AttnvizError, match="mask m is not 0/1"):
        fit(probe=probe.x, masks={"m": np.full((6, L), 0.5)})
    with pytest.raises(AttnvizError, match="match no attention call"):
        fit(probe=probe.x, layers=["nothing*"])
    plain = keras.Sequential([keras.Input((L, 1)), layers.LSTM(4), layers.Dense(1)])
    plain.compile(optimizer="adam", loss="mse")
    with pytest.raises(AttnvizError, match=r"no attention found.*LSTM"):
        plain.fit(train.x, train.y, epochs=1, verbose=0,
                  callbacks=[AttentionRecorder(tmp_path / "run", probe=probe.x)])
    assert not (tmp_path / "run").exists()
    (tmp_path / "file").write_text("mine")
    with pytest.raises(AttnvizError, match="is a file"):
        model.fit(train.x, train.y, epochs=1, verbose=0,
                  callbacks=[AttentionRecorder(tmp_path / "file", probe=probe.x)])
    assert (tmp_path / "file").read_text() == "mine"


def test_fitting_again_follows_the_epoch_keras_trains_from(tmp_path):
    train, _, probe = founding_data(128)
    model = example("founding_attention").build_model(seq_len=L, units=4)
    model.fit(train.x, train.y, epochs=3, verbose=0, callbacks=[
        AttentionRecorder(tmp_path / "run", probe=probe.x, checkpoint_every=1,
                          keep_checkpoints=0)])  # every one kept
    first = Run.open(tmp_path / "run")
    assert first.checkpoints == [1, 2, 3]
    kept = first.attention(1).copy()
    # continue from epoch 1, as BackupAndRestore would: the weights after epoch 1 restored,
    # epochs 2.. again
    model = keras.saving.load_model(tmp_path / "run" / "checkpoints" / "epoch_0001.keras")
    model.fit(train.x, train.y, initial_epoch=1, epochs=4, verbose=0, callbacks=[
        AttentionRecorder(tmp_path / "run", probe=probe.x, checkpoint_every=1)])
    run = Run.open(tmp_path / "run")
    assert [h["epoch"] for h in run.history] == [1, 2, 3, 4]
    # the run keeps what it was created with (every checkpoint), whatever a later recorder says
    assert run.attention_epochs == [0, 1, 2, 3, 4] and run.checkpoints == [1, 2, 3, 4]
    assert np.array_equal(run.attention(1), kept) and run.epochs_planned == 4
    other = np.zeros_like(probe.x)
    with pytest.raises(AttnvizError, match="another model or probe"):
        model.fit(train.x, train.y, epochs=1, verbose=0,
                  callbacks=[AttentionRecorder(tmp_path / "run", probe=other)])


def test_the_last_two_checkpoints_are_kept_without_optimizer_state(tmp_path):
    import h5py

    train, _, probe = founding_data(128)
    model = example("founding_attention").build_model(seq_len=L, units=4)
    optimizer = model.optimizer
    model.fit(train.x, train.y, epochs=3, verbose=0, callbacks=[
        AttentionRecorder(tmp_path / "run", probe=probe.x, checkpoint_every=1)])
    run = Run.open(tmp_path / "run")
    assert run.checkpoints == [2, 3]  # epoch 1's left state.json, then the disk
    assert sorted(p.name for p in (run.root / "checkpoints").iterdir()) == [
        "epoch_0002.keras", "epoch_0003.keras"]
    with zipfile.ZipFile(run.checkpoint_path()) as archive, archive.open(
            "model.weights.h5") as weights:
        assert "optimizer" not in h5py.File(weights, "r")
    # the fit's own optimizer is put back after each save, its state kept
    assert model.optimizer is optimizer and int(optimizer.iterations.numpy()) == 3 * 4
    loaded = keras.saving.load_model(run.checkpoint_path(), compile=False)
    np.testing.assert_allclose(loaded.predict(probe.x, verbose=0),
                               model.predict(probe.x, verbose=0), rtol=1e-6)


def _files(root) -> dict:
    """Every file of a run with its bytes' sha256 (state.json's list and everything else)."""
    import hashlib

    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def test_a_fit_starting_over_never_records_over_a_run(tmp_path):
    """A script run again (explain's --import once did it) fits from epoch 0 into the run it
    recorded: refused before anything changes; overwrite=True is the way through."""
    train, _, probe = founding_data(128)

    def script(**kwargs):
        keras.utils.set_random_seed(0)  # the same script, the same model, the same weights
        model = example("founding_attention").build_model(seq_len=L, units=4)
        model.fit(train.x, train.y, epochs=2, verbose=0, callbacks=[
            AttentionRecorder(tmp_path / "run", probe=probe.x, checkpoint_every=1, **kwargs)])

    script()
    before = _files(tmp_path / "run")
    with pytest.raises(AttnvizError) as refused:
        script()
    message = str(refused.value)
    assert "already holds a run of this model whose fit ended (2 epochs)" in message
    assert "overwrite=True" in message
    assert "initial_epoch=2" in message and "--" not in message
    assert _files(tmp_path / "run") == before  # not one byte changed
    script(overwrite=True)
    after = Run.open(tmp_path / "run")
    assert after.attention_epochs == [0, 1, 2] and after.state["finished"]


def test_layers_as_a_string_is_one_pattern(tmp_path):
    train, _, probe = founding_data(64)
    model = example("founding_attention").build_model(seq_len=L, units=4)

    def fit(layers):
        model.fit(train.x, train.y, epochs=1, verbose=0, callbacks=[
            AttentionRecorder(tmp_path / "run", probe=probe.x, layers=layers,
                              checkpoint_every=0)])

    with pytest.raises(AttnvizError, match=r"layers \['no_such_layer'\] match no attention"):
        fit("no_such_layer")
    fit("attention_weight/*")
    assert Run.open(tmp_path / "run").layer_names == ["attention_weight/attention_weight"]


def test_a_kept_validation_set_is_what_explain_measures_on(tmp_path):
    """AttentionRecorder(validation=...) keeps held-out samples (within its budget): explain
    needs nothing else, and says where its samples come from."""
    from attnviz.keras import recording as record
    train, val, probe = founding_data(128)
    model = example("founding_attention").build_model(seq_len=L, units=4)
    model.fit(train.x, train.y, epochs=1, verbose=0, validation_data=(val.x, val.y),
              callbacks=[AttentionRecorder(tmp_path / "run", probe=probe.x, checkpoint_every=1,
                                           validation=(val.x, val.y))])
    run = Run.open(tmp_path / "run")
    kept = run.heldout
    assert np.array_equal(kept.x, val.x) and np.array_equal(kept.y, val.y)
    assert run.heldout_given == 64 and run.probe.y is None
    result = runner.invoke(app, ["explain", str(tmp_path / "run"), "--json", "--samples", "50",
                                 "--steps", "4", "--draws", "1", "--adversarial-steps", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["samples"]["heldout"] == 50
    assert report["heldout_source"] == ("the held-out samples the recorder kept (50 of the 64 "
                                        "given as validation)")
    assert report["baselines"]["noise_floor"] > 0
    # the budget: a validation set larger than HELDOUT_SAMPLES keeps its first ones
    big = np.repeat(val.x, 20, axis=0)
    batch, given = record.heldout_batch((big, np.zeros(len(big))), model)
    assert given == 1280 and len(batch.y) == record.HELDOUT_SAMPLES
    with pytest.raises(AttnvizError, match="validation holds 1280 inputs and 3 targets"):
        record.heldout_batch((big, np.zeros(3)), model)


def test_an_explain_without_targets_says_how_to_give_them(tmp_path):
    """The advice of explain on a run without targets works when followed: a --data file
    holding x_val and y_val alone is taken."""
    train, val, probe = founding_data(128)
    model = example("founding_attention").build_model(seq_len=L, units=4)
    model.fit(train.x, train.y, epochs=1, verbose=0, callbacks=[
        AttentionRecorder(tmp_path / "run", probe=probe.x, checkpoint_every=1)])
    root = str(tmp_path / "run")
    refused = runner.invoke(app, ["explain", root])
    assert refused.exit_code == 2
    assert "--data DATA.npz (x_val and y_val, or x and y)" in refused.output
    assert "validation=(x_val, y_val)" in refused.output
    np.savez(tmp_path / "val.npz", x_val=val.x, y_val=val.y)
    followed = runner.invoke(app, ["explain", root, "--data", str(tmp_path / "val.npz"),
                                   "--samples", "40", "--steps", "4", "--draws", "1",
                                   "--adversarial-steps", "2", "--json"])
    assert followed.exit_code == 0, followed.output
    assert json.loads(followed.stdout)["heldout_source"].startswith("x_val and y_val of val.npz")


PYTHON_WORDS = ("overwrite", "layers=", "=True", "AttentionRecorder(")  # the API's words
CLI_WORDS = ("--",)  # the command line's options


def test_each_audience_gets_its_own_words(tmp_path, monkeypatch):
    """One problem, two wordings: the command line names options, the Python API its
    parameters; neither names the other's."""
    from attnviz.keras import capture
    train, _, probe = founding_data(64)
    model = example("founding_attention").build_model(seq_len=L, units=4)
    plain = keras.Sequential([keras.Input((L, 1)), layers.LSTM(4), layers.Dense(1)])
    plain.compile(optimizer="adam", loss="mse")
    plain.save(tmp_path / "plain.keras")
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "x.npy", probe.x)
    (tmp_path / "a_file").write_text("mine")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")

    def through_python(fitted=model, **kwargs) -> str:
        with pytest.raises(AttnvizError) as caught:
            fitted.fit(train.x, train.y, epochs=1, verbose=0,
                       callbacks=[AttentionRecorder(probe=probe.x, **kwargs)])
        return str(caught.value)

    def through_cli(*args) -> str:
        result = runner.invoke(app, [str(arg) for arg in args])
        assert result.exit_code == 2, result.output
        return result.output

    cases = {
        "a file where the run goes": (
            through_cli("train", "--out", tmp_path / "a_file", "--epochs", "1"),
            through_python(directory=tmp_path / "a_file")),
        "a folder of other files": (
            through_cli("train", "--out", tmp_path / "notes", "--epochs", "1"),
            through_python(directory=tmp_path / "notes")),
        "replacing what is no run": (
            through_cli("train", "--out", tmp_path / "notes", "--epochs", "1", "--force"),
            through_python(directory=tmp_path / "notes", overwrite=True)),
        "no attention in the model": (
            through_cli("inspect", tmp_path / "plain.keras", "--input", tmp_path / "x.npy"),
            through_python(plain, directory=tmp_path / "run")),
    }
    monkeypatch.setattr(capture, "MAX_BYTES", 64)  # the attention of 6 samples is too much
    cases["more attention than memory allows"] = (
        through_cli("inspect", tmp_path / "model.keras", "--input", tmp_path / "x.npy"),
        through_python(directory=tmp_path / "run"))
    for problem, (cli, python) in cases.items():
        assert any(word in cli for word in CLI_WORDS), (problem, cli)
        assert not any(word in cli for word in PYTHON_WORDS), (problem, cli)
        assert not any(word in python for word in CLI_WORDS), (problem, python)
    assert (tmp_path / "a_file").read_text() == "mine"
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"
    assert not (tmp_path / "run").exists()


def fit_warning(model, x, y, recorder, about: str, epochs: int) -> tuple[list[str], object]:
    """Fit with `recorder`; the warnings whose message holds `about`, and Keras' history."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=epochs, verbose=0, callbacks=[recorder])
    return [str(w.message) for w in caught if about in str(w.message)], history


# ---- the observer never harms the observed -------------------------------------------------


def test_a_full_disk_stops_the_recording_not_the_training(tmp_path, monkeypatch):
    import errno

    train, _, probe = founding_data(128)
    model = example("founding_attention").build_model(seq_len=L, units=4)
    save = RunWriter.save_attention

    def full_from_epoch_2(self, epoch, weights):
        if epoch >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(self, epoch, weights)

    monkeypatch.setattr(RunWriter, "save_attention", full_from_epoch_2)
    stopped, history = fit_warning(model, train.x, train.y, AttentionRecorder(
        tmp_path / "run", probe=probe.x, checkpoint_every=0), "stopped recording", epochs=4)
    assert len(history.history["loss"]) == 4  # every epoch trained
    assert len(stopped) == 1 and "at epoch 2" in stopped[0]
    assert "No space left on device" in stopped[0]
    run = Run.open(tmp_path / "run")
    assert run.attention_epochs == [0, 1] and run.epochs_done == 1
    assert runner.invoke(app, ["inspect", str(tmp_path / "run")]).exit_code == 0


def test_a_model_that_cannot_be_saved_loses_its_checkpoints_not_its_attention(tmp_path,
                                                                               monkeypatch):
    train, _, probe = founding_data(128)
    model = example("founding_attention").build_model(seq_len=L, units=4)
    write = RunWriter.write_checkpoint

    def unsavable(self, epoch, save):
        if epoch >= 2:
            raise TypeError("get_config of MyLayer raised")
        return write(self, epoch, save)

    monkeypatch.setattr(RunWriter, "write_checkpoint", unsavable)
    skipped, _ = fit_warning(model, train.x, train.y, AttentionRecorder(
        tmp_path / "run", probe=probe.x, checkpoint_every=1), "checkpoints skipped", epochs=3)
    assert len(skipped) == 1 and "get_config of MyLayer raised" in skipped[0]
    run = Run.open(tmp_path / "run")
    assert run.attention_epochs == [0, 1, 2, 3] and run.checkpoints == [1]
    assert "at epoch 2" in run.state["checkpoints_skipped"]


class Renamed(layers.Layer):
    """A user's attention layer whose get_config forgets super().get_config(), so its name:
    Keras rebuilds it from a checkpoint under a name of its own."""

    def call(self, x):  # (B, L, D)
        weights = keras.ops.softmax(keras.ops.sum(x, axis=-1), axis=-1)  # (B, L)
        return keras.ops.einsum("bl,bld->bd", weights, x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self):
        return {}


def test_a_layer_renamed_on_reload_gets_no_checkpoints_and_one_warning(tmp_path):
    train, _, probe = founding_data(128)
    inputs = keras.Input((L, 1))
    model = keras.Model(inputs, layers.Dense(1)(Renamed(name="att")(layers.Dense(4)(inputs))))
    model.compile(optimizer="adam", loss="mse")
    skipped, _ = fit_warning(model, train.x, train.y, AttentionRecorder(
        tmp_path / "run", probe=probe.x, checkpoint_every=1), "checkpoints skipped", epochs=2)
    assert len(skipped) == 1 and "under other names (att is gone" in skipped[0]
    run = Run.open(tmp_path / "run")
    assert run.layer_names == ["att"] and run.checkpoints == []
    result = runner.invoke(app, ["explain", str(tmp_path / "run"), "--data",
                                 str(tmp_path / "x.npz")])
    assert result.exit_code == 2 and "att is gone" in result.output  # one way out, named


def test_a_class_of_the_training_script_is_named_with_the_way_out(tmp_path):
    """A model class defined in the script (__main__) cannot be imported without running the
    script: the recorder says so at once, and explain says how to make it importable."""
    train, _, probe = founding_data(128)

    class ScriptAttention(Renamed):
        def get_config(self):
            return layers.Layer.get_config(self)

    ScriptAttention.__module__ = "__main__"
    ScriptAttention.__qualname__ = "ScriptAttention"
    inputs = keras.Input((L, 1))
    model = keras.Model(inputs, layers.Dense(1)(ScriptAttention(name="att")(inputs)))
    model.compile(optimizer="adam", loss="mse")
    said, _ = fit_warning(model, train.x, train.y, AttentionRecorder(
        tmp_path / "run", probe=probe.x, checkpoint_every=1), "defined in the script", epochs=1)
    assert len(said) == 1 and "ScriptAttention is defined" in said[0]
    assert 'if __name__ == "__main__":' in said[0]
    run = Run.open(tmp_path / "run")
    assert run.script_classes == ("ScriptAttention",)
    result = runner.invoke(app, ["inspect", str(tmp_path / "run"), "--checkpoint", "1"])
    assert result.exit_code == 2
    assert "defined in the script that trained it" in result.output
    assert "pass --import FILE.py with the file" not in result.output


def test_grouped_query_attention_of_gemma_is_recorded_through_a_fit(tmp_path):
    """Gemma's 5-D softmax once crashed the user's fit: it is folded into heads, recorded,
    and every reader takes it."""
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=30, num_layers=1, num_query_heads=4, num_key_value_heads=1,
        hidden_dim=8, intermediate_dim=16, head_dim=2)
    tokens = keras.Input((L,), dtype="int32", name="token_ids")
    padding = keras.Input((L,), dtype="int32", name="padding_mask")
    hidden = backbone({"token_ids": tokens, "padding_mask": padding})
    model = keras.Model([tokens, padding], layers.Dense(1)(hidden[:, -1]))
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    x = rng.integers(1, 30, (64, L)).astype(np.int32)
    ones = np.ones_like(x)
    model.fit([x, ones], (x[:, 0] > 15).astype(np.float32), epochs=2, batch_size=16,
              verbose=0, callbacks=[AttentionRecorder(tmp_path / "run", probe=[x[:3], ones[:3]],
                                                      checkpoint_every=0)])
    run = Run.open(tmp_path / "run")
    assert run.layers[0]["shape"] == [3, 4, L, L] and run.attention_epochs == [0, 1, 2]
    assert run.layer_names[0].endswith("decoder_block_0/attention")
    for command in (["inspect", str(run.root)], ["report", str(run.root)],
                    ["animate", str(run.root), "-o", str(tmp_path / "g.gif")]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, (command, result.output)


class StepAttention(layers.Layer):
    """Attention over a step's features, meant for TimeDistributed (run once per step)."""

    def call(self, x):  # (B, K, D)
        weights = keras.ops.softmax(keras.ops.sum(x, axis=-1), axis=-1)  # (B, K)
        return keras.ops.sum(x * weights[..., None], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


def test_attention_run_per_time_step_is_left_out_with_a_warning(tmp_path):
    """The recorder records what it can (the attention over the steps) and names what it
    cannot (the attention inside TimeDistributed); the fit goes on."""
    inputs = keras.Input((L, 3, 2))  # L steps of 3 items of 2 features
    steps = layers.TimeDistributed(StepAttention(name="items"), name="per_step")(inputs)
    over_steps = layers.Attention(name="over_steps")([steps, steps])
    model = keras.Model(inputs, layers.Dense(1)(layers.GlobalAveragePooling1D()(over_steps)))
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).normal(size=(64, L, 3, 2)).astype(np.float32)
    left_out, history = fit_warning(model, x, x.sum(axis=(1, 2, 3)), AttentionRecorder(
        tmp_path / "run", probe=x[:4], checkpoint_every=0), "not recording", epochs=2)
    assert len(history.history["loss"]) == 2
    assert len(left_out) == 1 and "inside TimeDistributed per_step runs once per time step" in (
        left_out[0])
    assert Run.open(tmp_path / "run").layer_names == ["over_steps"]


def test_a_fresh_model_cannot_continue_a_run_it_did_not_record(tmp_path):
    """`fit(..., initial_epoch=2)` continues a run only from the weights it recorded after
    epoch 2 (loaded from its checkpoint, or restored by BackupAndRestore): a model initialised
    afresh is refused, naming the checkpoint to load."""
    train, _, probe = founding_data(128)

    def fit(model, **kwargs):
        model.fit(train.x, train.y, verbose=0, callbacks=[
            AttentionRecorder(tmp_path / "run", probe=probe.x, checkpoint_every=1)], **kwargs)

    fit(example("founding_attention").build_model(seq_len=L, units=4), epochs=2)
    before = _files(tmp_path / "run")
    with pytest.raises(AttnvizError) as refused:
        fit(example("founding_attention").build_model(seq_len=L, units=4), initial_epoch=2,
            epochs=3)
    assert "with other weights" in str(refused.value)
    assert "keras.saving.load_model of" in str(refused.value)
    assert "epoch_0002.keras, then fit(..., initial_epoch=2)" in str(refused.value)
    assert _files(tmp_path / "run") == before
    loaded = keras.saving.load_model(tmp_path / "run" / "checkpoints" / "epoch_0002.keras")
    fit(loaded, initial_epoch=2, epochs=3)  # the run's own weights: continued
    assert Run.open(tmp_path / "run").epochs_done == 3


class StopAfter(keras.callbacks.Callback):
    """Ends a fit after `epochs` epochs, as EarlyStopping does."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.epochs:
            self.model.stop_training = True


def test_a_fit_that_stopped_early_is_not_recorded_over_either(tmp_path):
    train, _, probe = founding_data(128)

    def script(*more, **kwargs):
        keras.utils.set_random_seed(0)
        model = example("founding_attention").build_model(seq_len=L, units=4)
        model.fit(train.x, train.y, epochs=5, verbose=0, callbacks=[
            AttentionRecorder(tmp_path / "run", probe=probe.x, checkpoint_every=1, **kwargs),
            *more])
        return model

    script(StopAfter(2))
    run = Run.open(tmp_path / "run")
    assert run.epochs_done == 2 and not run.state["finished"] and run.state["fit_ended"]
    with pytest.raises(AttnvizError, match="whose fit ended .2 epochs.*epoch_0002.keras"):
        script()


def test_overwrite_replaces_a_run_once_and_a_second_fit_continues_it(tmp_path):
    """One recorder with overwrite=True over two fits of one model: the run is replaced when
    the first starts from scratch, and the second (initial_epoch=2) continues it."""
    train, _, probe = founding_data(128)
    model = example("founding_attention").build_model(seq_len=L, units=4)
    model.fit(train.x, train.y, epochs=1, verbose=0, callbacks=[
        AttentionRecorder(tmp_path / "run", probe=probe.x, checkpoint_every=1)])
    recorder = AttentionRecorder(tmp_path / "run", probe=probe.x, checkpoint_every=1,
                                 overwrite=True)
    fresh = example("founding_attention").build_model(seq_len=L, units=4)
    fresh.fit(train.x, train.y, epochs=2, verbose=0, callbacks=[recorder])
    replaced = Run.open(tmp_path / "run")
    assert replaced.epochs_done == 2 and replaced.checkpoints == [1, 2]
    kept = replaced.attention(0).copy()
    fresh.fit(train.x, train.y, initial_epoch=2, epochs=3, verbose=0, callbacks=[recorder])
    run = Run.open(tmp_path / "run")
    assert run.epochs_done == 3 and np.array_equal(run.attention(0), kept)  # not replaced again


def test_a_run_another_process_writes_is_refused_before_the_first_step(tmp_path):
    """One writer per run: while another process holds the run's lock (`attnviz train` or
    `explain` on it), a fit recording into it is refused before it trains, naming why; the
    lock is given back when the fit ends, so the next fit records."""
    train, _, probe = founding_data(64)
    root = tmp_path / "run"
    with locked_elsewhere(root):
        model = example("founding_attention").build_model(seq_len=L, units=4)
        with pytest.raises(AttnvizError,
                           match="being written by another attnviz process right now"):
            model.fit(train.x, train.y, epochs=1, verbose=0,
                      callbacks=[AttentionRecorder(root, probe=probe.x)])
        assert model.optimizer.iterations.numpy() == 0  # refused before the first step
    model.fit(train.x, train.y, epochs=1, verbose=0,
              callbacks=[AttentionRecorder(root, probe=probe.x)])
    from attnviz.store import lock

    assert not lock.holds(root)  # given back at the end of the fit
    assert Run.open(root).attention_epochs == [0, 1]
