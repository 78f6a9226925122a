import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from attnviz.errors import AttnvizError, RunFormatError
from attnviz.keras.training import run_spec
from attnviz.store.run import FORMAT_VERSION, Run, _checksum

from conftest import make_synthetic_run, new_run, verify_all, writer


def test_synthetic_run_round_trips(synthetic_run):
    run = Run.open(synthetic_run.root)
    assert run.epochs_done == 5
    assert run.attention_epochs == [0, 1, 2, 3, 4, 5]
    assert run.attention(5).shape == (10, 20)
    np.testing.assert_allclose(run.attention(3).sum(axis=1), 1.0, atol=1e-5)
    assert run.mask("prefix").sum() == 40  # probe delimiter at 4: 4 prefix positions x 10
    verify_all(run)


def test_resolve_epoch(synthetic_run):
    assert synthetic_run.resolve_epoch("last") == 5
    assert synthetic_run.resolve_epoch(None) == 5
    assert synthetic_run.resolve_epoch("2") == 2
    with pytest.raises(AttnvizError, match="recorded epochs are 0-5"):
        synthetic_run.resolve_epoch(9)
    with pytest.raises(AttnvizError, match="not a number"):
        synthetic_run.resolve_epoch("final")


def test_unknown_mask_lists_the_masks(synthetic_run):
    with pytest.raises(AttnvizError, match="delimiter, prefix"):
        synthetic_run.mask("argmax")


def test_create_refuses_existing_run_and_non_runs(tmp_path, synthetic_run):
    from attnviz.store.config import TrainConfig

    probe = synthetic_run.probe
    args = (run_spec(TrainConfig()), probe)
    with pytest.raises(AttnvizError, match="--resume"):
        new_run(synthetic_run.root, *args)
    stranger = tmp_path / "home"
    stranger.mkdir()
    (stranger / "thesis.tex").write_text("precious")
    with pytest.raises(AttnvizError, match="not an attnviz run"):
        new_run(stranger, *args, force=True)
    assert (stranger / "thesis.tex").read_text() == "precious"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(AttnvizError, match="is a file"):
        new_run(a_file, *args)


def test_force_replaces_a_run(synthetic_run):
    run = new_run(synthetic_run.root, run_spec(synthetic_run.config), synthetic_run.probe,
                     force=True)
    assert Run.open(run.root).attention_epochs == []
    assert not list((run.root / "attention" / "00").iterdir())


def test_tampered_attention_is_refused_naming_the_file(synthetic_run):
    path = synthetic_run.root / "attention" / "00" / "epoch_0003.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(RunFormatError, match="epoch_0003.npy: checksum mismatch"):
        Run.open(synthetic_run.root).attention(3)


def test_edited_state_is_refused(synthetic_run):
    path = synthetic_run.root / "state.json"
    state = json.loads(path.read_text())
    state["history"][0]["loss"] = 0.0
    path.write_text(json.dumps(state))
    with pytest.raises(RunFormatError, match="state.json: checksum mismatch"):
        Run.open(synthetic_run.root)


