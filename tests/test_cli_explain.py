"""`attnviz explain` end to end on the shared tiny trained run."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from attnviz.analysis.verdict import compose, learning
from attnviz.cli import app
from attnviz.store.run import Run

from conftest import EXPLAIN_FAST as FAST
from conftest import locked_elsewhere, verify_all


def invoke(*args):
    return CliRunner().invoke(app, ["explain", *map(str, args)])


@pytest.fixture
def explained(explained_run):
    """The --json output on a copy of the shared run, computed once per session (a fresh copy
    of the object for each test)."""
    return json.loads((explained_run.root.parent / "explain-output.json").read_text())


@pytest.mark.slow
def test_json_has_every_part_and_a_verdict_that_follows_its_numbers(explained, trained_run):
    assert {"run", "epoch", "task", "encoder", "masks", "mask_share", "mask_order",
            "attention", "integrated_gradients", "gradient_x_input", "faithfulness",
            "baselines", "interventions", "intervention_setup", "learning",
            "verdict"} <= set(explained)
    assert explained["epoch"] == trained_run.checkpoints[-1]
    assert explained["samples"] == {"probe": 10, "heldout": 200}
    assert [entry["name"] for entry in explained["interventions"]] == [
        "learned", "uniform", "permuted", "mask:delimiter", "mask:prefix", "argmax",
        "adversarial"]
    assert all({"name", "loss", "jsd"} <= set(entry) for entry in explained["interventions"])
    verdict = explained.pop("verdict")
    assert explained.pop("learning") == learning(explained)[0] == "not learned"
    assert verdict == compose(explained)
    # The tiny run's own numbers appear in its verdict.
    joined = "\n".join(verdict)
    assert f"Held-out MSE {explained['baselines']['heldout_loss']:.3g}" in joined
    top = explained["faithfulness"]["comprehensiveness"]["top"]
    assert f"changes the prediction by {top:.2f}" in joined
    assert "weighs states, not inputs" in joined  # an LSTM run


@pytest.mark.slow
def test_the_report_is_stored_in_the_run(explained, explained_run):
    run = Run.open(explained_run.root)
    assert run.explain_report() == explained
    verify_all(run)


@pytest.mark.slow
def test_a_run_being_trained_gets_the_report_printed_not_stored(explained_run, tmp_path):
    root = tmp_path / "run"
    shutil.copytree(explained_run.root, root)
    before = (root / "explain.json").read_bytes()
    with locked_elsewhere(root):  # as a running `attnviz train` holds it
        result = invoke(root, "--samples", "2", "--steps", "1")
    assert result.exit_code == 0, result.output
    assert "verdict" in result.stdout
    assert "warning: not stored in" in result.stderr and "another attnviz process" in result.stderr
    assert (root / "explain.json").read_bytes() == before


@pytest.mark.slow
def test_tables_and_verdict_for_people(trained_run, tmp_path):
    shutil.copytree(trained_run.root, tmp_path / "run")
    result = invoke(tmp_path / "run", *FAST, "--epoch", trained_run.checkpoints[0])
    assert result.exit_code == 0, result.output
    for part in ("where attention and attribution sit", "faithfulness", "baselines",
                 "interventions", "mask:prefix", "adversarial", "half-delimiter-index",
                 "verdict", f"epoch {trained_run.checkpoints[0]}"):
        assert part in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--epoch", "99"], "checkpointed epochs are"),
    (["--top-k", "0"], "--top-k must be in 1.."),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--samples", "1"], "--samples must be at least 2"),
])
def test_bad_options_are_one_line_exit_2(trained_run, args, message):
    result = invoke(trained_run.root, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_missing_run_is_one_line_exit_2(tmp_path):
    result = invoke(tmp_path / "nothing")
    assert result.exit_code == 2 and "no run at" in result.output
    assert "Traceback" not in result.output
