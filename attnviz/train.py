"""Build, fit, checkpoint and resume a run: the one core behind `attnviz train`."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnviz.config import TrainConfig
from attnviz.errors import AttnvizError
from attnviz.run import CONFIG, STATE, Run, read_config
from attnviz.tasks import TaskBatch, get_task

# Independent random streams of one seed, so adding a stream never shifts another.
TRAIN_STREAM, VAL_STREAM, PROBE_STREAM, HELDOUT_STREAM = 0, 1, 2, 3


@dataclass(frozen=True)
class TrainPlan:
    """What `train` is about to do, for the CLI to show before the first epoch."""

    run: Run
    start_epoch: int  # epochs already trained (0 for a new run)
    rolled_back_from: int | None  # epochs recorded before resume rolled back to a checkpoint
    steps_per_epoch: int
    bytes_per_record: int  # size of one epoch's recorded attention (and attribution)
    projected_bytes: int  # attention + attribution for the whole run, plus checkpoints


@dataclass(frozen=True)
class TrainResult:
    run: Run
    epochs_done: int
    interrupted: bool  # stopped early by Ctrl-C after committing the current epoch


def task_data(config: TrainConfig, stream: int, n: int) -> TaskBatch:
    """The samples of one stream: training, validation, probe or held-out."""
    task = get_task(config.task)
    rng = np.random.default_rng([config.seed, stream])
    if stream == PROBE_STREAM:
        return task.probe(n, config.seq_len, rng)
    return task.generate(n, config.seq_len, rng)


def task_info(config: TrainConfig) -> dict:
    task = get_task(config.task)
    return {
        "name": task.name,
        "description": task.description,
        "mask_names": list(task.mask_names),
        "main_mask": task.main_mask,
        "erase_value": task.erase_value(config.seq_len),
        "probe_positions": list(task.probe_positions_for(config.seq_len)),
        "baselines": [
            {"name": b.name, "mse": b.mse, "description": b.description}
            for b in task.baselines(config.seq_len)
        ],
    }


def attention_info(config: TrainConfig) -> dict:
    n, seq_len = config.probe_size, config.seq_len
    if config.attention == "self":
        heads = config.heads if config.record_heads == "all" else 1
        return {"kind": "self", "shape": [n, heads, seq_len, seq_len], "dtype": "float16",
                "heads": config.heads, "record_heads": config.record_heads}
    return {"kind": "temporal", "shape": [n, seq_len], "dtype": "float32", "heads": None,
            "record_heads": "all"}


def bytes_per_record(config: TrainConfig) -> int:
    info = attention_info(config)
    size = int(np.prod(info["shape"])) * np.dtype(info["dtype"]).itemsize
    if config.attribution:
        size += config.probe_size * config.seq_len * 4
    return size


def plan(
    config: TrainConfig | None, out: Path, *, resume: bool = False, force: bool = False,
    epochs: int | None = None,
) -> TrainPlan:
    """Create the run (or open it to resume) and say what training will do; no TensorFlow."""
    out = Path(out)
    rolled_back_from = None
    if resume:
        if force:
            raise AttnvizError("--resume and --force contradict each other: pick one")
        if not (out / STATE).exists() and (out / CONFIG).is_file():
            # killed before its first commit: nothing was trained, start again from its config
            return plan(_with_epochs(read_config(out), epochs), out, force=True)
        if not (out / STATE).exists():
            raise AttnvizError(
                f"nothing to resume at {out}: no committed run there; drop --resume to start one"
            )
        run = Run.open(out)
        start = run.checkpoints[-1] if run.checkpoints else 0
        if start:
            run.checkpoint_path(start)  # refuse a torn checkpoint before anything is written
        run.probe  # noqa: B018 (checks probe.npz, which training reads)
        if epochs is not None and epochs != run.config.epochs:
            if epochs < run.epochs_done:
                raise AttnvizError(
                    f"--epochs {epochs} is fewer than the {run.epochs_done} already trained"
                )
            run.extend(epochs)
        if run.epochs_done > start:
            rolled_back_from = run.epochs_done
            run.rollback_to(start)
        run.remove_stale_files()
    else:
        if config is None:
            raise AttnvizError("no configuration given")
        config = config.validate().effective()
        probe = task_data(config, PROBE_STREAM, config.probe_size)
        run = Run.create(out, config, task_info(config), attention_info(config), probe, force=force)
        start = 0
    config = run.config
    per_record = bytes_per_record(config)
    epochs = config.epochs
    records = len({*range(0, epochs + 1, config.record_every), epochs})  # 0, every K, last
    checkpoints = len({*range(config.checkpoint_every, epochs + 1, config.checkpoint_every),
                       epochs})
    return TrainPlan(
        run=run,
        start_epoch=start,
        rolled_back_from=rolled_back_from,
        steps_per_epoch=-(-config.samples // config.batch_size),
        bytes_per_record=per_record,
        projected_bytes=records * per_record + checkpoints * _checkpoint_bytes(config),
    )


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """Hold an advisory lock on the run directory (created if absent) while training, so
    two `attnviz train` processes never write one run."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        yield  # not a run directory: plan() says so
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = os.open(out, os.O_RDONLY)
    except OSError as err:
        raise AttnvizError(f"cannot create --out {out}: {err.strerror}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AttnvizError(
                f"{out} is being written by another `attnviz train` right now: wait for it to "
                "finish, or choose another --out"
            ) from None
        yield
    finally:
        os.close(handle)


