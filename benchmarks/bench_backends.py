"""`attnviz train` on TensorFlow and on JAX, whole processes, against the founding case's way.

  founding   the founding script's way on Keras 3 (TensorFlow: its stack, keract and the
             `attention` package, does not run there): default compile, and every epoch a
             sub-model rebuilt to read the weights plus a matplotlib imshow + savefig
             (bench_train's baseline), as one `python` process
  tf, jax    `attnviz train` on the founding case, as one process each (`--backend`)
Whole-process wall times (start-up, compilation, every epoch, checkpoints), in paired rounds
that alternate the three, so a busy spell of the machine hits all of them. Then one run per
encoder on each backend: the in-run median epoch (history `seconds`, the first epoch left
out), for the README's "fastest backend per encoder". Target (issue 23): attnviz on JAX
takes <= 0.5x the founding way's time, recording <= 2 % of its epochs.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EPOCHS = 8
ROUNDS = 2
ENCODERS = ("lstm", "gru", "bilstm", "dense")

FOUNDING = f"""
import tempfile
from pathlib import Path
from attnviz.analysis.tasks import PROBE_STREAM, task_data
from attnviz.store.config import TrainConfig
from benchmarks.bench_train import _fit, _founding_callback
config = TrainConfig(epochs={EPOCHS}).replace(jit_compile=False, steps_per_execution=1)
probe = task_data(config, PROBE_STREAM, config.probe_size)
with tempfile.TemporaryDirectory() as tmp:
    _fit(config, _founding_callback(Path(tmp), probe.x, probe.masks["delimiter"]))
"""


def _timed(command: list[str], backend: str = "tensorflow") -> float:
    env = {**os.environ, "KERAS_BACKEND": backend}
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    return time.perf_counter() - started


def _train(out: Path, backend: str, encoder: str = "lstm") -> float:
    return _timed([sys.executable, "-m", "attnviz", "train", "--out", str(out), "--force",
                   "--quiet", "--epochs", str(EPOCHS), "--encoder", encoder,
                   "--backend", backend], backend)


def _epoch_and_share(out: Path) -> tuple[float, float]:
    from attnviz.store.run import Run

    history = Run.open(out).history[1:]
    share = sum(h["record_seconds"] for h in history) / sum(
        h["seconds"] + h["record_seconds"] for h in history)
    return statistics.median(h["seconds"] for h in history), share


def run() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        times = {"founding": [], "tensorflow": [], "jax": []}
        for _ in range(ROUNDS):
            times["founding"].append(_timed([sys.executable, "-c", FOUNDING]))
            for backend in ("tensorflow", "jax"):
                times[backend].append(_train(tmp / backend, backend))
        founding = statistics.median(times["founding"])
        jax_share = _epoch_and_share(tmp / "jax")[1]
        rows.append({"name": f"founding way, whole process ({EPOCHS} epochs)",
                     "value": founding, "unit": "s", "target": None, "ok": None})
        for backend in ("tensorflow", "jax"):
            ratio = statistics.median(times[backend]) / founding
            rows.append({"name": f"attnviz train on {backend} / founding way (whole process)",
                         "value": ratio, "unit": "x",
                         "target": 0.5 if backend == "jax" else None,
                         "ok": ratio <= 0.5 if backend == "jax" else None})
        rows.append({"name": "recording share of an epoch on jax (measured in-run)",
                     "value": 100 * jax_share, "unit": "%", "target": 2.0,
                     "ok": jax_share <= 0.02})
        for encoder in ENCODERS:
            epochs = {}
            for backend in ("tensorflow", "jax"):
                out = tmp / backend  # lstm: the paired rounds' last run
                if encoder != "lstm":
                    out = tmp / f"{encoder}-{backend}"
                    _train(out, backend, encoder)
                epochs[backend] = _epoch_and_share(out)[0]
            for backend, seconds in epochs.items():
                rows.append({"name": f"{encoder} epoch on {backend} (in-run median)",
                             "value": seconds, "unit": "s", "target": None, "ok": None})
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
