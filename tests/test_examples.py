"""The examples in docs/examples run as a user runs them, at small sizes, and write runs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from attnviz.store.run import Run

from conftest import EXAMPLES

pytestmark = pytest.mark.slow


def run_example(name: str, out, *args: str) -> Run:
    result = subprocess.run([sys.executable, str(EXAMPLES / name), str(out), *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return Run.open(out)


def test_founding_question_script_records_the_asker_layers_softmax(tmp_path):
    run = run_example("founding_question.py", tmp_path / "run", "--samples", "500",
                      "--epochs", "2")
    assert run.layer_names == ["attention_weight/attention_weight"]
    assert run.mask_names == ["delimiter", "prefix"] and run.attention_epochs == [0, 1, 2]
    assert run.probe.y.shape == (10, 1) and run.checkpoints == [2]
    probe = run.probe.x[..., 0]
    assert np.all(probe[:, 4] == 0.0)  # the probe's delimiter sits at index 4, as asked


def test_transformer_classifier_records_the_block_attention_over_tokens(tmp_path):
    run = run_example("transformer_classifier.py", tmp_path / "run", "--samples", "400",
                      "--epochs", "2")
    layer, = run.layers
    assert layer["name"] == "transformer_block/multi_head_attention"
    assert layer["shape"] == [8, 2, 24, 24] and run.mask_names == ["keyword"]
    assert run.mask("keyword").any(axis=1).all()  # every probe sample has the keyword
    assert "accuracy" in run.history[-1]["metrics"]
