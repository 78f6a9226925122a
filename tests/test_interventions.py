"""attnviz.keras.interventions: attention replaced through capture, on hand-made rows and tiny real
runs: the founding model, self-attention, a user's callback run, `train --model`, tokens."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from attnviz.analysis.tasks import HELDOUT_STREAM, get_task, task_data
from attnviz.analysis.verdict import compose
from attnviz.cli import app
from attnviz.keras import AttentionRecorder, interventions
from attnviz.keras.explain import ExplainOptions, explain_run, load_checkpoint

from conftest import EXAMPLES, example, train_tiny

runner = CliRunner()
QUICK = ExplainOptions(samples=300, steps=2, draws=2, adversarial_steps=3)
QUICK_ARGS = ["--samples", "64", "--steps", "2", "--draws", "2", "--adversarial-steps", "3"]


# ---- replacements on hand-made rows (no model) ---------------------------------------------


PADDED = np.array([[0.7, 0.2, 0.1, 0.0],  # key 3 padded
                   [0.0, 0.0, 0.0, 0.0]], np.float32)  # a padded query: a row of zeros


def test_uniform_and_argmax_keep_padded_keys_and_rows_at_zero():
    assert np.allclose(interventions.uniform(PADDED), [[1 / 3, 1 / 3, 1 / 3, 0], [0, 0, 0, 0]])
    assert np.array_equal(interventions.argmax(PADDED), [[1, 0, 0, 0], [0, 0, 0, 0]])


def test_a_mask_outside_the_support_is_cut_and_a_missed_row_kept():
    mask = np.array([[0, 1, 0, 1], [1, 0, 0, 0]], bool)
    replaced, kept = interventions.on_mask(PADDED, mask)
    assert np.array_equal(replaced, [[0, 1, 0, 0], [0, 0, 0, 0]]) and kept == 0
    missed, kept = interventions.on_mask(PADDED, np.array([[0, 0, 0, 1], [1, 0, 0, 0]], bool))
    assert np.array_equal(missed[0], PADDED[0]) and kept == 1


def test_a_mask_per_query_moves_each_querys_row_and_keeps_the_rows_it_misses():
    learned = np.full((1, 2, 3, 3), 1 / 3, np.float32)  # two heads, three queries
    prev = np.array([[[0, 0, 0], [1, 0, 0], [0, 1, 0]]], bool)  # query 0 has no previous key
    replaced, kept = interventions.on_mask(learned, prev)
    for head in range(2):
        assert np.allclose(replaced[0, head], [[1 / 3] * 3, [1, 0, 0], [0, 1, 0]])
    assert kept == 1  # the sample kept query 0's learned row


def test_permutations_shuffle_within_the_support_per_row():
    rng = np.random.default_rng(0)
    rows = rng.dirichlet(np.ones(6), size=(50, 2, 3)).astype(np.float32)  # (n, H, Lq, Lk)
    rows[..., 4:] = 0.0  # two padded keys
    shuffled = interventions.permuted(rows, rng)
    assert np.array_equal(np.sort(shuffled, axis=-1), np.sort(rows, axis=-1))
    assert not shuffled[..., 4:].any()
    assert (shuffled != rows).any(axis=-1).mean() > 0.8  # rows differ (3! orders, some repeat)


def test_jsd_is_zero_for_the_same_rows_and_ln2_for_disjoint_ones():
    p = np.array([[[1.0, 0.0], [0.5, 0.5], [0.0, 0.0]]])  # (1, 3 rows, 2); the last row empty
    q = np.array([[[0.0, 1.0], [0.5, 0.5], [0.3, 0.7]]])
    assert interventions.jsd(p, p)[0] == 0.0
    assert interventions.jsd(p, q)[0] == pytest.approx(math.log(2) / 2)  # the empty row skipped


# ---- the founding model (the shared tiny run) ----------------------------------------------


@pytest.fixture(scope="module")
def founding(trained_run):
    """The shared run's model, 300 held-out samples, and their learned attention."""
    _, model = load_checkpoint(trained_run, None)
    heldout = task_data(trained_run.config, HELDOUT_STREAM, 300)
    intervener = interventions.Intervener(model, "attention")
    outputs, learned = intervener.learned(heldout.x)
    return model, heldout, intervener, outputs, learned


