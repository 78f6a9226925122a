"""`attnviz score` over a long history: every metric, every epoch, both masks of the task.

A 500-epoch x 64-sample x L=512 run is written through the real Run API (float16 attention,
one .npy per epoch, as training records it), then scored with `score_run(epoch="all")`, which
streams the epochs. Targets: <= 1 s, and peak traced memory <= 2x the history's size.
"""

from __future__ import annotations

import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from attnviz.analysis.score import METRIC_NAMES, score_run
from attnviz.analysis.tasks import get_task
from attnviz.keras.training import run_spec
from attnviz.store.config import TrainConfig
from attnviz.store.lock import exclusive
from attnviz.store.run import Run, RunWriter

EPOCHS, SAMPLES, SEQ_LEN = 500, 64, 512
TARGET_SECONDS, TARGET_MEMORY_RATIO = 1.0, 2.0


def make_history(root: Path) -> Run:
    """A run whose probe attention drifts from noise onto the main mask over EPOCHS epochs."""
    config = TrainConfig(seq_len=SEQ_LEN, probe_size=SAMPLES, epochs=EPOCHS)
    task = get_task(config.task)
    rng = np.random.default_rng(0)
    probe = task.probe(SAMPLES, SEQ_LEN, rng)
    spec = run_spec(config)
    spec.layers[0]["dtype"] = "float16"  # half the disk of float32, as self-attention runs
    with exclusive(root):
        run = RunWriter.create(root, spec, probe)
    target = probe.masks[task.main_mask] / probe.masks[task.main_mask].sum(axis=1, keepdims=True)
    for epoch in range(EPOCHS + 1):
        share = epoch / EPOCHS
        noise = rng.dirichlet(np.ones(SEQ_LEN), size=SAMPLES)
        run.save_attention(epoch, share * target + (1 - share) * noise)  # (n, L) rows sum to 1
        if epoch:
            run.commit({"epoch": epoch, "loss": 1.0 / epoch, "val_loss": 1.1 / epoch,
                        "seconds": 0.0})
    run.commit()
    return Run.open(root)


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "run"
        make_history(root)
        history_bytes = (EPOCHS + 1) * SAMPLES * SEQ_LEN * np.dtype(np.float16).itemsize
        score_run(Run.open(root), epoch="all")  # warm the page cache and numpy's code paths
        start = time.perf_counter()
        report = score_run(Run.open(root), epoch="all")
        seconds = time.perf_counter() - start
        tracemalloc.start()
        score_run(Run.open(root), epoch="all")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    scored = len(report.epochs) * len(report.masks) * len(METRIC_NAMES)
    ratio = peak / history_bytes
    return [
        {"name": f"{len(report.epochs)} epochs x {SAMPLES} x L={SEQ_LEN}, "
                 f"{len(report.masks)} masks, {len(METRIC_NAMES)} metrics ({scored} means)",
         "value": seconds, "unit": "s", "target": TARGET_SECONDS, "ok": seconds <= TARGET_SECONDS},
        {"name": f"peak traced memory / history ({history_bytes / 2**20:.0f} MiB float16)",
         "value": ratio, "unit": "x", "target": TARGET_MEMORY_RATIO,
         "ok": ratio <= TARGET_MEMORY_RATIO},
        {"name": "per epoch", "value": 1000 * seconds / len(report.epochs), "unit": "ms",
         "target": None, "ok": None},
    ]
