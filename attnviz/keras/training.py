"""Build, fit, checkpoint and resume a run: the one core behind `attnviz train`."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from attnviz.analysis.tasks import (
    PROBE_STREAM,
    TRAIN_STREAM,
    VAL_STREAM,
    attention_layer_names,
    checked,
    get_task,
    task_data,
)
from attnviz.errors import AttnvizError
from attnviz.keras.processes import process_count, steps_per_epoch
from attnviz.store.config import TrainConfig
from attnviz.store.layers import stored_bytes, stored_layer
from attnviz.store.run import CONFIG, STATE, Run, RunSpec, RunWriter, check_new_run_dir
from attnviz.store.schema import read_config


@dataclass(frozen=True)
class UserModel:
    """`train --model FILE.py:FUNCTION --data DATA.npz`: the user's compiled model and data."""

    function: str  # FILE.py:FUNCTION or module:FUNCTION
    data: Path
    imports: tuple[str, ...] = ()  # more code the model needs (its file is imported anyway)
    epochs: int = 20
    batch_size: int = 64
    record_every: int = 1
    checkpoint_every: int = 5
    record_heads: str = "all"
    record_steps: int = 0


@dataclass(frozen=True)
class TrainPlan:
    """What `train` is about to do, for the CLI to show before the first epoch."""

    run: Run
    start_epoch: int  # epochs already trained (0 for a new run)
    rolled_back_from: int | None  # epochs recorded before resume rolled back to a checkpoint
    steps_per_epoch: int
    bytes_per_record: int  # size of one epoch's recorded attention (and attribution)
    projected_bytes: int  # attention + attribution for the whole run, plus checkpoints
    prepared: object = None  # a user's model and data, built while planning (UserRunParts)


# TrainConfig fields that configure a built-in task's model and data, with their option:
# with --model the user's FUNCTION builds and compiles the model, so none of them applies
TASK_ONLY = {"task": "--task", "encoder": "--encoder", "attention": "--attention",
             "seq_len": "--seq-len", "units": "--units", "heads": "--heads",
             "samples": "--samples", "val_samples": "--val-samples",
             "probe_size": "--probe-size", "learning_rate": "--learning-rate", "seed": "--seed",
             "attribution": "--attribution", "strategy": "--strategy", "jit_compile": "--jit"}


def user_model(function: str, data: Path, imports: tuple[str, ...],
               given: TrainConfig) -> UserModel:
    """`train --model FUNCTION --data DATA` as the options give it, refused in one line when an
    option of the built-in tasks was set too or a file is missing (no TensorFlow yet)."""
    from attnviz.keras.usermodel import split_spec

    defaults = TrainConfig()
    for field, flag in TASK_ONLY.items():
        if getattr(given, field) != getattr(defaults, field):
            raise AttnvizError(f"{flag} configures the built-in tasks; with --model your "
                               "FUNCTION builds and compiles the model: drop it")
    split_spec(function)  # a malformed FILE.py:FUNCTION, before anything else
    if not Path(data).is_file():
        raise AttnvizError(f"--data {data}: no such file")
    if given.epochs < 1 or given.batch_size < 1:
        raise AttnvizError("--epochs and --batch-size must be at least 1")
    return UserModel(function=function, data=Path(data), imports=imports, epochs=given.epochs,
                     batch_size=given.batch_size, record_every=given.record_every,
                     checkpoint_every=given.checkpoint_every, record_heads=given.record_heads,
                     record_steps=given.record_steps)


@dataclass
class UserRunParts:
    """What planning a --model run built, handed to fit so nothing is built twice."""

    model: object  # the compiled keras.Model (None on resume: the checkpoint holds it)
    data: object  # attnviz.keras.usermodel.UserData


@dataclass(frozen=True)
class TrainResult:
    run: Run
    epochs_done: int
    interrupted: bool  # stopped early by Ctrl-C after committing the current epoch


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


