"""Recording by steps: AttentionRecorder(every_steps=N) and `train --record-steps N` record
inside epochs too, and every reader puts the run on a step axis."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers
from typer.testing import CliRunner

from attnviz.cli import app
from attnviz.errors import AttnvizError, RunFormatError
from attnviz.keras import AttentionRecorder
from attnviz.keras.training import step_records
from attnviz.store.config import TrainConfig
from attnviz.store.run import Run

from conftest import train_tiny, writer

runner = CliRunner()
L, VOCAB, BATCH, STEPS = 8, 12, 16, 10  # ten steps an epoch
POINTS = [0, 3, 6, 9, 10, 12, 15, 18, 20]  # every 3 steps, and both epochs' ends


def _model(seed: int = 0):
    keras.utils.set_random_seed(seed)
    tokens = keras.Input((L,), dtype="int32")
    x = layers.Embedding(VOCAB, 8)(tokens)
    x = layers.MultiHeadAttention(2, 4)(x, x, use_causal_mask=True)
    model = keras.Model(tokens, layers.Dense(VOCAB)(x))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.integers(0, VOCAB, (BATCH * STEPS, L)).astype(np.int32)
    return x, np.roll(x, 1, axis=1)  # the previous token


class _Crash(keras.callbacks.Callback):
    """Keeps the weights at each epoch's end (as BackupAndRestore would) and raises inside
    epoch `epoch` (Keras' count) at batch `batch`."""

    def __init__(self, epoch: int, batch: int):
        super().__init__()
        self.at, self.batch, self.kept, self.epoch = epoch, batch, None, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self.kept = self.model.get_weights()

    def on_train_batch_begin(self, batch, logs=None):
        if self.epoch == self.at and batch == self.batch:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def step_run(tmp_path_factory) -> Run:
    root = tmp_path_factory.mktemp("steps") / "run"
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, shuffle=False,
              callbacks=[AttentionRecorder(root, probe=x[:4], every_steps=3)])
    return Run.open(root)


def test_records_every_n_steps_and_each_epoch_end_on_one_step_axis(step_run):
    run = step_run
    assert run.axis == "step" and run.recording["every_steps"] == 3
    assert run.points == POINTS
    assert [r["step"] for r in run.step_records] == [3, 6, 9, 12, 15, 18]
    assert [r["epoch"] for r in run.step_records] == [0, 0, 0, 1, 1, 1]
    assert [h["step"] for h in run.history] == [10, 20]
    assert run.attention_epochs == [0, 1, 2]  # epoch ends stay epoch records
    assert [run.point_epoch(p) for p in POINTS] == [0, 1, 1, 1, 1, 2, 2, 2, 2]
    maps = [run.attention_at(p, run.layer_names[0]) for p in POINTS]
    assert all(np.allclose(m.sum(-1), 1, atol=1e-2) for m in maps)
    assert not np.array_equal(maps[1], maps[2])  # the weights moved between records


def test_each_records_loss_is_the_mean_over_the_steps_since_the_one_before(step_run):
    losses = step_run.point_losses()
    assert losses[0] is None
    for epoch, (start, records) in enumerate([(0, [3, 6, 9, 10]), (10, [12, 15, 18, 20])]):
        # windows of 3, 3, 3 and 1 steps (epoch 2: 2, 3, 3, 2) weigh back to Keras' mean
        sizes = np.diff([start, *records])
        mean = sum(size * losses[p] for size, p in zip(sizes, records, strict=True)) / STEPS
        assert mean == pytest.approx(step_run.history[epoch]["loss"], rel=1e-4)


def test_the_disk_plan_counts_the_records_inside_epochs():
    assert step_records(2, STEPS, 3) == 6  # 3, 6, 9, 12, 15, 18
    assert step_records(20, 100, 25) == 60  # three inside each epoch; the ends are epochs
    assert step_records(3, 10, None) == 0


def test_steps_per_execution_falls_to_a_divisor_so_records_land_on_multiples():
    assert TrainConfig(record_steps=25).effective().steps_per_execution == 25
    assert TrainConfig(record_steps=100).effective().steps_per_execution == 25
    assert TrainConfig(record_steps=64).effective().steps_per_execution == 32
    assert TrainConfig(record_steps=7).effective().steps_per_execution == 7
    assert TrainConfig(record_steps=0).effective().steps_per_execution == 32
    with pytest.raises(AttnvizError, match="--record-steps must be at least 0"):
        TrainConfig(record_steps=-1).validate()