def _with_epochs(config: TrainConfig, epochs: int | None) -> TrainConfig:
    return config if epochs is None else config.replace(epochs=epochs)


def _checkpoint_bytes(config: TrainConfig) -> int:
    """Rough .keras size: float32 weights plus two Adam slots."""
    units = config.units
    recurrent = {"lstm": 4, "gru": 3, "bilstm": 4, "dense": 0}[config.encoder]
    params = recurrent * units * (units + 2) + units * (config.seq_len + 2)
    params += 2 * units * max(units, config.attention_units) + config.attention_units
    return params * 4 * 3


def fit(
    plan: TrainPlan,
    *,
    on_epoch: Callable[[dict], None] | None = None,
    on_batch: Callable[[int, dict], None] | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
    tensorboard: Path | None = None,
) -> TrainResult:
    """Train `plan.run` from `plan.start_epoch` to its configured epochs, committing each.

    With `tensorboard`, Keras' scalars and attnviz's attention images and metrics go there.
    """
    import keras

    from attnviz.models import attention_model, build_model, compile_model
    from attnviz.record import EpochRecorder

    run, config = plan.run, plan.run.config
    if plan.start_epoch >= config.epochs:
        return TrainResult(run, run.epochs_done, interrupted=False)
    _deterministic(config.seed + plan.start_epoch)
    train = task_data(config, TRAIN_STREAM, config.samples)
    val = task_data(config, VAL_STREAM, config.val_samples)
    with _strategy_scope(config.strategy):
        if plan.start_epoch > 0:
            model = keras.models.load_model(run.checkpoint_path(plan.start_epoch), safe_mode=True)
            compile_model(model, config, optimizer=model.optimizer)
        else:
            model = compile_model(build_model(config), config)
        probe_model = attention_model(model)
    attribute = None
    if config.attribution:
        from attnviz.explain import gradient_x_input

        def attribute(x):
            return gradient_x_input(model, x)

    recorder = EpochRecorder(run, probe_model, attribute, on_epoch, on_batch, stop_requested)
    recorder.set_model(model)
    if 0 not in run.attention_epochs:
        recorder.record(0, force=True)
        run.commit()
    callbacks = [recorder]
    if tensorboard is not None:
        from attnviz.tensorboard import AttentionBoard

        callbacks += [AttentionBoard(tensorboard, recorder),
                      keras.callbacks.TensorBoard(str(tensorboard), write_graph=False)]
    model.fit(
        train.x, train.y,
        validation_data=(val.x, val.y),
        epochs=config.epochs,
        initial_epoch=plan.start_epoch,
        batch_size=config.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )
    return TrainResult(run, run.epochs_done, interrupted=run.epochs_done < config.epochs)


def _deterministic(seed: int) -> None:
    """Seed Python, numpy and TensorFlow. TF's op determinism is left off (Keras turns XLA off
    under it, so `--jit` would be ignored): the CPU kernels these models use are
    deterministic on their own, with and without XLA (the determinism test trains twice
    and compares the recorded attention bit for bit)."""
    import keras

    keras.utils.set_random_seed(seed)


def strategy_devices(name: str) -> list[str]:
    """The devices a strategy trains on: under "mirrored" all local GPUs, or on a machine
    without them all logical CPUs (see --cpu-devices); else the first of those.
    (multi-worker is refused by TrainConfig.validate.)"""
    import tensorflow as tf

    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    names = [device.name for device in devices]
    return names if name == "mirrored" else names[:1]


def _strategy_scope(name: str):
    if name == "default":
        return contextlib.nullcontext()
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(strategy_devices(name)).scope()


def split_cpu(devices: int) -> None:
    """Expose the CPU as `devices` logical devices (before TensorFlow initialises), so
    `--strategy mirrored` can be tried, and tested, on a machine without GPUs."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(devices)]
        )
    except RuntimeError:
        raise AttnvizError(
            "--cpu-devices must be set before TensorFlow starts: run it in a new process"
        ) from None


@contextlib.contextmanager
def graceful_interrupt(on_first: Callable[[], None] | None = None) -> Iterator[Callable[[], bool]]:
    """First Ctrl-C asks training to stop after the current epoch is committed; a second
    one aborts at once (the run stays as of its last commit). Yields `stop_requested()`."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return

    def handler(signum, frame):
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        if on_first is not None:
            on_first()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, previous)