def run_spec(config: TrainConfig) -> RunSpec:
    """What config.json records of a built-in task's run: its attention layer "attention"
    (or, for a token task, one per attention-only block)."""
    n, seq_len = config.probe_size, config.seq_len
    if config.attention == "self":
        layers = [stored_layer(name, "MultiHeadAttention", [n, config.heads, seq_len, seq_len],
                               config.record_heads) for name in attention_layer_names(config)]
    else:
        layers = [stored_layer("attention", "TemporalAttention", [n, seq_len], "all")]
    task = task_info(config)
    return RunSpec(
        layers=layers,
        recording={"epochs": config.epochs, "record_every": config.record_every,
                   "checkpoint_every": config.checkpoint_every,
                   "record_heads": config.record_heads,
                   "every_steps": config.record_steps or None},
        main_mask=task["main_mask"], config=config, task=task,
        model={"name": f"{config.encoder}_{config.attention}", "class": "Functional",
               "source": "attnviz train"},
    )


def bytes_per_record(run: Run) -> int:
    """Bytes one recorded epoch adds: every layer's attention (and attribution)."""
    size = sum(stored_bytes(layer) for layer in run.layers)
    if run.config is not None and run.config.attribution:
        size += run.config.probe_size * run.config.seq_len * 4
    return size


def plan(
    config: TrainConfig | None, out: Path, *, resume: bool = False, force: bool = False,
    epochs: int | None = None, user: UserModel | None = None,
) -> TrainPlan:
    """Create the run (or open it to resume) and say what training will do. A built-in task
    needs no TensorFlow here; a user's model (`user`) is built and checked against its data
    before anything is written."""
    out = Path(out)
    rolled_back_from = None
    prepared = None
    if resume:
        if force:
            raise AttnvizError("--resume and --force contradict each other: pick one")
        if not (out / STATE).exists() and (out / CONFIG).is_file():
            # killed before its first commit: nothing was trained, start again from its config
            config = read_config(out)
            if config is None:
                raise AttnvizError(f"{out} was killed before its first epoch: start it again "
                                   "with --force instead of --resume")
            return plan(_with_epochs(config, epochs), out, force=True)
        if not (out / STATE).exists():
            raise AttnvizError(
                f"nothing to resume at {out}: no committed run there; drop --resume to start one"
            )
        run = RunWriter.open(out)
        if run.config is None and run.model_info.get("source") != "attnviz train --model":
            raise AttnvizError(f"{out} was recorded by a callback in your own script: resume "
                               "it by running your script again (the callback continues it)")
        start = run.checkpoints[-1] if run.checkpoints else 0
        if start:
            run.checkpoint_path(start)  # refuse a torn checkpoint before anything is written
        elif run.epochs_done and run.state.get("checkpoints_skipped"):
            raise AttnvizError(f"{out} keeps no checkpoint ({run.state['checkpoints_skipped']}):"
                               " it cannot be resumed; start again with --force")
        run.probe  # noqa: B018 (checks probe.npz, which training reads)
        if run.config is None:
            prepared = UserRunParts(None, user_data(run))
        if epochs is not None and epochs != run.epochs_planned:
            if epochs < run.epochs_done:
                raise AttnvizError(
                    f"--epochs {epochs} is fewer than the {run.epochs_done} already trained"
                )
            run.extend(epochs)
        if run.epochs_done > start:
            rolled_back_from = run.epochs_done
            run.rollback_to(start)
        elif any(record["epoch"] >= start for record in run.step_records):
            run.rollback_to(start)  # records inside the epoch a kill cut short
        run.remove_stale_files()
    elif user is not None:
        run, prepared = _create_user_run(user, out, force)
        start = 0
    else:
        if config is None:
            raise AttnvizError("no configuration given")
        config = checked(config).effective()
        probe = task_data(config, PROBE_STREAM, config.probe_size)
        run = RunWriter.create(out, run_spec(config), probe, force=force)
        start = 0
    per_record = bytes_per_record(run)
    epochs = run.epochs_planned
    recording = run.recording
    steps = steps_per_epoch(_samples(run, prepared), _batch_size(run))
    records = len({*range(0, epochs + 1, recording["record_every"]), epochs})  # 0, K, last
    records += step_records(epochs, steps, recording["every_steps"])
    every = recording["checkpoint_every"]
    checkpoints = 0 if not every or run.state.get("checkpoints_skipped") else len(
        {*range(every, epochs + 1, every), epochs})
    return TrainPlan(
        run=run,
        start_epoch=start,
        rolled_back_from=rolled_back_from,
        steps_per_epoch=steps,
        bytes_per_record=per_record,
        projected_bytes=records * per_record + checkpoints * _checkpoint_bytes(run, prepared),
        prepared=prepared,
    )


