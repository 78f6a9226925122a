"""Several processes training one model on JAX (jax.distributed): joining them, agreeing on
where training starts and when it stops, each process's share of every batch, and the files a
follower starts from.

Process 0, the writer, holds the run's lock, plans, records and writes the run as a single
process does. Every other process, a follower, trains the same model on its share of each
global batch, and takes part in what JAX computes over all processes' devices together: the
probe pass and the checkpoint save read arrays spread over every process. A follower does
that into a scratch directory of its own, deleted at its end: it reads the run's directory
(a shared filesystem across hosts), it never writes there.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnviz.errors import AttnvizError
from attnviz.store.run import CONFIG, HELDOUT, PROBE, STATE, Run

REFUSED = -1  # what the writer shares instead of the first epoch when it did not start
NOTHING_TO_TRAIN = -2  # --resume of a finished run
# what a collective's error says when another process is gone (CPU: gloo; GPU: NCCL)
LOST = ("Gloo", "NCCL", "Connection reset", "heartbeat")


@dataclass(frozen=True)
class Processes:
    """`train --coordinator HOST:PORT --num-processes N --process-id I --process-timeout S`."""

    coordinator: str | None = None
    count: int = 1
    index: int = 0
    timeout: int = 60  # seconds to wait for the others, at the start and when one stops

    @property
    def many(self) -> bool:
        return self.count > 1

    @property
    def writer(self) -> bool:
        return self.index == 0

    def check(self) -> Processes:
        """The options alone, refused in one line."""
        if self.count < 1:
            raise AttnvizError(f"--num-processes must be at least 1, got {self.count}")
        if self.count == 1 and self.index != 0:
            raise AttnvizError(f"--process-id {self.index} goes with --num-processes N (2 or "
                               "more): the processes training one model")
        if not 0 <= self.index < self.count:
            raise AttnvizError(f"--process-id {self.index}: give 0 to {self.count - 1} (one "
                               f"per process of --num-processes {self.count})")
        if self.timeout < 1:
            raise AttnvizError(f"--process-timeout must be at least 1 s, got {self.timeout}")
        if not self.many:
            if self.coordinator is not None:
                raise AttnvizError("--coordinator goes with --num-processes N (2 or more): "
                                   "the processes training one model")
            return self
        if self.coordinator is None:
            raise AttnvizError(f"--num-processes {self.count} needs --coordinator HOST:PORT: "
                               "where process 0 listens (the same on every process)")
        self.address()
        return self

    def address(self) -> tuple[str, int]:
        host, colon, port = (self.coordinator or "").rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise AttnvizError(f"--coordinator {self.coordinator}: give HOST:PORT, e.g. "
                               "10.0.0.1:1234 (process 0's address and a free port)")
        return host, int(port)

    def check_training(self, config, backend: str, resume: bool = False,
                       cpu_devices: int = 1) -> None:
        """What several processes can train: a built-in task of fixed samples (token tasks
        draw new sequences every epoch, in one process), on JAX, data-parallel, with a batch
        that splits evenly between them. `config` None: a user's --model (not yet)."""
        if not self.many:
            return
        from attnviz.analysis.tasks import get_task

        if cpu_devices > 1:
            # tried: 2 processes of 2 CPU devices each hung in their first step (gloo)
            raise AttnvizError(f"--cpu-devices {cpu_devices} with --num-processes: each "
                               "process trains on one CPU device (several CPU devices in "
                               "several processes hung in JAX's collectives here): drop "
                               "--cpu-devices")
        if config is None:
            raise AttnvizError("--num-processes trains the built-in tasks; a --model trains in "
                               "one process (on JAX, your FUNCTION may build it under a "
                               "keras.distribution over that process's devices)")
        if backend != "jax" or config.strategy != "data-parallel":
            if resume and config.strategy != "data-parallel":
                raise AttnvizError(f"this run trains with --strategy {config.strategy}: "
                                   "resume it without --num-processes (several processes "
                                   "train --strategy data-parallel runs)")
            raise AttnvizError(f"--num-processes {self.count} trains with --backend jax "
                               "--strategy data-parallel (keras.distribution over every "
                               "process's devices): add " + (
                                   "--backend jax" if resume else "those options"))
        if get_task(config.task).tokens:
            raise AttnvizError(f"--task {config.task} draws new sequences every epoch, in one "
                               "process: train it without --num-processes")
        if config.batch_size % self.count:
            raise AttnvizError(f"--batch-size {config.batch_size} does not split between "
                               f"{self.count} processes: " + (
                                   "give a --num-processes that divides it" if resume else
                                   f"give a multiple of {self.count}"))

    def check_devices(self, config, resume: bool = False) -> None:
        """Once joined: each process's share of a batch must split between its devices."""
        if not self.many or config is None:
            return
        import jax

        devices = jax.local_device_count()
        local = config.batch_size // self.count
        if local % devices:
            fix = (f"give a multiple of {self.count * devices}" if not resume else
                   "give each process as many devices as divide it")
            raise AttnvizError(f"--batch-size {config.batch_size} gives each of {self.count} "
                               f"processes {local} samples, which do not split between its "
                               f"{devices} devices: {fix}")

    def join(self) -> None:
        """jax.distributed.initialize, after checks that answer the common mistakes in one
        line (JAX itself aborts the process when the others never come): process 0 must be
        able to listen on the port; another process waits up to the timeout for it there."""
        if not self.many:
            return
        host, port = self.address()
        if self.writer:
            try:
                with socket.create_server(("", port)):  # as JAX binds it: every interface
                    pass
            except OSError as err:
                raise AttnvizError(f"--coordinator {self.coordinator}: process 0 cannot listen "
                                   f"there ({err.strerror or err}): give a free port of this "
                                   "machine") from None
        else:
            _wait_for(host, port, self.timeout, self.coordinator)
        _c_output_to_stderr()
        import jax

        jax.distributed.initialize(self.coordinator, self.count, self.index,
                                   initialization_timeout=self.timeout,
                                   heartbeat_timeout_seconds=self.timeout,
                                   shutdown_timeout_seconds=self.timeout)

    def scratch(self, out: Path) -> Path:
        """A follower's empty scratch directory for the run in `out`: one name per run and
        process, so what a killed follower left there goes when it starts again."""
        prefix = scratch_prefix(out, self.index)
        for old in Path(tempfile.gettempdir()).glob(f"{prefix}*"):  # a killed one's
            if old.is_dir() and not old.is_symlink() and old.stat().st_uid == os.getuid():
                shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix=prefix))

    @contextlib.contextmanager
    def leading(self):
        """Process 0's side of the start: yields `started(epoch)`, which tells the others the
        first epoch (None: nothing to train) and waits until they have copied what they
        start from; if process 0 fails before that, the others hear it and stop too."""
        told = []

        def started(epoch: int | None) -> None:
            told.append(epoch)
            self.share(NOTHING_TO_TRAIN if epoch is None else epoch)
            if epoch is not None:
                self.barrier("copied")

        try:
            yield started
        except BaseException:
            if self.many and not told:
                self.share(REFUSED)
            raise

    def say_lost(self, err: BaseException, out: Path) -> int | None:
        """When `err` says another process is gone (killed, crashed: its connection reset
        under a collective), one line saying so and the exit code 1; else None."""
        if not self.many or not any(mark in str(err) for mark in LOST):
            return None
        text = str(err)
        first = text[min(text.find(mark) for mark in LOST if mark in text):].splitlines()[0]
        print(f"attnviz: process {self.index} of {self.count} lost another process ({first}); "
              f"{out} is kept as of its last commit: start every process again with --resume",
              file=sys.stderr)
        return 1

    @contextlib.contextmanager
    def following(self, out: Path):
        """A follower's side of the start (`leading`'s partner, call for call): yields the
        first epoch and a scratch directory holding what training starts from, copied once
        process 0 planned and before it commits again; None when process 0 has nothing to
        train. The scratch directory goes at the end."""
        start = self.share(REFUSED)  # process 0's first epoch
        if start == REFUSED:
            raise AttnvizError(f"process 0 did not start training {out} (its output says "
                               "why): nothing was trained")
        if start == NOTHING_TO_TRAIN:
            yield None
            return
        scratch = self.scratch(out)
        try:
            try:
                copy_for_follower(out, scratch, start)
            except (AttnvizError, OSError) as err:
                raise AttnvizError(f"process {self.index} cannot read the run process 0 writes "
                                   f"at {out} ({err}): --out must name the same directory on "
                                   "every process (a shared filesystem)") from None
            self.barrier("copied")
            yield start, scratch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def share(self, value: int) -> int:
        """Process 0's `value`, on every process (each calls this at the same point)."""
        if not self.many:
            return value
        from jax.experimental import multihost_utils

        return int(multihost_utils.broadcast_one_to_all(np.int32(value)))

    def barrier(self, name: str) -> None:
        if self.many:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"attnviz {name}")

    def agreed(self, stop_requested):
        """A stop asked (Ctrl-C, SIGTERM) of any process, seen by all at the same epoch end:
        they stop together, or one would wait for the others' next step."""
        if not self.many:
            return stop_requested

        def any_asked() -> bool:
            from jax.experimental import multihost_utils

            asked = np.array([stop_requested()], dtype=np.int32)
            return bool(np.asarray(multihost_utils.process_allgather(asked)).any())

        return any_asked


