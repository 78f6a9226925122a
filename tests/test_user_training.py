"""Users' own training: a script with BackupAndRestore killed and started again, `attnviz
train --model` killed and resumed, the callback under MirroredStrategy, and bad --model input.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from attnviz.analysis.tasks import get_task
from attnviz.cli import app
from attnviz.store.run import Run

from conftest import EXAMPLES, verify_all

pytestmark = pytest.mark.slow

L = 12
TIMEOUT = 240  # seconds: a hung child fails the test instead of hanging it
runner = CliRunner()

# A user's training script: the founding question's model, Keras' BackupAndRestore (listed
# first, so a kill can land after its backup and before the recorder's commit) and the
# recorder. It marks each epoch it begins, so the test knows when to kill it. Keras writes
# its backup in place: a kill during that write leaves a file h5py cannot open, and only
# `double_checkpoint=True` (a copy of the previous backup, which Keras falls back to, one
# epoch earlier) lets the script start again (seen in CI; docs/your-model.md says so).
SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path

    import keras
    import numpy as np

    sys.path.insert(0, {examples!r})
    import founding_attention
    from attnviz.keras import AttentionRecorder
    from attnviz.analysis.tasks import get_task

    root = Path(sys.argv[1])
    task = get_task("add-before-delimiter")
    rng = np.random.default_rng(0)
    train, probe = task.generate(768, {L}, rng), task.probe(4, {L}, rng)
    keras.utils.set_random_seed(0)
    model = founding_attention.build_model(seq_len={L}, units=8)
    model.build((None, {L}, 1))

    class Mark(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            (root / f"began_{{epoch}}").touch()

    model.fit(train.x, train.y, epochs={epochs}, batch_size=16, verbose=0, callbacks=[
        keras.callbacks.BackupAndRestore(str(root / "backup"), double_checkpoint=True),
        AttentionRecorder(root / "run", probe=probe.x, masks=probe.masks, checkpoint_every=3),
        Mark()])
""")


def started(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL,
                            stderr=open(root / "log.txt", "ab"), cwd=root)  # noqa: SIM115


def wait_for(process: subprocess.Popen, condition, what: str) -> bool:
    """Poll `condition`; False when the process ended first."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if process.poll() is not None:
            return False
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)
    return True


def assert_every_epoch_once(run: Run, epochs: int) -> None:
    verify_all(run)
    assert [h["epoch"] for h in run.history] == list(range(1, epochs + 1))
    assert run.attention_epochs == list(range(epochs + 1)) and run.state["finished"]
    on_disk = {p.relative_to(run.root).as_posix() for p in run.root.rglob("*") if p.is_file()}
    assert on_disk == {*run.state["files"], "state.json"}  # nothing unlisted left behind


def test_script_with_backup_and_restore_killed_mid_epoch_records_each_epoch_once(tmp_path):
    epochs = 7
    script = tmp_path / "train_mine.py"
    script.write_text(SCRIPT.format(examples=str(EXAMPLES), L=L, epochs=epochs))
    rng = random.Random(3)
    kills = 0
    for target in (2, 4, 5):  # kill while this epoch (0-based) runs, at a random moment
        process = started(tmp_path, str(script), str(tmp_path))
        if not wait_for(process, lambda t=target: (tmp_path / f"began_{t}").exists(),
                        f"epoch {target}"):
            break
        time.sleep(rng.uniform(0.0, 0.4))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=TIMEOUT)
        kills += 1
    assert kills == 3, (tmp_path / "log.txt").read_text()[-3000:]
    # and a kill during Keras' own write of its backup, made certain: a half-written file.
    # Keras falls back to its previous backup, an epoch before what the run holds, and the
    # recorder rolls back with it.
    weights = tmp_path / "backup" / "latest.weights.h5"
    assert (tmp_path / "backup" / "latest.weights.h5.bkp").exists()
    weights.write_bytes(weights.read_bytes()[:1000])
    final = started(tmp_path, str(script), str(tmp_path))
    assert final.wait(timeout=TIMEOUT) == 0, (tmp_path / "log.txt").read_text()[-3000:]
    run = Run.open(tmp_path / "run")
    assert_every_epoch_once(run, epochs)
    assert run.checkpoints[-1] == epochs


def make_data(path: Path, n: int = 512) -> None:
    task = get_task("add-before-delimiter")
    rng = np.random.default_rng(0)
    train, val, probe = task.generate(n, L, rng), task.generate(64, L, rng), task.probe(4, L, rng)
    np.savez(path, x=train.x, y=train.y, x_val=val.x, y_val=val.y, probe=probe.x,
             y_probe=probe.y, **{f"mask_{name}": m for name, m in probe.masks.items()})


MODEL = textwrap.dedent("""
    import sys
    sys.path.insert(0, {examples!r})
    import founding_attention

    def build():
        return founding_attention.build_model(seq_len={L}, units=8)