def step_records(epochs: int, steps_per_epoch: int, every_steps: int | None) -> int:
    """Records recording by steps adds inside `epochs` epochs: every multiple of
    `every_steps` that is not an epoch's end."""
    if not every_steps:
        return 0
    total = epochs * steps_per_epoch - 1  # steps 1 .. total, the last epoch's end left out
    return total // every_steps - total // math.lcm(every_steps, steps_per_epoch)


def _create_user_run(user: UserModel, out: Path, force: bool) -> tuple[Run, UserRunParts]:
    """Build the user's model, load their data, check both, then create the run."""
    from attnviz.keras.recording import open_or_create
    from attnviz.keras.usermodel import build, load_data

    data = load_data(user.data)
    model = build(user.function, user.imports)
    check_new_run_dir(out, force)  # before the save and reload open_or_create makes
    run = open_or_create(
        out, model, data.probe, y=data.y_probe, masks=data.masks,
        every=user.record_every, checkpoint_every=user.checkpoint_every,
        record_heads=user.record_heads, epochs=user.epochs, source="attnviz train --model",
        every_steps=user.record_steps or None,
        force=force, fit={"function": _absolute(user.function), "data": str(user.data.resolve()),
                          "data_sha256": data.sha256, "batch_size": user.batch_size,
                          "imports": [_absolute(spec) for spec in user.imports]})
    return run, UserRunParts(model, data)


def _absolute(spec: str) -> str:
    """A FILE.py (with or without :FUNCTION) as an absolute path, so --resume finds it."""
    where, colon, function = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if where.endswith(".py"):
        where = str(Path(where).resolve())
    return f"{where}{colon}{function}"


def user_data(run: Run):
    """The data a --model run trained on, checked to be the same file."""
    from attnviz.keras.usermodel import load_data

    fit = run.model_info["fit"]
    data = load_data(Path(fit["data"]))
    if data.sha256 != fit["data_sha256"]:
        raise AttnvizError(f"{fit['data']} changed since {run.root} started: a resumed run "
                           "trains on the same data; start again with --force")
    return data


@dataclass(frozen=True)
class TrainRequest:
    """What `attnviz train` was asked, its options checked: a new run of a built-in task
    (`config`) or of the user's model (`user`), or --resume of the run in `out`."""

    out: Path
    config: TrainConfig | None = None
    user: UserModel | None = None
    resume: bool = False
    force: bool = False
    epochs: int | None = None  # --epochs given with --resume: the new total
    cpu_devices: int = 1  # logical CPU devices (--cpu-devices, for --strategy mirrored)
    tensorboard: Path | None = None


def plan_request(request: TrainRequest) -> TrainPlan:
    """`plan` of what the command was asked (the caller holds the run's lock)."""
    return plan(request.config, request.out, resume=request.resume, force=request.force,
                epochs=request.epochs, user=request.user)


def check_resume_backend(out: Path) -> None:
    """`train --resume` of a run whose strategy needs the other backend: refused in one line
    before planning touches the run (which extends and may roll back its state)."""
    import attnviz.keras.backend as backend

    config = read_config(out) if (out / CONFIG).is_file() else None  # None: a user's model
    if config is not None:
        config.check_backend(backend.requested(), resume=True)


def resumed_config(out: Path) -> TrainConfig | None:
    """The config of the run in `out` that --resume continues (None: a user's model)."""
    if not (out / CONFIG).is_file():
        raise AttnvizError(f"nothing to resume at {out}: no run there; drop --resume to start "
                           "one")
    return read_config(out)


