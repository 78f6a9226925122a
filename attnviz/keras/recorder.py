"""Record the attention of your own model while it trains: one callback for `model.fit`.

    from attnviz.keras import AttentionRecorder

    model.fit(x, y, epochs=20, validation_data=(x_val, y_val),
              callbacks=[AttentionRecorder("runs/mine", probe=x_val[:10],
                                           masks={"delimiter": delimiter_mask})])

writes a run directory that `attnviz inspect`, `animate`, `score`, `explain` and `report`
read. Every attention softmax the model computes on the probe batch is recorded (see
attnviz.keras.capture): your own layers, MultiHeadAttention inside a Transformer block's `call`,
keras_hub backbones, subclassed models; nothing in the model changes.

Like Keras' own callbacks, nothing happens at construction: the run is created (or opened)
in `on_train_begin`, epoch 0 is the untrained model, and each epoch is committed atomically
in `on_epoch_end`. The run follows the epoch Keras trains from: when `fit` starts again at
epoch k > 0 (BackupAndRestore after a crash, or `initial_epoch=k`), what the run holds after
epoch k is dropped and recorded again, so every epoch is recorded exactly once. A recorded
run is never replaced by accident: a `fit` that starts over at epoch 0 on a run that holds
recorded epochs and is finished is refused (its script run again, say) unless
`overwrite=True`. Under a
tf.distribute strategy only the chief writes.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import keras
import numpy as np

from attnviz.errors import AttnvizError
from attnviz.keras.internals import restored_by_backup
from attnviz.keras.processes import process_count
from attnviz.store import lock
from attnviz.store.layers import patterns_of

__all__ = ["AttentionRecorder"]


class AttentionRecorder(keras.callbacks.Callback):
    """Records the attention of every captured call on `probe` after every epoch.

    Args:
        directory: the run directory to write (created; an existing run of the same model
            and probe is continued).
        probe: a handful of samples: an array, or a dict (or list) of arrays for a model
            with several inputs, as the model takes them.
        masks: optional ground truths: {name: 0/1 array (n, keys)} over the probe's key
            positions, scored by `attnviz score`; the first is the main mask.
        layers: optional attention calls to record: paths or globs as `attnviz inspect
            MODEL --list` shows them (default: every captured call).
        y: optional targets of the probe samples (kept in the run, shown by `explain`).
        tokens: optional labels of the probe's positions, shown by inspect, animate and the
            report: one list of strings per sample, or a callable from token id to string
            (a keras_hub tokenizer's `id_to_token`) applied to the probe's token ids.
        validation: optional held-out samples `(x_val, y_val)`, as `validation_data` takes
            them: the run keeps the first of them, at most HELDOUT_SAMPLES (1000) and
            HELDOUT_BYTES (16 MB), so `attnviz explain RUN` measures on them with nothing
            else given.
        every: record every K epochs (epoch 0 and the last are always recorded).
        every_steps: also record inside epochs, every N training steps (the run's axis is
            then steps: curves, animate, the report and `attnviz heads` show "step S").
            Recording reads the probe as a batch begins, so Keras' asynchronous dispatch
            stays on; with steps_per_execution k, records fall on the first multiple of k
            at or after each multiple of N.
        checkpoint_every: a .keras checkpoint every N epochs (and the last); 0: none.
        keep_checkpoints: keep the last K checkpoints (0: all).
        checkpoint_optimizer: keep the optimizer's state in checkpoints (Adam's: twice the
            weights). Off by default: the run's checkpoints are for reading attention;
            to resume a crashed fit, use Keras' BackupAndRestore (the recorder follows it).
        record_heads: "all" heads, or their "mean" (H times less disk).
        max_run_mb: the run's disk budget, planned when it is created: over it, multi-head
            maps are stored as q8, then fewer checkpoints kept, then maps recorded less
            often (one warning says what; docs/run-format.md). None: no limit.
        overwrite: replace a run already in `directory` when `fit` starts (by default one
            that holds recorded epochs is continued, never recorded over).
    """

    def __init__(self, directory, probe, masks: Mapping[str, np.ndarray] | None = None,
                 layers: str | Sequence[str] | None = None, *, y=None, validation=None,
                 tokens=None,
                 every: int = 1, every_steps: int | None = None,
                 checkpoint_every: int = 5, keep_checkpoints: int = 2,
                 checkpoint_optimizer: bool = False, record_heads: str = "all",
                 max_run_mb: float | None = 1024, overwrite: bool = False):
        super().__init__()
        self.directory = Path(directory)
        self.probe_x = probe
        self.probe_y = None if y is None else np.asarray(y)
        self.masks = {name: np.asarray(mask) for name, mask in (masks or {}).items()}
        self.layers = patterns_of(layers) or None  # a string is one pattern
        self.validation = validation
        self.tokens = tokens
        self.every = every
        self.every_steps = every_steps
        self.checkpoint_every = checkpoint_every
        self.keep_checkpoints = keep_checkpoints
        self.checkpoint_optimizer = checkpoint_optimizer
        self.max_run_mb = max_run_mb
        self.record_heads = record_heads
        self.overwrite = overwrite
        self.run = None  # the attnviz.store.run.Run being written, from on_train_begin on
        self._recorder = None
        self._started = False  # the first on_epoch_begin of this fit has run

    # ---- Keras' callback interface -----------------------------------------------------

    def on_train_begin(self, logs=None):
        self._started = False
        self._recorder = self.run = None  # nothing of an earlier fit carries over
        processes = process_count()
        if processes > 1:
            # the probe pass and model.save compute on arrays spread over every process:
            # process 0 doing them alone waits for the others forever (tried: model.save)
            warnings.warn(f"attnviz: not recording {self.directory}: AttentionRecorder does not "
                          f"record a fit over {processes} JAX processes yet; training goes on "
                          "unrecorded (`attnviz train --num-processes` records a built-in "
                          "task over several)", stacklevel=2)
            return
        if not _is_writer(self.model):
            return
        try:
            with self._writing() as created:
                try:
                    self._recorder = self._make_recorder()
                except BaseException:
                    if created:
                        with contextlib.suppress(OSError):
                            self.directory.rmdir()  # only while empty: the folder it made
                    raise
        except AttnvizError as err:
            raise err.for_python() from None
        except OSError as err:  # a full or read-only disk: the fit goes on, unrecorded
            warnings.warn(f"attnviz: not recording into {self.directory} ({err.strerror or err}"
                          "); training goes on", stacklevel=2)
            return
        self.run = self._recorder.run

    def on_epoch_begin(self, epoch, logs=None):
        if self._recorder is None or self._recorder.stopped is not None:
            return
        try:
            with self._writing():
                if not self._started:
                    self._started = True
                    self._start(epoch)  # refuses to record over a run: before any step
                self._follow(epoch)
        except _Refused:
            self._recorder = None
            raise
        except Exception as err:  # noqa: BLE001 (a full disk, the user's model: never the fit)
            self._recorder.give_up(epoch, err)
            return
        self._recorder.on_epoch_begin(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        """Recording by steps (every_steps): the lock is taken only for a step that records."""
        recorder = self._recorder
        if recorder is None or recorder.stopped is not None or not recorder.every_steps \
                or not recorder.step_due(batch):
            return
        try:
            with self._writing():
                recorder.on_train_batch_begin(batch, logs)  # its own failures: a warning
        except (AttnvizError, OSError) as err:  # the lock: another process writes the run
            recorder.give_up(self.run.epochs_done + 1, err)

    def on_epoch_end(self, epoch, logs=None):
        if self._recorder is None or self._recorder.stopped is not None:
            return
        try:
            with self._writing():
                self._recorder.on_epoch_end(epoch, logs)  # its own failures: a warning
        except (AttnvizError, OSError) as err:  # the lock: another process writes the run
            self._recorder.give_up(epoch + 1, err)

    def on_train_end(self, logs=None):
        """Say in the run that a fit ended here (EarlyStopping and Ctrl-C included): a fit
        that starts over at epoch 0 afterwards is a new training, not a restart."""
        if self._recorder is None or self._recorder.stopped is not None:
            return
        try:
            with self._writing():
                self.run.state["fit_ended"] = True
                self.run.commit()
        except (AttnvizError, OSError) as err:
            self._recorder.give_up(self.run.epochs_done, err)

    @contextlib.contextmanager
    def _writing(self):
        """Hold the run's lock while one callback writes, and give it back after: a fit that
        raises (Keras then skips on_train_end) leaves no lock behind. Yields whether taking
        it made the directory. A path that is a file takes none: creating the run refuses it."""
        if self.directory.exists() and not self.directory.is_dir():
            yield False
            return
        created = lock.acquire(self.directory)
        try:
            yield created
        finally:
            lock.release(self.directory)

    # ---- where this fit starts ---------------------------------------------------------------

    def _start(self, epoch: int) -> None:
        """The first epoch of this fit: Keras (or BackupAndRestore) has set where training
        starts, and the model holds the weights it starts from."""
        from attnviz.keras.recording import same_weights, weights_fingerprint

        run = self.run
        if epoch == 0 and run.epochs_done > 0:
            ended = run.state["finished"] or run.state.get("fit_ended", False)
            if ended and not self.overwrite:
                # a fit from scratch after one that ended: the script run again, not a
                # restart (BackupAndRestore without a backup yet starts a crashed run over)
                raise _Refused(
                    f"{self.directory} already holds a run of this model whose fit ended "
                    f"({run.epochs_done} epochs), and this fit starts over at epoch 0, so it "
                    f"would record over it: {self._how_to_continue(run)}, record into "
                    "another directory, or pass overwrite=True to AttentionRecorder to "
                    "replace it")
            run.rollback_to(0)  # recorded again from the weights this fit starts from
            run.remove_stale_files()
            self._recorder.record(0, force=True)
        restored = restored_by_backup(self.model)  # its backup may be mid-epoch
        recorded = run.history[epoch - 1].get("weights") if 0 < epoch <= run.epochs_done else None
        if recorded and not restored and not self.overwrite and not same_weights(
                weights_fingerprint(self.model), recorded):
            raise _Refused(
                f"{self.directory} recorded this model after epoch {epoch}, and this fit starts "
                f"at epoch {epoch} with other weights (a model initialised afresh?), so it would "
                f"not continue that run: {self._how_to_continue(run, epoch)}, record into "
                "another directory, or pass overwrite=True to AttentionRecorder to replace it")
        run.state.pop("fit_ended", None)
        epochs = (self.params or {}).get("epochs")
        if epochs is not None and run.epochs_planned != epochs:
            run.extend(max(epochs, run.epochs_done))
        if 0 not in run.attention_epochs:
            self._recorder.record(0, force=True)
        run.commit()

    def _how_to_continue(self, run, epoch: int | None = None) -> str:
        epoch = run.epochs_done if epoch is None else epoch
        if epoch in run.checkpoints:
            return (f"continue it from its checkpoint (keras.saving.load_model of "
                    f"{run.root / 'checkpoints' / f'epoch_{epoch:04d}.keras'}, then "
                    f"fit(..., initial_epoch={epoch}))")
        return (f"continue it with the model it recorded (it keeps no checkpoint of epoch "
                f"{epoch}), fit(..., initial_epoch={epoch})")

    def _follow(self, epoch: int) -> None:
        """Make the run end at `epoch`, where Keras trains from."""
        run = self.run
        inside = any(record["epoch"] >= epoch for record in run.step_records)
        if run.epochs_done > epoch or inside:  # Keras trains from `epoch` again: forget after
            run.rollback_to(epoch)
            run.remove_stale_files()
        while run.epochs_done < epoch:  # restored past what was recorded (a backup)
            done = run.epochs_done + 1
            if done == epoch:
                self._recorder.record(done, force=True)
            entry = {"epoch": done, "loss": None, "val_loss": None, "seconds": None,
                     "restored": True}
            if run.recording.get("every_steps"):  # a backup restores the optimizer's count
                from attnviz.keras.recording import optimizer_steps

                entry["step"] = optimizer_steps(self.model) if done == epoch else None
            run.commit(entry)

    # ---- setting up ------------------------------------------------------------------------

    def _make_recorder(self):
        from attnviz.keras.recording import Recorder, open_or_create

        run = open_or_create(
            self.directory, self.model, self.probe_x, y=self.probe_y, masks=self.masks,
            layers=self.layers, every=self.every, every_steps=self.every_steps,
            steps_per_epoch=(self.params or {}).get("steps"), tokens=self.tokens,
            checkpoint_every=self.checkpoint_every,
            record_heads=self.record_heads, epochs=(self.params or {}).get("epochs"),
            source="callback", replace=self.overwrite, validation=self.validation,
            keep_checkpoints=self.keep_checkpoints,
            checkpoint_optimizer=self.checkpoint_optimizer, max_run_mb=self.max_run_mb)
        recorder = Recorder(run, tolerant=True)
        recorder.set_model(self.model)
        return recorder


class _Refused(AttnvizError):
    """A fit that would record over a run: refused before its first step, deliberately."""


def _is_writer(model) -> bool:
    """One writer: under tf.distribute the chief (every worker of a one-machine strategy); on
    JAX the one process (a fit over several is not recorded: on_train_begin)."""
    strategy = getattr(model, "distribute_strategy", None)
    extended = getattr(strategy, "extended", None)
    return bool(getattr(extended, "should_checkpoint", True))
