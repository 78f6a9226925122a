"""`attnviz report`: the size of the page against its budget, and the time to write it.

Two runs written through the real Run API (attention drifting onto the main mask):
  founding   the founding case's shape: 15 epochs recorded every epoch (16 with epoch 0),
             10 probe samples, L = 20, temporal attention. Target: <= 2 MB.
  heads      a self-attention run: 50 epochs (51 recorded), 10 samples, 4 heads, L = 64.
Each is compared with the budget of docs/report.md (`report.estimate_bytes`): the page
and its facts, then per recorded epoch x layer x head n x Lq x Lk x 8/3 bytes of weights.
Target: measured / budget within 0.9..1.1.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from attnviz.views.report import ReportOptions, write_report
from tests.conftest import make_synthetic_run

TARGET_BYTES = 2_000_000
TARGET_RATIO = (0.9, 1.1)


def measure(root: Path, **run_options) -> tuple[int, int, float, int]:
    """(bytes, budget bytes, seconds, recorded epochs) of the report of a new synthetic run."""
    make_synthetic_run(root, **run_options)
    write_report(root, ReportOptions(output=root / "warm.html"))  # imports, page cache
    start = time.perf_counter()
    written = write_report(root, ReportOptions(output=root / "report.html"))
    return (written.size_bytes, written.budget_bytes, time.perf_counter() - start,
            len(written.epochs))


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        founding = measure(Path(tmp) / "founding", epochs=15)
        heads = measure(Path(tmp) / "heads", epochs=50, attention="self", heads=4, seq_len=64)
    results = [
        {"name": "founding case: report size (16 epochs, 10 x 20)", "value": founding[0] / 1e6,
         "unit": "MB", "target": TARGET_BYTES / 1e6, "ok": founding[0] <= TARGET_BYTES},
    ]
    for name, (size, budget, seconds, epochs) in (("founding case", founding),
                                                   ("self-attention 4 heads, L=64", heads)):
        ratio = size / budget
        results += [
            {"name": f"{name}: size / budget ({size / 1024:.0f} KB / {budget / 1024:.0f} KB)",
             "value": ratio, "unit": "x", "target": TARGET_RATIO[1],
             "ok": TARGET_RATIO[0] <= ratio <= TARGET_RATIO[1]},
            {"name": f"{name}: time to write ({epochs} epochs)", "value": seconds, "unit": "s",
             "target": None, "ok": None},
        ]
    per_head = 10 * 64 * 64 * 8 / 3
    results.append({"name": "budget per recorded epoch x layer x head, 10 x 64 x 64",
                    "value": per_head / 1024, "unit": "KB", "target": None, "ok": None})
    return results


if __name__ == "__main__":
    for result in run():
        print(f"{result['name']}: {result['value']:.3g} {result['unit']}")
