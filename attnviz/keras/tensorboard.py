"""TensorBoard output of `attnviz train --tensorboard DIR`: attention images and metrics.

Keras' own `keras.callbacks.TensorBoard` writes the loss scalars under DIR/train and
DIR/validation; this callback adds, under DIR/attention, per epoch the probe attention
heatmap with its mask rows below (the `hot` colour map, as `animate` draws it) and the
alignment metrics of `attnviz score` as scalars: `mass/delimiter` for those that depend on
the mask, `entropy` once (topk-precision and topk-recall equal topk-f1: not repeated).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from attnviz.analysis.score import (
    METRIC_NAMES,
    SHOWN_ONCE,
    SHOWN_PER_MASK,
    attention_rows,
    mean_scores,
    sample_scores,
)
from attnviz.views.colors import colormap_lut, to_indices, upscale

PIXELS = 8  # each attention cell becomes PIXELS x PIXELS


def heatmap_image(rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: attention rows (n, L) over a black line over the mask rows (n, L)."""
    lut = colormap_lut("hot")
    cells = np.concatenate([to_indices(rows, 1.0), np.zeros((1, rows.shape[1]), np.uint8),
                            to_indices(mask.astype(np.float32), 1.0)])
    return lut[upscale(cells, PIXELS)]


class AttentionBoard:
    """Writes the probe attention of one layer it is handed, epoch by epoch, with its masks'
    metrics (attnviz.keras.recording.Recorder hands it each epoch's weights: `on_record`)."""

    def __init__(self, log_dir: Path, layer: str, masks: dict[str, np.ndarray],
                 main_mask: str | None):
        self.layer = layer
        self.masks = masks
        self.main_mask = main_mask
        self.writer = tf.summary.create_file_writer(str(Path(log_dir) / "attention"))

    def write(self, epoch: int, weights: dict[str, np.ndarray]) -> None:
        rows = attention_rows(np.asarray(weights[self.layer], np.float32))
        with self.writer.as_default(step=epoch):
            mask = self.masks.get(self.main_mask)
            image = heatmap_image(rows, mask if mask is not None else np.zeros_like(rows))
            tf.summary.image(f"probe attention (mask: {self.main_mask})", image[None])
            for index, (name, mask) in enumerate(self.masks.items()):
                means = dict(zip(METRIC_NAMES, mean_scores(sample_scores(rows, mask)),
                                 strict=True))
                # each number once: per mask what depends on it, the rest with the first mask
                for metric in (*SHOWN_PER_MASK, *(SHOWN_ONCE if index == 0 else ())):
                    tag = f"{metric}/{name}" if metric in SHOWN_PER_MASK else metric
                    if np.isfinite(means[metric]):
                        tf.summary.scalar(tag, float(means[metric]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