""")


def test_train_model_killed_and_resumed_loses_nothing(tmp_path):
    (tmp_path / "mine.py").write_text(MODEL.format(examples=str(EXAMPLES), L=L))
    make_data(tmp_path / "data.npz")
    out = tmp_path / "run"
    args = ["-m", "attnviz", "train", "--model", "mine.py:build", "--data", "data.npz",
            "--out", "run", "--epochs", "8", "--checkpoint-every", "2", "--batch-size", "16",
            "--quiet"]
    rng = random.Random(5)
    for number in range(3):
        process = started(tmp_path, *args, *(["--resume"] if number else []))

        def committed(at_least=(number + 1) * 2):
            try:
                return Run.open(out).epochs_done >= at_least
            except Exception:  # noqa: BLE001 (mid-creation: not a run yet)
                return False

        assert wait_for(process, committed, "epochs"), (tmp_path / "log.txt").read_text()[-3000:]
        time.sleep(rng.uniform(0.0, 0.3))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=TIMEOUT)
    final = started(tmp_path, *args, "--resume")
    assert final.wait(timeout=TIMEOUT) == 0, (tmp_path / "log.txt").read_text()[-3000:]
    run = Run.open(out)
    assert_every_epoch_once(run, 8)
    assert run.checkpoints == [2, 4, 6, 8] and run.model_info["source"] == "attnviz train --model"
    import keras

    from attnviz.keras.loading import import_code, run_code

    model = keras.saving.load_model(run.checkpoint_path(8),
                                    custom_objects=import_code(run_code(run)))
    # the optimizer went on from each checkpoint's state: 8 epochs of 512 / 16 steps
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 8 * 32
    scored = runner.invoke(app, ["score", str(out), "--mask", "delimiter", "--json"])
    assert scored.exit_code == 0, scored.output


MIRRORED = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(2)])
    import keras
    import numpy as np
    sys.path.insert(0, {examples!r})
    import founding_attention
    from attnviz.keras import AttentionRecorder
    from attnviz.analysis.tasks import get_task

    task = get_task("add-before-delimiter")
    rng = np.random.default_rng(0)
    train, probe = task.generate(256, {L}, rng), task.probe(4, {L}, rng)
    strategy = tf.distribute.MirroredStrategy(["/CPU:0", "/CPU:1"])
    with strategy.scope():
        model = founding_attention.build_model(seq_len={L}, units=8)
    model.fit(train.x, train.y, epochs=2, batch_size=32, verbose=0,
              callbacks=[AttentionRecorder(sys.argv[1], probe=probe.x, masks=probe.masks)])
    print(strategy.num_replicas_in_sync)
""")


def test_callback_under_mirrored_strategy_writes_one_run_like_one_device(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED.format(examples=str(EXAMPLES), L=L))
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=TIMEOUT,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("2")  # two replicas trained
    run = Run.open(tmp_path / "run")
    assert_every_epoch_once(run, 2)
    layer, = run.layers
    assert layer["kind"] == "temporal" and layer["shape"] == [4, L]
    assert np.allclose(run.attention(2).sum(axis=1), 1.0, atol=1e-5)