@pytest.mark.slow
def test_every_pass_is_traced_once_whatever_the_number_of_samples(founding):
    """One trace per pass: explaining run after run in one process (the docs, the tests)
    never retraces often enough for TensorFlow to warn about it."""
    _, heldout, _, _, learned = founding
    intervener = interventions.Intervener(founding[0], "attention")
    for n in (600, 7, 1):  # two chunks of different sizes, then a probe's and one sample
        x = np.concatenate([heldout.x, heldout.x])[:n]
        intervener.learned(x)
        intervener.outputs(x, np.concatenate([learned, learned])[:n])
    assert intervener._learned.tracing_count() == 1
    assert intervener._replaced.tracing_count() == 1


@pytest.mark.slow
def test_learned_intervention_reproduces_the_models_own_loss(trained_run, founding):
    _, heldout, *_ = founding
    report = explain_run(trained_run, QUICK)
    learned = report["interventions"][0]
    assert learned["name"] == "learned" and learned["jsd"] == 0.0
    compiled = keras.saving.load_model(trained_run.checkpoint_path())  # compiled: MSE
    evaluated = compiled.evaluate(heldout.x, heldout.y, batch_size=64, verbose=0)
    assert learned["loss"] == pytest.approx(evaluated, rel=1e-4)
    predicted = compiled.predict(heldout.x, verbose=0)
    assert learned["loss"] == pytest.approx(float(((predicted - heldout.y) ** 2).mean()),
                                            rel=1e-4)
    assert report["baselines"]["heldout_loss"] == pytest.approx(learned["loss"], rel=1e-6)


@pytest.mark.slow
def test_a_one_position_mask_equals_argmax_where_they_coincide(founding):
    """The tiny run attends nearly uniformly, its argmax rarely on the delimiter: the
    one-position mask is the position most often on top, which is the argmax for some
    samples and not for others."""
    _, heldout, intervener, _, learned = founding
    top = learned.argmax(axis=1)
    on_top, _ = interventions.on_mask(learned, np.eye(learned.shape[1], dtype=bool)[top])
    assert np.array_equal(on_top, interventions.argmax(learned))  # a mask made of the argmax
    position = np.zeros(learned.shape, bool)
    position[:, np.bincount(top).argmax()] = True
    coincide = position[np.arange(len(top)), top]
    assert coincide.any()
    on_mask = intervener.outputs(heldout.x, interventions.on_mask(learned, position)[0])
    on_argmax = intervener.outputs(heldout.x, interventions.argmax(learned))
    assert np.array_equal(on_mask[coincide], on_argmax[coincide])
    assert not np.isclose(on_mask[~coincide], on_argmax[~coincide]).any()


@pytest.mark.slow
def test_replacing_the_weights_changes_nothing_else_in_the_forward_pass(founding):
    """The model's own layers around attention, run by hand with the same weights, give the
    same predictions: the encoder states, the last state and the layers after attention are
    what they were; only the weights changed."""
    model, heldout, intervener, outputs, learned = founding
    x = heldout.x
    assert np.array_equal(intervener.outputs(x, learned), outputs)  # fed back: bit for bit
    assert np.array_equal(outputs, np.asarray(model(x, training=False)))
    states = keras.Model(model.inputs[0], model.get_layer("encoder").output)(x)  # (n, L, U)
    attention = model.get_layer("attention")
    for weights in (interventions.uniform(learned), interventions.argmax(learned),
                    interventions.permuted(learned, np.random.default_rng(1))):
        context = keras.ops.einsum("bl,blu->bu", weights, states)
        summary = attention.output_proj(keras.ops.concatenate([context, states[:, -1]], -1))
        by_hand = np.asarray(model.get_layer("prediction")(summary))
        replaced = intervener.outputs(x, weights)
        assert np.abs(replaced - by_hand).max() < 1e-4
        assert not np.allclose(replaced, outputs)


# ---- self-attention: every head and query row ----------------------------------------------


