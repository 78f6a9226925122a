"""Attention rollout against hand computations, and `inspect --rollout`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from attnviz.analysis.rollout import rollout
from attnviz.cli import app
from attnviz.errors import AttnvizError

from conftest import planted_heads_run


def test_two_layers_by_hand():
    # both layers attend only to position 0: B = [[1, 0], [.5, .5]], R = B B
    first = np.array([[[[1.0, 0.0], [1.0, 0.0]]]])  # (n 1, H 1, 2, 2)
    flow = rollout([first, first])
    np.testing.assert_allclose(flow[0], [[1.0, 0.0], [0.75, 0.25]])


def test_heads_are_averaged_and_rows_stay_distributions():
    # one layer, two heads: one on the previous key, one on itself; mean A = [[1, 0], [.5, .5]]
    prev = np.array([[1.0, 0.0], [1.0, 0.0]])
    self_ = np.eye(2)
    flow = rollout([np.stack([prev, self_])[None]])
    np.testing.assert_allclose(flow[0], [[1.0, 0.0], [0.25, 0.75]])  # (A + I) / 2
    rng = np.random.default_rng(0)
    layers = [rng.dirichlet(np.ones(5), size=(3, 2, 5)) for _ in range(4)]
    np.testing.assert_allclose(rollout(layers).sum(-1), 1.0, rtol=1e-6)


def test_layers_that_cannot_be_followed_are_refused():
    with pytest.raises(AttnvizError, match="same samples and positions"):
        rollout([np.ones((1, 1, 3, 3)) / 3, np.ones((1, 1, 4, 4)) / 4])
    with pytest.raises(AttnvizError, match="self-attention"):
        rollout([np.ones((1, 1, 3, 5)) / 5])


def test_inspect_rollout_of_a_run(tmp_path):
    run = planted_heads_run(tmp_path / "run")
    result = CliRunner().invoke(app, ["inspect", str(run.root), "--rollout", "--json"])
    assert result.exit_code == 0, result.output
    view, = json.loads(result.stdout)["views"]
    assert view["name"] == "rollout" and view["shape"] == [4, 16, 16]
    expected = rollout([run.attention(3, name) for name in run.layer_names])
    np.testing.assert_allclose(view["rows"], expected[:, -1], atol=1e-6)  # the last query
    text = CliRunner().invoke(app, ["inspect", str(run.root), "--rollout"]).stdout
    assert "rollout of 2 layers" in " ".join(text.split())
