"""Several processes training one model: `attnviz train --num-processes 2` on Keras' JAX
backend, joined with jax.distributed at 127.0.0.1, each in a fresh process as users run them.
make test runs the training tests in its JAX session; the batch split is numpy alone."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from attnviz.keras.processes import local_rows, scratch_prefix
from attnviz.store.run import Run

# the founding task, small: 544 samples are 8 whole batches of 64 and a last one of 32,
# which the two processes split 16 and 16
TINY = ["--samples", "544", "--val-samples", "80", "--units", "8", "--epochs", "2",
        "--probe-size", "4", "--backend", "jax", "--strategy", "data-parallel"]
# the processes' batches are one process's batches and their gradients are summed over both:
# the same steps, up to float32 summation order (measured: 3e-8 after 3 epochs)
TOLERANCE = 1e-4
WAIT = 10  # --process-timeout of the tests: a lost process is noticed within it


def test_the_processes_batches_make_one_process_batches():
    order = np.random.default_rng(0).permutation(544)
    shares = [local_rows(order, 64, 2, index) for index in (0, 1)]
    assert [len(share) for share in shares] == [272, 272]
    for k in range(9):  # batch k of 32 rows each (16 in the last) is the global batch k
        rows = np.concatenate([share[k * 32:(k + 1) * 32] for share in shares])
        assert sorted(rows) == sorted(order[k * 64:(k + 1) * 64]), k
    # a last batch that does not split evenly (33 rows, 2 processes) is left out
    assert sum(len(local_rows(np.arange(545), 64, 2, i)) for i in (0, 1)) == 512
    # ... as one that does not split between each process's devices (36 rows: 18 for 4)
    assert len(local_rows(np.arange(548), 64, 2, 0, devices=4)) == 256
    assert len(local_rows(np.arange(552), 64, 2, 0, devices=4)) == 256 + 20


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment() -> dict:
    environment = dict(os.environ)
    environment.pop("KERAS_BACKEND", None)  # --backend jax, as users give it
    environment.pop("XLA_FLAGS", None)
    environment["JAX_PLATFORMS"] = "cpu"  # two processes on one GPU machine: CPUs, as here
    return environment


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_process_left():
    """A failing test leaves no training process behind (2 cores: it would slow the rest)."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.communicate()