def test_bad_model_and_data_are_one_line_before_anything_is_written(tmp_path):
    make_data(tmp_path / "data.npz", n=64)
    (tmp_path / "mine.py").write_text(MODEL.format(examples=str(EXAMPLES), L=L) + textwrap.dedent(
        """
        def broken():
            raise RuntimeError("no such layer size")

        def uncompiled():
            model = build()
            return founding_attention.keras.Sequential(model.layers)

        def not_a_model():
            return 42
        """))
    np.savez(tmp_path / "no_y.npz", x=np.zeros((4, L, 1)))
    (tmp_path / "a_file").write_text("mine")
    cases = [
        (["--model", "mine.py", "--data", "data.npz"], "give FILE.py:FUNCTION"),
        (["--model", "gone.py:build", "--data", "data.npz"], "no such file gone.py"),
        (["--model", "mine.py:nothing", "--data", "data.npz"], "defines no function nothing"),
        (["--model", "mine.py:broken", "--data", "data.npz"],
         "broken() raised RuntimeError: no such layer size"),
        (["--model", "mine.py:uncompiled", "--data", "data.npz"], "uncompiled model"),
        (["--model", "mine.py:not_a_model", "--data", "data.npz"], "returned int"),
        (["--model", "mine.py:build", "--data", "no_y.npz"], "holds no 'y'"),
        (["--model", "mine.py:build", "--data", "missing.npz"], "no such file"),
        (["--model", "mine.py:build"], "--model and --data go together"),
        (["--model", "mine.py:build", "--data", "data.npz", "--encoder", "gru"],
         "--encoder configures the built-in tasks"),
        (["--model", "mine.py:build", "--data", "data.npz", "--out", "a_file"], "is a file"),
    ]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for args, message in cases:
            args = args if "--out" in args else [*args, "--out", "run"]
            result = runner.invoke(app, ["train", *args, "--epochs", "1"])
            assert result.exit_code == 2, (args, result.output)
            assert len(result.output.strip().splitlines()) == 1, (args, result.output)
            assert message in result.output, (args, result.output)
            assert not (tmp_path / "run").exists(), args  # not even an empty folder
        assert (tmp_path / "a_file").read_text() == "mine"
    finally:
        os.chdir(cwd)


def test_a_model_file_imports_the_modules_beside_it(tmp_path):
    """`--model code/mine.py:build` runs `from mylayers import ...` as Python would run
    code/mine.py: its folder is on the path, whatever the working directory."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "mylayers.py").write_text(MODEL.format(examples=str(EXAMPLES), L=L))
    (code / "mine.py").write_text("from mylayers import build\n")
    make_data(tmp_path / "data.npz", n=64)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = runner.invoke(app, ["train", "--model", "code/mine.py:build", "--data",
                                     "data.npz", "--out", "run", "--epochs", "1", "--quiet"])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    assert Run.open(tmp_path / "run").epochs_done == 1


def test_attnviz_data_feeds_train_model_as_it_is(tmp_path):
    """`attnviz data -o d.npz` writes masks over every sample; `train --model --data d.npz`
    takes them as the default probe's (its first 10 samples), as your-model.md says."""
    (tmp_path / "mine.py").write_text(MODEL.format(examples=str(EXAMPLES), L=L))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        made = runner.invoke(app, ["data", "-o", "d.npz", "--samples", "64", "--seq-len",
                                   str(L)])
        assert made.exit_code == 0, made.output
        result = runner.invoke(app, ["train", "--model", "mine.py:build", "--data", "d.npz",
                                     "--out", "run", "--epochs", "1", "--quiet"])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    run = Run.open(tmp_path / "run")
    with np.load(tmp_path / "d.npz") as data:
        assert np.array_equal(run.probe.masks["delimiter"], data["mask_delimiter"][:10])