def devices_for(request: TrainRequest, run: Run) -> tuple[str, list[str]]:
    """The run's strategy and the devices it trains on ("/CPU:0", ...), the CPU split first
    into --cpu-devices logical devices (before the backend initialises them); a resumed run's
    strategy of the other backend refused."""
    import attnviz.keras.backend as backend

    if request.cpu_devices > 1:
        split_cpu(request.cpu_devices)
    strategy = run.config.strategy if run.config is not None else "default"
    if run.config is not None:
        run.config.check_backend(backend.name())
    return strategy, ["/" + name for name in strategy_devices(strategy)]


def is_user_run(out: Path) -> bool:
    """Whether `out` holds a run of a user's model (its header names no built-in task)."""
    try:
        return read_config(out) is None
    except AttnvizError:
        return False


def describe(plan: TrainPlan) -> str:
    """One line: what trains, on what."""
    run = plan.run
    if run.config is not None:
        config = run.config
        return (f"{config.task} · {config.encoder} + {config.attention} · L={config.seq_len} · "
                f"{config.samples} samples")
    model = run.model_info
    layers = ", ".join(run.layer_names)
    return (f"{model['fit']['function']} ({model['class']}, {model.get('parameters') or '?'} "
            f"parameters) · {_samples(run, plan.prepared)} samples · recording {layers}")


def _samples(run: Run, prepared: UserRunParts | None) -> int:
    if run.config is not None:
        return run.config.samples
    x = prepared.data.x
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def _batch_size(run: Run) -> int:
    return run.config.batch_size if run.config is not None else run.model_info["fit"][
        "batch_size"]


def _with_epochs(config: TrainConfig, epochs: int | None) -> TrainConfig:
    return config if epochs is None else config.replace(epochs=epochs)


def _checkpoint_bytes(run: Run, prepared: UserRunParts | None) -> int:
    """Rough .keras size: float32 weights plus two Adam slots."""
    if run.config is None:
        parameters = run.model_info.get("parameters") or 0
        return parameters * 4 * 3
    config = run.config
    units = config.units
    if config.encoder == "embedding":  # embeddings, 4 projections a block, unembedding
        params = (2 * config.vocab + config.seq_len) * units + config.layers * 4 * units * units
        return params * 4 * 3
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
    """Train `plan.run` from `plan.start_epoch` to its planned epochs, committing each.

    With `tensorboard`, Keras' scalars and attnviz's attention images and metrics go there.
    """
    run = plan.run
    if plan.start_epoch >= run.epochs_planned:
        return TrainResult(run, run.epochs_done, interrupted=False)
    with _distribution(run.config.strategy if run.config is not None else "default"):
        return _fit(plan, on_epoch, on_batch, stop_requested, tensorboard)


def follow(request: TrainRequest, processes, stop_requested: Callable[[], bool]
           ) -> TrainResult | None:
    """A follower's training (attnviz.keras.processes): the epochs process 0 planned, into a
    scratch copy of what they start from; the run's directory is only read. None: process 0
    had nothing to train."""
    from attnviz.keras.processes import forget_records
    from attnviz.store.lock import exclusive

    with processes.following(request.out) as started:
        if started is None:
            return None
        start, scratch = started
        with exclusive(scratch):
            plan = plan_request(TrainRequest(out=scratch, resume=True))
            if plan.start_epoch != start:
                raise RuntimeError(f"process {processes.index} planned epoch "
                                   f"{plan.start_epoch}, process 0 epoch {start}")
            return fit(plan, stop_requested=stop_requested,
                       on_epoch=lambda entry: forget_records(scratch))


