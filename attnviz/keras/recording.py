"""The Keras callback that commits each epoch into a run: attention, checkpoint, history.

`attnviz train` and the public `attnviz.keras.AttentionRecorder` both record through it.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import keras
import numpy as np

import attnviz.keras.backend as backend
from attnviz.analysis.score import attention_rows, mass
from attnviz.analysis.tokens import given_labels
from attnviz.errors import BUG, AttnvizError, raised_by_attnviz
from attnviz.keras.capture import (
    Probe,
    batch_length,
    capture,
    no_attention_error,
    per_step_error,
    select,
    slice_samples,
    unnumbered,
)
from attnviz.keras.internals import all_layers
from attnviz.keras.loading import (
    code_files,
    first_line,
    model_failures,
    model_summary,
    script_classes,
)
from attnviz.store import budget
from attnviz.store.layers import (
    as_stored,
    check_record_heads,
    patterns_of,
    stored_bytes,
    stored_layer,
)
from attnviz.store.run import CONFIG, STATE, RunSpec, RunWriter, probe_digest
from attnviz.store.samples import TaskBatch


class Recorder(keras.callbacks.Callback):
    """After every epoch: read the probe batch's attention, write what is due, then commit
    state.json (the commit makes the epoch exist for readers).

    The probe is read through one traced capture of the model (attnviz.keras.capture.Probe): about
    one forward pass of the probe batch per epoch.
    """

    def __init__(
        self,
        run: RunWriter,
        attribute: Callable[[np.ndarray], np.ndarray] | None = None,
        on_epoch: Callable[[dict], None] | None = None,
        on_batch: Callable[[int, dict], None] | None = None,
        stop_requested: Callable[[], bool] = lambda: False,
        tolerant: bool = False,
        on_record: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    ):
        super().__init__()
        self.run = run
        # tolerant (the callback in a user's own fit): what cannot be recorded becomes one
        # warning and training goes on; `attnviz train` fails instead, saying why
        self.tolerant = tolerant
        self.stopped: str | None = None  # why recording stopped (tolerant only)
        self.attribute = attribute
        self.on_epoch = on_epoch
        self.on_record = on_record  # (epoch, the probe's weights) after each epoch is read
        self.stop_requested = stop_requested
        if on_batch is not None:
            # Only then: a batch hook makes Keras wait for every step's logs (no async
            # dispatch), which costs a quiet run several percent of its epoch.
            self.on_train_batch_end = lambda batch, logs=None: on_batch(batch, logs or {})
        self.every_steps = run.recording.get("every_steps")  # also inside epochs: every N
        self._steps = _Steps()
        self.main_layer = run.layer_names[0]
        self.masks = run.masks_for(self.main_layer)
        self._probe: Probe | None = None
        self._inputs = None
        self._epoch_start = 0.0
        self.last_weights: dict[str, np.ndarray] | None = None  # the latest, as stored

    def set_model(self, model):
        super().set_model(model)
        self._probe = Probe(model, self.run.layer_names)
        self._inputs = probe_tensors(self.run.probe.x)

    def probe_attention(self) -> dict[str, np.ndarray]:
        """{layer: weights} of the probe batch, as the run stores them."""
        return as_stored(self._probe(self._inputs), self.run.recording["record_heads"])

    def record(self, epoch: int, force: bool = False) -> dict[str, float]:
        """Write attention (and attribution) of `epoch` if due; return the main layer's mass
        on each mask."""
        weights = self.last_weights = self.probe_attention()
        planned = self.run.epochs_planned
        due = force or epoch % self.run.recording["record_every"] == 0 or epoch == planned
        if due:
            self.run.save_attention(epoch, weights)
            if self.attribute is not None:
                self.run.save_attribution(epoch, self.attribute(self.run.probe.x))
        if self.on_record is not None:
            self.on_record(epoch, weights)
        rows = attention_rows(weights[self.main_layer].astype(np.float32))
        return {name: mass(rows, mask) for name, mask in self.masks.items()}

    def checkpoint_due(self, epoch: int, stopping: bool) -> bool:
        every = self.run.recording["checkpoint_every"]
        if self.run.state.get("checkpoints_skipped") or every == 0:
            return False
        return stopping or epoch % every == 0 or epoch == self.run.epochs_planned

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        if self.every_steps:
            start = self.run.epoch_step(epoch) if epoch <= self.run.epochs_done else None
            self._steps = _Steps(epoch, optimizer_steps(self.model), start)

    def on_train_batch_begin(self, batch, logs=None):
        """Recording by steps: read the probe once another `every_steps` steps are done.
        A batch's begin, not its end: Keras waits for no step's logs (end hooks turn its
        asynchronous dispatch off), and the weights are those after `batch` steps."""
        if self.every_steps and self.stopped is None and self.step_due(batch):
            try:
                self.record_step(batch)
            except Exception as err:  # noqa: BLE001 (a full disk, the user's model: never the fit)
                if not self.tolerant:
                    raise
                self.give_up(self._steps.epoch + 1, err)

    def step_due(self, batch: int) -> bool:
        steps = self._steps
        return (batch > 0 and steps.start is not None
                and (steps.start + batch) // self.every_steps > steps.last // self.every_steps)

    def record_step(self, batch: int) -> None:
        """Record the probe after `batch` steps of this epoch, with the mean loss over the
        steps since the record before (listed in state.json by the epoch's commit)."""
        started = time.perf_counter()
        steps = self._steps
        step = steps.start + batch
        mean = _running_loss(self.model)  # Keras' mean over this epoch's steps so far
        loss = steps.window_loss(mean, batch)
        self.run.save_step_attention(step, steps.epoch, self.probe_attention(), loss)
        self.run.state["steps"][-1]["seconds"] = round(time.perf_counter() - started, 5)
        # committed with the epoch's end, not now: a fit stopped inside an epoch trains it
        # again from its start, dropping what was recorded inside it, so a commit here would
        # keep nothing more, and costs a state.json write (its fsync) per record
        steps.last, steps.batches, steps.mean = step, batch, mean

    def on_epoch_end(self, epoch, logs=None):
        if self.stopped is not None:
            return
        logs = logs or {}
        done = epoch + 1  # Keras counts from 0; a run's epoch N is the state after N epochs
        started = time.perf_counter()
        fit_seconds = started - self._epoch_start
        stopping = self.stop_requested()
        try:
            self._end_epoch(done, logs, fit_seconds, started, stopping)
        except Exception as err:  # noqa: BLE001 (a full disk, the user's model: never the fit)
            if not self.tolerant:
                raise
            self.give_up(done, err)
        if stopping:
            self.model.stop_training = True

    def give_up(self, epoch: int, err: BaseException) -> None:
        """Stop recording for the rest of this fit, with one warning; the run keeps what it
        committed (tolerant only: the fit goes on)."""
        self.stopped = f"{type(err).__name__}: {first_line(err)}"
        bug = ""
        if raised_by_attnviz(err):  # never the fit's end, but said as what it is
            bug = "\n" + "".join(traceback.format_exception(err)) + BUG
        warnings.warn(f"attnviz: stopped recording {self.run.root} at epoch {epoch} "
                      f"({self.stopped}); training goes on, and the run keeps the "
                      f"{self.run.epochs_done} epochs committed before{bug}", stacklevel=3)

    def _end_epoch(self, done: int, logs: dict, fit_seconds: float, started: float,
                   stopping: bool) -> None:
        masses = self.record(done, force=stopping)
        if self.checkpoint_due(done, stopping):
            self._checkpoint(done)
        entry = {
            "epoch": done,
            "loss": _number(logs.get("loss")),
            "val_loss": _number(logs.get("val_loss")),
            "seconds": round(fit_seconds, 4),
            "mass": masses,
            "backend": backend.name(),  # what trained it: a run resumes on either backend
        }
        if self.every_steps:  # where the epoch ends on the step axis
            entry.update(self._steps.epoch_end(self.model, self.params, entry["loss"]))
        if self.tolerant:  # a callback's fit may be continued by another: what it continues
            entry["weights"] = weights_fingerprint(self.model)
        metrics = {key: _number(value) for key, value in logs.items()
                   if key not in ("loss", "val_loss") and _number(value) is not None}
        if metrics:
            entry["metrics"] = metrics
        # Everything attnviz adds to an epoch: probe pass, writes, checkpoint, commit.
        entry["record_seconds"] = round(time.perf_counter() - started, 5)
        self.run.commit(entry)
        self.run.prune_checkpoints(self.run.recording["keep_checkpoints"])
        if self.on_epoch is not None:
            self.on_epoch(entry)

    def _checkpoint(self, done: int) -> None:
        """Write epoch `done`'s checkpoint; tolerant, a model that cannot be saved (its own
        get_config raising, say) skips checkpoints from then on, with one warning."""
        save = self.model.save
        if not self.run.recording["checkpoint_optimizer"]:
            save = functools.partial(save_without_optimizer, self.model)
        try:
            self.run.write_checkpoint(done, save)
        except OSError:
            raise  # the disk: recording itself cannot go on
        except Exception as err:  # noqa: BLE001 (model.save runs the user's get_config)
            if not self.tolerant:
                raise
            reason = (f"saving {type(self.model).__name__} failed at epoch {done} "
                      f"({type(err).__name__}: {first_line(err)})")
            warnings.warn(f"attnviz: checkpoints skipped: {reason}; attention is still "
                          "recorded", stacklevel=3)
            self.run.skip_checkpoints(reason)


class _Steps:
    """Where recording by steps stands in the epoch being trained: the step it started from
    (None: unknown, no step records), the last step recorded, and Keras' mean loss then."""

    def __init__(self, epoch: int = 0, iterations: int | None = None,
                 start: int | None = None):
        self.epoch = epoch  # epochs done before this one
        self.iterations = iterations  # the optimizer's step count when it began
        self.start = iterations if start is None else start
        self.last = self.start or 0
        self.batches = 0  # this epoch's steps at the last record
        self.mean: float | None = None  # Keras' mean loss over them

    def window_loss(self, mean: float | None, batches: int) -> float | None:
        """The mean loss over this epoch's steps since the last record, from Keras' running
        means over its first `self.batches` and `batches` steps."""
        if mean is None or batches <= self.batches:
            return None
        if self.batches == 0:
            return mean
        if self.mean is None:
            return None
        return _number((mean * batches - self.mean * self.batches) / (batches - self.batches))

    def epoch_end(self, model, params, loss: float | None) -> dict:
        """The history entry's "step" (steps done at the epoch's end) and "step_loss" (mean
        loss since the last record inside it)."""
        now = optimizer_steps(model)
        if now is not None and self.iterations is not None and now >= self.iterations:
            done = now - self.iterations
        else:
            done = (params or {}).get("steps")
        if self.start is None or done is None:
            return {"step": None}
        return {"step": self.start + done, "step_loss": self.window_loss(loss, done)}


def optimizer_steps(model) -> int | None:
    """The optimizer's count of the steps it applied (None when there is none to read)."""
    try:
        return int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    except Exception:  # noqa: BLE001 (an optimizer of the user's own: no step axis then)
        return None


def _running_loss(model) -> float | None:
    """Keras' mean training loss over the epoch's steps so far (its logs' "loss")."""
    try:
        return _number(model.get_metrics_result().get("loss"))
    except Exception:  # noqa: BLE001 (a model of the user's own with its own metrics)
        return None


def save_without_optimizer(model, path) -> None:
    """model.save(path) without the optimizer's state (Adam's two moments: twice the weights):
    a checkpoint to read attention from, not to resume by (Keras' BackupAndRestore is that).
    Loaded with compile=True, Keras builds a fresh optimizer and warns that it had none."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        model.save(path)
        return
    model.optimizer = None  # the saver walks the model's attributes: this one is skipped
    try:
        model.save(path)
    finally:
        model.optimizer = optimizer


def weights_fingerprint(model) -> list[float] | None:
    """[count, sum, sum of squares] of the model's float weights (trainable or not, so that
    freezing a layer changes nothing; not a dropout's seed state, which moves every step),
    reduced where they live: the same for the same state (a backup restored, a checkpoint
    loaded), different for a model initialised afresh. None when not finite (diverged)."""
    sums, squares, count = [], [], 0
    for weight in model.weights:
        if "seed_generator" in weight.path or not keras.backend.is_float_dtype(weight.dtype):
            continue
        value = keras.ops.cast(weight.value, "float64")
        sums.append(keras.ops.sum(value))
        squares.append(keras.ops.sum(value * value))
        count += int(np.prod(weight.shape))
    total = float(sum(float(keras.ops.convert_to_numpy(s)) for s in sums))
    square = float(sum(float(keras.ops.convert_to_numpy(s)) for s in squares))
    return [count, total, square] if math.isfinite(total) and math.isfinite(square) else None


def same_weights(a: Sequence[float] | None, b: Sequence[float]) -> bool:
    """Fingerprints of one state of the weights (a sum's last digits aside); a state that
    cannot be told (not finite) is taken as the same."""
    if a is None or len(a) != 3 or len(b) != 3:
        return True
    return a[0] == b[0] and all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9)
                                for x, y in zip(a[1:], b[1:], strict=True))


def _number(value) -> float | None:
    """A finite float from a Keras log value; None for what JSON cannot hold."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def probe_tensors(x):
    """The probe's arrays as the backend's tensors, in the structure the model takes."""
    return keras.tree.map_structure(backend.tensor, x)


# ---- a run for a user's model --------------------------------------------------------------


def open_or_create(directory: Path, model, probe_x, *, y=None,
                   masks: Mapping[str, np.ndarray] | None = None,
                   layers: Sequence[str] | None = None, every: int = 1,
                   checkpoint_every: int = 5, record_heads: str = "all",
                   epochs: int | None = None, source: str = "callback",
                   force: bool = False, replace: bool = False, fit: dict | None = None,
                   validation=None, keep_checkpoints: int = 0,
                   checkpoint_optimizer: bool = True,
                   max_run_mb: float | None = None, every_steps: int | None = None,
                   steps_per_epoch: int | None = None, tokens=None) -> RunWriter:
    """The run that records `model` on `probe_x` in `directory`: everything is checked
    against the model before anything is written; then the run is created, or opened when it
    already records this model on this probe. `force` (`train --force`) replaces any run;
    `replace` (the callback's overwrite=True) a run of another model or probe, a run of this
    one being the callback's to start over. `validation`: (x, y) held-out samples whose
    first ones a new run keeps for explain (heldout_batch). A new run is planned within
    `max_run_mb` (attnviz.store.budget); `keep_checkpoints` (0: all) and
    `checkpoint_optimizer` say what its checkpoints keep. `every_steps`: record inside epochs
    too, every N training steps (`steps_per_epoch`, when known, plans their disk). `tokens`:
    the probe positions' labels (attnviz.analysis.tokens.given_labels), kept by a new run."""
    if every_steps is not None and (isinstance(every_steps, bool) or not isinstance(
            every_steps, int) or every_steps < 1):
        raise AttnvizError(f"every_steps {every_steps!r}: give a number of training steps "
                           "(at least 1), or None to record at epoch ends only")
    if every < 1 or checkpoint_every < 0 or keep_checkpoints < 0:
        raise AttnvizError(f"every must be at least 1, checkpoint_every and keep_checkpoints "
                           f"at least 0, got {every}, {checkpoint_every} and {keep_checkpoints}")
    if max_run_mb is not None and not max_run_mb > 0:
        raise AttnvizError(f"max_run_mb {max_run_mb!r}: give a size in MB above 0, or None "
                           "for no limit")
    check_record_heads(record_heads, "record_heads")
    with model_failures("the probe does not fit the model"):
        captured = capture(model, probe_x)
    if not captured.calls:
        raise no_attention_error(captured.layers, captured.per_step)
    calls = select(captured.calls, layers)
    if not calls:
        raise AttnvizError(f"layers {patterns_of(layers)} match no attention call; the model's "
                           f"are {', '.join(call.name for call in captured.calls)}")
    storable = [call for call in calls if len(call.shape) in (2, 4)]
    for call in calls:
        if call not in storable:
            warnings.warn(f"attnviz: not recording {call.name}: its attention has shape "
                          f"(n, {', '.join(map(str, call.shape[1:]))}), which a run cannot store "
                          "(it stores (n, keys) and (n, heads, queries, keys))", stacklevel=3)
    if not storable:
        raise AttnvizError(f"no attention call of the model can be stored: "
                           f"{', '.join(call.name for call in calls)} have shapes a run cannot "
                           "hold (it stores (n, keys) and (n, heads, queries, keys))")
    calls = storable
    if captured.per_step:
        warnings.warn(f"attnviz: not recording the attention inside "
                      f"{', '.join(captured.per_step)}: {per_step_error(captured.per_step)}",
                      stacklevel=3)
    n = calls[0].shape[0]
    checked = {name: _check_mask(name, np.asarray(mask), n, calls)
               for name, mask in (masks or {}).items()}
    if y is not None and len(y) != n:
        raise AttnvizError(f"y holds {len(y)} samples, the probe {n}")
    labels = None if tokens is None else given_labels(
        tokens, probe_x, n, [call.shape[-1] for call in calls])
    def layers(compact: bool) -> list[dict]:
        return [stored_layer(call.name, call.layer_class, call.shape, record_heads, compact)
                for call in calls]

    recorded = layers(False)
    probe = TaskBatch(x=probe_x, y=None if y is None else np.asarray(y), masks=checked)
    in_script = script_classes(model)
    directory = Path(directory)
    run = None
    if not force and (directory / STATE).is_file() and (directory / CONFIG).is_file():
        run = RunWriter.open(directory)
        same = [(layer["name"], layer["shape"]) for layer in run.layers] == [
            (layer["name"], layer["shape"]) for layer in recorded]
        if same and run.state["files"]["probe.npz"] == probe_digest(probe):
            run.remove_stale_files()
        elif replace:
            run = None
        else:
            raise AttnvizError(f"{directory} holds a run of another model or probe: record "
                               "into another directory, or delete it to start again",
                               python=f"{directory} holds a run of another model or probe: "
                                      "record into another directory, or pass overwrite=True "
                                      "to replace it")
    if run is None:
        heldout, given = heldout_batch(validation, model)
        sizes = budget.Sizes(
            maps=sum(map(stored_bytes, recorded)),
            maps_q8=sum(map(stored_bytes, layers(True))),
            checkpoint=checkpoint_bytes(model, checkpoint_optimizer),
            once=_nbytes(probe_x) + (0 if heldout is None else _nbytes(heldout.x)
                                     + heldout.y.nbytes))
        plan = budget.fit(sizes, epochs or 0, None if max_run_mb is None or epochs is None
                          else int(max_run_mb * budget.MB), every=every,
                          checkpoint_every=checkpoint_every, keep=keep_checkpoints,
                          step_maps=_step_maps(epochs, steps_per_epoch, every_steps))
        if plan.gave_up:
            warnings.warn(f"attnviz: {plan.said(max_run_mb)}", stacklevel=3)
        spec = RunSpec(layers=layers(plan.compact),
                       recording={"epochs": epochs, "record_every": plan.every,
                                  "checkpoint_every": checkpoint_every if plan.checkpoints
                                  else 0, "record_heads": record_heads,
                                  "keep_checkpoints": plan.keep,
                                  "checkpoint_optimizer": checkpoint_optimizer,
                                  "max_run_mb": max_run_mb, "every_steps": every_steps},
                       model={**model_summary(model), "source": source,
                              "code": code_files(model), "script_classes": in_script,
                              **({"fit": fit} if fit else {})}, tokens=labels)
        run = RunWriter.create(directory, spec, probe, force=force or replace, heldout=heldout,
                               heldout_given=given)
        if not plan.checkpoints and checkpoint_every:
            run.skip_checkpoints(f"one checkpoint takes {budget.megabytes(sizes.checkpoint)}, "
                                 f"more than max_run_mb={max_run_mb:g} leaves")
            run.commit()
    checkpoint_every = run.recording["checkpoint_every"]
    if in_script and checkpoint_every and not run.state.get("checkpoints_skipped"):
        warnings.warn(
            f"attnviz: {', '.join(in_script)} {'is' if len(in_script) == 1 else 'are'} defined "
            "in the script that trains (__main__): to load this run's checkpoints, `attnviz "
            "explain` must import it without running the training; move it into a module of "
            "its own that the script imports, or put the script's training under `if "
            "__name__ == \"__main__\":`", stacklevel=3)
    if checkpoint_every and not run.checkpoints and not run.state.get("checkpoints_skipped"):
        reason = reload_problem(model, probe_x, [call.name for call in calls])
        if reason:
            warnings.warn(f"attnviz: checkpoints skipped: {reason}", stacklevel=3)
            run.skip_checkpoints(reason)
            run.commit()
    return run


def _step_maps(epochs: int | None, steps_per_epoch: int | None, every_steps: int | None) -> int:
    """About how many records by steps a fit adds inside its epochs."""
    if not (epochs and steps_per_epoch and every_steps):
        return 0
    return epochs * ((steps_per_epoch - 1) // every_steps)


def checkpoint_bytes(model, with_optimizer: bool) -> int:
    """About what one .keras checkpoint of `model` takes: its weights, and the optimizer's
    (Adam's two moments when it is not built yet)."""
    weights = _variable_bytes(model.weights)
    if not with_optimizer or getattr(model, "optimizer", None) is None:
        return weights
    built = list(getattr(model.optimizer, "variables", []))
    if len(built) > 2:
        return weights + _variable_bytes(built)
    return weights + 2 * _variable_bytes(model.trainable_weights)


def _variable_bytes(variables) -> int:
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)


def _nbytes(x) -> int:
    return sum(np.asarray(a).nbytes for a in keras.tree.flatten(x))


HELDOUT_SAMPLES = 1000  # explain's default sample count: more would not be read
HELDOUT_BYTES = 16 * 2**20  # the most a run spends on held-out samples


def heldout_batch(validation, model) -> tuple[TaskBatch | None, int | None]:
    """The held-out samples a run keeps: the first of `validation` = (x, y) within
    HELDOUT_SAMPLES and HELDOUT_BYTES, checked to fit the model; and how many were given."""
    if validation is None:
        return None, None
    if not isinstance(validation, (tuple, list)) or len(validation) != 2:
        raise AttnvizError("validation takes (x_val, y_val), as fit's validation_data does")
    x, y = validation
    given = batch_length(x)
    if given != len(y):
        raise AttnvizError(f"validation holds {given} inputs and {len(y)} targets")
    first = keras.tree.map_structure(np.asarray, slice_samples(x, 0, 1))
    y = np.asarray(y[:HELDOUT_SAMPLES])
    if not np.issubdtype(y.dtype, np.number) and y.dtype != bool:
        raise AttnvizError(f"validation targets have dtype {y.dtype}: give numbers")
    per_sample = (sum(a.nbytes for a in keras.tree.flatten(first)) + y[:1].nbytes) or 1
    n = max(1, min(given, HELDOUT_SAMPLES, HELDOUT_BYTES // per_sample))
    kept = keras.tree.map_structure(np.asarray, slice_samples(x, 0, n))
    with model_failures("validation does not fit the model"):
        model(slice_samples(kept, 0, min(n, 2)), training=False)
    return TaskBatch(x=kept, y=y[:n], masks={}), given


def _check_mask(name: str, mask: np.ndarray, n: int, calls) -> np.ndarray:
    keys = {call.shape[-1] for call in calls}
    if mask.ndim != 2 or mask.shape[0] != n or mask.shape[1] not in keys:
        raise AttnvizError(f"mask {name} has shape {mask.shape}: expected ({n}, keys) with keys "
                           f"one of {sorted(keys)} (the recorded layers' key positions)")
    if not np.isin(mask, (0, 1)).all():
        raise AttnvizError(f"mask {name} is not 0/1 (or bool)")
    return mask.astype(bool)


_NO_CHECKPOINT = ": attention is recorded, but explain and resuming need a checkpoint"


def reload_problem(model, probe_x=None, names: Sequence[str] = ()) -> str | None:
    """Why the model cannot be saved to .keras and loaded back with the attention calls
    `names` (read on the first probe samples) under the same names, or None when it can."""
    custom = {type(layer).__name__: type(layer)
              for layer in all_layers(model)}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                save_without_optimizer(model, path)
                reloaded = keras.saving.load_model(path, custom_objects=custom, compile=False,
                                                   safe_mode=True)
        except OSError as err:  # the temporary folder's disk, not the run's
            return (f"a test copy of the model could not be written ({err.strerror or err})"
                    + _NO_CHECKPOINT)
        except Exception as err:  # noqa: BLE001 (the user's model's own code may raise anything)
            if raised_by_attnviz(err):
                raise
            return (f"Keras cannot save and reload {type(model).__name__} "
                    f"({type(err).__name__}: {first_line(err)})" + _NO_CHECKPOINT)
    if probe_x is None or not names:
        return None
    try:
        after = [call.name for call in capture(reloaded, slice_samples(probe_x, 0, 2)).calls]
    except Exception as err:  # noqa: BLE001 (the reloaded model runs the user's code)
        if raised_by_attnviz(err):
            raise
        return (f"{type(model).__name__} reloaded from .keras does not run on the probe "
                f"({type(err).__name__}: {first_line(err)})" + _NO_CHECKPOINT)
    kept = {unnumbered(name) for name in after}
    lost = [name for name in names if unnumbered(name) not in kept]
    if lost:
        return (f"reloaded from .keras, the model computes its attention under other names "
                f"({lost[0]} is gone; it computes {', '.join(after) or 'none'}): a layer whose "
                "get_config drops its name (one that does not start from super().get_config(), "
                "or an __init__ that does not pass **kwargs on) is rebuilt under a name Keras "
                "makes up; keep the name so that explain finds the recorded layers in a "
                "checkpoint")
    return None


