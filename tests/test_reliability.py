"""Kills and Ctrl-C during real `attnviz train` processes: resume loses nothing, repeats nothing.

`make stress` (ATTNVIZ_STRESS=1) kills many more times; ATTNVIZ_STRESS_SEED picks the moments.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from attnviz.store.run import Run

from conftest import verify_all

pytestmark = pytest.mark.slow

STRESS = os.environ.get("ATTNVIZ_STRESS") == "1"
SEED = int(os.environ.get("ATTNVIZ_STRESS_SEED", "8"))
KILLS = 30 if STRESS else 5
EPOCHS = 100 if STRESS else 16  # more than the kills can reach, so every kill lands mid-run
TINY = ["--samples", "512", "--val-samples", "128", "--units", "8", "--checkpoint-every", "2",
        "--quiet"]
STEPS_PER_EPOCH = 512 // 64
PROCESS_TIMEOUT = 180  # seconds: a hung child fails the test instead of hanging it


class Trainer:
    """One `attnviz train` child process with its stderr in a file."""

    def __init__(self, out: Path, log: Path, *extra: str):
        self.out, self.log = out, log
        self.started = time.monotonic()
        with open(log, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "attnviz", "train", "--out", str(out), *TINY, *extra],
                stdout=subprocess.DEVNULL, stderr=stderr, cwd=out.parent,
            )

    def poll_until(self, condition, interval: float = 0.01) -> bool:
        """Poll `condition` every `interval` seconds; False if the process exited first."""
        while not condition():
            if self.process.poll() is not None:
                return False
            if time.monotonic() - self.started > PROCESS_TIMEOUT:
                self.process.kill()
                pytest.fail(f"attnviz train hung: {self.stderr()}")
            time.sleep(interval)
        return True

    def wait(self) -> int:
        return self.process.wait(timeout=PROCESS_TIMEOUT)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


def last_commit(out: Path) -> dict:
    """state.json as last committed ({} before the first commit). Commits are atomic renames."""
    try:
        return json.loads((out / "state.json").read_bytes())
    except FileNotFoundError:
        return {}


def committed_epochs(out: Path) -> int:
    """Epochs trained in the last commit (-1: no commit yet)."""
    state = last_commit(out)
    return len(state["history"]) if state else -1


def kill_moments(rng: random.Random, kills: int) -> list[str]:
    """When each kill lands: during start-up (imports, run creation), during the first
    compile, at a random moment after some epochs were committed (mid-epoch or mid-write), or
    while a checkpoint's temporary file is being written."""
    kinds = ["start-up", "compile", "training", "training", "checkpoint"]
    kinds += rng.choices(["start-up", "compile", "training", "checkpoint"], weights=[1, 1, 3, 1],
                         k=kills - len(kinds))
    rng.shuffle(kinds)
    return kinds


def writing_checkpoint(out: Path) -> bool:
    folder = out / "checkpoints"
    return folder.is_dir() and any(p.name.endswith(".tmp.keras") for p in folder.iterdir())


def kill_once(out: Path, log: Path, kind: str, rng: random.Random) -> bool:
    """Start (or resume) training and SIGKILL it at a moment of `kind`; False if it finished."""
    resume = ["--resume"] if (out / "config.json").exists() else []
    trainer = Trainer(out, log, "--epochs", str(EPOCHS), *resume)
    extra = 0.0
    if kind == "training":
        target = max(committed_epochs(out), 0) + rng.randint(1, 3)
        reached = trainer.poll_until(lambda: committed_epochs(out) >= target)
        extra = rng.uniform(0.0, 0.25)
    elif kind == "checkpoint":
        reached = trainer.poll_until(lambda: writing_checkpoint(out), interval=0.001)
    else:
        reached = True
        extra = rng.uniform(0.05, 2.5) if kind == "start-up" else rng.uniform(3.0, 6.0)
    at = time.monotonic() + extra
    if reached and trainer.poll_until(lambda: time.monotonic() >= at):
        trainer.process.send_signal(signal.SIGKILL)
        assert trainer.wait() == -signal.SIGKILL
        return True
    assert trainer.wait() == 0, trainer.stderr()
    return False


def assert_complete(out: Path, epochs: int) -> Run:
    """Every epoch once, every file listed and intact, every checkpoint loads and matches."""
    import keras

    from conftest import attention_model

    run = Run.open(out)
    verify_all(run)
    assert run.state["finished"]
    assert [h["epoch"] for h in run.history] == list(range(1, epochs + 1))
    assert run.attention_epochs == list(range(epochs + 1))
    assert run.checkpoints[-1] == epochs
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == {*run.state["files"], "state.json"}  # no temp or unlisted file left
    for epoch in run.checkpoints:
        model = keras.models.load_model(run.checkpoint_path(epoch), safe_mode=True)
        # the optimizer went on from its saved state: one step count, never restarted
        assert int(model.optimizer.iterations.numpy()) == epoch * STEPS_PER_EPOCH
        weights = attention_model(model).predict_on_batch(run.probe.x)
        np.testing.assert_allclose(weights, run.attention(epoch), atol=1e-5)
    return run


def test_sigkill_at_random_moments_then_resume_loses_nothing(tmp_path):
    out = tmp_path / "run"
    rng = random.Random(SEED)
    kills = 0
    for number, kind in enumerate(kill_moments(rng, KILLS)):
        log = tmp_path / f"kill{number}-{kind}.log"
        if not kill_once(out, log, kind, rng):
            break
        kills += 1
    assert kills == KILLS, f"the run finished after {kills} kills (seed {SEED})"
    final = Trainer(out, tmp_path / "final.log", "--resume")
    assert final.wait() == 0, final.stderr()
    assert_complete(out, EPOCHS)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".log")) == ["run"]


def test_ctrl_c_commits_the_epoch_prints_how_to_resume_and_exits_130(tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(out, tmp_path / "train.log", "--epochs", "12")
    assert trainer.poll_until(lambda: committed_epochs(out) >= 1), trainer.stderr()
    trainer.process.send_signal(signal.SIGINT)
    assert trainer.wait() == 130, trainer.stderr()
    assert f"attnviz train --out {out} --resume" in trainer.stderr()
    assert "Traceback" not in trainer.stderr()
    run = Run.open(out)
    verify_all(run)
    assert 1 <= run.epochs_done < 12
    assert run.checkpoints[-1] == run.epochs_done  # the graceful stop checkpoints its epoch
    final = Trainer(out, tmp_path / "resume.log", "--resume")
    assert final.wait() == 0, final.stderr()
    assert_complete(out, 12)


def test_second_ctrl_c_aborts_at_once_and_keeps_the_last_commit(tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(out, tmp_path / "train.log", "--epochs", "200")
    # epoch 0's attention is committed just before the first epoch compiles (seconds)
    assert trainer.poll_until(lambda: 0 in last_commit(out).get("attention_epochs", [])), (
        trainer.stderr())
    trainer.process.send_signal(signal.SIGINT)
    assert trainer.poll_until(lambda: "stopping after this epoch" in trainer.stderr())
    trainer.process.send_signal(signal.SIGINT)
    assert trainer.wait() == 130, trainer.stderr()
    assert "--resume" in trainer.stderr() and "Traceback" not in trainer.stderr()
    run = Run.open(out)
    verify_all(run)
    done = run.epochs_done
    final = Trainer(out, tmp_path / "resume.log", "--resume", "--epochs", str(done + 2))
    assert final.wait() == 0, final.stderr()
    assert_complete(out, done + 2)