def _fit(plan, on_epoch, on_batch, stop_requested, tensorboard) -> TrainResult:
    import keras

    from attnviz.keras.loading import model_failures
    from attnviz.keras.recording import Recorder

    run = plan.run
    if run.config is not None:
        model, train, validation = _task_parts(plan)
    else:
        model, train, validation = _user_parts(plan)
    attribute = None
    if run.config is not None and run.config.attribution:
        from attnviz.keras.attribution import gradient_x_input

        def attribute(x):
            return gradient_x_input(model, x)

    if on_batch is None and run.config is not None and run.config.strategy == "data-parallel":
        # Keras waits for each call's logs only when a batch hook is set; without that wait,
        # JAX's CPU devices queued steps until their all-reduce deadlocked (XLA's rendezvous
        # timeout aborted 5 of 11 quiet runs on 2 cores; none of 13 with the hook)
        def on_batch(batch, logs):
            pass

    recorder = Recorder(run, attribute, on_epoch, on_batch, stop_requested)
    callbacks = [recorder]
    board = None
    if tensorboard is not None:
        from attnviz.keras.tensorboard import AttentionBoard

        board = AttentionBoard(tensorboard, recorder.main_layer, recorder.masks, run.main_mask)
        recorder.on_record = board.write
        callbacks.append(keras.callbacks.TensorBoard(str(tensorboard), write_graph=False))
    try:
        recorder.set_model(model)
        if 0 not in run.attention_epochs:
            recorder.record(0, force=True)
            run.commit()
        # a user's model failing in its own fit (a loss against targets of another shape)
        # is theirs to fix: one line; attnviz's own slips still surface as bugs
        failing = model_failures("--model: your model's fit failed") if run.config is None \
            else contextlib.nullcontext()
        with failing:
            model.fit(
                **{key: value for key, value in train.items() if key != "callbacks"},
                validation_data=validation,
                epochs=run.epochs_planned,
                initial_epoch=plan.start_epoch,
                verbose=0,
                callbacks=[*train.get("callbacks", []), *callbacks],
            )
    finally:
        if board is not None:
            board.close()
    return TrainResult(run, run.epochs_done, interrupted=run.epochs_done < run.epochs_planned)


def _task_parts(plan: TrainPlan):
    """A built-in task's model (new or from the checkpoint), data and batch size."""
    import keras

    from attnviz.keras.models import build_model, compile_model

    run, config = plan.run, plan.run.config
    _deterministic(config.seed + plan.start_epoch)
    if get_task(config.task).tokens:  # new sequences every epoch
        from attnviz.keras.batches import FreshBatches

        fresh = FreshBatches(config)
        train = {"x": fresh.dataset, "shuffle": False, "callbacks": [fresh]}
        val = task_data(config, VAL_STREAM, config.val_samples)
        validation = (val.x, val.y)
    else:
        from attnviz.keras.processes import training_data

        batch = task_data(config, TRAIN_STREAM, config.samples)
        val = task_data(config, VAL_STREAM, config.val_samples)
        # several JAX processes feed their shares of each batch (attnviz.keras.processes)
        train, validation = training_data(batch.x, batch.y, config.batch_size, (val.x, val.y))
    with _strategy_scope(config.strategy):
        if plan.start_epoch > 0:
            model = keras.models.load_model(run.checkpoint_path(plan.start_epoch), safe_mode=True)
            compile_model(model, config, optimizer=model.optimizer)
        else:
            model = compile_model(build_model(config), config)
    return model, train, validation


def _user_parts(plan: TrainPlan):
    """A user's model (as built, or from the checkpoint with its optimizer), data, batch."""
    import keras

    from attnviz.keras.loading import import_code, run_code

    run, prepared = plan.run, plan.prepared
    fit = run.model_info["fit"]
    model = prepared.model
    if plan.start_epoch > 0:
        custom = import_code(run_code(run))
        model = keras.saving.load_model(run.checkpoint_path(plan.start_epoch),
                                        custom_objects=custom, safe_mode=True)
    data = prepared.data
    validation = None if data.x_val is None else (data.x_val, data.y_val)
    train = {"x": data.x, "y": data.y, "batch_size": fit["batch_size"], "shuffle": True}
    return model, train, validation


