"""What each head does, end to end: a run recorded without masks is scored against the
built-in masks, its heads are labelled in score, inspect and the report, and score gates on a
label. The run's heads are planted (conftest.planted_heads_run): layer 0 head 0 becomes a
previous-token head and layer 1 head 1 an induction head at epoch 2."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from attnviz.cli import app

from conftest import many_heads_run, planted_heads_run


def invoke(*args):
    return CliRunner().invoke(app, [*map(str, args)], env={"COLUMNS": "400"})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return planted_heads_run(tmp_path_factory.mktemp("heads") / "run")


def test_a_run_without_masks_is_scored_against_the_built_in_ones(run):
    result = invoke("score", run.root, "--json")
    assert result.exit_code == 0, result.output
    said = json.loads(result.stdout)
    assert said["masks"] == ["prev", "self", "next", "first", "last", "induction"]
    assert said["query"] == "all"
    mass = {(row["mask"], row["head"]): row["mass"] for row in said["scores"]}
    assert mass[("prev", 0)] == pytest.approx(1.0)  # the previous-token head
    assert mass[("prev", 1)] < 0.4  # causal-uniform
    labels = said["head_labels"][0]["heads"]
    assert [row["label"] for row in labels] == ["previous-token", "broad", "broad"]
    assert labels[0]["statistics"]["prev"] == pytest.approx(1.0)


def test_score_gates_on_a_head_label_and_says_when_it_first_held(run, tmp_path):
    junit = tmp_path / "heads.xml"
    result = invoke("score", run.root, "--layer", "layer_1*", "--epoch", "all",
                    "--head-label", "induction=0.9", "--head-label", "previous-token",
                    "--junit", junit, "--json")
    assert result.exit_code == 1, result.output  # layer 1 has no previous-token head
    said = json.loads(result.stdout)
    induction, previous = said["thresholds"]
    assert induction["passed"] and induction["head"] == 1 and induction["first_epoch"] == 2
    assert induction["value"] == pytest.approx(1.0)
    assert induction["name"] == "head label induction: induction >= 0.9"
    assert not previous["passed"] and previous["head"] is None and previous["value"] is None
    assert previous["threshold"] == 0.5  # the label's own threshold when no X is given
    assert [epoch["heads"][1]["label"] for epoch in said["head_labels"]] == [
        "broad", "broad", "induction", "induction"]
    cases = ET.parse(junit).getroot().findall(".//testcase")
    assert [case.get("classname") for case in cases] == ["attnviz.score.heads"] * 2
    assert cases[0].find("failure") is None
    assert "no head has it" in cases[1].find("failure").get("message")


def test_the_terminal_says_what_each_head_does(run):
    result = invoke("score", run.root, "--layer", "layer_0*", "--mask", "prev",
                    "--head-label", "previous-token=0.99")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "query all" in text
    assert "what each head does: head 0 previous-token 1.00 · head 1 broad 1.00" in text
    assert "head label previous-token: prev >= 0.99" in text and "pass" in text


def test_inspect_labels_each_head_in_text_and_json(run):
    result = invoke("inspect", run.root, "--json")
    assert result.exit_code == 0, result.output
    views = json.loads(result.stdout)["views"]
    assert [head["label"] for head in views[1]["heads"]] == ["broad", "induction", "broad"]
    assert views[1]["heads"][1]["statistics"]["induction"] == pytest.approx(1.0)
    text = " ".join(invoke("inspect", run.root).stdout.split())
    assert "heads: 0 previous-token 1.00 · 1 broad 1.00 · 2 broad 1.00" in text


def test_the_grid_of_many_layers_shows_each_heads_label(tmp_path):
    from attnviz.analysis.heads import ALL_LABELS
    from attnviz.views.inspection import CODES

    assert set(CODES) == set(ALL_LABELS)  # every label has its three letters
    run = many_heads_run(tmp_path / "run", layers=3, heads=12)  # 3 layers: the grid
    result = CliRunner().invoke(app, ["inspect", str(run.root), "--samples", "1"],
                                env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith("what each head does: prv previous-token") for line in lines)
    rows = [line.split()[1:] for line in lines if line.startswith("transformer_layer_")
            and line.split()[0].endswith("…")]
    assert len(rows) == 3 and all(len(row) == 12 and set(row) <= set(CODES.values())
                                  for row in rows)
    assert max(map(len, lines)) <= 80
    labels = json.loads(invoke("inspect", run.root, "--json").stdout)["views"]
    assert [[CODES[head["label"]] for head in view["heads"]] for view in labels] == rows


def test_a_head_label_gate_that_cannot_apply_is_one_line(run):
    for args, says in [
        (("--head-label", "inductoin"), "did you mean induction"),
        (("--head-label", "induction=high"), "LABEL=X"),
        (("--mask", "prev", "--query", "mean"), "use --query all"),
        (("--mask", "pad"), "needs a padding mask"),
        (("--mask", "prevv"), "built in: self, prev"),
    ]:
        result = invoke("score", run.root, *args)
        assert result.exit_code == 2, (args, result.output)
        assert says in result.output and len(result.output.strip().splitlines()) == 1, args


def test_in_a_fresh_process(run):
    def score(layer):
        return subprocess.run([sys.executable, "-m", "attnviz", "score", str(run.root),
                               "--layer", layer, "--head-label", "induction=0.9", "--json"],
                              capture_output=True, text=True, timeout=120)

    done = score("layer_1*")  # some head of layer 1 is an induction head
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["thresholds"][0]["head"] == 1
    every = score("*")  # a gate holds for each layer --layer selects: layer 0 has none
    assert every.returncode == 1, every.stderr
    said = json.loads(every.stdout)
    assert [layer["thresholds"][0]["passed"] for layer in said["layers"]] == [False, True]
