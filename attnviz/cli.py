"""The attnviz command line: parse options, call the core, print with one rich Console.

TensorFlow is imported inside the commands that need it, never at module level, so that
`attnviz --help`, `score` and `animate` start at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from functools import wraps
from pathlib import Path
from typing import Annotated, Optional

import typer

from attnviz import __version__
from attnviz.analysis.tasks import TOKEN_DEFAULTS
from attnviz.errors import BUG, AttnvizError, raised_by_attnviz
from attnviz.keras.backend import quiet_import
from attnviz.store.config import TrainConfig
from attnviz.store.files import check_output_file
from attnviz.views.terminal import closed_pipe, console, fail
from attnviz.views.usage import UsageErrorsInOneLine, click_errors

_DEFAULTS = TrainConfig()
_TOKENS = dict(TOKEN_DEFAULTS)  # what the token tasks train with unless told
RESUME_MORE = 10  # the epochs `train --resume` on a finished run suggests adding

app = typer.Typer(
    name="attnviz",
    cls=UsageErrorsInOneLine,
    help="See, score and explain the attention of TensorFlow/Keras sequence models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def handle_errors(command):
    """Turn AttnvizError, and OSError (a full disk, a read-only directory), into one line on
    stderr and exit code 2. Any other exception ends with its traceback and exit code 1,
    and one line more: a slip of attnviz's own code is a bug to report; one raised
    elsewhere (Keras, TensorFlow, a user's model) is named as such."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except AttnvizError as err:
            raise fail(str(err)) from None
        except BrokenPipeError:
            closed_pipe()  # the reader went away (`| head`): no message
        except OSError as err:
            where = f"{err.filename}: " if err.filename else ""
            raise fail(f"{where}{err.strerror or err}") from None
        except (typer.Exit, typer.Abort, click_errors.ClickException):
            raise
        except Exception as err:
            traceback.print_exc()
            line = BUG if raised_by_attnviz(err) else (
                f"{type(err).__name__} above was raised by Keras, TensorFlow or your model's "
                "code while attnviz ran it; if it looks like attnviz's doing, please report it")
            console(stderr=True).print(f"attnviz {__version__}: {line}", markup=False,
                                       soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        print(f"attnviz {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """See, score and explain the attention of TensorFlow/Keras sequence models."""


# ---- commands (each one: options, one call into the core, output) ---------------------------


# Options that several commands share, declared once.
HeadOption = Annotated[Optional[str], typer.Option(  # noqa: UP045 (typer needs Optional)
    help="Self-attention: a head index or 'mean' (default: mean).", show_default=False)]
QueryOption = Annotated[Optional[str], typer.Option(  # noqa: UP045
    help="Self-attention: a query index, 'last' or 'mean' (default: last).", show_default=False)]
RunArgument = Annotated[Path, typer.Argument(help="The run directory.", show_default=False)]
EveryOption = Annotated[int, typer.Option(help="Keep every K-th recorded epoch (and the last).")]
SamplesOption = Annotated[Optional[int], typer.Option(  # noqa: UP045
    help="Show the first N probe samples (default: all).", show_default=False)]
CmapOption = Annotated[str, typer.Option(help="A matplotlib colour map.")]
TokensOption = Annotated[Optional[Path], typer.Option(  # noqa: UP045 (typer needs Optional)
    "--tokens", metavar="FILE.json", help="Label positions with tokens: one list of strings per "
    "sample, or {\"vocabulary\": [...]} naming the token ids (docs/inspect.md).",
    show_default=False)]


def _size(nbytes: float) -> str:
    for unit in ("B", "KB", "MB"):
        if nbytes < 1024:
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} GB"


@app.command()
@handle_errors
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")] = Path(
        "runs/latest"
    ),
    task: Annotated[str, typer.Option(help="add-before-delimiter | add-after-delimiters | "
                                      "find-max | mean-before-delimiter; token tasks: repeat | "
                                      "induction (docs/heads.md).")] = _DEFAULTS.task,
    encoder: Annotated[Optional[str], typer.Option(  # noqa: UP045 (typer needs Optional)
        help=f"lstm | gru | bilstm | dense (position-wise) | embedding (token tasks). Default: "
        f"{_DEFAULTS.encoder}; token tasks: {_TOKENS['encoder']}.", show_default=False)] = None,
    attention: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help=f"luong | bahdanau | self (multi-head). Default: {_DEFAULTS.attention}; token "
        f"tasks: {_TOKENS['attention']}.", show_default=False)] = None,
    seq_len: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help=f"Sequence length L. Default: {_DEFAULTS.seq_len}; token tasks: "
        f"{_TOKENS['seq_len']}.",
        show_default=False)] = None,
    units: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help=f"Encoder width. Default: {_DEFAULTS.units}; token tasks: {_TOKENS['units']}.",
        show_default=False)] = None,
    heads: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help=f"Heads of self-attention. Default: {_DEFAULTS.heads}; token tasks: "
        f"{_TOKENS['heads']}.",
        show_default=False)] = None,
    layers: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help=f"Token tasks: attention-only layers. Default: {_TOKENS['layers']}.",
        show_default=False)] = None,
    vocab: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help=f"Token tasks: the vocabulary size. Default: {_TOKENS['vocab']}.",
        show_default=False)] = None,
    samples: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help=f"Training samples. Default: {_DEFAULTS.samples}; token tasks: "
        f"{_TOKENS['samples']} (100 steps an epoch).", show_default=False)] = None,
    val_samples: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help=f"Validation samples. Default: {_DEFAULTS.val_samples}; token tasks: "
        f"{_TOKENS['val_samples']}.", show_default=False)] = None,
    probe_size: Annotated[int, typer.Option(help="Samples in the recorded probe batch.")]
    = _DEFAULTS.probe_size,
    epochs: Annotated[Optional[int], typer.Option(  # noqa: UP045 (typer needs Optional)
        help=f"Epochs in total (default {_DEFAULTS.epochs}; with --resume: the run's).")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = _DEFAULTS.batch_size,
    learning_rate: Annotated[Optional[float], typer.Option(  # noqa: UP045
        help=f"Adam learning rate. Default: {_DEFAULTS.learning_rate:g}; token tasks: "
        f"{_TOKENS['learning_rate']:g}.",
        show_default=False)] = None,
    warmup_steps: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help=f"Steps of linear learning-rate warm-up. Default: {_DEFAULTS.warmup_steps}; "
        f"token tasks: {_TOKENS['warmup_steps']}.",
        show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help=f"Seed of data, weights and shuffling. Default: {_DEFAULTS.seed}; token tasks: "
        f"{_TOKENS['seed']}.", show_default=False)] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N epochs (and last).")]
    = _DEFAULTS.checkpoint_every,
    record_every: Annotated[int, typer.Option(help="Record attention every N epochs.")]
    = _DEFAULTS.record_every,
    record_steps: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help=f"Also record every N training steps inside epochs (0: at epoch ends only); the "
        f"run's axis becomes steps. Default: {_DEFAULTS.record_steps}; token tasks: "
        f"{_TOKENS['record_steps']}.", show_default=False)] = None,
    record_heads: Annotated[str, typer.Option(help="Self-attention: record 'all' heads or "
                                              "their 'mean'.")] = _DEFAULTS.record_heads,
    attribution: Annotated[bool, typer.Option(help="Also record gradient x input per epoch.")]
    = False,
    strategy: Annotated[str, typer.Option(help="default | mirrored (TensorFlow) | "
                                          "data-parallel (JAX) | multi-worker.")]
    = _DEFAULTS.strategy,
    backend: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Keras backend: tensorflow | jax (pip install 'attnviz\\[jax]'). Default: "
        "KERAS_BACKEND, else tensorflow.", show_default=False)] = None,
    cpu_devices: Annotated[int, typer.Option(help="Split the CPU into N logical devices (try "
                                             "--strategy mirrored or data-parallel without "
                                             "GPUs).")] = 1,
    coordinator: Annotated[Optional[str], typer.Option(  # noqa: UP045
        metavar="HOST:PORT", help="With --num-processes: where process 0 listens, the same "
        "on every process (docs/train.md).", show_default=False)] = None,
    num_processes: Annotated[int, typer.Option(help="Processes (hosts) training one model "
                                               "(JAX, data-parallel); process 0 writes the "
                                               "run.")] = 1,
    process_id: Annotated[int, typer.Option(help="This process: 0 to --num-processes - 1.")
                          ] = 0,
    process_timeout: Annotated[int, typer.Option(help="Seconds a process waits for the "
                                                 "others to join, or for one that stopped.")
                               ] = 60,
    tensorboard: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="Also write TensorBoard logs (loss, attention images, metrics) here.")] = None,
    jit: Annotated[bool, typer.Option("--jit/--no-jit", help="XLA-compile the training step "
                                      "(measure it: faster on some CPUs/GPUs, slower on others).")
                   ] = _DEFAULTS.jit_compile,
    model: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--model", metavar="FILE.py:FUNCTION", help="Train your own model instead of a built-in "
        "task: FUNCTION() returns a compiled keras.Model (with --data).",
        show_default=False)] = None,
    data: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--data", metavar="DATA.npz", help="With --model: x, y, optional x_val, y_val, probe "
        "and mask_NAME arrays (see docs/your-model.md).", show_default=False)] = None,
    imports: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--import", metavar="FILE.py|MODULE", help="With --model: more code the model needs, "
        "imported first; repeatable.", show_default=False)] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last "
                                         "checkpoint.")] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing run in --out.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Train a model on a task (or your own, --model) and record its attention every epoch."""
    from attnviz.keras import backend as keras_backend
    from attnviz.keras import training as core
    from attnviz.keras.processes import Processes

    keras_backend.choose(backend)
    if cpu_devices < 1:
        raise AttnvizError(f"--cpu-devices must be at least 1, got {cpu_devices}")
    processes = Processes(coordinator, num_processes, process_id, process_timeout).check()
    if tensorboard is not None and tensorboard.exists() and not tensorboard.is_dir():
        raise AttnvizError(f"--tensorboard {tensorboard} is a file: give a directory")
    from attnviz.analysis.tasks import config_for

    given = config_for(  # what the options say, checked below for what is to train
        task, encoder=encoder, attention=attention, seq_len=seq_len, units=units,
        heads=heads, layers=layers, vocab=vocab, samples=samples, val_samples=val_samples,
        probe_size=probe_size, epochs=_DEFAULTS.epochs if epochs is None else epochs,
        batch_size=batch_size, learning_rate=learning_rate, warmup_steps=warmup_steps,
        seed=seed, checkpoint_every=checkpoint_every, record_every=record_every,
        record_steps=record_steps, record_heads=record_heads, attribution=attribution,
        strategy=strategy, jit_compile=jit,
    )
    config = user = None
    if not resume:
        if (model is None) != (data is None):
            raise AttnvizError("--model and --data go together: your model's FILE.py:FUNCTION "
                               "and a DATA.npz with x and y")
        if model is not None:
            user = core.user_model(model, data, tuple(imports or ()), given)
        elif imports:
            raise AttnvizError("--import goes with --model (the code your model needs)")
        else:
            from attnviz.analysis.tasks import checked

            config = checked(given).check_backend(keras_backend.requested())
    elif force:
        raise AttnvizError("--resume and --force contradict each other: pick one")
    elif not out.is_dir():  # before the lock, which would make the folder
        raise AttnvizError(f"nothing to resume at {out}: drop --resume to start a run there")
    trains = config
    if processes.many:
        trains = core.resumed_config(out) if resume else config
        processes.check_training(trains, keras_backend.requested(), resume, cpu_devices)
    from attnviz.store.lock import exclusive

    request = core.TrainRequest(out=out, config=config, user=user, resume=resume, force=force,
                                epochs=epochs, cpu_devices=cpu_devices, tensorboard=tensorboard)
    processes.join()
    with _ending_alone(processes, out):
        processes.check_devices(trains, resume)
        if not processes.writer:
            _train_follower(request, processes, quiet, json_output)
            return
        with processes.leading() as started, exclusive(out):
            _train_locked(request, quiet, json_output, processes, started)


@contextlib.contextmanager
def _ending_alone(processes, out: Path):
    """Several processes: one that fails (bad input, a disk, a lost partner) says why and
    ends at once, so the others see it gone within --process-timeout, instead of all of them
    waiting at JAX's shutdown barrier while the others wait in a collective. A stop that all
    processes take together (Ctrl-C, exit 130) ends as usual."""
    if not processes.many:
        yield
        return
    try:
        yield
    except (typer.Exit, click_errors.ClickException):
        raise
    except BaseException as err:  # noqa: BLE001 (every failure ends this process now)
        code = processes.say_lost(err, out)
        if code is None:
            code = _said(err)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _said(err: BaseException) -> int:
    """Say `err` as every command does (handle_errors); its exit code."""
    if isinstance(err, KeyboardInterrupt):
        return 130

    def reraise():
        raise err

    try:
        handle_errors(reraise)()
    except typer.Exit as exit_:
        return exit_.exit_code
    return 1


def _train_locked(request, quiet: bool, json_output: bool, processes, started) -> None:
    """The train command once its options are valid and it holds the run's lock: the core
    plans and fits; this shows it. `started(epoch)` tells other processes where training
    starts (None: nothing to train)."""
    from attnviz.keras import backend as keras_backend
    from attnviz.keras import training as core

    out, resume = request.out, request.resume
    if request.user is not None or (resume and core.is_user_run(out)):
        quiet_import()  # a user's model is built while planning
    if resume:
        core.check_resume_backend(out)  # before planning extends or rolls back its state
    plan = core.plan_request(request)
    run = plan.run
    if plan.start_epoch >= run.epochs_planned:  # --resume of a finished run
        started(None)
        done = run.epochs_done
        if json_output:
            print(json.dumps(_train_summary(run), indent=2))
        if not quiet:
            err = console(stderr=True)
            err.print(f"nothing to train: {out} has trained all {done} of its {done} epochs",
                      markup=False)
            err.print(f"to train {RESUME_MORE} more, give a larger total: `attnviz train --out "
                      f"{out} --resume --epochs {done + RESUME_MORE}`", markup=False,
                      soft_wrap=True)  # a command to copy stays on one line
        return
    quiet_import()  # after the checks above: bad input is answered at once
    strategy, devices = core.devices_for(request, run)
    started(plan.start_epoch)
    err = console(stderr=True)
    show = not (quiet or json_output)
    if show:
        where = (f"on {devices[0]}" if len(devices) == 1
                 else f"over {len(devices)} devices: {', '.join(devices)}")
        err.print(f"{keras_backend.name()} backend, strategy {strategy} {where}" + (
            "" if strategy != "mirrored" else
            "; steps_per_execution 1 and no XLA under a strategy, as config.json records") + (
            "" if not processes.many else
            f", in {processes.count} processes: this one (0) writes the run"),
            markup=False)
        if plan.rolled_back_from is not None:
            err.print(f"resuming {out}: {plan.rolled_back_from} epochs were recorded, the last "
                      f"checkpoint is epoch {plan.start_epoch}: continuing from there")
        elif resume:
            err.print(f"resuming {out} from epoch {plan.start_epoch}")
        err.print(f"{core.describe(plan)} · epochs {plan.start_epoch}->{run.epochs_planned}")
        err.print(f"recording {_size(plan.bytes_per_record)} of attention per epoch; projected "
                  f"size with checkpoints {_size(plan.projected_bytes)}")
        skipped = run.state.get("checkpoints_skipped")
        if skipped:
            err.print(f"[yellow]warning:[/] checkpoints skipped: {skipped}", markup=True)

    again = (f"`attnviz train --out {out} --resume`" if not processes.many else
             "every process again, adding --resume")

    def announce_stop():
        if processes.many:
            err.print("[yellow]stop asked (Ctrl-C or SIGTERM): every process stops after this "
                      "epoch is saved (again to abort now)[/]")
        else:
            err.print("[yellow]Ctrl-C: stopping after this epoch is saved (again to abort "
                      "now)[/]")

    def announce_abort():
        err.show_cursor(True)  # the progress display hides it; the process ends right after
        err.print(f"interrupted: the run is kept as of its last commit; continue with "
                  f"{again}", soft_wrap=True)  # one line to copy

    try:
        with core.graceful_interrupt(announce_stop, announce_abort,
                                     terminate=processes.many) as stop_requested:
            if show:
                from attnviz.views.progress import TrainDisplay

                with TrainDisplay(err, run.epochs_planned, plan.start_epoch,
                                  plan.steps_per_epoch) as display:
                    result = core.fit(plan, on_epoch=display.on_epoch, on_batch=display.on_batch,
                                      stop_requested=processes.agreed(stop_requested),
                                      tensorboard=request.tensorboard)
            else:
                result = core.fit(plan, stop_requested=processes.agreed(stop_requested),
                                  tensorboard=request.tensorboard)
    except KeyboardInterrupt:  # a Ctrl-C in the instants before the handler is in place
        announce_abort()
        raise typer.Exit(130) from None
    if result.interrupted:
        err.print(f"stopped after epoch {result.epochs_done}; continue with {again}",
                  soft_wrap=True)
        raise typer.Exit(130)
    summary = {**_train_summary(result.run), "devices": devices}
    if json_output:
        print(json.dumps(summary, indent=2))
    elif not quiet:  # the last epoch's numbers are on the line above
        err.print(f"[green]done[/]: {result.epochs_done} epochs in {out}")


def _train_follower(request, processes, quiet: bool, json_output: bool) -> None:
    """`train --process-id I` (I > 0): trains with process 0, which plans and writes the run;
    this process only says how it went."""
    from attnviz.keras import training as core

    quiet_import()
    err = console(stderr=True)
    show = not (quiet or json_output)
    who = f"process {processes.index} of {processes.count}"
    if show:
        err.print(f"{who}: training with process 0 ({processes.coordinator}), which writes "
                  f"{request.out}", markup=False)

    def announce_stop():
        err.print(f"[yellow]stop asked (Ctrl-C or SIGTERM): every process stops after this "
                  f"epoch is saved (again to abort {who} now)[/]")

    def announce_abort():
        err.print(f"{who} aborted: the others stop too; {request.out} is kept as of its last "
                  f"commit: run every process again with --resume", soft_wrap=True)

    with core.graceful_interrupt(announce_stop, announce_abort,
                                 terminate=True) as stop_requested:
        result = core.follow(request, processes, processes.agreed(stop_requested))
    if result is not None and result.interrupted:
        err.print(f"{who}: stopped after epoch {result.epochs_done}; continue with every "
                  "process again, adding --resume", markup=False)
        raise typer.Exit(130)
    if json_output:
        from attnviz.store.run import Run

        done = Run.open(request.out).epochs_done if result is None else result.epochs_done
        print(json.dumps({"run": str(request.out), "process_id": processes.index,
                          "num_processes": processes.count, "epochs_done": done}, indent=2))
    elif result is None:
        if show:
            err.print(f"{who}: nothing to train (process 0 says why)", markup=False)
    elif not quiet:
        err.print(f"[green]done[/]: {who}, {result.epochs_done} epochs trained with process 0 "
                  f"(the run is in {request.out})")


def _train_summary(run) -> dict:
    return {
        "run": str(run.root),
        "config": None if run.config is None else run.config.to_dict(),
        "model": run.model_info,
        "layers": run.layer_names,
        "epochs_done": run.epochs_done,
        "checkpoints": run.checkpoints,
        "attention_epochs": run.attention_epochs,
        "baselines": run.baselines,
        "last": run.history[-1] if run.history else {},
    }


@app.command()
@handle_errors
def animate(
    run: RunArgument,
    output: Annotated[Optional[Path], typer.Option(  # noqa: UP045 (typer needs Optional)
        "--output", "-o", help="A .gif or .mp4 file (default: RUN/attention.gif).",
        show_default=False)] = None,
    fps: Annotated[float, typer.Option(help="Frames per second (the last frame holds 2 s).")]
    = 10.0,
    mask: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Ground-truth mask drawn under the attention (default: the task's main mask).",
        show_default=False)] = None,
    cmap: CmapOption = "hot",
    every: EveryOption = 1,
    samples: SamplesOption = None,
    scale: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help="Pixels per attention cell (default: 16; with --head all, about 128 px a head).",
        show_default=False)] = None,
    head: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Self-attention: a head index, 'mean' (default), or 'all': every head of the "
             "layer as a grid, one sample's queries x keys.", show_default=False)] = None,
    sample: Annotated[int, typer.Option(
        help="With --head all: the probe sample drawn.")] = 0,
    query: QueryOption = None,
    vmax: Annotated[str, typer.Option(help="Value drawn in the top colour: a number, or "
                                      "'auto' (the run's largest).")] = "1",
    frames: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="Also write one PNG per frame into this directory.", show_default=False)] = None,
    layer: Annotated[Optional[str], typer.Option(  # noqa: UP045
        metavar="NAME", help="The recorded layer to draw (default: the run's first).",
        show_default=False)] = None,
    tokens: TokensOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print what was written as one "
                                              "JSON object (schema: docs/animate.md).")] = False,
) -> None:
    """Make a GIF (or MP4) of probe attention over training: one frame per recorded epoch."""
    from attnviz.views.animation import AnimateOptions
    from attnviz.views.animation import animate as core

    result = core(run, AnimateOptions(
        output=output, fps=fps, mask=mask, cmap=cmap, every=every, samples=samples, scale=scale,
        head=head, sample=sample, query=query, vmax=vmax, frames_dir=frames, layer=layer,
        tokens=tokens,
    ))
    if json_output:
        print(json.dumps({
            "path": str(result.path), "frames": result.frames, "axis": result.axis,
            f"{result.axis}s": result.epochs,
            "width": result.width, "height": result.height, "bytes": result.size_bytes,
            "vmax": result.vmax, "attribution": result.attribution,
            "png_paths": [str(p) for p in result.png_paths], "seconds": result.seconds,
        }, indent=2))
        return
    out = console()
    # "wrote PATH" lines stay whole however long: a path is something to copy
    out.print(f"wrote {result.path}: {result.frames} frames ({result.axis}s {result.epochs[0]}-"
              f"{result.epochs[-1]}), {result.width}x{result.height} px, "
              f"{_size(result.size_bytes)}, in {result.seconds:.2f} s", soft_wrap=True)
    if result.png_paths:
        out.print(f"wrote {len(result.png_paths)} PNG frames to {frames}", soft_wrap=True)


