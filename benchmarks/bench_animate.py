"""`attnviz animate`'s renderer against the founding case's way of making the same GIF.

200 frames of 10 x 20 probe attention drifting onto the delimiter, with the mask below:
  ours      FrameData (header text, mass on the mask) -> palette frames -> one GIF, in memory
            from the arrays to the file, as `animate` does after reading the run
  baseline  per frame `plt.imshow(np.concatenate([attention, mask]), cmap='hot')`, a title
            and `plt.savefig` to PNG, then `imageio.mimsave` of the PNGs, as in QUESTION.md
            (with `plt.clf()` per frame, which the original lacks and which only helps it)
The baseline is timed on its first BASELINE_FRAMES frames and scaled linearly to FRAMES;
both of its phases cost the same per frame. Target: ours <= 0.5 s, with the frames labelled
as `animate` labels them (sample numbers, the mask's name, position ticks, a colour bar).

The timed history redraws every weight from noise at every frame: the worst case for the
GIF's size, since every cell changes. A GIF of training costs far less, because attention
settles and unchanged pixels are transparent runs; its size is measured on a training-like
history (`training_history`: logits drifting onto the delimiter as a random walk whose
per-epoch change, 3e-3 early and 7e-5 late, stays above the real founding run's, 1e-2 early
and 1e-9 once it has settled). Target: <= 300 KB for 200 frames.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from attnviz.analysis.score import mass
from attnviz.views.colors import colormap_lut, palette_for
from attnviz.views.encoders import write_gif
from attnviz.views.frames import FrameData, render_frames

FRAMES, SAMPLES, SEQ_LEN, DELIMITER = 200, 10, 20, 4
BASELINE_FRAMES = 40
FPS = 10
TARGET_SECONDS = 0.5
TARGET_KB = 300


def attention_history(rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """FRAMES attention arrays (SAMPLES, SEQ_LEN) moving from noise onto the delimiter."""
    mask = np.zeros((SAMPLES, SEQ_LEN), bool)
    mask[:, DELIMITER] = True
    history = []
    for epoch in range(FRAMES):
        share = epoch / (FRAMES - 1)
        noise = rng.dirichlet(np.ones(SEQ_LEN), size=SAMPLES)
        history.append(share * mask + (1 - share) * noise)  # rows sum to 1
    return history, mask


def training_history(rng: np.random.Generator, step: float = 0.02) -> list[np.ndarray]:
    """FRAMES softmax rows of logits that drift 5 % a frame toward the delimiter (+6) with
    N(0, step) noise, as training moves attention: smooth, settling, never quite still."""
    target = np.zeros((SAMPLES, SEQ_LEN))
    target[:, DELIMITER] = 6.0
    logits = rng.normal(0.0, 1.0, (SAMPLES, SEQ_LEN))
    history = []
    for _ in range(FRAMES):
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        history.append(weights / weights.sum(axis=1, keepdims=True))
        logits += 0.05 * (target - logits) + rng.normal(0.0, step, logits.shape)
    return history


def ours(history: list[np.ndarray], mask: np.ndarray, path: Path) -> float:
    start = time.perf_counter()
    frames = [
        FrameData(epoch=epoch, rows=rows, attribution=None,
                  header=(f"epoch {epoch}/{FRAMES - 1}   loss {1 / (epoch + 1):.4g}",
                          f"mass on delimiter {mass(rows, mask):.3f}"))
        for epoch, rows in enumerate(history)
    ]
    pictures = render_frames(frames, mask, mask_name="delimiter")
    write_gif(path, pictures, palette_for(colormap_lut("hot")), FPS)
    return time.perf_counter() - start


def baseline(history: list[np.ndarray], mask: np.ndarray, folder: Path) -> float:
    import imageio.v2 as imageio
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = time.perf_counter()
    pngs = []
    for epoch, attention_map in enumerate(history):
        plt.clf()
        plt.imshow(np.concatenate([attention_map, mask]), cmap="hot")
        plt.title(f"Iteration {str(epoch).zfill(3)} / {FRAMES - 1}")
        pngs.append(folder / f"epoch_{str(epoch).zfill(3)}.png")
        plt.savefig(pngs[-1])
    imageio.mimsave(folder / "attention.gif", [imageio.imread(png) for png in pngs],
                    duration=1000 / FPS, loop=0)
    plt.close("all")
    return time.perf_counter() - start


def run() -> list[dict]:
    history, mask = attention_history(np.random.default_rng(0))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ours(history[:2], mask, folder / "warm.gif")  # imports, the font
        seconds = sorted(ours(history, mask, folder / "ours.gif") for _ in range(3))[1]
        worst = (folder / "ours.gif").stat().st_size
        ours(training_history(np.random.default_rng(0)), mask, folder / "training.gif")
        size = (folder / "training.gif").stat().st_size
        baseline(history[:1], mask, folder)  # imports, matplotlib's first figure
        measured = baseline(history[:BASELINE_FRAMES], mask, folder)
    scaled = measured * FRAMES / BASELINE_FRAMES
    return [
        {"name": f"ours: {FRAMES} labelled frames of {SAMPLES}x{SEQ_LEN} + mask -> GIF "
                 "(median of 3)",
         "value": seconds, "unit": "s", "target": TARGET_SECONDS,
         "ok": seconds <= TARGET_SECONDS},
        {"name": f"ours: size of that {FRAMES}-frame GIF (every cell changes every frame)",
         "value": worst / 1024, "unit": "KB", "target": None, "ok": None},
        {"name": f"ours: size of a {FRAMES}-frame GIF of a training-like history",
         "value": size / 1024, "unit": "KB", "target": TARGET_KB, "ok": size / 1024 <= TARGET_KB},
        {"name": f"matplotlib imshow+savefig per frame, then imageio.mimsave "
                 f"({BASELINE_FRAMES} frames timed: {measured:.2f} s, scaled to {FRAMES})",
         "value": scaled, "unit": "s", "target": None, "ok": None},
        {"name": "speed-up over the baseline", "value": scaled / seconds, "unit": "x",
         "target": None, "ok": None},
    ]


if __name__ == "__main__":
    for result in run():
        print(f"{result['name']}: {result['value']:.3g} {result['unit']}")