def scratch_prefix(out: Path, index: int) -> str:
    """The name follower `index` of the run in `out` gives its scratch directory, before a
    random tail (in the system's temporary files, private to the user)."""
    digest = hashlib.sha256(str(Path(out).resolve()).encode()).hexdigest()[:12]
    return f"attnviz-{digest}-process-{index}-"


def forget_records(scratch: Path) -> None:
    """A follower's recorded maps, once committed: nobody reads them (process 0 writes the
    run's), so the scratch directory holds at most one epoch's and the checkpoints kept."""
    for path in scratch.glob("*/**/*.npy"):
        path.unlink(missing_ok=True)


def _c_output_to_stderr() -> None:
    """What C++ prints to standard output (gloo's "[Gloo] Rank 0 is connected to 1 peer
    ranks" as processes connect) goes to standard error, so that `--json` stays one JSON
    document on standard output: Python's sys.stdout keeps the original stream."""
    sys.stdout.flush()
    original = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(original, "w", buffering=1, encoding=sys.stdout.encoding,
                           errors=sys.stdout.errors)


def _wait_for(host: str, port: int, timeout: int, coordinator: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AttnvizError(
                    f"--coordinator {coordinator}: no process 0 answered in {timeout} s: start "
                    "process 0 (--process-id 0) there with the same --coordinator, or give a "
                    "longer --process-timeout") from None
            time.sleep(0.5)


def local_rows(order: np.ndarray, batch_size: int, count: int, index: int,
               devices: int = 1) -> np.ndarray:
    """Process `index`'s rows of the samples in `order`, in the order it feeds them: of every
    global batch of `batch_size` rows, its slice, so the processes' batches make the batch
    one process trains on. A last partial batch is split the same way when it divides among
    the processes' `devices` each, and left out otherwise."""
    local = batch_size // count
    whole = len(order) // batch_size * batch_size
    rows = order[:whole].reshape(-1, count, local)[:, index].reshape(-1)
    rest = len(order) - whole
    if rest and rest % (count * devices) == 0:
        part = rest // count
        rows = np.concatenate([rows, order[whole + index * part:whole + (index + 1) * part]])
    return rows


def steps_per_epoch(samples: int, batch_size: int) -> int:
    """Global batches an epoch trains: all of them in one process; in several, the last
    partial one only when local_rows splits it."""
    if process_count() == 1:
        return -(-samples // batch_size)
    import jax

    rest = samples % batch_size
    split = bool(rest) and rest % (jax.process_count() * jax.local_device_count()) == 0
    return samples // batch_size + split


def training_data(x: np.ndarray, y: np.ndarray, batch_size: int,
                  validation: tuple[np.ndarray, np.ndarray]) -> tuple[dict, tuple]:
    """fit's arguments for the training data, and the validation data, of this process. One
    process: the arrays, shuffled by Keras. Several: each epoch, the permutation Keras would
    draw for one process (numpy's global generator, seeded alike on every process), each
    process feeding its slice of every batch in that order, so the global batches, and the
    training, are the same as one process's; validation is split the same way, unshuffled."""
    if process_count() == 1:
        return {"x": x, "y": y, "batch_size": batch_size, "shuffle": True}, validation
    import jax

    count, index = jax.process_count(), jax.process_index()
    devices = jax.local_device_count()  # that they divide a batch: check_devices
    x_val, y_val = validation
    val_rows = local_rows(np.arange(len(x_val)), batch_size, count, index, devices)
    batches = _local_batches(x, y, batch_size, count, index, devices)
    validation = (x_val[val_rows], y_val[val_rows]) if len(val_rows) else None  # too few
    return ({"x": batches, "shuffle": False, "validation_batch_size": batch_size // count},
            validation)


def process_count() -> int:
    """How many processes jax.distributed joined: 1 when it did not (then JAX's devices are
    not started by asking, so --cpu-devices can still split them)."""
    if "jax" not in sys.modules:
        return 1
    import jax

    return jax.process_count() if jax.distributed.is_initialized() else 1


def _local_batches(x, y, batch_size: int, count: int, index: int, devices: int):
    import keras

    class LocalBatches(keras.utils.PyDataset):
        """This process's slice of every global batch, in a new order each epoch."""

        def __init__(self):
            super().__init__()
            self.rows = local_rows(np.arange(len(x)), batch_size, count, index, devices)
            self.local = batch_size // count

        def __len__(self) -> int:
            return -(-len(self.rows) // self.local)

        def on_epoch_begin(self) -> None:
            # what Keras' array adapter draws for one process's shuffled epoch
            self.rows = local_rows(np.random.permutation(len(x)), batch_size, count, index,
                                   devices)

        def __getitem__(self, k: int):
            rows = self.rows[k * self.local:(k + 1) * self.local]
            return x[rows], y[rows]

    return LocalBatches()


def copy_for_follower(out: Path, scratch: Path, start: int) -> None:
    """What a follower's scratch run starts from: the run's header, state, probe and the
    checkpoint it resumes from (verified as it is read), copied once the writer planned."""
    run = Run.open(out)
    for name in (CONFIG, STATE, PROBE, HELDOUT):
        if (out / name).is_file():
            shutil.copy2(out / name, scratch / name)
    for folder in ({layer["folder"] for layer in run.layers} | {"checkpoints", "attribution"}):
        (scratch / folder).mkdir(parents=True, exist_ok=True)
    if start:
        checkpoint = run.checkpoint_path(start)
        target = scratch / checkpoint.relative_to(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(checkpoint, target)
