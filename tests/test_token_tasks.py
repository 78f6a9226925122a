"""The token tasks (repeat, induction), their model, and what attnviz says of their heads:
an induction circuit, a positional shortcut, or no induction head."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from attnviz.analysis.tasks import IGNORED, checked, config_for, task_data, token_batch
from attnviz.cli import app
from attnviz.errors import AttnvizError

from conftest import make_synthetic_run, planted_heads_run


def scored(batch):
    return [(i, q) for i, q in zip(*np.nonzero(batch.y != IGNORED), strict=True)]


def test_induction_targets_are_the_token_after_an_earlier_copy_at_no_fixed_offset():
    config = config_for("induction")
    batch = task_data(config, 0, 200)
    assert batch.x.shape == batch.y.shape == (200, 32) and batch.x.dtype == np.int32
    offsets = set()
    for i, q in scored(batch):
        x = batch.x[i]
        # the target is the token after the earlier copy of x[q] (a copy exists, and every
        # earlier copy is followed by the target: the segments' tokens are distinct)
        copies = [k for k in range(q - 1) if x[k] == x[q]]
        assert copies and all(x[k + 1] == batch.y[i, q] for k in copies), (i, q)
        offsets.add(q - copies[-1])
    assert len(offsets) > 5  # no one offset solves it
    per_sample = (batch.y != IGNORED).sum(axis=1)
    assert per_sample.min() >= 4  # 4 segments of 2-3 tokens: 1-2 targets each


def test_repeat_has_one_period():
    batch = task_data(config_for("repeat"), 0, 50)
    np.testing.assert_array_equal(batch.x[:, :16], batch.x[:, 16:])
    assert {q - 15 for _, q in scored(batch)} == set(range(1, 16))
    for i, q in scored(batch):
        assert batch.y[i, q] == batch.x[i, q - 15]  # a fixed 15 positions back


def test_training_batches_are_new_every_epoch_and_the_same_on_a_rerun():
    config = config_for("induction")
    first, again = token_batch(config, 3, 5), token_batch(config, 3, 5)
    np.testing.assert_array_equal(first.x, again.x)
    assert not np.array_equal(first.x, token_batch(config, 4, 5).x)
    assert first.x.shape == (config.batch_size, config.seq_len)


def test_token_tasks_train_their_own_model_unless_told_otherwise():
    config = config_for("induction")
    assert (config.encoder, config.attention, config.layers, config.heads, config.units,
            config.learning_rate, config.warmup_steps, config.seed) == (
        "embedding", "self", 2, 4, 64, 3e-3, 200, 0)
    assert config_for("induction", heads=2, seed=3).heads == 2
    assert config_for("add-before-delimiter").encoder == "lstm"  # the others: unchanged
    for changes, says in [
        ({"encoder": "lstm"}, "reads token ids"),
        ({"attribution": True}, "drop --attribution"),
        ({"vocab": 8}, "--vocab 8 is too small"),
    ]:
        with pytest.raises(AttnvizError, match=says):
            checked(config_for("induction", **changes))
    with pytest.raises(AttnvizError, match="are for the token tasks"):
        checked(config_for("add-before-delimiter", layers=2))


def test_the_attention_only_model_is_causal_and_captured_layer_by_layer():
    from attnviz.keras.capture import capture
    from attnviz.keras.models import build_model

    config = config_for("induction", heads=2, units=16)
    model = build_model(config)
    x = task_data(config, 2, 3).x
    assert tuple(model(x).shape) == (3, 32, config.vocab)
    captured = capture(model, x)
    assert [call.name for call in captured.calls] == ["attention_0", "attention_1"]
    weights = captured.weights["attention_1"]
    assert weights.shape == (3, 2, 32, 32)
    assert not np.triu(weights, 1).any()  # causal: no query sees a later key
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)


# ---- what attnviz says of the heads -----------------------------------------------------------


def test_a_previous_token_head_feeding_an_induction_head_is_a_circuit(tmp_path):
    from attnviz.analysis.circuits import run_circuits

    circuits = run_circuits(planted_heads_run(tmp_path / "run"))
    assert circuits.kind == "induction circuit"
    named = {(h.layer, h.head): (h.label, h.formed) for h in circuits.heads
             if h.label not in ("broad", "mixed")}
    assert named == {("layer_0/attention", 0): ("previous-token", 2),
                     ("layer_1/attention", 1): ("induction", 2)}
    assert circuits.verdict.startswith("induction circuit: previous-token layer_0/attention "
                                       "head 0 (prev 1.00; formed at epoch 2) feed induction "
                                       "layer_1/attention head 1 (induction 1.00")


def test_an_induction_head_at_a_fixed_offset_with_no_previous_token_head_is_positional(
        tmp_path):
    from attnviz.analysis.circuits import run_circuits

    circuits = run_circuits(planted_heads_run(tmp_path / "run", previous=False))
    assert circuits.kind == "positional shortcut"
    head = next(h for h in circuits.heads if h.label == "induction")
    assert head.offset == -7 and head.offset_mass > 0.8  # the period 8, one back: q - 7
    assert "look a fixed 7 positions back" in circuits.verdict


def test_heads_in_a_fresh_process_and_as_json(tmp_path):
    run = planted_heads_run(tmp_path / "run")
    done = subprocess.run([sys.executable, "-m", "attnviz", "heads", str(run.root)],
                          capture_output=True, text=True, timeout=120,
                          env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert "induction circuit" in done.stdout and "4 broad or mixed heads not shown" in (
        done.stdout)
    said = json.loads(CliRunner().invoke(app, ["heads", str(run.root), "--json"]).stdout)
    assert said["kind"] == "induction circuit" and said["epochs"] == [0, 1, 2, 3]
    assert len(said["heads"]) == 6 and said["heads"][0]["formed"] == 2


def test_heads_of_a_run_without_multi_head_attention_is_one_line(tmp_path):
    run = make_synthetic_run(tmp_path / "temporal")
    result = CliRunner().invoke(app, ["heads", str(run.root)])
    assert result.exit_code == 2
    assert "records no multi-head self-attention" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_attnviz_trains_the_induction_task_and_finds_the_circuit_form(tmp_path):
    """The built-in task, its defaults (seed 0, recorded every 25 steps), 12 epochs of 100
    steps: a previous-token
    head in layer 0 and an induction head in layer 1 form, found by the labels alone; the
    untrained model (epoch 0) has no induction head. Which heads, and the epoch, may differ
    from one processor to another: only what formed is asserted."""
    out = tmp_path / "induction"
    train = subprocess.run([sys.executable, "-m", "attnviz", "train", "--task", "induction",
                            "--out", str(out), "--epochs", "12", "--quiet"],
                           capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr
    said = json.loads(subprocess.run(
        [sys.executable, "-m", "attnviz", "heads", str(out), "--json"], capture_output=True,
        text=True, timeout=120).stdout)
    assert said["kind"] == "induction circuit", said["verdict"]
    labels = {(h["layer"], h["label"]) for h in said["heads"]}
    assert ("attention_0", "previous-token") in labels and ("attention_1", "induction") in labels
    # recorded every 25 steps (the token tasks' default): formed and the loss drop are steps
    assert said["axis"] == "step" and said["epochs"][:3] == [0, 25, 50]
    formed = [h["formed"] for h in said["heads"] if h["label"] == "induction"]
    assert all(0 < step <= 1200 for step in formed) and said["loss_drop"] is not None
    # the loss drops as the induction heads form (the circuit is what lowers it)
    assert abs(min(formed) - said["loss_drop"]) <= 300, said["verdict"]
    untrained = CliRunner().invoke(app, ["score", str(out), "--layer", "attention_1",
                                         "--epoch", "0", "--head-label", "induction"])
    assert untrained.exit_code == 1  # no induction head before training
    explained = CliRunner().invoke(app, ["explain", str(out)])
    assert explained.exit_code == 2 and "attnviz heads" in explained.output
    assert len(explained.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_attnviz_calls_the_repeat_tasks_solution_a_positional_shortcut(tmp_path):
    out = tmp_path / "repeat"
    train = subprocess.run([sys.executable, "-m", "attnviz", "train", "--task", "repeat",
                            "--out", str(out), "--epochs", "5", "--quiet"],
                           capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr
    result = CliRunner().invoke(app, ["heads", str(out), "--json"])
    said = json.loads(result.stdout)
    assert said["kind"] == "positional shortcut", said["verdict"]
    assert "look a fixed 15 positions back" in said["verdict"]