@pytest.mark.slow
def test_self_attention_interventions_replace_every_head(tmp_path):
    run = train_tiny(tmp_path / "self", attention="self", heads=2, epochs=1,
                     checkpoint_every=1, seq_len=10)
    report = explain_run(run, ExplainOptions(samples=64, steps=2, draws=2,
                                             adversarial_steps=3))
    setup = report["intervention_setup"]
    assert setup["shape"] == [2, 10, 10] and setup["replaced"] == "every head and every query row"
    names = [entry["name"] for entry in report["interventions"]]
    assert names == ["learned", "uniform", "permuted", "mask:delimiter", "mask:prefix",
                     "mask:prev", "mask:self", "mask:first", "argmax", "adversarial"]
    built_in = [entry for entry in report["interventions"] if entry.get("built_in")]
    assert [entry["name"] for entry in built_in] == ["mask:prev", "mask:self", "mask:first"]
    _, model = load_checkpoint(run, None)
    heldout = task_data(run.config, HELDOUT_STREAM, 64)
    compiled = keras.saving.load_model(run.checkpoint_path())
    assert report["interventions"][0]["loss"] == pytest.approx(
        compiled.evaluate(heldout.x, heldout.y, verbose=0), rel=1e-4)
    intervener = interventions.Intervener(model, "attention")
    _, learned = intervener.learned(heldout.x)
    on_prefix, _ = interventions.on_mask(learned, heldout.masks["prefix"])
    prefix = heldout.masks["prefix"][:, None, None, :]
    assert np.allclose(on_prefix.sum(axis=-1), 1.0) and not on_prefix[~np.broadcast_to(
        prefix, on_prefix.shape)].any()
    assert report["interventions"][4]["loss"] == pytest.approx(
        float(((intervener.outputs(heldout.x, on_prefix) - heldout.y) ** 2).mean()), rel=1e-6)
    verdict = "\n".join(compose(report))
    assert "carries what the task needs" not in verdict  # no state claim for a map per query


# ---- users' runs ---------------------------------------------------------------------------


L = 12


@pytest.fixture(scope="module")
def callback_run(tmp_path_factory):
    """The founding question's model trained by a user's model.fit with the recorder, and a
    DATA.npz of held-out samples with their masks."""
    root = tmp_path_factory.mktemp("callback")
    task = get_task("add-before-delimiter")
    rng = np.random.default_rng(0)
    train, val, probe = task.generate(512, L, rng), task.generate(96, L, rng), task.probe(4, L,
                                                                                         rng)
    keras.utils.set_random_seed(0)
    model = example("founding_attention").build_model(seq_len=L, units=8)
    model.fit(train.x, train.y, epochs=2, batch_size=64, verbose=0, callbacks=[
        AttentionRecorder(root / "run", probe=probe.x, masks=probe.masks, y=probe.y,
                          checkpoint_every=1)])
    np.savez(root / "data.npz", x=train.x, y=train.y, x_val=val.x, y_val=val.y,
             **{f"mask_{name}": mask for name, mask in val.masks.items()})
    return root


