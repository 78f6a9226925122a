"""`attnviz report`: the size of the page against its budget, and the time to write it.

Two runs written through the real Run API (attention drifting onto the main mask):
  founding   the founding case's shape: 15 epochs recorded every epoch (16 with epoch 0),
             10 probe samples, L = 20, temporal attention. Target: <= 2 MB.
  heads      a self-attention run: 50 epochs (51 recorded), 10 samples, 4 heads, L = 64.
Each is compared with the budget of docs/report.md (`report.estimate_bytes`): the page
and its facts, then per recorded epoch x layer x head n x Lq x Lk x 8/3 bytes of weights.
Target: measured / budget within 0.9..1.1.

  bert-base  a run shaped like a 20-epoch BERT-base fine-tune (21 recorded epochs, 12 layers
             x 12 heads, 8 probe samples, L = 128, stored as q8), without flags: a compact
             page. Targets (issue 21): <= 25 MB; in Chromium (headless, this machine) the first
             paint within 2 s, moving the epoch and choosing a head redraw within 100 ms
             (medians of REDRAWS, timed inside the page around the synchronous redraw).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from attnviz.views.report import ReportOptions, write_report
from tests.conftest import make_synthetic_run, many_heads_run

TARGET_BYTES = 2_000_000
TARGET_RATIO = (0.9, 1.1)
REDRAWS = 15


def bert_base(root: Path) -> list[dict]:
    """The compact page of a BERT-base-shaped run: its size, time to write, and its timings
    in Chromium."""
    many_heads_run(root, layers=12, heads=12, keys=128, samples=8, dtype="q8", epochs=20)
    start = time.perf_counter()
    written = write_report(root, ReportOptions(output=root / "report.html"))
    seconds = time.perf_counter() - start
    rows = [
        {"name": f"BERT-base-shaped run (21 epochs, 144 heads, 8 x 128 x 128): report size "
                 f"({written.maps.mode}: maps of {written.maps.samples} sample(s) at "
                 f"{len(written.maps.epochs)} epochs)", "value": written.size_bytes / 1e6,
         "unit": "MB", "target": 25, "ok": written.size_bytes <= 25e6},
        {"name": "the same: time to write", "value": seconds, "unit": "s", "target": None,
         "ok": None},
    ]
    return rows + _browser_timings(written.path)


def _browser_timings(path: Path) -> list[dict]:
    import statistics

    from docs.report_screenshot import CHROMIUM, open_browser

    if not CHROMIUM.exists():
        return [{"name": f"browser timings skipped: no {CHROMIUM}", "value": 0, "unit": "",
                 "target": None, "ok": None}]
    with open_browser() as browser:
        page = browser.new_context(viewport={"width": 1400, "height": 1000},
                                   offline=True).new_page()
        start = time.perf_counter()
        page.goto(path.resolve().as_uri())
        page.wait_for_selector("#heatmap[aria-label]")
        paint = time.perf_counter() - start
        epoch, head = page.evaluate("""(repeats) => {
          const slider = document.getElementById("epoch");
          const heads = document.getElementById("heads");
          const box = heads.getBoundingClientRect();
          const epochs = [], choices = [];
          for (let i = 0; i < repeats; i++) {
            slider.value = String(i % (Number(slider.max) + 1));
            let t = performance.now();
            slider.dispatchEvent(new Event("input"));
            epochs.push(performance.now() - t);
            const x = box.left + 44 + ((i * 7) % 12 + 0.5) * ((box.width - 114) / 12);
            const y = box.top + 20 + ((i * 5) % 12 + 0.5) * ((box.height - 28) / 12);
            t = performance.now();
            heads.dispatchEvent(new MouseEvent("click", {clientX: x, clientY: y}));
            choices.push(performance.now() - t);
          }
          return [epochs, choices];
        }""", REDRAWS)
        caption = page.text_content("#probe-caption")
    if "head" not in caption:
        raise RuntimeError(f"choosing a head did not show it: {caption}")
    epoch_ms, head_ms = statistics.median(epoch), statistics.median(head)
    return [
        {"name": "the same in Chromium: first paint", "value": paint, "unit": "s",
         "target": 2, "ok": paint <= 2},
        {"name": "moving the epoch: redraw", "value": epoch_ms, "unit": "ms", "target": 100,
         "ok": epoch_ms <= 100},
        {"name": "choosing a head: redraw", "value": head_ms, "unit": "ms", "target": 100,
         "ok": head_ms <= 100},
    ]


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
        bert = bert_base(Path(tmp) / "bert")
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
    return results + bert


if __name__ == "__main__":
    for result in run():
        print(f"{result['name']}: {result['value']:.3g} {result['unit']}")