def _attnviz(*args, timeout: float = 300):
    return subprocess.run([sys.executable, "-m", "attnviz", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=_environment())


def _start(out: Path, port: int, *args) -> list[subprocess.Popen]:
    """Process 0 and process 1 of one training, as two hosts would start them."""
    STARTED[:] = [*STARTED, *_popen(out, port, *args)]
    return STARTED[-2:]


def _popen(out: Path, port: int, *args) -> list[subprocess.Popen]:
    return [subprocess.Popen(
        [sys.executable, "-m", "attnviz", "train", "--out", str(out), *map(str, args),
         "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id",
         str(index), "--process-timeout", str(WAIT)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_environment())
        for index in (0, 1)]


def _finish(processes: list[subprocess.Popen], stdout: list | None = None
            ) -> list[tuple[int, str]]:
    """Each process's exit code and standard error, once it ended (standard output appended
    to `stdout`)."""
    outputs = [p.communicate(timeout=300) for p in processes]
    if stdout is not None:
        stdout += [out for out, _ in outputs]
    return [(p.returncode, err) for p, (_, err) in zip(processes, outputs, strict=True)]


def _wait_for_epoch(out: Path, epochs: int, processes) -> None:
    """Until the run has committed `epochs` (polled: a commit is a file replaced)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            raise AssertionError(f"a process ended early: {_finish(processes)}")
        try:
            if Run.open(out).epochs_done >= epochs:
                return
        except Exception:  # noqa: BLE001 (not created yet)
            pass
        time.sleep(0.2)
    raise AssertionError(f"{out} did not reach epoch {epochs}")


jax_session = pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND") != "jax", reason="make test runs it in its JAX session")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The same tiny training in one process and in two joined at 127.0.0.1."""
    root = tmp_path_factory.mktemp("processes")
    single = _attnviz("train", "--out", root / "single", *TINY)
    assert single.returncode == 0, single.stderr[-2000:]
    stdout = []
    results = _finish(_start(root / "two", _free_port(), *TINY, "--json"), stdout)
    for code, stderr in results:
        assert code == 0, stderr[-3000:]
    return root, results, stdout


@pytest.mark.slow
@jax_session
def test_two_processes_train_one_run_as_one_process_does(two_processes):
    root, _, [out_first, out_second] = two_processes
    # --json: one document each on standard output (gloo's connection lines go to stderr)
    assert json.loads(out_first)["epochs_done"] == 2
    assert json.loads(out_second) == {"run": str(root / "two"), "process_id": 1,
                                      "num_processes": 2, "epochs_done": 2}
    one, two = Run.open(root / "single"), Run.open(root / "two")
    assert two.epochs_done == 2 and two.attention_epochs == [0, 1, 2]
    for epoch in (0, 1, 2):
        assert np.abs(one.attention(epoch) - two.attention(epoch)).max() < TOLERANCE, epoch
    assert not np.allclose(two.attention(0), two.attention(2))  # it did train
    for a, b in zip(one.history, two.history, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=TOLERANCE)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=TOLERANCE)
    # one writer: the run holds what one process writes, and process 1's scratch is gone
    files = sorted(p.relative_to(root / "two") for p in (root / "two").rglob("*"))
    assert files == sorted(p.relative_to(root / "single") for p in (root / "single").rglob("*"))
    import tempfile

    assert not list(Path(tempfile.gettempdir()).glob(scratch_prefix(root / "two", 1) + "*"))


@pytest.mark.slow
@jax_session
def test_a_kill_of_either_process_or_a_sigterm_leaves_a_run_that_resumes(tmp_path):
    # 12 epochs: each phase stops a few, whatever the machine's speed
    out, args = tmp_path / "run", [*TINY, "--epochs", "12", "--samples", "2048",
                                   "--checkpoint-every", "1"]
    processes = _start(out, _free_port(), *args)
    _wait_for_epoch(out, 1, processes)
    processes[1].send_signal(signal.SIGKILL)
    [(code, stderr), _] = _finish(processes)  # process 0 ends within --process-timeout
    assert code != 0 and "Traceback (most recent call last)" not in stderr
    done = Run.open(out).epochs_done
    assert 1 <= done < 12

    processes = _start(out, _free_port(), *args, "--resume")
    _wait_for_epoch(out, done + 1, processes)
    processes[0].send_signal(signal.SIGKILL)
    [_, (code, stderr)] = _finish(processes)
    assert code == 1
    assert "process 1 of 2 lost another process" in stderr
    assert "Traceback" not in stderr
    done = Run.open(out).epochs_done

    # SIGTERM (a scheduler's stop; JAX's preemption notifier swallowed it, and training went
    # on): as Ctrl-C, every process stops after the same epoch, recorded and checkpointed
    processes = _start(out, _free_port(), *args, "--resume")
    _wait_for_epoch(out, done + 1, processes)
    processes[1].send_signal(signal.SIGTERM)
    results = _finish(processes)
    assert [code for code, _ in results] == [130, 130], results
    assert "continue with every process again, adding --resume" in " ".join(
        results[0][1].split())
    run = Run.open(out)
    assert run.epochs_done < 12 and run.checkpoints[-1] == run.epochs_done

    results = _finish(_start(out, _free_port(), *args, "--resume"))
    for code, stderr in results:
        assert code == 0, stderr[-3000:]
    [first, second] = [" ".join(stderr.split()) for _, stderr in results]
    assert ("over 2 devices: /process0/CPU:0, /process1/CPU:0, in 2 processes: this one (0) "
            "writes the run") in first
    assert "process 1 of 2: training with process 0" in second
    assert "done: process 1 of 2," in second and "epochs trained with process 0" in second
    run = Run.open(out)
    assert run.state["finished"] and [r["epoch"] for r in run.history] == list(range(1, 13))
    assert run.attention_epochs == list(range(13))


@pytest.mark.parametrize(("args", "says"), [
    (["--num-processes", "2"], "--num-processes 2 needs --coordinator HOST:PORT"),
    (["--num-processes", "2", "--coordinator", "localhost"], "give HOST:PORT"),
    (["--num-processes", "2", "--coordinator", "127.0.0.1:1", "--process-id", "2"],
     "--process-id 2: give 0 to 1"),
    (["--coordinator", "127.0.0.1:1"], "--coordinator goes with --num-processes"),
    (["--num-processes", "2", "--coordinator", "127.0.0.1:1"],
     "trains with --backend jax --strategy data-parallel"),
    (["--num-processes", "2", "--coordinator", "127.0.0.1:1", "--backend", "jax", "--strategy",
      "data-parallel", "--task", "induction"], "draws new sequences every epoch"),
    (["--num-processes", "3", "--coordinator", "127.0.0.1:1", "--backend", "jax", "--strategy",
      "data-parallel"], "--batch-size 64 does not split between 3 processes"),
    # 2 processes of 2 CPU devices each hung in their first step
    (["--num-processes", "2", "--coordinator", "127.0.0.1:1", "--backend", "jax", "--strategy",
      "data-parallel", "--cpu-devices", "2"], "each process trains on one CPU device"),
])
def test_process_options_are_checked_in_one_line(tmp_path, args, says):
    result = _attnviz("train", "--out", tmp_path / "run", *args, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert says in " ".join(result.stderr.split()) and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_process_without_its_process_0_says_so_and_a_busy_port_too(tmp_path):
    common = ["--num-processes", "2", "--backend", "jax", "--strategy", "data-parallel",
              "--process-timeout", "1"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = _attnviz("train", "--out", tmp_path / "a", *common, "--coordinator",
                         f"127.0.0.1:{port}", "--process-id", "0", timeout=120)
    assert taken.returncode == 2
    assert "process 0 cannot listen there" in " ".join(taken.stderr.split())
    alone = _attnviz("train", "--out", tmp_path / "b", *common, "--coordinator",
                     f"127.0.0.1:{_free_port()}", "--process-id", "1", timeout=120)
    assert alone.returncode == 2
    assert "no process 0 answered in 1 s" in " ".join(alone.stderr.split())
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


USER_FIT = '''
import os, sys
index, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
import jax
jax.distributed.initialize(f"127.0.0.1:{port}", 2, index, initialization_timeout=60,
                           heartbeat_timeout_seconds=10)
import keras
import numpy as np
from attnviz.keras import AttentionRecorder
distribution = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
distribution.auto_shard_dataset = False
keras.distribution.set_distribution(distribution)
keras.utils.set_random_seed(0)
inputs = keras.Input((6, 4))
attended = keras.layers.MultiHeadAttention(2, 4, name="mha")(inputs, inputs)
pooled = keras.layers.GlobalAveragePooling1D()(attended)
model = keras.Model(inputs, keras.layers.Dense(1)(pooled))
model.compile("adam", "mse", jit_compile=True)
x = np.random.default_rng(0).random((64, 6, 4), dtype=np.float32)
y = x.sum(axis=(1, 2))[:, None]
history = model.fit(x[index::2], y[index::2], batch_size=8, epochs=2, verbose=0,
                    callbacks=[AttentionRecorder(out, probe=x[:4])])
print("trained", len(history.history["loss"]))
'''


@pytest.mark.slow
@jax_session
def test_the_callback_leaves_a_fit_over_two_processes_unharmed_and_says_it_records_none(
        tmp_path):
    """A user's own fit over two JAX processes: the probe pass and model.save compute on
    arrays of both, so process 0 recording alone would wait for the other forever; the
    callback says it does not record such a fit, and the fit trains on."""
    script, port = tmp_path / "fit.py", _free_port()
    script.write_text(USER_FIT)
    environment = {**_environment(), "KERAS_BACKEND": "jax"}
    processes = [subprocess.Popen([sys.executable, str(script), str(index), str(port),
                                   str(tmp_path / "run")], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=environment)
                 for index in (0, 1)]
    for process in processes:
        out, err = process.communicate(timeout=240)
        assert process.returncode == 0, err[-3000:]
        assert "trained 2" in out
        assert "does not record a fit over 2 JAX processes yet" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@jax_session
def test_the_callback_records_a_data_parallel_fit_over_the_devices_of_one_process(tmp_path):
    script = tmp_path / "fit.py"
    script.write_text(USER_FIT.replace(
        '''jax.distributed.initialize(f"127.0.0.1:{port}", 2, index, initialization_timeout=60,
                           heartbeat_timeout_seconds=10)''', "").replace(
        "x[index::2], y[index::2]", "x, y"))
    environment = {**_environment(), "KERAS_BACKEND": "jax",
                   "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = subprocess.run([sys.executable, str(script), "0", "0", str(tmp_path / "run")],
                          capture_output=True, text=True, env=environment, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained 2" in done.stdout and "not recording" not in done.stderr
    run = Run.open(tmp_path / "run")
    assert run.attention_epochs == [0, 1, 2] and run.checkpoints == [2]
    weights = run.attention(2)
    assert weights.shape == (4, 2, 6, 6)  # stored as float16: rows sum to 1 within 1e-3
    assert np.allclose(weights.sum(axis=-1), 1, atol=1e-3)
