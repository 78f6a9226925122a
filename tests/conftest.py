"""Shared fixtures: hermetic output dirs, synthetic runs (no TensorFlow), one trained run."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow 2.21's oneDNN kernels abort a training now and then on this machine's AVX-512
# CPUs (glibc: "corrupted size vs. prev_size"; 2 of 28 runs of a small fit, 0 of 44 with
# them off, at the same speed here). Trainings in tests and their child processes turn them
# off unless the environment says otherwise (`make test-other-cpu` turns them on).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")

from pathlib import Path

import numpy as np
import pytest

from attnviz.analysis.tasks import get_task
from attnviz.keras.training import run_spec
from attnviz.store import lock
from attnviz.store.config import TrainConfig
from attnviz.store.lock import exclusive
from attnviz.store.run import Run, RunWriter

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"  # users' models


def example(name: str):
    """A module of docs/examples (a user's model), imported by name."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(EXAMPLES))


def make_synthetic_run(root, epochs=5, task="add-before-delimiter", attention="luong",
                       heads=2, seq_len=20, probe_size=10, seed=0):
    """A run written through the real Run API with attention that drifts onto the main mask.

    Needs no TensorFlow: for tests of readers (score, animate, inspect) that must not train.
    """
    config = TrainConfig(task=task, attention=attention, heads=heads, seq_len=seq_len,
                         probe_size=probe_size, epochs=epochs, samples=256, val_samples=64)
    spec = get_task(task)
    rng = np.random.default_rng(seed)
    probe = spec.probe(probe_size, seq_len, rng)
    with exclusive(root):
        run = RunWriter.create(root, run_spec(config), probe)
        _write_synthetic(run, spec, probe, epochs, attention, heads, seq_len, probe_size, rng)
    return writer(root)  # opened again, as committed (tests amend it: explain, attribution)


def _write_synthetic(run, spec, probe, epochs, attention, heads, seq_len, probe_size, rng):
    target = probe.masks[spec.main_mask].astype(np.float64)
    target /= target.sum(axis=1, keepdims=True)
    for epoch in range(epochs + 1):
        noise = rng.dirichlet(np.ones(seq_len), size=probe_size)
        share = epoch / epochs
        rows = share * target + (1 - share) * noise  # (n, L), rows sum to 1
        if attention == "self":
            weights = np.broadcast_to(rows[:, None, None, :],
                                      (probe_size, heads, seq_len, seq_len)).copy()
        else:
            weights = rows
        run.save_attention(epoch, weights)
        if epoch == 0:
            run.commit()
        else:
            run.commit({"epoch": epoch, "loss": 1.0 / epoch, "val_loss": 1.1 / epoch,
                        "seconds": 0.1})


def explain_report(verdict: list[str], masks=("delimiter", "prefix"), predictor="mean") -> dict:
    """A complete explain report with made-up numbers, as `attnviz explain --json` writes."""
    shares = {"masks": dict.fromkeys(masks, 0.05), "outside": 0.1}
    attention = {**shares, "masks": {mask: 0.91 - 0.5 * i for i, mask in enumerate(masks)}}
    learned = {"name": "learned", "loss": 0.74, "jsd": 0.0, "ratio": 1.0}
    return {
        "run": "runs/x", "epoch": 15, "task": "add-before-delimiter", "encoder": "lstm",
        "attention_kind": "luong", "layer": "attention", "samples": {"probe": 10, "heldout": 200},
        "masks": list(masks), "masks_on": "heldout", "mask_share": dict.fromkeys(masks, 0.05),
        "attention": {"heldout": attention, "probe": attention},
        "integrated_gradients": {"heldout": {**shares, "tau_b": 0.3}, "baseline": 0.5,
                                 "steps": 16, "completeness_error": 0.001},
        "gradient_x_input": {"heldout": {**shares, "tau_b": None}},
        "faithfulness": {"k": 1, "erase_value": 0.5, "target_std": 2.8,
                         "comprehensiveness": {"top": 3.0, "random": 0.3},
                         "sufficiency": {"top": 0.9, "random": 3.6}},
        "baselines": {"loss": "mse", "loss_source": "the built-in tasks' loss",
                      "heldout_loss": 0.74, "heldout_loss_se": 0.1, "val_loss": 0.71,
                      "predictors": [{"name": predictor, "loss": 8.3, "ratio": 0.09,
                                      "description": "predict the mean of y"}]},
        "interventions": [learned, {"name": f"mask:{masks[0]}", "loss": 0.2, "jsd": 0.06,
                                    "ratio": 0.27, "kept": 0}],
        "intervention_setup": {"layer": "attention", "shape": [20],
                               "replaced": "each sample's row", "samples": 200},
        "verdict": verdict,
    }


@pytest.fixture
def synthetic_run(tmp_path):
    """A 5-epoch synthetic luong run on the founding task."""
    return make_synthetic_run(tmp_path / "run")


TINY = dict(samples=512, val_samples=128, units=16, attention_units=16, batch_size=64,
            steps_per_execution=8)


def tiny_config(**changes) -> TrainConfig:
    """A real but tiny training configuration: a few seconds per run on 2 CPU cores."""
    return TrainConfig(**{**TINY, "epochs": 3, "checkpoint_every": 2, **changes})


def train_tiny(root, **changes) -> Run:
    from attnviz.keras import training as train
    with exclusive(root):
        return train.fit(train.plan(tiny_config(**changes), root)).run


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Run:
    """One real 3-epoch LSTM + Luong run on the founding task, shared by the whole session.

    Readers must not modify it: copy it (shutil.copytree) before damaging files.
    """
    return train_tiny(tmp_path_factory.mktemp("shared") / "run")


EXPLAIN_FAST = ["--samples", "200", "--steps", "16", "--draws", "2",
                "--adversarial-steps", "10"]  # explain in a few seconds


@pytest.fixture(scope="session")
def explained_run(trained_run, tmp_path_factory) -> Run:
    """A copy of the shared run on which `attnviz explain --json` ran once (its stdout is in
    explain-output.json beside it); explain stored its report in the copy's explain.json."""
    from typer.testing import CliRunner

    from attnviz.cli import app

    root = tmp_path_factory.mktemp("explained") / "run"
    shutil.copytree(trained_run.root, root)
    result = CliRunner().invoke(app, ["explain", str(root), "--json", *EXPLAIN_FAST])
    assert result.exit_code == 0, result.output
    (root.parent / "explain-output.json").write_text(result.stdout)
    return Run.open(root)


def mixed_keys_run(root):
    """A run of two temporal layers over different key positions (a decoder's 6, an
    encoder's 20), with masks over each: delimiter and prefix over 20 keys, first over 6."""
    from attnviz.store.run import RunSpec
    from attnviz.store.samples import TaskBatch

    base = get_task("add-before-delimiter").probe(4, 20, np.random.default_rng(0))
    first = np.zeros((4, 6), bool)
    first[:, 0] = True
    probe = TaskBatch(x=base.x, y=base.y, masks={**base.masks, "first": first})
    layers = [{"name": name, "class": "TemporalAttention", "shape": [4, keys], "dtype": "float32"}
              for name, keys in (("dec/attention", 6), ("enc/attention", 20))]
    on = {"dec/attention": first, "enc/attention": base.masks["delimiter"]}
    with exclusive(root):
        run = RunWriter.create(root, RunSpec(layers, {"epochs": 1, "record_every": 1,
                                             "checkpoint_every": 0, "record_heads": "all"}), probe)
        for epoch in (0, 1):
            run.save_attention(epoch, {name: (mask / mask.sum(axis=1, keepdims=True) if epoch
                                              else np.full(mask.shape, 1 / mask.shape[1])
                                              ).astype(np.float32) for name, mask in on.items()})
            run.commit(None if epoch == 0 else {"epoch": 1, "loss": 1.0, "val_loss": 1.0})
    return Run.open(root)


def verify_all(run) -> None:
    """Check every file the run lists against its checksum (raises RunFormatError)."""
    for name in run.state["files"]:
        run._verify(name)


def attention_model(model):
    """A model sharing a built-in model's layers that returns the attention weights, by graph
    surgery on the attention layer's second output: the independent reference that capture is
    checked against."""
    import keras

    from attnviz.keras.models import ATTENTION_LAYER

    weights = model.get_layer(ATTENTION_LAYER).output[1]
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, weights, name="attention_weights")