@app.command()
@handle_errors
def inspect(
    target: Annotated[Path, typer.Argument(help="A run directory or a .keras model file.",
                                           show_default=False)],
    epoch: Annotated[Optional[str], typer.Option(  # noqa: UP045 (typer needs Optional)
        help="Run: a recorded epoch or 'last' (default: last).", show_default=False)] = None,
    step: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Run recorded by steps (train --record-steps): a recorded step or 'last'.",
        show_default=False)] = None,
    checkpoint: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Run: recompute attention with this checkpoint: an epoch, 'last' or its file "
        "name.", show_default=False)] = None,
    input_path: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--input", help="Samples to read attention on: .npy, .npz or .csv (a run's "
        "--checkpoint defaults to its probe batch).", show_default=False)] = None,
    key: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="The array of an .npz --input.", show_default=False)] = None,
    layer: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        metavar="PATH", help="Model or checkpoint: read only these attention calls: a path "
        "(outer/inner, as --list shows) or a glob ('*/self_attention*'); repeatable. A layer "
        "that computes no softmax is read when its output is a distribution.",
        show_default=False)] = None,
    list_calls: Annotated[bool, typer.Option("--list", help="Model file: list the attention "
                                             "calls it computes (on --input, or on one "
                                             "generated sample).")] = False,
    imports: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--import", metavar="FILE.py|MODULE", help="Import the code that defines the model's "
        "own layers first: a .py file or a module; repeatable. Importing runs that code: only "
        "code you trust.",
        show_default=False)] = None,
    unsafe: Annotated[bool, typer.Option("--unsafe", help="Load models whose Lambda layers run "
                                         "code from the file.")] = False,
    head: HeadOption = None,
    query: QueryOption = None,
    rollout: Annotated[bool, typer.Option("--rollout", help="One view: attention followed "
                                          "through every self-attention layer, the residual "
                                          "as (A + I) / 2 (docs/inspect.md).")] = False,
    tokens: TokensOption = None,
    samples: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help="Heatmap rows: the first N samples (default: 20).", show_default=False)] = None,
    png: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="Write a labelled figure to this .png file.", show_default=False)] = None,
    save: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="Write the weights as captured (float32): one call to a .npy file, (n, L) or "
        "(n, heads, Lq, Lk); several to an .npz file, one array per call keyed by its path.",
        show_default=False)] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show attention: numbers, a terminal heatmap and files, for a run or a .keras model."""
    from attnviz.analysis import inspection as core
    from attnviz.views import inspection as show
    options = core.InspectOptions(epoch=epoch, step=step, checkpoint=checkpoint, input=input_path,
                                  key=key, layers=tuple(layer or ()), unsafe=unsafe,
                                  imports=tuple(imports or ()), head=head, query=query,
                                  samples=samples, rollout=rollout, tokens=tokens)
    out, err = console(), console(stderr=True)
    if unsafe:
        err.print("[yellow]warning:[/] --unsafe runs Python code stored in the model file")
    if list_calls:
        if not core.is_model_file(target):
            raise AttnvizError(f"--list reads a .keras model file; {target} is not one")
        quiet_import()
        from attnviz.keras.inspect_model import list_calls as find_calls

        calls, source = find_calls(target, options)
        if json_output:
            print(json.dumps({"input": source, "calls": [call.to_json() for call in calls]},
                             indent=2))
        else:
            out.print(show.calls_renderable(calls, source))
        return
    if core.needs_keras(target, options):
        quiet_import()
        from attnviz.keras.inspect_model import inspect_target
    else:
        inspect_target = core.inspect_target
    inspection = inspect_target(target, options)
    if rollout:
        inspection = core.with_rollout(inspection, options)
    written = show.write_files(inspection, save, png)
    if json_output:
        print(json.dumps({**inspection.to_json(), "written": written}, indent=2))
        return
    for renderable in show.renderables(inspection, out.width):
        out.print(renderable)
    for path in written:
        out.print(f"wrote {path}", soft_wrap=True)


@app.command()
@handle_errors
def score(
    run: Annotated[Optional[Path], typer.Argument(  # noqa: UP045 (typer needs Optional)
        help="The run directory (or use --attention).", show_default=False)] = None,
    mask: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--mask", "-m", help="A mask to score against; repeat for several (default: every mask "
        "of the task, main first; without any, the built-in ones). Built in: self, prev, next, "
        "first, last, pad, induction, token:ID. With --attention: an (n, L) or (n, L, L) 0/1 "
        ".npy file, or a built-in name.",
        show_default=False)] = None,
    epoch: Annotated[str, typer.Option(help="Run: 'last', 'all' or an epoch number.")] = "last",
    minimum: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--min", metavar="METRIC[@MASK]=X", help="Exit 1 unless METRIC >= X, for metrics where "
        "higher is better; MASK defaults to the first mask. Repeatable.",
        show_default=False)] = None,
    maximum: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--max", metavar="METRIC[@MASK]=X", help="Exit 1 unless METRIC <= X, for metrics where "
        "lower is better (jsd, entropy). Repeatable.", show_default=False)] = None,
    head_label: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--head-label", metavar="LABEL[=X]", help="Exit 1 unless some head of the layer does "
        "LABEL (previous-token, induction, first-token, ...: docs/metrics.md), its number >= X "
        "(<= X for local). Repeatable.", show_default=False)] = None,
    query: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Self-attention: the query rows scored: 'last', 'mean', an index, or 'all' (each "
        "query, averaged). Default: all when a mask marks keys per query (prev, induction, "
        "an (n, L, L) file), else last.", show_default=False)] = None,
    layer: Annotated[Optional[str], typer.Option(  # noqa: UP045
        metavar="NAME", help="Run: the recorded layer to score (default: the first); a glob "
        "such as '*' scores and gates every layer it matches.", show_default=False)] = None,
    attention: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--attention", help="Score your own weights instead of a run: an (n, L) or "
        "(n, heads, L, L) .npy file.", show_default=False)] = None,
    normalize: Annotated[bool, typer.Option(help="--attention: divide each row by its sum "
                                            "instead of refusing rows that do not sum to 1.")]
    = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object (schema: "
                                              "docs/metrics.md).")] = False,
    junit: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="Write JUnit XML: one test case per threshold.", show_default=False)] = None,
    plot: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="Write a PNG of every metric and the loss over epochs.", show_default=False)]
    = None,
) -> None:
    """Score attention against ground-truth masks; exit 1 if a --min/--max is missed."""
    from attnviz.analysis import score as core
    from attnviz.views import score as show
    thresholds = core.parse_thresholds(minimum or [], maximum or [], head_label or [])
    for path, flag in ((junit, "--junit"), (plot, "--plot")):
        if path is not None:
            check_output_file(path, flag)
    reports = core.score_target(run, attention, mask or [], epoch, query, normalize,
                                over_epochs=plot is not None, layer=layer)
    if plot is not None and len(reports) > 1:
        raise AttnvizError(f"--plot draws one layer and --layer {layer} selects "
                           f"{len(reports)}: pick one")
    selected = [report.select(epoch) for report in reports]
    results = [(report, core.check_thresholds(report, thresholds)) for report in selected]
    rank_only = core.rank_only_gates(thresholds)
    if rank_only:  # after every check of the input: bad input stays one line
        console(stderr=True).print(
            f"[yellow]warning:[/] {' and '.join(rank_only)} only "
            f"rank{'s' if len(rank_only) == 1 else ''} the weights: attention "
            "that is uniform but for a hair above the mask reads 1.0 and passes; gate how much "
            "lands there too, e.g. --min mass=0.5 or --max entropy=0.8", markup=True,
            soft_wrap=True)
    written = []
    if junit is not None:
        show.write_junit(junit, results)
        written.append(junit)
    if plot is not None:
        from attnviz.views.plots import plot_scores

        plot_scores(plot, reports[0], results[0][1])
        written.append(plot)
    out = console(stderr=json_output)
    if json_output:
        objects = [{**show.as_json(shown, checks), "layer": shown.layer}
                   for shown, checks in results]
        print(json.dumps(objects[0] if len(objects) == 1 else {
            "layers": objects, "passed": all(c.passed for _, cs in results for c in cs)},
            indent=2))
    else:
        for shown, checks in results:
            if len(results) > 1:
                out.print(f"[bold]layer {shown.layer}[/]", markup=True)
            for table in show.tables(shown, checks, out.width):
                out.print(table)
            out.print(show.verdict(checks))
    for path in written:
        out.print(f"wrote {path}", markup=False, soft_wrap=True)
    if not all(check.passed for _, checks in results for check in checks):
        raise typer.Exit(1)


@app.command()
@handle_errors
def explain(
    run: RunArgument,
    epoch: Annotated[Optional[int], typer.Option(  # noqa: UP045 (typer needs Optional)
        help="A checkpointed epoch (default: the latest checkpoint).", show_default=False)]
    = None,
    layer: Annotated[Optional[str], typer.Option(  # noqa: UP045
        metavar="NAME", help="The recorded attention layer to explain and intervene on "
        "(default: the first).", show_default=False)] = None,
    data: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--data", metavar="DATA.npz", help="Your own model's run: held-out samples (x_val "
        "and y_val, else x and y; mask_NAME with one row per sample). Default: the data "
        "`train --model` recorded, else the probe batch.", show_default=False)] = None,
    samples: Annotated[int, typer.Option(help="Held-out samples to measure on (at most).")]
    = 1000,
    steps: Annotated[int, typer.Option(help="Integrated-gradients steps.")] = 64,
    top_k: Annotated[int, typer.Option(help="Positions erased or kept by the faithfulness "
                                       "tests.")] = 1,
    erase_value: Annotated[Optional[float], typer.Option(  # noqa: UP045
        help="The input value that erases a position (default: the task's neutral value; "
        "your own model's run: the probe's mean).", show_default=False)] = None,
    baseline: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--baseline", metavar="NAME=MSE", help="A predictor to compare with and its held-out "
        "loss (your own model's run has no task to give one); repeatable.",
        show_default=False)] = None,
    draws: Annotated[int, typer.Option(help="Permutations drawn per sample for the "
                                       "'permuted' intervention.")] = 5,
    adversarial_steps: Annotated[int, typer.Option(help="Adam steps of the adversarial "
                                                   "attention search (0: skip it).")] = 50,
    imports: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--import", metavar="FILE.py|MODULE", help="More code the checkpoint needs (what "
        "`train --model` recorded is imported anyway); repeatable.", show_default=False)]
    = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object (schema: "
                                              "docs/explain.md).")] = False,
) -> None:
    """Say why attention looks the way it does: attribution, faithfulness, baselines,
    interventions, verdict.

    The report is also stored in RUN/explain.json, for `attnviz report`.
    """
    quiet_import()
    from attnviz.analysis.verdict import compose, learning
    from attnviz.keras.explain import ExplainOptions, explain_run, parse_baseline, store_report
    from attnviz.views.explain import renderables

    options = ExplainOptions(
        epoch=epoch, samples=samples, steps=steps, top_k=top_k, layer=layer, data=data,
        erase_value=erase_value, baselines=tuple(parse_baseline(b) for b in baseline or ()),
        imports=tuple(imports or ()), draws=draws, adversarial_steps=adversarial_steps)
    report = explain_run(run, options)
    verdict = compose(report)
    full = {**report, "learning": learning(report)[0], "verdict": verdict}
    if json_output:
        print(json.dumps(full, indent=2))
    else:
        out = console()
        for renderable in renderables(report, verdict):
            out.print(renderable)
    try:
        store_report(run, full)
    except (AttnvizError, OSError) as err:  # the report is printed: say why it is not kept
        console(stderr=True).print(f"[yellow]warning:[/] not stored in {run}: {err}",
                                   markup=True, highlight=False)


@app.command()
@handle_errors
def heads(
    run: RunArgument,
    every_head: Annotated[bool, typer.Option("--all", help="Every head, broad and mixed ones "
                                             "too.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object (schema: "
                                              "docs/heads.md).")] = False,
) -> None:
    """What each head became and when: previous-token, induction, first-token... heads, the
    epoch each formed, the loss drop, and whether they make an induction circuit."""
    from attnviz.analysis.circuits import run_circuits
    from attnviz.store.run import Run

    circuits = run_circuits(Run.open(run))
    if json_output:
        print(json.dumps(circuits.to_json(), indent=2))
        return
    from attnviz.views.heads import renderables

    out = console()
    for renderable in renderables(circuits, every_head):
        out.print(renderable)


@app.command()
@handle_errors
def report(
    run: RunArgument,
    output: Annotated[Optional[Path], typer.Option(  # noqa: UP045 (typer needs Optional)
        "--output", "-o", help="The .html file (default: RUN/report.html).",
        show_default=False)] = None,
    every: EveryOption = 1,
    layer: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        metavar="NAME", help="Only the recorded layers this path or glob names; repeat for "
        "several (default: all).",
        show_default=False)] = None,
    samples: SamplesOption = None,
    cmap: CmapOption = "hot",
    max_mb: Annotated[float, typer.Option(help="The page's size in MB at most: past it, every "
                                          "head's statistics and the maps that fit; refused "
                                          "when not even those fit.")] = 25.0,
    tokens: TokensOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print what was written as one "
                                              "JSON object (schema: docs/report.md).")] = False,
) -> None:
    """Write one self-contained HTML file to explore a run: heatmap, curves, heads, verdict."""
    from attnviz.views.report import ReportOptions, write_report

    result = write_report(run, ReportOptions(output=output, every=every, layers=tuple(layer or ()),
                                             samples=samples, cmap=cmap, max_mb=max_mb,
                                             tokens=tokens))
    if json_output:
        print(json.dumps({
            "path": str(result.path), "bytes": result.size_bytes,
            "budget_bytes": result.budget_bytes, "epochs": result.epochs,
            "layers": result.layers, "heads": result.heads, "samples": result.samples,
            "explain": result.explained, "seconds": round(result.seconds, 3),
            "maps": {"mode": result.maps.mode, "samples": result.maps.samples,
                     "epochs": [result.epochs[i] for i in result.maps.epochs]},
            "axis": result.axis,
        }, indent=2))
        return
    shown = f"{len(result.epochs)} {result.axis}s ({result.epochs[0]}-{result.epochs[-1]})"
    console().print(f"wrote {result.path}: {shown}, {len(result.layers)} layer(s), "
                    f"{result.heads} head(s), {_size(result.size_bytes)}"
                    + (", with the explain verdict" if result.explained else "")
                    + f", in {result.seconds:.2f} s", markup=False, soft_wrap=True)
    compact = result.maps.said(result.epochs, result.samples, result.axis)
    if compact:
        console().print(f"compact page, within --max-mb: {compact}", markup=False,
                        soft_wrap=True)


@app.command()
@handle_errors
def data(
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Where to write: FILE.npz (x, y, mask_NAME), FILE.npy (x "
        "alone) or a FOLDER (x.npy, y.npy, NAME.npy per mask).", show_default=False)],
    task: Annotated[str, typer.Option(help="add-before-delimiter | add-after-delimiters | "
                                      "find-max | mean-before-delimiter | repeat | induction")]
    = _DEFAULTS.task,
    samples: Annotated[int, typer.Option(help="Samples to write.")] = 10,
    seq_len: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help=f"Sequence length L. Default: {_DEFAULTS.seq_len}; token tasks: "
        f"{_TOKENS['seq_len']}.", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(  # noqa: UP045
        help=f"The seed of the run whose samples these are. Default: {_DEFAULTS.seed}; token "
        f"tasks: {_TOKENS['seed']}.", show_default=False)] = None,
    probe: Annotated[bool, typer.Option("--probe", help="The probe batch (fixed positions) "
                                        "instead of held-out samples.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print what was written as one "
                                              "JSON object.")] = False,
) -> None:
    """Write task samples and their masks to files, for inspect --input and score --mask."""
    from attnviz.analysis import data as core
    from attnviz.analysis.tasks import config_for

    config = config_for(task, seq_len=seq_len, seed=seed)  # the task's defaults if not given
    seq_len, seed = config.seq_len, config.seed
    batch = core.make_samples(task, samples, seq_len, seed, probe)
    written = core.write_samples(batch, output, probe)
    if json_output:
        print(json.dumps({"task": task, "samples": samples, "seq_len": seq_len, "seed": seed,
                          "stream": written.stream, "paths": [str(p) for p in written.paths],
                          "arrays": {k: list(v) for k, v in written.arrays.items()}}, indent=2))
        return
    shapes = ", ".join(f"{name} {shape}" for name, shape in written.arrays.items())
    out = console()
    out.print(f"wrote {', '.join(map(str, written.paths))}", markup=False, soft_wrap=True)
    out.print(f"{samples} {written.stream} samples of {task}, L={seq_len}, seed {seed}: "
              f"{shapes}", markup=False)


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # TensorFlow 2.21's oneDNN CPU kernels abort a training now and then on AVX-512 CPUs and
    # round differently from run to run; without them the same seed gives the same run, bit
    # for bit, as the docs show it (docs/reliability.md). TF_ENABLE_ONEDNN_OPTS=1 turns them on.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    try:
        app()
    except SystemExit:
        try:
            sys.stdout.flush()  # output still buffered for a pipe that may be closed
        except BrokenPipeError:
            closed_pipe()
        raise
    except BrokenPipeError:
        closed_pipe()

