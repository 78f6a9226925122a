"""`attnviz score` end to end: exit codes, JSON, JUnit, the plot, user arrays, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from typer.testing import CliRunner

from attnviz.analysis.score import METRIC_NAMES
from attnviz.analysis.tasks import get_task
from attnviz.cli import app
from attnviz.store.run import Run, RunSpec

from conftest import make_synthetic_run, new_run


def invoke(*args):
    # a wide terminal, so that "one line" means one line
    return CliRunner().invoke(app, ["score", *map(str, args)], env={"COLUMNS": "400"})


def score_json(*args) -> tuple[int, dict]:
    result = invoke(*args, "--json")
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """5 synthetic epochs whose attention drifts onto the delimiter (the main mask)."""
    return make_synthetic_run(tmp_path_factory.mktemp("score") / "run")


@pytest.fixture(scope="module")
def self_run(tmp_path_factory):
    return make_synthetic_run(tmp_path_factory.mktemp("score") / "self", attention="self",
                              heads=2)


# ---- exit codes ----------------------------------------------------------------------------


def test_no_threshold_prints_every_metric_and_exits_0(run):
    result = invoke(run.root)
    assert result.exit_code == 0, result.output
    for name in (*METRIC_NAMES, "delimiter", "prefix", "epoch 5"):
        assert name in result.stdout


def test_each_number_is_shown_once(run, self_run):
    """entropy does not depend on the mask, and topk precision, recall and F1 are equal by
    definition (k = the mask size): one row each, and tables say why."""
    for root, once in ((run.root, "entropy ↓ 0."), (self_run.root, "entropy ↓ mean 0.")):
        result = invoke(root, "--epoch", "all")
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert sum(line.startswith(once) for line in lines) == 1, result.stdout
        assert sum("entropy ↓" in line for line in lines) == 2  # the line and one curve
        assert "topk-precision ↑" not in result.stdout and "topk-recall ↑" not in result.stdout
        assert "topk-f1 = topk-precision = topk-recall (k = mask size)" in result.stdout
    code, data = score_json(run.root)
    assert data["metrics"]["entropy"]["per_mask"] is False
    assert data["metrics"]["topk-recall"]["same_as"] == "topk-f1"
    assert all(s["topk-precision"] == s["topk-recall"] == s["topk-f1"] for s in data["scores"])


def test_met_thresholds_exit_0_and_a_missed_one_exits_1(run):
    met = invoke(run.root, "--min", "mass=0.9", "--max", "jsd=0.05", "--min", "topk-f1=0.99")
    assert met.exit_code == 0, met.output
    assert "all 3 threshold(s) met" in met.stdout
    missed = invoke(run.root, "--min", "mass=0.9", "--min", "mass@prefix=0.5")
    assert missed.exit_code == 1, missed.output
    assert "1 of 2 threshold(s) missed" in missed.stdout
    assert "mass@prefix >= 0.5" in missed.stdout


def test_an_earlier_epoch_misses_what_the_last_meets(run):
    assert invoke(run.root, "--epoch", "1", "--min", "mass=0.9").exit_code == 1
    assert invoke(run.root, "--epoch", "5", "--min", "mass=0.9").exit_code == 0


def test_epoch_all_shows_the_curve_and_when_a_threshold_was_first_held(run):
    result = invoke(run.root, "--epoch", "all", "--min", "topk-f1=0.99")
    assert result.exit_code == 0, result.output
    assert "over epochs 0-5" in result.stdout and "held since epoch" in result.stdout
    code, data = score_json(run.root, "--epoch", "all", "--min", "topk-f1=0.99")
    assert data["epochs"] == [0, 1, 2, 3, 4, 5]
    curve = [s["topk-f1"] for s in data["scores"] if s["mask"] == "delimiter"]
    first = data["thresholds"][0]["first_epoch"]
    assert all(v >= 0.99 for v in curve[first:]) and curve[first - 1] < 0.99


# ---- JSON, JUnit, plot ---------------------------------------------------------------------


def test_json_is_one_documented_object(run):
    code, data = score_json(run.root, "--mask", "prefix", "--mask", "delimiter",
                            "--min", "mass=0.5")
    assert code == 1  # the first mask given, prefix, is the one gated
    assert data["schema_version"] == 1 and data["kind"] == "temporal"
    assert data["masks"] == ["prefix", "delimiter"] and data["heads"] == [None]
    assert data["epochs"] == [5] and data["samples"] == 10
    assert set(data["metrics"]) == set(METRIC_NAMES)
    assert data["metrics"]["jsd"]["better"] == "lower"
    assert data["metrics"]["jsd"]["range"] == [0.0, pytest.approx(math.log(2))]
    assert len(data["scores"]) == 2  # epochs x masks x heads
    delimiter = next(s for s in data["scores"] if s["mask"] == "delimiter")
    assert delimiter["mass"] == pytest.approx(1.0, abs=1e-3)
    [check] = data["thresholds"]
    assert check["mask"] == "prefix" and check["bound"] == "min" and not check["passed"]
    assert data["passed"] is False


def test_junit_has_one_testcase_per_threshold(run, tmp_path):
    path = tmp_path / "score.xml"
    result = invoke(run.root, "--min", "mass=0.9", "--min", "mass@prefix=0.5",
                    "--max", "entropy=0.5", "--junit", path)
    assert result.exit_code == 1, result.output
    suite = ET.parse(path).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert [case.get("name") for case in cases] == [
        "mass@delimiter >= 0.9", "mass@prefix >= 0.5", "entropy <= 0.5"]
    assert [case.find("failure") is not None for case in cases] == [False, True, False]
    assert suite.get("tests") == "3" and suite.get("failures") == "1"
    # CI systems key a test's history on its classname: it never changes with the code's layout
    assert [case.get("classname") for case in cases] == [
        "attnviz.score.delimiter", "attnviz.score.prefix", "attnviz.score.delimiter"]


def test_plot_writes_a_png(run, tmp_path):
    path = tmp_path / "scores.png"
    result = invoke(run.root, "--plot", path, "--min", "mass=0.5")
    assert result.exit_code == 0, result.output
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {path}" in result.stdout
    assert "epoch 5" in result.stdout  # the table still shows the requested epoch


def test_a_glob_scores_and_gates_every_layer_it_selects(tmp_path):
    probe = get_task("add-before-delimiter").probe(4, 20, np.random.default_rng(0))
    on_delimiter = probe.masks["delimiter"] / probe.masks["delimiter"].sum(axis=1, keepdims=True)
    weights = {"enc/first": on_delimiter, "enc/second": np.full((4, 20), 1 / 20)}
    layers = [{"name": name, "class": "TemporalAttention", "shape": [4, 20], "dtype": "float32"}
              for name in weights]
    run = new_run(tmp_path / "two", RunSpec(layers, {"epochs": 1, "record_every": 1,
                                                        "checkpoint_every": 0,
                                                        "record_heads": "all"}), probe)
    run.save_attention(0, {name: w.astype(np.float32) for name, w in weights.items()})
    run.commit()
    code, report = score_json(run.root, "--layer", "enc/*", "--min", "mass@delimiter=0.9")
    assert code == 1 and not report["passed"]  # the second layer misses the gate
    assert [(layer["layer"], layer["passed"]) for layer in report["layers"]] == [
        ("enc/first", True), ("enc/second", False)]
    code, report = score_json(run.root, "--layer", "*first", "--min", "mass@delimiter=0.9")
    assert code == 0 and report["layer"] == "enc/first"  # one match: one object, as before


# ---- self-attention and user arrays --------------------------------------------------------


def test_self_attention_reports_each_head_and_gates_the_mean(self_run):
    result = invoke(self_run.root)
    assert result.exit_code == 0, result.output
    assert "heads averaged" in result.stdout and "head 1" in result.stdout
    code, data = score_json(self_run.root, "--min", "mass=0.5", "--query", "mean")
    assert data["heads"] == ["mean", 0, 1] and data["gated_head"] == "mean"
    assert data["query"] == "mean"
    assert data["thresholds"][0]["head"] == "mean"
    assert len(data["scores"]) == 2 * 3  # masks x (mean + 2 heads)


def save(path, array):
    np.save(path, array)
    return path


def test_user_arrays_are_scored(tmp_path):
    attention = save(tmp_path / "att.npy", np.array([[0.5, 0.5, 0.0, 0.0],
                                                     [0.25, 0.25, 0.25, 0.25]]))
    mask = save(tmp_path / "rationale.npy", np.array([[1, 1, 0, 0], [1, 1, 0, 0]]))
    code, data = score_json("--attention", attention, "--mask", mask, "--min", "mass=0.7")
    assert code == 0
    assert data["masks"] == ["rationale"] and data["epochs"] == [None]
    [scores] = data["scores"]
    assert scores["mass"] == pytest.approx(0.75)  # (1 + 0.5) / 2
    assert scores["jsd"] == pytest.approx(0.5 * 0.2157615543, abs=1e-6)  # 0 and the uniform's


def test_user_self_attention_and_normalize(tmp_path):
    weights = np.random.default_rng(0).random((3, 2, 5, 5)) * 4  # rows sum to about 10
    attention = save(tmp_path / "att.npy", weights)
    mask = save(tmp_path / "m.npy", np.eye(5, dtype=bool)[[0, 1, 2]])
    refused = invoke("--attention", attention, "--mask", mask)
    assert refused.exit_code == 2 and "--normalize" in refused.stderr
    code, data = score_json("--attention", attention, "--mask", mask, "--normalize")
    assert code == 0 and data["kind"] == "self" and data["heads"] == ["mean", 0, 1]


# ---- bad input: exit 2, one line, no traceback ---------------------------------------------


def bad_files(tmp_path) -> dict[str, object]:
    good = np.full((2, 4), 0.25)
    files = {
        "nan": np.array([[0.5, np.nan, 0.25, 0.25]] * 2),
        "negative": np.array([[1.5, -0.5, 0.0, 0.0]] * 2),
        "three_dims": np.ones((2, 4, 4)) / 4,
        "objects": np.array([[None]], dtype=object),
        "good": good,
        "mask": np.array([[1, 0, 0, 0], [0, 1, 0, 0]]),
        "short_mask": np.array([[1, 0, 0], [0, 1, 0]]),
        "empty_mask": np.array([[1, 0, 0, 0], [0, 0, 0, 0]]),
        "two_mask": np.array([[2, 0, 0, 0], [0, 1, 0, 0]]),
        "full_mask": np.ones((2, 4), dtype=bool),
    }
    paths = {}
    for name, array in files.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], array, allow_pickle=True)
    np.savez(tmp_path / "archive.npz", a=good)
    paths["archive"] = tmp_path / "archive.npz"
    (tmp_path / "text.npy").write_text("not an array")
    paths["text"] = tmp_path / "text.npy"
    return paths


@pytest.mark.parametrize("args,message", [
    (["{run}", "--min", "accuracy=0.5"], "unknown metric 'accuracy'"),
    (["{run}", "--min", "mass=1.5"], "lies in [0, 1]"),
    (["{run}", "--max", "jsd=0.9"], "lies in [0, 0.6931]"),
    (["{run}", "--min", "jsd=0.1"], "write --max jsd=0.1"),
    (["{run}", "--min", "mass"], "write METRIC=X"),
    (["{run}", "--mask", "nope"], "unknown mask 'nope'"),
    (["{run}", "--mask", "delimiter", "--min", "mass@prefix=0.5"], "add --mask prefix"),
    (["{run}", "--epoch", "99"], "epoch 99 was not recorded"),
    (["{run}", "--epoch", "first"], "use last, all or a recorded epoch"),
    (["{run}", "--query", "middle"], "--query 'middle'"),
    (["{run}", "--normalize"], "--normalize applies to --attention"),
    (["{run}", "--attention", "{good}", "--mask", "{mask}"], "not both"),
    ([], "nothing to score"),
    (["{tmp}/missing-run"], "no run at"),
    (["--attention", "{good}"], "--attention needs --mask"),
    (["--attention", "{good}", "--mask", "{mask}", "--plot", "{tmp}/p.png"], "needs a RUN"),
    (["--attention", "{good}", "--mask", "{mask}", "--epoch", "3"], "drop --epoch"),
    (["--attention", "{nan}", "--mask", "{mask}"], "NaN"),
    (["--attention", "{negative}", "--mask", "{mask}"], "negative weights"),
    (["--attention", "{three_dims}", "--mask", "{mask}"], "expected (n, L)"),
    (["--attention", "{objects}", "--mask", "{mask}"], "not a readable .npy"),
    (["--attention", "{archive}", "--mask", "{mask}"], ".npz archive"),
    (["--attention", "{text}", "--mask", "{mask}"], "not a readable .npy"),
    (["--attention", "{tmp}/none.npy", "--mask", "{mask}"], "no such file"),
    (["--attention", "{good}", "--mask", "{short_mask}"], "shape"),
    (["--attention", "{good}", "--mask", "{empty_mask}"], "mark no position"),
    (["--attention", "{good}", "--mask", "{two_mask}"], "0/1 or bool"),
    (["--attention", "{good}", "--mask", "{full_mask}", "--min", "auprc=0.5"], "is undefined"),
])
def test_bad_input_exits_2_with_one_line(run, tmp_path, args, message):
    paths = {name: str(path) for name, path in bad_files(tmp_path).items()}
    result = invoke(*(arg.format(run=run.root, tmp=tmp_path, **paths) for arg in args))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_score_never_imports_tensorflow(run, tmp_path):
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from attnviz.cli import app\n"
        f"result = CliRunner().invoke(app, ['score', {str(run.root)!r}, '--epoch', 'all',\n"
        f"    '--min', 'mass=0.5', '--json', '--junit', {str(tmp_path / 'j.xml')!r}])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- gates that uniform attention cannot pass ----------------------------------------------


def nearly_uniform_run(root, epochs=3, seq_len=20, probe_size=10, hair=1e-3):
    """A run whose attention is uniform but for `hair` more on each delimiter position: a
    model that attends to nothing, whose ranking still puts the mask first."""
    from attnviz.keras.training import run_spec
    from attnviz.store.config import TrainConfig

    config = TrainConfig(seq_len=seq_len, probe_size=probe_size, epochs=epochs, samples=256,
                         val_samples=64)
    spec = get_task(config.task)
    probe = spec.probe(probe_size, seq_len, np.random.default_rng(0))
    rows = np.full((probe_size, seq_len), 1.0) + hair * seq_len * probe.masks["delimiter"]
    rows /= rows.sum(axis=1, keepdims=True)  # (n, L)
    created = new_run(root, run_spec(config), probe)
    for epoch in range(epochs + 1):
        created.save_attention(epoch, rows)
        created.commit(None if epoch == 0 else {"epoch": epoch, "loss": 1.0, "val_loss": 1.0,
                                                "seconds": 0.1})
    return Run.open(root)


def ci_score_commands() -> list[list[str]]:
    """Every `attnviz score` line of the README's and metrics.md's CI examples, as argv."""
    import re
    import shlex
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    found = []
    for page in (root / "README.md", root / "docs" / "metrics.md"):
        text = page.read_text()
        for block in re.findall(r"```ya?ml\n(.*?)```", text, re.DOTALL):
            joined = block.replace("\\\n", " ")
            for line in joined.splitlines():
                if "attnviz score" in line:
                    found.append(shlex.split(line[line.index("attnviz score"):])[2:])
    return found


def test_the_documented_ci_gates_fail_on_nearly_uniform_attention(tmp_path):
    run = nearly_uniform_run(tmp_path / "uniform")
    entropy = score_json(run.root)[1]["scores"][0]["entropy"]
    assert entropy > 0.999  # it attends to nothing...
    code, report = score_json(run.root, "--min", "topk-f1=0.9", "--min", "auprc=0.9",
                              "--min", "iou-f1=0.9")
    assert code == 0 and report["passed"]  # ...and the ranking metrics read it as perfect
    assert {m for m, info in report["metrics"].items() if info["rank_only"]} == {
        "topk-precision", "topk-recall", "topk-f1", "auprc", "iou-f1"}
    commands = ci_score_commands()
    assert len(commands) >= 2, commands  # the README's and metrics.md's
    for argv in commands:
        # the run the example trained becomes this one; its output files go to tmp_path
        argv = [str(run.root) if i == 0 else arg for i, arg in enumerate(argv)]
        argv = [str(tmp_path / arg) if arg.startswith("reports/") else arg for arg in argv]
        result = invoke(*argv)
        assert result.exit_code == 1, (argv, result.output)
        assert "warning" not in result.stderr  # the examples gate mass as well


def test_rank_only_gates_alone_are_warned_about(run):
    result = invoke(run.root, "--min", "topk-f1=0.5")
    assert result.exit_code == 0
    assert "warning: topk-f1 only ranks the weights" in result.stderr
    assert "--min mass=0.5" in result.stderr
    quiet = invoke(run.root, "--min", "topk-f1=0.5", "--min", "mass=0.1")
    assert quiet.exit_code == 0 and "warning" not in quiet.stderr


def test_score_creates_the_folders_of_its_reports(run, tmp_path):
    """metrics.md's CI recipe writes reports/attention.xml and .png into a folder no step
    made."""
    xml, png = tmp_path / "reports" / "deep" / "a.xml", tmp_path / "reports" / "a.png"
    result = invoke(run.root, "--min", "mass=0.1", "--junit", xml, "--plot", png)
    assert result.exit_code == 0, result.output
    assert ET.parse(xml).getroot().tag == "testsuites" and png.read_bytes()[:4] == b"\x89PNG"


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`attnviz score --json | head -1`: no 'Broken pipe' error, and the exit code a shell
    gives a command that SIGPIPE ended (141), not 1 (a missed gate) nor 2 (bad input)."""
    long = make_synthetic_run(tmp_path / "long", epochs=150)  # JSON far beyond a pipe's 64 KB
    reader = subprocess.Popen([sys.executable, "-m", "attnviz", "score", str(long.root),
                               "--epoch", "all", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert reader.stdout.readline() == b"{\n"
    reader.stdout.close()  # as `head -1` does, long before the output ends
    stderr = reader.stderr.read().decode()
    assert reader.wait(timeout=120) == 141, stderr
    assert stderr == ""
