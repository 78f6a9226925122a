"""Real tiny trainings: what a run holds, determinism, stop and resume."""

import json
import os

import numpy as np
import pytest

from attnviz.keras import training as train
from attnviz.store.lock import exclusive
from attnviz.store.run import Run

from conftest import locked_plan, tiny_config, train_tiny, verify_all

pytestmark = pytest.mark.slow


def test_trained_run_contents(trained_run):
    run = Run.open(trained_run.root)
    verify_all(run)
    assert run.epochs_done == 3 and run.state["finished"]
    assert [h["epoch"] for h in run.history] == [1, 2, 3]
    assert run.attention_epochs == [0, 1, 2, 3]
    assert run.checkpoints == [2, 3]
    for entry in run.history:
        assert entry["loss"] > 0 and entry["val_loss"] > 0 and entry["seconds"] > 0
        assert set(entry["mass"]) == {"delimiter", "prefix"}
    for epoch in run.attention_epochs:
        weights = run.attention(epoch)
        assert weights.shape == (10, 20)
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    header = json.loads((run.root / "config.json").read_text())
    assert header["task"]["baselines"][1]["name"] == "half-delimiter-index"
    assert header["config"]["units"] == 16


def test_recorded_mass_matches_recorded_attention(trained_run):
    from attnviz.analysis.score import mass

    last = trained_run.history[-1]
    rows = trained_run.attention(3)
    assert last["mass"]["prefix"] == pytest.approx(mass(rows, trained_run.mask("prefix")),
                                                   abs=1e-6)


def test_checkpoint_restores_model_and_optimizer(trained_run):
    import keras

    from conftest import attention_model

    model = keras.models.load_model(trained_run.checkpoint_path(3), safe_mode=True)
    steps = -(-trained_run.config.samples // trained_run.config.batch_size)
    assert int(model.optimizer.iterations.numpy()) == 3 * steps
    weights = attention_model(model).predict_on_batch(trained_run.probe.x)
    np.testing.assert_allclose(weights, trained_run.attention(3), atol=1e-6)


@pytest.mark.skipif(os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1",
                    reason="oneDNN's kernels round differently from run to run (docs/train.md)")
def test_same_seed_gives_identical_attention(tmp_path, trained_run):
    """On one machine with oneDNN off (attnviz's default), a seed gives one run, byte for byte;
    across machines it does not, and nothing relies on it."""
    again = train_tiny(tmp_path / "again")
    for epoch in trained_run.attention_epochs:
        assert (again.root / f"attention/00/epoch_{epoch:04d}.npy").read_bytes() == (
            trained_run.root / f"attention/00/epoch_{epoch:04d}.npy").read_bytes()


def test_stop_then_resume_records_each_epoch_once(tmp_path):
    root = tmp_path / "run"
    with exclusive(root):  # as `attnviz train` holds it for the whole command
        plan = locked_plan(tiny_config(epochs=5, checkpoint_every=3, seed=3), root)
        stopped = train.fit(plan, stop_requested=lambda: Run.open(root).epochs_done >= 1)
        assert stopped.interrupted and stopped.epochs_done == 2
        assert Run.open(root).checkpoints == [2]  # the stop writes a checkpoint of its epoch

        # A kill after epoch 3's commit but before a checkpoint covers it: resume rolls back.
        plan = locked_plan(None, root, resume=True)
        assert plan.start_epoch == 2
        run = train.fit(plan, stop_requested=lambda: Run.open(root).epochs_done >= 3).run
        run.state["checkpoints"].remove(4)
        run.state["files"].pop("checkpoints/epoch_0004.keras")
        run.commit()
        plan = locked_plan(None, root, resume=True)
        assert (plan.start_epoch, plan.rolled_back_from) == (3, 4)
        result = train.fit(plan)
        run = Run.open(root)
        verify_all(run)
        assert not result.interrupted
        assert [h["epoch"] for h in run.history] == [1, 2, 3, 4, 5]
        assert run.attention_epochs == [0, 1, 2, 3, 4, 5]
        assert run.checkpoints == [2, 3, 5]  # 3 from the stop, 5 the last; 4 was rolled back


def test_resume_extends_epochs(tmp_path, trained_run):
    import shutil

    root = tmp_path / "more"
    shutil.copytree(trained_run.root, root)
    with exclusive(root):
        plan = locked_plan(None, root, resume=True, epochs=4)
        assert plan.start_epoch == 3
        run = train.fit(plan).run
    assert Run.open(root).config.epochs == 4
    assert [h["epoch"] for h in run.history] == [1, 2, 3, 4]
    # the optimizer continued: loss after resume stays near where it was
    assert run.history[3]["loss"] < 2 * run.history[2]["loss"]


@pytest.mark.parametrize("encoder, attention, shape", [
    ("gru", "bahdanau", (10, 20)),
    ("bilstm", "luong", (10, 20)),
    ("dense", "self", (10, 2, 20, 20)),
])
def test_every_encoder_and_attention_trains(tmp_path, encoder, attention, shape):
    run = train_tiny(tmp_path / encoder, encoder=encoder, attention=attention, epochs=1,
                     samples=128)
    weights = run.attention(1)
    assert weights.shape == shape
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=2e-3)  # float16 for self


def test_self_attention_mean_of_heads_is_recorded_compactly(tmp_path):
    run = train_tiny(tmp_path / "mean", attention="self", heads=4, record_heads="mean",
                     epochs=1, samples=128)
    assert run.attention(1).shape == (10, 1, 20, 20)


def test_resume_starts_again_a_run_killed_before_its_first_commit(tmp_path):
    root = tmp_path / "run"
    config = tiny_config(epochs=4)
    locked_plan(config, root)
    (root / "state.json").unlink()  # as if killed between config.json and the first commit
    plan = locked_plan(None, root, resume=True, epochs=6)
    assert plan.start_epoch == 0
    assert Run.open(root).config == config.replace(epochs=6)


def test_resume_refuses_a_torn_checkpoint_before_writing_anything(tmp_path, trained_run):
    import shutil

    from attnviz.errors import RunFormatError

    root = tmp_path / "torn"
    shutil.copytree(trained_run.root, root)
    (root / "checkpoints" / "epoch_0003.keras").write_bytes(b"PK")
    (root / "attention" / "00" / ".epoch_0004.npy.abc.tmp").write_bytes(b"left by a kill")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    with pytest.raises(RunFormatError, match="epoch_0003.keras: checksum mismatch"):
        locked_plan(None, root, resume=True, epochs=5)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_finished_follows_the_configured_epochs(tmp_path, trained_run):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(trained_run.root, root)
    assert Run.open(root).state["finished"]
    locked_plan(None, root, resume=True, epochs=5)  # extended: not finished any more
    assert not Run.open(root).state["finished"]
    locked_plan(None, root, resume=True, epochs=3)  # back to what is trained: finished again
    assert Run.open(root).state["finished"]
