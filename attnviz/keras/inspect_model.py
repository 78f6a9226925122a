"""`attnviz inspect` on a model: any .keras file, or a run's checkpoint, read through capture.

The model runs once on the input; every attention softmax it computes is captured (see
attnviz.keras.capture) and becomes one View, named by its layer path.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from attnviz.analysis.inspection import (
    Inspection,
    InspectOptions,
    checkpoint_epoch,
    input_labels,
    is_model_file,
    load_input,
    run_facts,
    samples_shown,
    view_of,
)
from attnviz.analysis.tokens import position_labels
from attnviz.errors import AttnvizError
from attnviz.keras.capture import CallInfo, capture, resolve_layers
from attnviz.keras.loading import (
    check_model_file,
    describe_inputs,
    example_inputs,
    load_model,
    model_failures,
    numpy_inputs,
    prepare_inputs,
    run_code,
)
from attnviz.store.run import Run


def inspect_target(target: Path, options: InspectOptions) -> Inspection:
    """Inspect a .keras model file, or recompute a run's attention from a checkpoint."""
    target = Path(target)
    if is_model_file(target):
        return inspect_model(target, options)
    return inspect_checkpoint(Run.open(target), options)


def _load(path: Path, options: InspectOptions):
    return load_model(path, options.unsafe, options.imports)


def list_calls(path: Path, options: InspectOptions) -> tuple[list[CallInfo], str]:
    """Every attention call the model computes on --input (or on one generated sample), and
    a line saying what it ran on."""
    check_model_file(path)
    model = _load(path, options)
    if options.input is not None:
        inputs = prepare_inputs(model, load_input(options.input, options.key),
                                str(options.input))
        source = f"{options.input} {describe_inputs(inputs)}"
    else:
        inputs = example_inputs(model)
        if inputs is None:
            raise AttnvizError(f"{path} holds a subclassed model, which declares no input "
                               "shape: give --input X.npy to run it on")
        source = f"one generated sample of ones {describe_inputs(inputs)}"
    with model_failures(f"the model failed on {source}"):
        calls, _ = resolve_layers(model, inputs, options.layers or None)
    return calls, source


def inspect_model(path: Path, options: InspectOptions) -> Inspection:
    """Read the attention of every captured call (or of --layer) of a .keras model."""
    check_model_file(path)
    if options.epoch is not None or options.step is not None or options.checkpoint is not None:
        raise AttnvizError("--epoch, --step and --checkpoint apply to run directories, not "
                           "model files")
    if options.input is None:
        raise AttnvizError(f"{path}: give --input X.npy (.npz, .csv) to read attention on it, "
                           "or --list to see the attention calls it computes")
    data = load_input(options.input, options.key)
    started = time.perf_counter()
    model = _load(path, options)
    loaded = time.perf_counter()
    inputs = prepare_inputs(model, data, str(options.input))
    with model_failures(f"the model failed on --input {options.input}"):
        views = _views(model, inputs, options)
    facts = {
        "model": str(path), "input": str(options.input),
        "input_shape": describe_inputs(inputs),
        "seconds": {"load": round(loaded - started, 4),
                    "extract": round(time.perf_counter() - loaded, 4)},
    }
    return Inspection("model", facts, views, {}, samples_shown(options),
                      input_labels(options.tokens, numpy_inputs(inputs), views))


def inspect_checkpoint(run: Run, options: InspectOptions) -> Inspection:
    """Recompute the attention of a run's checkpoint on --input (default: the probe batch)."""
    if options.epoch is not None or options.step is not None:
        raise AttnvizError("--epoch and --step pick recorded attention and --checkpoint "
                           "recomputes it: give one of them")
    epoch = checkpoint_epoch(run, options.checkpoint)
    if options.input is None:
        x, source = run.probe.x, "probe batch"
    else:
        x, source = load_input(options.input, options.key), str(options.input)
    if not options.layers:  # the layers the run records, not every softmax of the model
        options = dataclasses.replace(options, layers=tuple(run.layer_names))
    started = time.perf_counter()
    model = load_model(run.checkpoint_path(epoch), options.unsafe,
                       (*run_code(run), *options.imports), script_classes=run.script_classes)
    loaded = time.perf_counter()
    inputs = prepare_inputs(model, x, source)
    with model_failures(f"the model failed on {source}"):
        views = _views(model, inputs, options,
                       run if options.input is None else None)
    masks = {} if options.input is not None or not views else (
        run.masks_for(views[0].name) if views[0].name in run.layer_names else {})
    facts = {
        **run_facts(run, epoch), "checkpoint": epoch, "input": source,
        "input_shape": describe_inputs(inputs),
        "seconds": {"load": round(loaded - started, 4),
                    "extract": round(time.perf_counter() - loaded, 4)},
    }
    labels = (position_labels(run, options.tokens) if options.input is None
              else input_labels(options.tokens, numpy_inputs(inputs), views))
    return Inspection("checkpoint", facts, views, masks, samples_shown(options), labels)


def _views(model, inputs, options: InspectOptions, run: Run | None = None) -> list:
    """One View per selected attention call; on a run's probe batch, with its masks."""
    calls, watch = resolve_layers(model, inputs, options.layers or None)
    names = [call.name for call in calls]
    captured = capture(model, inputs, layers=names, watch=watch)
    return [view_of(call.name, captured.weights[call.name], options,
                    run.masks_for(call.name) if run and call.name in run.layer_names else None,
                    call.layer_class, numpy_inputs(inputs))
            for call in captured.calls]
