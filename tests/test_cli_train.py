import json

import pytest
from typer.testing import CliRunner

from attnviz.cli import app
from attnviz.store.run import Run

from conftest import locked_elsewhere, locked_plan

runner = CliRunner()
TINY = ["--samples", "256", "--val-samples", "64", "--units", "8", "--quiet"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("args, message", [
    (["--task", "sum"], "unknown task 'sum'"),
    (["--encoder", "cnn"], "unknown --encoder 'cnn'"),
    (["--attention", "dot"], "unknown --attention 'dot'"),
    (["--seq-len", "2"], "--seq-len 2 is too short"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--samples", "10"], "fewer than --batch-size"),
    (["--heads", "0"], "--heads must be at least 1"),
    (["--resume", "--force"], "contradict"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, message):
    result = invoke("train", "--out", tmp_path / "run", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_out_is_a_file(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    result = invoke("train", "--out", target, *TINY)
    assert result.exit_code == 2 and "is a file" in result.output
    assert target.read_text() == "keep me"


def test_resume_without_a_run(tmp_path):
    result = invoke("train", "--out", tmp_path / "none", "--resume")
    assert result.exit_code == 2 and "nothing to resume" in result.output


def test_resume_refuses_zero_epochs_without_writing(tmp_path):

    from conftest import tiny_config

    root = tmp_path / "run"
    locked_plan(tiny_config(), root)  # committed, nothing trained yet
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    result = invoke("train", "--out", root, "--resume", "--epochs", "0")
    assert result.exit_code == 2 and "--epochs must be at least 1" in result.output
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert Run.open(root).config.epochs == tiny_config().epochs


def test_a_full_disk_is_one_line_exit_2(tmp_path, monkeypatch):
    import errno

    def full(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("attnviz.store.run.atomic_write_json", full)
    result = invoke("train", "--out", tmp_path / "run", *TINY)
    assert result.exit_code == 2, result.output
    config_json = tmp_path / "run" / "config.json"
    assert result.output.strip() == f"error: {config_json}: No space left on device"


def test_existing_run_is_never_overwritten(trained_run):
    before = {p: p.read_bytes() for p in trained_run.root.rglob("*") if p.is_file()}
    result = invoke("train", "--out", trained_run.root, *TINY)
    assert result.exit_code == 2 and "--resume" in result.output
    assert {p: p.read_bytes() for p in trained_run.root.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_train_then_resume_through_the_cli(tmp_path):
    out = tmp_path / "run"
    result = invoke("train", "--out", out, "--epochs", "1", "--json", *TINY)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["epochs_done"] == 1 and summary["attention_epochs"] == [0, 1]
    assert summary["last"]["val_loss"] > 0
    result = invoke("train", "--out", out, "--resume", "--epochs", "2", "--quiet")
    assert result.exit_code == 0, result.output
    assert [h["epoch"] for h in Run.open(out).history] == [1, 2]


@pytest.mark.slow
def test_progress_lines_show_loss_and_mass(tmp_path):
    result = invoke("train", "--out", tmp_path / "run", "--epochs", "2",
                    *[a for a in TINY if a != "--quiet"])
    assert result.exit_code == 0, result.output
    assert "epoch 2/2: loss " in result.output and "; mass delimiter 0." in result.output
    assert max(map(len, result.output.splitlines())) <= 80
    assert "projected size with checkpoints" in result.output
    assert "strategy default on /CPU:0" in result.output


def test_resume_of_a_finished_run_says_nothing_was_trained_and_how_to_extend(tmp_path,
                                                                             trained_run):
    import shutil

    root = tmp_path / "run"
    shutil.copytree(trained_run.root, root)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    result = invoke("train", "--out", root, "--resume")
    assert result.exit_code == 0, result.output
    assert " ".join(result.output.split()).startswith(
        f"nothing to train: {root} has trained all 3 of its 3 epochs to train 10 more")
    assert result.output.strip().splitlines()[-1] == (  # the command to copy: one line
        f"to train 10 more, give a larger total: `attnviz train --out {root} --resume "
        "--epochs 13`")
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    summary = json.loads(invoke("train", "--out", root, "--resume", "--json").stdout)
    assert summary["epochs_done"] == 3


@pytest.mark.parametrize("args, message", [
    (["--epoch", "5"], "attnviz train: no such option --epoch (did you mean --epochs?)"),
    (["--epochs", "five"], "attnviz train: invalid value for --epochs"),
    (["--out"], "attnviz train: --out needs a value (run directory to write), e.g. "
                "--out runs/latest"),
    (["--encoder", "lstn"], "unknown --encoder 'lstn' (did you mean lstm?): choose one of"),
    (["--task", "add-befor-delimiter"], "(did you mean add-before-delimiter?)"),
])
def test_option_errors_are_one_line_naming_the_option_and_the_fix(tmp_path, args, message):
    result = invoke("train", *args) if args == ["--out"] else invoke(
        "train", "--out", tmp_path / "run", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "run").exists()


def test_a_run_being_trained_is_refused_at_once(trained_run):
    with locked_elsewhere(trained_run.root):  # another `attnviz train` holds the run
        result = invoke("train", "--out", trained_run.root, "--resume", "--epochs", "9")
    assert result.exit_code == 2
    assert "being written by another attnviz process right now" in result.output
    assert Run.open(trained_run.root).config.epochs == 3


def test_run_files_are_readable_by_others_as_umask_allows(trained_run):
    import os

    umask = os.umask(0)
    os.umask(umask)
    for path in (trained_run.root / "state.json", trained_run.root / "attention/00/epoch_0001.npy"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask
