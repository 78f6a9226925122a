"""TensorBoard output and tf.distribute, in a real subprocess (logical CPU devices)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from attnviz.store.run import Run

pytestmark = pytest.mark.slow


def read_events(directory):
    """{tag: [(step, kind)]} of every event file under `directory`."""
    import tensorflow as tf

    tags = {}
    for path in directory.rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                kind = value.metadata.plugin_data.plugin_name or "scalar"
                tags.setdefault(f"{path.parent.name}/{value.tag}", []).append((event.step, kind))
    return tags


def test_mirrored_training_over_two_cpus_writes_tensorboard(tmp_path):
    out, board = tmp_path / "run", tmp_path / "board"
    result = subprocess.run(
        [sys.executable, "-m", "attnviz", "train", "--out", str(out), "--samples", "256",
         "--val-samples", "64", "--units", "8", "--epochs", "2", "--jit",
         "--strategy", "mirrored", "--cpu-devices", "2", "--tensorboard", str(board)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "strategy mirrored over 2 devices: /CPU:0, /CPU:1" in result.stderr
    run = Run.open(out)
    assert run.config.strategy == "mirrored"
    # config.json records what ran: one step per execution and no XLA under a strategy
    recorded = json.loads((out / "config.json").read_text())["config"]
    assert recorded["steps_per_execution"] == 1 and recorded["jit_compile"] is False
    assert run.attention_epochs == [0, 1, 2]
    weights = run.attention(2)
    assert weights.shape == (10, 20)  # the same kind of data as on one device
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)

    tags = read_events(board)
    image_tag = "attention/probe attention (mask: delimiter)"
    assert sorted(step for step, _ in tags[image_tag]) == [0, 1, 2]
    assert {kind for _, kind in tags[image_tag]} == {"images"}
    for metric in ("mass", "topk-f1", "auprc", "iou-f1", "jsd"):
        for mask in ("delimiter", "prefix"):
            assert len(tags[f"attention/{metric}/{mask}"]) == 3
    assert len(tags["attention/entropy"]) == 3  # it does not depend on the mask: once
    assert not any("entropy/" in tag or "topk-recall" in tag for tag in tags)
    assert any(tag.startswith("train/epoch_loss") for tag in tags)
    assert any(tag.startswith("validation/epoch_loss") for tag in tags)


def test_heatmap_image_puts_mask_in_the_top_colour():
    from attnviz.keras.tensorboard import PIXELS, heatmap_image
    from attnviz.views.colors import colormap_lut

    rows = np.full((2, 5), 0.2)
    mask = np.zeros((2, 5), bool)
    mask[:, 3] = True
    image = heatmap_image(rows, mask)
    assert image.shape == (5 * PIXELS, 5 * PIXELS, 3)
    top = colormap_lut("hot")[-1]
    assert (image[3 * PIXELS, 3 * PIXELS] == top).all()  # first mask row, position 3
    assert (image[3 * PIXELS, 0] == colormap_lut("hot")[0]).all()