def test_newer_format_is_refused(synthetic_run):
    path = synthetic_run.root / "config.json"
    header = json.loads(path.read_text())
    header["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(header))
    with pytest.raises(RunFormatError, match="newer than this attnviz reads"):
        Run.open(synthetic_run.root)


def test_unlisted_files_do_not_exist_for_readers(synthetic_run):
    # A kill after an attention file is written but before state.json: the epoch is absent.
    shutil.copy(synthetic_run.root / "attention" / "00" / "epoch_0005.npy",
                synthetic_run.root / "attention" / "00" / "epoch_0006.npy")
    run = Run.open(synthetic_run.root)
    assert run.attention_epochs[-1] == 5
    with pytest.raises(AttnvizError, match="no recorded attention"):
        run.attention(6)


def test_rollback_forgets_later_epochs(tmp_path):
    run = make_synthetic_run(tmp_path / "r", epochs=4)
    run.rollback_to(2)
    again = Run.open(run.root)
    assert again.epochs_done == 2 and again.attention_epochs == [0, 1, 2]
    assert "attention/00/epoch_0003.npy" not in again.state["files"]


def test_self_attention_run_stores_float16(tmp_path):
    run = make_synthetic_run(tmp_path / "s", attention="self", heads=3, epochs=2)
    size = (run.root / "attention" / "00" / "epoch_0001.npy").stat().st_size
    assert size < 10 * 3 * 20 * 20 * 2 + 200
    assert run.attention(1).shape == (10, 3, 20, 20)
    assert run.attention(1).dtype == np.float32


def test_missing_run_and_missing_state(tmp_path):
    with pytest.raises(AttnvizError, match="no run at"):
        Run.open(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AttnvizError, match="empty is not an attnviz run .it has no state.json"):
        Run.open(tmp_path / "empty")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")  # killed before its first commit
    with pytest.raises(RunFormatError, match="state.json: missing"):
        Run.open(tmp_path / "half")


def test_a_folder_inside_a_run_names_the_run(tmp_path, monkeypatch):
    """`inspect runs/x/checkpoints` points at runs/x, never at --force."""
    run = make_synthetic_run(tmp_path / "runs" / "x", epochs=1)
    monkeypatch.chdir(tmp_path)
    for inside in (Path("runs/x/checkpoints"), run.root / "attention" / "00"):
        with pytest.raises(AttnvizError) as caught:
            Run.open(inside)
        message = str(caught.value)
        assert "is a folder inside the run" in message and "--force" not in message
        assert message.endswith("give the run directory runs/x") or message.endswith(
            f"give the run directory {run.root}")


def test_remove_stale_files_keeps_what_is_listed_and_what_is_not_the_runs(tmp_path):
    run = make_synthetic_run(tmp_path / "r", epochs=3)
    root = run.root
    layer = root / "attention" / "00"
    stale = [root / ".state.json.k2j3h4_x.tmp", root / "checkpoints" /
             ".epoch_0004.keras.abcd1234.tmp.keras", layer / ".epoch_0004.npy.q.tmp",
             layer / "epoch_0004.npy"]  # written, then killed before the commit
    foreign = [root / "attention.gif", root / ".attention.gif.zz.tmp", root / "notes.txt",
               root / "attention" / "00" / "README"]
    for path in stale + foreign:
        path.write_bytes(b"x")
    listed = {name: (root / name).read_bytes() for name in run.state["files"]}
    assert sorted(run.remove_stale_files()) == sorted(stale)
    assert all(path.exists() for path in foreign)
    assert {name: (root / name).read_bytes() for name in run.state["files"]} == listed
    verify_all(Run.open(root))


def test_a_creation_killed_before_config_json_does_not_block_a_new_run(tmp_path, synthetic_run):
    root = tmp_path / "fresh"
    root.mkdir()
    (root / ".config.json.x1y2z3.tmp").write_bytes(b'{"format_ver')  # the killed write
    run = new_run(root, run_spec(synthetic_run.config), synthetic_run.probe)
    assert Run.open(run.root).epochs_done == 0


def test_force_refuses_a_directory_or_link_where_a_run_file_belongs(tmp_path, synthetic_run):
    args = (run_spec(synthetic_run.config), synthetic_run.probe)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.rmtree(synthetic_run.root / "checkpoints")
    (synthetic_run.root / "checkpoints").symlink_to(outside)
    with pytest.raises(AttnvizError, match="checkpoints is a link"):
        new_run(synthetic_run.root, *args, force=True)
    assert (synthetic_run.root / "state.json").is_file()  # refused before deleting anything


def test_force_after_a_killed_force_still_knows_the_run(tmp_path, synthetic_run):
    # --force deletes state.json first and config.json last: a kill in between leaves a
    # directory that a second --force (or --resume) still recognises as a run
    (synthetic_run.root / "state.json").unlink()
    shutil.rmtree(synthetic_run.root / "attention")
    run = new_run(synthetic_run.root, run_spec(synthetic_run.config), synthetic_run.probe,
                     force=True)
    assert Run.open(run.root).attention_epochs == []


def test_a_run_refuses_to_list_files_outside_itself(synthetic_run):
    path = synthetic_run.root / "state.json"
    state = json.loads(path.read_text())
    state["files"]["../../../etc/hostname"] = "0" * 64
    state["checksum"] = _checksum(state)
    path.write_text(json.dumps(state))
    with pytest.raises(RunFormatError, match="no file of a run"):
        Run.open(synthetic_run.root)


def test_an_explain_report_is_stored_listed_and_checked(synthetic_run):
    assert synthetic_run.explain_report() is None
    report = {"epoch": 5, "verdict": ["Attention sits on the delimiter."], "task": "x"}
    synthetic_run.save_explain(report)
    run = writer(synthetic_run.root)
    assert run.explain_report() == report and "explain.json" in run.state["files"]
    verify_all(run)
    run.rollback_to(3)  # a resume keeps it: it names the checkpoint it explained
    assert Run.open(run.root).explain_report() == report
    path = run.root / "explain.json"
    path.write_text(path.read_text().replace("delimiter", "prefix"))
    with pytest.raises(RunFormatError, match="explain.json: checksum mismatch"):
        Run.open(run.root).explain_report()


def test_a_stored_explain_report_must_have_a_verdict(synthetic_run):
    synthetic_run.save_explain({"epoch": 5, "verdict": "not a list"})
    with pytest.raises(RunFormatError, match="explain.json: not an explain report"):
        Run.open(synthetic_run.root).explain_report()


def test_force_removes_the_explain_report(synthetic_run):
    synthetic_run.save_explain({"epoch": 5, "verdict": []})
    run = new_run(synthetic_run.root, run_spec(synthetic_run.config), synthetic_run.probe,
                     force=True)
    assert run.explain_report() is None and not (run.root / "explain.json").exists()


def test_a_reader_cannot_write_and_a_writer_needs_the_lock(synthetic_run):
    """Run is the read side: no commit, no save. RunWriter is handed out only to a process
    holding the run's lock (attnviz.store.lock)."""
    from attnviz.store import lock
    from attnviz.store.lock import exclusive
    from attnviz.store.run import RunWriter

    while lock.holds(synthetic_run.root):  # the fixture's: as when no command runs
        lock.release(synthetic_run.root)
    assert not lock.holds(synthetic_run.root)
    reader = Run.open(synthetic_run.root)
    assert not any(hasattr(reader, name) for name in (
        "commit", "save_attention", "save_explain", "rollback_to", "extend",
        "remove_stale_files", "write_checkpoint"))
    with pytest.raises(RuntimeError, match="written without its lock"):
        RunWriter.open(synthetic_run.root)
    with exclusive(synthetic_run.root):
        with exclusive(synthetic_run.root):  # re-entrant within the process
            run = RunWriter.open(synthetic_run.root)
        run.commit()
    with pytest.raises(RuntimeError, match="written without its lock"):
        RunWriter.open(synthetic_run.root)
    with pytest.raises(RuntimeError, match="written without its lock"):
        run.commit()  # a writer whose lock was given back commits nothing