def _deterministic(seed: int) -> None:
    """Seed Python, numpy and TensorFlow. TF's op determinism is left off (Keras turns XLA off
    under it, so `--jit` would be ignored): the CPU kernels these models use are
    deterministic on their own, with and without XLA (the determinism test trains twice
    and compares the recorded attention bit for bit). On JAX, Keras seeds TensorFlow too
    when it is installed, importing it: its start-up lines are muted."""
    import keras

    import attnviz.keras.backend as backend

    with backend.quiet_stderr():
        keras.utils.set_random_seed(seed)


def strategy_devices(name: str) -> list[str]:
    """The devices a strategy trains on: under "mirrored" (TensorFlow) or "data-parallel"
    (JAX) all local GPUs, or on a machine without them all logical CPUs (see --cpu-devices);
    else the first of those. (multi-worker is refused by TrainConfig.validate.)"""
    import attnviz.keras.backend as backend

    if backend.name() == "jax":
        import jax

        devices = jax.devices()
        names = [f"{device.platform.upper()}:{device.id}" for device in devices]
        if jax.process_count() > 1:  # several processes: numbered within each
            names = [f"process{device.process_index}/{device.platform.upper()}:" +
                     str([d for d in devices if d.process_index == device.process_index]
                         .index(device)) for device in devices]
    else:
        names = [device.name.split("device:")[-1] for device in _tf_devices()]
    return names if name in ("mirrored", "data-parallel") else names[:1]


def _strategy_scope(name: str):
    """Where a model is built: under tf.distribute's mirrored strategy, its scope."""
    if name != "mirrored":
        return contextlib.nullcontext()
    import tensorflow as tf

    return tf.distribute.MirroredStrategy([device.name for device in _tf_devices()]).scope()


def _tf_devices() -> list:
    """TensorFlow's logical GPUs, or its logical CPUs on a machine without them."""
    import tensorflow as tf

    return tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")


def _distribution(name: str):
    """Where a model is built and fit: under "data-parallel", keras.distribution's DataParallel
    over every JAX device (each batch split between them, the weights replicated)."""
    if name != "data-parallel":
        return contextlib.nullcontext()
    import keras

    distribution = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
    if process_count() > 1:  # each process feeds its own rows (processes.training_data)
        distribution.auto_shard_dataset = False
    return distribution.scope()


def split_cpu(devices: int) -> None:
    """Expose the CPU as `devices` logical devices (before the backend initialises them), so
    `--strategy mirrored` or `data-parallel` can be tried, and tested, without GPUs."""
    import attnviz.keras.backend as backend

    if backend.name() == "jax":
        flag = backend.host_devices(devices)
        import jax

        if len(jax.local_devices(backend="cpu")) != devices:
            raise AttnvizError("--cpu-devices must be set before JAX starts: run it in a new "
                               f"process, or set XLA_FLAGS={flag}")
        return
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
def graceful_interrupt(on_first: Callable[[], None] | None = None,
                       on_second: Callable[[], None] | None = None, *,
                       terminate: bool = False) -> Iterator[Callable[[], bool]]:
    """First Ctrl-C asks training to stop after the current epoch is committed; a second
    one aborts at once: `on_second` says so and the process exits 130 right there, as a
    kill would end it (the run stays as of its last commit, and --resume continues it).
    Raising KeyboardInterrupt instead can land inside TensorFlow, which once turned it into
    a ValueError and a traceback (CI, TF 2.21). With `terminate`, SIGTERM does the same
    (exit 143): under jax.distributed, JAX's preemption notifier catches SIGTERM and the
    process went on training to the end. Yields `stop_requested()`."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return

    def handler(signum, frame):
        if requested.is_set():
            if on_second is not None:
                on_second()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(128 + signum)
        requested.set()
        if on_first is not None:
            on_first()

    signals = (signal.SIGINT, signal.SIGTERM) if terminate else (signal.SIGINT,)
    previous = {number: signal.signal(number, handler) for number in signals}
    try:
        yield requested.is_set
    finally:
        for number, handler_before in previous.items():
            # None: a handler set outside Python (JAX's, in C++), which cannot be put back
            signal.signal(number, signal.SIG_DFL if handler_before is None else handler_before)