def explain_json(*args: str) -> dict:
    result = runner.invoke(app, ["explain", *map(str, args), *QUICK_ARGS, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_a_users_callback_run_is_explained_and_says_what_it_cannot_judge(callback_run):
    imports = ("--import", EXAMPLES / "founding_attention.py")
    report = explain_json(callback_run / "run", "--data", callback_run / "data.npz", *imports)
    assert report["task"] is None and report["layer"] == "attention_weight/attention_weight"
    assert report["heldout_source"] == "x_val and y_val of data.npz (the first 64 of 96)"
    assert report["masks_on"] == "heldout" and report["masks"] == ["delimiter", "prefix"]
    assert report["baselines"]["loss"] == "mse"
    assert report["baselines"]["loss_source"] == "the loss the model was compiled with"
    assert report["erase_value_source"] == "the probe's mean"
    assert [p["name"] for p in report["baselines"]["predictors"]] == ["mean"]
    assert {"mask:delimiter", "mask:prefix", "argmax", "adversarial"} <= {
        entry["name"] for entry in report["interventions"]}
    joined = "\n".join(report["verdict"])
    assert "Without a task there is no shortcut to compare with" in joined
    assert "Replacing the attention weights" in joined
    given = explain_json(callback_run / "run", "--data", callback_run / "data.npz", *imports,
                         "--baseline", "half-index=0.5")
    shortcut = given["baselines"]["predictors"][-1]
    assert shortcut == {"name": "half-index", "loss": 0.5, "description": "given with --baseline",
                        "ratio": pytest.approx(given["baselines"]["heldout_loss"] / 0.5)}
    assert "Without a task" not in "\n".join(given["verdict"])
    assert f"{shortcut['ratio']:.2f}x the half-index predictor's 0.5" in "\n".join(
        given["verdict"])


@pytest.mark.slow
def test_without_data_a_callback_run_is_measured_on_its_probe(callback_run):
    report = explain_json(callback_run / "run", "--import", EXAMPLES / "founding_attention.py")
    assert report["heldout_source"].startswith("the probe batch (4 samples")
    assert report["samples"] == {"probe": 4, "heldout": 4} and report["masks_on"] == "heldout"


@pytest.mark.slow
def test_a_train_model_run_is_measured_on_the_data_it_recorded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.py").write_text(
        f"import sys\nsys.path.insert(0, {str(EXAMPLES)!r})\nimport founding_attention\n\n"
        f"def build():\n    return founding_attention.build_model(seq_len={L}, units=8)\n")
    task = get_task("add-before-delimiter")
    rng = np.random.default_rng(1)
    train, val = task.generate(256, L, rng), task.generate(40, L, rng)
    np.savez(tmp_path / "data.npz", x=train.x, y=train.y, x_val=val.x, y_val=val.y)
    trained = runner.invoke(app, ["train", "--model", "mine.py:build", "--data", "data.npz",
                                  "--out", "run", "--epochs", "1", "--quiet"])
    assert trained.exit_code == 0, trained.output
    report = explain_json("run")
    assert report["heldout_source"] == "x_val and y_val of data.npz (40 samples)"
    assert report["masks"] == [] and "No masks were given" in report["verdict"][0]
    np.savez(tmp_path / "data.npz", x=train.x, y=train.y)  # changed since training
    changed = runner.invoke(app, ["explain", "run"])
    assert changed.exit_code == 2 and "changed since" in changed.output


@pytest.fixture
def fresh_names():
    """Keras numbers automatic layer names per session: leave the numbering as it was found
    for the tests after this one (test_keras_callback reads the names it gives)."""
    keras.backend.clear_session()
    yield
    keras.backend.clear_session()


@pytest.mark.slow
def test_a_token_model_gets_interventions_and_no_attribution(tmp_path, fresh_names):
    model = example("transformer_block").build_model(maxlen=L, vocab_size=30, embed_dim=8)
    rng = np.random.default_rng(1)
    x = rng.integers(1, 30, (256, L)).astype(np.int32)
    y = (x[:, 0] > 15).astype(np.int32)  # the class is in the first token
    model.fit(x[:192], y[:192], epochs=2, batch_size=32, verbose=0, callbacks=[
        AttentionRecorder(tmp_path / "run", probe=x[:4], checkpoint_every=1)])
    np.savez(tmp_path / "data.npz", x=x[:192], y=y[:192], x_val=x[192:], y_val=y[192:])
    report = explain_json(tmp_path / "run", "--data", tmp_path / "data.npz", "--import",
                          EXAMPLES / "transformer_block.py")
    assert report["attribution_refused"] == "the inputs are integer token ids, which have no " \
        "gradient"
    assert report["integrated_gradients"] is None and report["faithfulness"] is None
    assert report["baselines"]["loss"] == "sparse_categorical_crossentropy"
    assert report["intervention_setup"]["replaced"] == "every head and every query row"
    names = [entry["name"] for entry in report["interventions"]]
    assert {"mask:prev", "mask:self", "mask:first", "mask:induction"} <= set(names)
    learned = report["interventions"][0]["loss"]
    evaluated = model.evaluate(x[192:], y[192:], verbose=0)[0]  # the model as saved last
    assert learned == pytest.approx(evaluated, rel=1e-4)
    assert report["learning"] == "not judged"
    joined = "\n".join(report["verdict"])
    assert "Attribution and erasure are not measured: the inputs are integer token ids" in joined
    assert "loss (sparse_categorical_crossentropy)" in joined
