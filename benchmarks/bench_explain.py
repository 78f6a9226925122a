"""Every intervention of `attnviz explain` on the founding case, timed.

The founding case (LSTM(100) + Luong, 15 epochs, seed 7, trained here through the
`attnviz.keras.training` API) and its default 1000 held-out samples:

  interventions   from a loaded checkpoint: the learned pass that reads the attention, then
                  learned, uniform, permuted (5 draws), mask:delimiter, mask:prefix, argmax
                  and the adversarial search (50 Adam steps on 500 samples), every traced
                  function's first trace included
  adversarial     the search alone (part of the above)
  explain         the whole `explain_run` (attribution, faithfulness, baselines too), for scale

Target (issue 14): all interventions in <= 5 s on the 2-core development machine. Also printed
when run on its own: the interventions table, the numbers docs/explain.md quotes.
Set ATTNVIZ_FOUNDING_RUN to an existing founding run to skip the training (about a minute).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_SECONDS = 5.0


def _founding(root: Path):
    from attnviz.store.config import TrainConfig
    from attnviz.store.run import Run

    existing = os.environ.get("ATTNVIZ_FOUNDING_RUN")
    if existing:
        return Run.open(Path(existing))
    return _train(TrainConfig(epochs=15), root).run


def _interventions(run) -> tuple[float, float, list[dict]]:
    """Seconds for all interventions, seconds of the adversarial search, and the entries."""
    from attnviz.analysis.tasks import HELDOUT_STREAM, task_data
    from attnviz.keras import explain, interventions

    options = explain.ExplainOptions()
    _, model = explain.load_checkpoint(run, None)
    heldout = task_data(run.config, HELDOUT_STREAM, options.samples)
    samples = explain.Samples(heldout.x, heldout.y, heldout.masks, "held-out")
    loss = explain.model_loss(run, model)
    started = time.perf_counter()
    intervener = interventions.Intervener(model, "attention")
    outputs, learned = intervener.learned(heldout.x)
    entries, _ = explain.measure_interventions(intervener, samples, learned, outputs, loss,
                                               options)
    total = time.perf_counter() - started
    again = interventions.Intervener(model, "attention")  # the search alone, traced anew
    n = interventions.ADVERSARIAL_SAMPLES
    tolerance = interventions.ADVERSARIAL_TOLERANCE * float(np.std(outputs))
    started = time.perf_counter()
    again.adversarial(heldout.x[:n], learned[:n], outputs[:n], tolerance,
                      np.random.default_rng(0))
    return total, time.perf_counter() - started, entries


def run() -> list[dict]:
    from attnviz.keras.explain import explain_run

    with tempfile.TemporaryDirectory() as tmp:
        founding = _founding(Path(tmp) / "founding")
        seconds, adversarial, entries = _interventions(founding)
        started = time.perf_counter()
        explain_run(founding)
        whole = time.perf_counter() - started
    for entry in entries:
        print(f"{entry['name']:>16} {entry['loss']:8.4g} {entry['ratio']:6.2f}x learned "
              f"JSD {entry['jsd']:.3f}")
    return [
        {"name": "all interventions, founding case, 1000 samples", "value": seconds,
         "unit": "s", "target": TARGET_SECONDS, "ok": seconds <= TARGET_SECONDS},
        {"name": "of which the adversarial search (50 steps, 500 samples)", "value":
         adversarial, "unit": "s", "target": None, "ok": None},
        {"name": "whole explain (attribution, faithfulness too)", "value": whole, "unit": "s",
         "target": None, "ok": None},
    ]


if __name__ == "__main__":
    for row in run():
        print(row)


def _train(config, root, **hooks):
    """`attnviz train` as the command runs it: plan and fit under the run's lock."""
    from attnviz.keras import training
    from attnviz.store.lock import exclusive

    with exclusive(root):
        return training.fit(training.plan(config, root), **hooks)