def test_a_crash_inside_an_epoch_then_a_restart_records_each_step_once(tmp_path):
    root = tmp_path / "run"
    x, y = _data()
    model = _model()
    crash = _Crash(epoch=1, batch=7)  # after the records at steps 12 and 15
    recorder = AttentionRecorder(root, probe=x[:4], every_steps=3)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, shuffle=False,
                  callbacks=[recorder, crash])
    run = Run.open(root)  # the records inside epoch 2 were never committed: gone with it
    assert run.points == [0, 3, 6, 9, 10] and run.epochs_done == 1
    assert sorted(p.name for p in (root / run.layers[0]["folder"]).glob("step_*.npy"))[-1] \
        == "step_00000015.npy"  # written, unlisted: removed when the run goes on
    model.set_weights(crash.kept)  # the state after epoch 1, as a backup restores it
    model.fit(x, y, epochs=2, initial_epoch=1, batch_size=BATCH, verbose=0, shuffle=False,
              callbacks=[AttentionRecorder(root, probe=x[:4], every_steps=3)])
    run = Run.open(root)
    assert run.points == POINTS and run.epochs_done == 2
    on_disk = sorted(p.name for p in (root / run.layers[0]["folder"]).glob("step_*.npy"))
    assert on_disk == [f"step_{s:08d}.npy" for s in (3, 6, 9, 12, 15, 18)]


def test_every_steps_is_checked_before_anything_is_written(tmp_path):
    x, y = _data()
    for bad in (0, -3, 2.5, True):
        with pytest.raises(AttnvizError, match="every_steps"):
            _model().fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[
                AttentionRecorder(tmp_path / "run", probe=x[:2], every_steps=bad)])
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("damage", "said"), [
    (lambda state: state["steps"][1].update(step=2), "'steps' are not in increasing order"),
    (lambda state: state["files"].pop("attention/00/step_00000006.npy"),
     "records attention/00/step_00000006.npy but no checksum"),
    (lambda state: state["steps"][0].update(epoch=5), "not a list of step records"),
])
def test_a_damaged_list_of_step_records_is_refused(step_run, tmp_path, damage, said):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(step_run.root, copy)
    run = writer(copy)
    damage(run.state)
    run.commit()
    with pytest.raises(RunFormatError, match=said):
        Run.open(copy)


def _cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_score_heads_animate_report_and_inspect_use_the_step_axis(step_run, tmp_path):
    root = step_run.root
    code, out = _cli("score", root, "--epoch", "all", "--json")
    assert code == 0, out
    scored = json.loads(out)
    assert scored["axis"] == "step" and scored["epochs"] == POINTS
    code, out = _cli("score", root, "--epoch", "1", "--json")  # epoch 1's end: step 10
    assert code == 0, out
    assert json.loads(out)["epochs"] == [10]
    code, out = _cli("score", root, "--epoch", "all", "--plot", tmp_path / "s.png")
    assert code == 0, out
    assert "over steps 0-20" in out
    code, out = _cli("heads", root, "--json")
    assert code == 0, out
    heads = json.loads(out)
    assert heads["axis"] == "step" and heads["epochs"] == POINTS
    code, out = _cli("animate", root, "-o", tmp_path / "a.gif", "--json", "--frames",
                     tmp_path / "frames")
    assert code == 0, out
    animated = json.loads(out)
    assert animated["axis"] == "step" and animated["steps"] == POINTS
    assert (tmp_path / "frames" / "step_00000015.png").is_file()
    code, out = _cli("report", root, "-o", tmp_path / "r.html", "--json")
    assert code == 0, out
    assert json.loads(out)["axis"] == "step"
    page = (tmp_path / "r.html").read_text()
    assert '"axis": "step"' in page or '"axis":"step"' in page
    code, out = _cli("inspect", root, "--step", "15", "--json")
    assert code == 0, out
    facts = json.loads(out)
    assert facts["step"] == 15 and facts["epoch"] == 2
    assert facts["loss"]["loss"] == pytest.approx(step_run.point_losses()[15])
    assert facts["loss"]["val_loss"] is None


@pytest.mark.parametrize(("args", "said"), [
    (["--step", "16"], "step 16 was not recorded in"),
    (["--step", "5", "--epoch", "1"], "--epoch and --step both pick"),
])
def test_inspect_refuses_a_step_it_cannot_show_in_one_line(step_run, args, said):
    code, out = _cli("inspect", step_run.root, *args)
    assert code == 2 and said in out and "Traceback" not in out


def test_step_on_a_run_recorded_by_epochs_is_refused(tmp_path):
    run = train_tiny(tmp_path / "run", epochs=1)
    code, out = _cli("inspect", run.root, "--step", "3")
    assert code == 2 and "records at epoch ends only" in out and "--record-steps" in out


def test_a_step_run_reads_in_a_fresh_process(step_run):
    done = subprocess.run([sys.executable, "-m", "attnviz", "heads", str(step_run.root)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "heads over steps 0-20" in done.stdout