_TEST_LOCKS: list = []  # runs whose lock a test holds until it ends


@pytest.fixture(autouse=True)
def _test_locks_end_with_the_test():
    yield
    while _TEST_LOCKS:
        lock.release(_TEST_LOCKS.pop())


def _hold(root) -> None:
    """Take the run's lock until the test ends, as a command holds it until it ends (a path
    that is a file takes none: creating a run there is refused)."""
    if Path(root).exists() and not Path(root).is_dir():
        return
    lock.acquire(root)
    _TEST_LOCKS.append(root)


def new_run(root, *args, **kwargs) -> RunWriter:
    """RunWriter.create under the run's lock, held until the test ends."""
    _hold(root)
    return RunWriter.create(root, *args, **kwargs)


def writer(root) -> RunWriter:
    """The run at `root` opened to write, its lock held until the test ends."""
    _hold(root)
    return RunWriter.open(root)


def locked_plan(config, root, **kwargs):
    """attnviz.keras.training.plan under the run's lock, as `attnviz train` calls it."""
    from attnviz.keras import training

    with exclusive(root):
        return training.plan(config, root, **kwargs)


@contextlib.contextmanager
def locked_elsewhere(root):
    """Another process holds the run's lock (as a running `attnviz train` does) while the
    block runs; the lock goes when that process ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom attnviz.store.lock import exclusive\n"
         f"with exclusive({str(root)!r}):\n    print('locked', flush=True)\n"
         "    sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.communicate("", timeout=60)


def many_heads_run(root, layers: int = 12, heads: int = 12, keys: int = 16, samples: int = 3,
                   dtype: str = "float16", epochs: int = 1):
    """A run shaped like BERT-base's attention (12 layers x 12 heads by default), at a small
    L: head h of layer l puts its weight on position (l + h) % keys, sharper in later layers
    and later epochs (uniform at epoch 0), so every head has its own entropy and argmax; its
    maps stored as `dtype`. No TensorFlow."""
    from attnviz.store.run import RunSpec
    from attnviz.store.samples import TaskBatch

    rng = np.random.default_rng(0)
    x = rng.integers(1, 100, size=(samples, keys)).astype(np.int32)
    probe = TaskBatch(x=x, y=None, masks={"first": np.eye(1, keys, dtype=bool).repeat(samples, 0)})
    names = [f"transformer_layer_{layer}/self_attention/attention_softmax"
             for layer in range(layers)]
    spec = RunSpec([{"name": name, "class": "MultiHeadAttention",
                     "shape": [samples, heads, keys, keys], "dtype": dtype} for name in names],
                   {"epochs": epochs, "record_every": 1, "checkpoint_every": 0,
                    "record_heads": "all"})
    with exclusive(root):
        run = RunWriter.create(root, spec, probe)
        for epoch in range(epochs + 1):
            weights = {}
            for layer, name in enumerate(names):
                logits = np.zeros((samples, heads, keys, keys), np.float32)
                for head in range(heads):
                    logits[:, head, :, (layer + head) % keys] = (
                        epoch / epochs * (1 + layer / 2 + head / 8))
                weights[name] = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
            run.save_attention(epoch, weights)
            run.commit(None if epoch == 0 else {"epoch": epoch, "loss": 1.0 / epoch,
                                                "val_loss": 1.0})
    return Run.open(root)


def planted_heads_run(root, epochs: int = 3, samples: int = 4, half: int = 8,
                      previous: bool = True):
    """A run of 2 layers x 3 heads over token sequences whose second half repeats the first,
    recorded without masks: layer 0 head 0 turns into a previous-token head (unless not
    `previous`) and layer 1 head 1 into an induction head at epoch 2 (both uniform over the
    past before), every other head stays causal-uniform. No TensorFlow."""
    from attnviz.store.run import RunSpec
    from attnviz.store.samples import TaskBatch

    rng = np.random.default_rng(0)
    first = np.stack([rng.permutation(np.arange(1, 50))[:half] for _ in range(samples)])
    x = np.concatenate([first, first], axis=1).astype(np.int32)  # (n, 2 * half) token ids
    length = x.shape[1]
    causal = np.tril(np.ones((length, length)))
    uniform = causal / causal.sum(axis=1, keepdims=True)
    prev = np.eye(length, k=-1)
    prev[0, 0] = 1
    induction = uniform.copy()
    for q in range(half, length):  # the key after the first copy of the query's token
        induction[q] = np.eye(length)[q - half + 1]
    names = ["layer_0/attention", "layer_1/attention"]
    spec = RunSpec([{"name": name, "class": "MultiHeadAttention",
                     "shape": [samples, 3, length, length], "dtype": "float32"}
                    for name in names],
                   {"epochs": epochs, "record_every": 1, "checkpoint_every": 0,
                    "record_heads": "all"})
    with exclusive(root):
        run = RunWriter.create(root, spec, TaskBatch(x=x, y=None, masks={}))
        for epoch in range(epochs + 1):
            formed = epoch >= 2
            heads = {names[0]: [prev if formed and previous else uniform, uniform, uniform],
                     names[1]: [uniform, induction if formed else uniform, uniform]}
            run.save_attention(epoch, {
                name: np.broadcast_to(np.stack(maps)[None], (samples, 3, length, length))
                .astype(np.float32) for name, maps in heads.items()})
            run.commit(None if epoch == 0 else {"epoch": epoch, "loss": 1.0 / epoch,
                                                "val_loss": 1.0})
    return Run.open(root)
