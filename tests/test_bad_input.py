"""The bad-input corpus: damaged runs, damaged user files and bad options, for every command.

Each case copies a run, damages one thing, and runs one command in-process. It must exit 2
with one line that names the file (or option) and the problem, print no traceback, and leave
every file byte-identical, with no new file anywhere under the case's directory.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from attnviz.cli import app
from attnviz.store.run import STATE, _checksum

from conftest import make_synthetic_run, writer

runner = CliRunner()
LAST = "attention/00/epoch_0005.npy"  # the synthetic run's last recorded epoch
CHECKPOINT = "checkpoints/epoch_0003.keras"  # the trained run's last checkpoint


# ---- ways to damage a file -----------------------------------------------------------------


def truncate(name: str) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        path = root / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return damage


def empty(name: str) -> Callable[[Path], None]:
    return lambda root: (root / name).write_bytes(b"")


def flip_last_byte(name: str) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        data = bytearray((root / name).read_bytes())
        data[-1] ^= 0xFF
        (root / name).write_bytes(bytes(data))
    return damage


def as_directory(name: str) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        (root / name).unlink()
        (root / name).mkdir()
        (root / name / "keep.txt").write_text("a directory where a file belongs")
    return damage


def delete(name: str) -> Callable[[Path], None]:
    return lambda root: (root / name).unlink()


def rewrite_state(edit: Callable[[dict], None], checksum: bool = True) -> Callable:
    """Edit state.json; with `checksum`, record a matching checksum, as a careful forger would."""
    def damage(root: Path) -> None:
        state = json.loads((root / STATE).read_text())
        edit(state)
        if checksum:
            state["checksum"] = _checksum(state)
        (root / STATE).write_text(json.dumps(state))
    return damage


def forge(name: str, data: bytes | Callable[[bytes], bytes]) -> Callable[[Path], None]:
    """Replace a run file and list the new bytes' checksum: damage no checksum can see."""
    def damage(root: Path) -> None:
        path = root / name
        path.write_bytes(data(path.read_bytes()) if callable(data) else data)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        rewrite_state(lambda state: state["files"].__setitem__(name, digest))(root)
    return damage


def forge_config(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def new_bytes(old: bytes) -> bytes:
        header = json.loads(old)
        edit(header)
        return json.dumps(header).encode()
    return forge("config.json", new_bytes)


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npy_claiming(shape: tuple[int, ...]) -> bytes:
    """A .npy header promising `shape` (terabytes, say) followed by a few bytes of data."""
    buffer = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + bytes(16)


class Payload:
    """Unpickling it would create a file: proof that a pickle was run."""

    def __reduce__(self):
        return (Path.touch, (Path("PICKLE_RAN"),))


def pickled_array() -> bytes:
    return npy(np.array([Payload(), 1.0], dtype=object))


def probe_with(**arrays) -> Callable[[bytes], bytes]:
    """The probe archive with some arrays replaced (None: removed)."""
    def new_bytes(old: bytes) -> bytes:
        with np.load(io.BytesIO(old)) as archive:
            kept = {key: archive[key] for key in archive.files}
        for key, value in arrays.items():
            if value is None:
                kept.pop(key)
            else:
                kept[key] = value(kept[key]) if callable(value) else value
        buffer = io.BytesIO()
        np.savez(buffer, **kept)
        return buffer.getvalue()
    return new_bytes


def with_nan(array: np.ndarray) -> np.ndarray:
    array = array.astype(np.float32)
    array.flat[3] = np.nan
    return array


def with_inf(array: np.ndarray) -> np.ndarray:
    array = array.astype(np.float32)
    array.flat[0] = np.inf
    return array


def keras_without(member: str) -> Callable[[bytes], bytes]:
    """The .keras zip without one of its members."""
    def new_bytes(old: bytes) -> bytes:
        source = zipfile.ZipFile(io.BytesIO(old))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as target:
            for info in source.infolist():
                if info.filename != member:
                    target.writestr(info, source.read(info))
        return buffer.getvalue()
    return new_bytes


def write(name: str, data: bytes | str) -> Callable[[Path], None]:
    """A user file beside the run (in the case's directory)."""
    def damage(root: Path) -> None:
        path = root.parent / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return damage


def nothing(root: Path) -> None:
    pass


def explained(*then: Callable[[Path], None]) -> Callable[[Path], None]:
    """Store an explain report in the run (as `attnviz explain` does), then damage it."""
    def damage(root: Path) -> None:
        writer(root).save_explain({"epoch": 5, "verdict": ["Attention sits on the delimiter."]})
        for step in then:
            step(root)
    return damage


# ---- the corpus ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]  # "{run}" and "{dir}" are filled in
    damage: Callable[[Path], None]
    names: str  # the file or option the message must name
    problem: str  # and a piece of its problem
    run: str = "synthetic"  # or "trained" (a real checkpoint; TensorFlow)


SYNTHETIC = {
    # state.json: torn, edited, the wrong kind of thing, or inconsistent
    "state-truncated": Case(("animate", "{run}"), truncate(STATE), "state.json",
                            "not valid JSON"),
    "state-empty": Case(("score", "{run}"), empty(STATE), "state.json", "not valid JSON"),
    "state-directory": Case(("inspect", "{run}"), as_directory(STATE), "state.json",
                            "is a directory"),
    "state-edited": Case(("score", "{run}"), rewrite_state(
        lambda s: s["history"][0].update(loss=0.0), checksum=False), "state.json",
        "checksum mismatch"),
    "state-missing-key": Case(("inspect", "{run}"), rewrite_state(lambda s: s.pop("history")),
                              "state.json", "missing keys ['history']"),
    "state-newer-format": Case(("animate", "{run}"), rewrite_state(
        lambda s: s.update(format_version=99)), "state.json", "newer than this attnviz"),
    "state-not-an-object": Case(("score", "{run}"), write("run/state.json", "[1, 2]"),
                                "state.json", "expected a JSON object"),
    "state-lists-outside-file": Case(("inspect", "{run}"), rewrite_state(
        lambda s: s["files"].update({"../../etc/passwd": "0" * 64})), "state.json",
        "no file of a run"),
    "state-epoch-beyond-history": Case(("score", "{run}"), rewrite_state(
        lambda s: s["attention_epochs"].append(9)), "state.json", "lie outside"),
    "state-epoch-without-checksum": Case(("animate", "{run}"), rewrite_state(
        lambda s: s["files"].pop(LAST)), "state.json", "no checksum"),
    "state-history-out-of-order": Case(("inspect", "{run}"), rewrite_state(
        lambda s: s["history"].reverse()), "state.json", "not 1..5 in order"),
    "state-bad-digest": Case(("score", "{run}"), rewrite_state(
        lambda s: s["files"].update({LAST: "not-a-digest"})), "state.json", "sha256"),
    "state-epochs-below-history": Case(("animate", "{run}"), rewrite_state(
        lambda s: s.update(epochs=2)), "state.json", "at least 5"),
    # config.json
    "config-truncated": Case(("inspect", "{run}"), truncate("config.json"), "config.json",
                             "not valid JSON"),
    "config-empty": Case(("score", "{run}"), empty("config.json"), "config.json",
                         "not valid JSON"),
    "config-directory": Case(("animate", "{run}"), as_directory("config.json"), "config.json",
                             "is a directory"),
    "config-edited": Case(("score", "{run}"), lambda root: (root / "config.json").write_text(
        (root / "config.json").read_text().replace('"units": 100', '"units": 7')),
        "config.json", "checksum mismatch"),
    "config-newer-format": Case(("inspect", "{run}"), forge_config(
        lambda h: h.update(format_version=3)), "config.json", "newer than this attnviz"),
    "config-unknown-task": Case(("score", "{run}"), forge_config(
        lambda h: h["config"].update(task="sum-all")), "config.json",
        "does not belong to the config's task"),
    "config-unknown-key": Case(("animate", "{run}"), forge_config(
        lambda h: h["config"].update(colour="red")), "config.json", "unknown keys"),
    "config-out-of-range": Case(("inspect", "{run}"), forge_config(
        lambda h: h["config"].update(probe_size=0)), "config.json", "at least 1"),
    "config-wrong-type": Case(("score", "{run}"), forge_config(
        lambda h: h["config"].update(seq_len="20")), "config.json", "should be int"),
    "config-missing-key": Case(("animate", "{run}"), forge_config(lambda h: h.pop("task")),
                               "config.json", "missing keys ['task']"),
    "config-shape-mismatch": Case(("score", "{run}"), forge_config(
        lambda h: h["layers"][0].update(shape=[10, 21])), "config.json", "does not fit"),
    "config-main-mask-unknown": Case(("inspect", "{run}"), forge_config(
        lambda h: h["probe"].update(main_mask="argmax")), "config.json", "main_mask"),
    # attention/*.npy
    "attention-truncated": Case(("score", "{run}"), truncate(LAST), "epoch_0005.npy",
                                "checksum mismatch"),
    "attention-empty": Case(("inspect", "{run}"), empty(LAST), "epoch_0005.npy",
                            "checksum mismatch"),
    "attention-flipped": Case(("animate", "{run}"), flip_last_byte(LAST), "epoch_0005.npy",
                              "checksum mismatch"),
    "attention-directory": Case(("score", "{run}"), as_directory(LAST), "epoch_0005.npy",
                                "not a file"),
    "attention-missing": Case(("inspect", "{run}"), delete(LAST), "epoch_0005.npy", "missing"),
    "attention-nan": Case(("inspect", "{run}"), forge(LAST, lambda old: npy(
        with_nan(np.load(io.BytesIO(old))))), "epoch_0005.npy", "NaN or Inf"),
    "attention-inf": Case(("animate", "{run}"), forge(LAST, lambda old: npy(
        with_inf(np.load(io.BytesIO(old))))), "epoch_0005.npy", "NaN or Inf"),
    "attention-wrong-shape": Case(("score", "{run}"), forge(
        LAST, npy(np.full((10, 19), 1 / 19, np.float32))), "epoch_0005.npy", "shape (10, 19)"),
    "attention-wrong-dtype": Case(("inspect", "{run}"), forge(
        LAST, npy(np.ones((10, 20), np.int64))), "epoch_0005.npy", "dtype int64"),
    "attention-strings": Case(("animate", "{run}"), forge(
        LAST, npy(np.full((10, 20), "x"))), "epoch_0005.npy", "dtype <U1"),
    "attention-pickle": Case(("score", "{run}"), forge(LAST, pickled_array()),
                             "epoch_0005.npy", "dtype object"),
    "attention-not-npy": Case(("inspect", "{run}"), forge(LAST, b"PK\x03\x04 garbage"),
                              "epoch_0005.npy", "not a readable .npy"),
    "attention-huge-header": Case(("score", "{run}"), forge(LAST, npy_claiming((10**12,))),
                                  "epoch_0005.npy", "but the run says (10, 20)"),
    # probe.npz
    "probe-truncated": Case(("score", "{run}"), truncate("probe.npz"), "probe.npz",
                            "checksum mismatch"),
    "probe-empty": Case(("animate", "{run}"), empty("probe.npz"), "probe.npz",
                        "checksum mismatch"),
    "probe-not-zip": Case(("inspect", "{run}"), forge("probe.npz", b"not a zip at all"),
                          "probe.npz", "not a readable .npz"),
    "probe-missing-mask": Case(("score", "{run}"), forge(
        "probe.npz", probe_with(mask_prefix=None)), "probe.npz", "missing array 'mask_prefix'"),
    "probe-wrong-shape": Case(("animate", "{run}"), forge(
        "probe.npz", probe_with(x=np.zeros((10, 20), np.float32))), "probe.npz", "shape"),
    "probe-nan": Case(("inspect", "{run}"), forge("probe.npz", probe_with(x=with_nan)),
                      "probe.npz", "NaN or Inf"),
    "probe-pickle": Case(("score", "{run}"), forge("probe.npz", probe_with(
        y=np.array([Payload()] * 10, dtype=object).reshape(10, 1))), "probe.npz",
        "dtype object"),
    # options: unknown names, out-of-range numbers
    "score-unknown-mask": Case(("score", "{run}", "--mask", "argmax"), nothing, "argmax",
                               "unknown mask"),
    "score-epoch-out-of-range": Case(("score", "{run}", "--epoch", "99"), nothing, "epoch 99",
                                     "was not recorded"),
    "animate-unknown-cmap": Case(("animate", "{run}", "--cmap", "rainbow-ish"), nothing,
                                 "--cmap", "unknown"),
    "animate-zero-scale": Case(("animate", "{run}", "--scale", "0"), nothing, "--scale",
                               "1 or more"),
    "animate-negative-samples": Case(("animate", "{run}", "--samples", "-1"), nothing,
                                     "--samples", "1 or more"),
    "inspect-epoch-not-a-number": Case(("inspect", "{run}", "--epoch", "final"), nothing,
                                       "--epoch", "not a number"),
    "inspect-zero-samples": Case(("inspect", "{run}", "--samples", "0"), nothing, "--samples",
                                 "at least 1"),
    "report-attention-flipped": Case(("report", "{run}"), flip_last_byte(LAST),
                                     "epoch_0005.npy", "checksum mismatch"),
    "report-explain-flipped": Case(("report", "{run}"), explained(flip_last_byte("explain.json")),
                                   "explain.json", "checksum mismatch"),
    "report-explain-not-json": Case(("report", "{run}"), explained(forge("explain.json", b"{")),
                                    "explain.json", "not valid JSON"),
    "report-explain-incomplete": Case(("report", "{run}"), explained(), "explain.json",
                                      "not an explain report this attnviz reads"),
    "train-zero-units": Case(("train", "--out", "{dir}/new", "--units", "0"), nothing,
                             "--units", "at least 1"),
    "train-zero-checkpoint-every": Case(("train", "--out", "{dir}/new",
                                         "--checkpoint-every", "0"), nothing,
                                        "--checkpoint-every", "at least 1"),
    "train-force-over-state-directory": Case(("train", "--out", "{run}", "--force"),
                                             as_directory(STATE), "state.json",
                                             "is a directory"),
    "train-resume-torn-state": Case(("train", "--out", "{run}", "--resume"), truncate(STATE),
                                    "state.json", "not valid JSON"),
    "train-resume-newer-format": Case(("train", "--out", "{run}", "--resume"), rewrite_state(
        lambda s: s.update(format_version=3)), "state.json", "newer than this attnviz"),
    "train-resume-fewer-epochs": Case(("train", "--out", "{run}", "--resume", "--epochs", "2"),
                                      nothing, "--epochs 2", "fewer than the 5"),
    # usage: misspelt options, commands and names, missing arguments, values of a wrong type
    "train-misspelt-option": Case(("train", "--out", "{dir}/new", "--epoch", "0"), nothing,
                                  "--epoch", "did you mean --epochs?"),
    "train-misspelt-encoder": Case(("train", "--out", "{dir}/new", "--encoder", "lstn"),
                                   nothing, "--encoder 'lstn'", "did you mean lstm?"),
    "train-unknown-backend": Case(("train", "--out", "{dir}/new", "--backend", "torch"),
                                  nothing, "--backend torch", "tensorflow or jax"),
    "train-resume-nothing": Case(("train", "--out", "{dir}/none", "--resume"), nothing,
                                 "nothing to resume", "drop --resume"),
    "train-over-a-run": Case(("train", "--out", "{run}"), nothing, "already holds files",
                             "--resume"),
    "misspelt-command": Case(("scroe", "{run}"), nothing, "'scroe'", "did you mean score?"),
    "score-misspelt-run": Case(("score", "{dir}/rn"), nothing, "no run at",
                               "did you mean"),
    "score-misspelt-mask": Case(("score", "{run}", "--mask", "delimter"), nothing,
                                "'delimter'", "did you mean delimiter?"),
    "score-misspelt-layer": Case(("score", "{run}", "--layer", "atention"), nothing,
                                 "--layer atention", "did you mean attention?"),
    "animate-unknown-layer": Case(("animate", "{run}", "--layer", "encoder"), nothing,
                                  "--layer encoder", "recorded no such layer"),
    "score-misspelt-metric": Case(("score", "{run}", "--min", "mas=0.5"), nothing, "'mas'",
                                  "did you mean mass?"),
    "score-threshold-on-a-misspelt-mask": Case(("score", "{run}", "--min", "mass@prefx=0.5"),
                                               nothing, "'prefx'", "did you mean prefix?"),
    "score-threshold-on-an-unscored-mask": Case(("score", "{run}", "--mask", "delimiter",
                                                 "--min", "mass@prefix=0.5"), nothing,
                                                "'prefix'", "add --mask prefix"),
    "score-wrong-direction": Case(("score", "{run}", "--min", "jsd=0.1"), nothing, "--min",
                                  "write --max jsd=0.1"),
    "score-option-without-value": Case(("score", "{run}", "--min"), nothing, "--min",
                                       "needs a value"),
    "explain-missing-run": Case(("explain",), nothing, "RUN", "missing"),
    "inspect-samples-not-a-number": Case(("inspect", "{run}", "--samples", "many"), nothing,
                                         "--samples", "invalid value"),
    "animate-unexpected-argument": Case(("animate", "{run}", "extra"), nothing, "'extra'",
                                        "unexpected argument"),
    "data-misspelt-task": Case(("data", "-o", "{dir}/s.npz", "--task", "find-maks"), nothing,
                               "'find-maks'", "did you mean find-max?"),
    "data-under-a-file": Case(("data", "-o", "{dir}/f.txt/s.npz"), write("f.txt", b"text"),
                              "f.txt", "is a file, not a folder"),
    # user files given to score and inspect
    "score-attention-pickle": Case(("score", "--attention", "{dir}/a.npy", "--mask",
                                    "{dir}/m.npy"), write("a.npy", pickled_array()), "a.npy",
                                   "not a readable .npy"),
    "score-attention-nan": Case(("score", "--attention", "{dir}/a.npy", "--mask", "{dir}/m.npy"),
                                write("a.npy", npy(np.full((4, 6), np.nan))), "a.npy", "NaN"),
    "score-attention-empty-file": Case(("score", "--attention", "{dir}/a.npy", "--mask",
                                        "{dir}/m.npy"), write("a.npy", b""), "a.npy",
                                       "not a readable"),
    "score-attention-directory": Case(("score", "--attention", "{run}", "--mask",
                                       "{dir}/m.npy"), nothing, "--attention", "no such file"),
    "score-mask-wrong-shape": Case(("score", "--attention", "{dir}/a.npy", "--mask",
                                    "{dir}/m.npy"), write("a.npy", npy(np.full((3, 6), 1 / 6))),
                                   "m.npy", "shape"),
    "inspect-model-truncated": Case(("inspect", "{dir}/model.keras"),
                                    write("model.keras", b"PK\x03\x04\x14\x00"), "model.keras",
                                    "not a .keras model file"),
    "inspect-model-not-keras": Case(("inspect", "{dir}/weights.h5"),
                                    write("weights.h5", b"\x89HDF"), "weights.h5", ".keras"),
}

TRAINED = {
    "checkpoint-truncated": Case(("inspect", "{run}", "--checkpoint", "last"),
                                 truncate(CHECKPOINT), "epoch_0003.keras", "checksum mismatch"),
    "checkpoint-directory": Case(("explain", "{run}"), as_directory(CHECKPOINT),
                                 "epoch_0003.keras", "not a file"),
    "checkpoint-forged-garbage": Case(("explain", "{run}"), forge(CHECKPOINT, b"PK\x05\x06" +
                                                                  bytes(18)), "epoch_0003.keras",
                                      "cannot load"),
    "checkpoint-forged-no-config": Case(("inspect", "{run}", "--checkpoint", "3"), forge(
        CHECKPOINT, keras_without("config.json")), "epoch_0003.keras", "cannot load"),
    "checkpoint-forged-no-weights": Case(("explain", "{run}"), forge(
        CHECKPOINT, keras_without("model.weights.h5")), "epoch_0003.keras", "cannot load"),
    "explain-no-such-checkpoint": Case(("explain", "{run}", "--epoch", "1"), nothing,
                                      "--epoch 1", "no checkpoint"),
    "explain-top-k-out-of-range": Case(("explain", "{run}", "--top-k", "99"), nothing,
                                       "--top-k", "must be in"),
    "explain-baseline-without-loss": Case(("explain", "{run}", "--baseline", "shortcut"),
                                          nothing, "--baseline shortcut", "give NAME=MSE"),
    "explain-baseline-negative": Case(("explain", "{run}", "--baseline", "mean=-1"), nothing,
                                      "--baseline mean=-1", "(0 or more)"),
    "explain-data-on-a-task-run": Case(("explain", "{run}", "--data", "{dir}/d.npz"),
                                       write("d.npz", b"PK"), "--data", "drop --data"),
    "explain-unknown-layer": Case(("explain", "{run}", "--layer", "nope"), nothing,
                                  "--layer nope", "recorded no such layer"),
    "explain-zero-draws": Case(("explain", "{run}", "--draws", "0"), nothing, "--draws",
                               "at least 1"),
    "explain-negative-adversarial-steps": Case(("explain", "{run}", "--adversarial-steps",
                                                "-1"), nothing, "--adversarial-steps",
                                               "at least 0"),
    "inspect-unknown-layer": Case(("inspect", "{run}", "--checkpoint", "last", "--layer",
                                   "nope"), nothing, "nope", "layer"),
    "inspect-input-corrupt-npz": Case(("inspect", "{run}", "--checkpoint", "last", "--input",
                                       "{dir}/x.npz"), write("x.npz", b"PK\x03\x04broken"),
                                      "x.npz", "not a readable"),
    "inspect-input-csv-text": Case(("inspect", "{run}", "--checkpoint", "last", "--input",
                                    "{dir}/x.csv"), write("x.csv", "a,b\n1,2\nthree,4\n"),
                                   "x.csv", "not all numbers"),
    "train-resume-torn-checkpoint": Case(("train", "--out", "{run}", "--resume"),
                                         truncate(CHECKPOINT), "epoch_0003.keras",
                                         "checksum mismatch"),
}


def snapshot(directory: Path) -> dict[str, str]:
    """sha256 of every file under `directory`, and a marker for every directory."""
    return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "<dir>" for p in sorted(directory.rglob("*"))}


def prepare(case: Case, root: Path, monkeypatch) -> list[str]:
    """Damage the run at `root`, work in its folder; the case's command line."""
    case.damage(root)
    mask_file = root.parent / "m.npy"
    if not mask_file.exists():
        mask_file.write_bytes(npy(np.eye(4, 6, dtype=bool)))
    monkeypatch.chdir(root.parent)  # a command writing to the current directory is caught too
    return [arg.format(run=root, dir=root.parent) for arg in case.args]


def run_case(case: Case, root: Path, monkeypatch) -> None:
    args = prepare(case, root, monkeypatch)
    before = snapshot(root.parent)
    result = runner.invoke(app, args)
    output = result.output.strip()
    assert result.exit_code == 2, f"exit {result.exit_code}: {output}\n{result.exception!r}"
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    assert case.names in output and case.problem in output, output
    assert snapshot(root.parent) == before  # byte-identical, nothing new, nothing removed
    assert not (root.parent / "PICKLE_RAN").exists()


@pytest.mark.parametrize("name", SYNTHETIC)
def test_bad_input_on_a_synthetic_run(name, tmp_path, monkeypatch):
    root = tmp_path / "run"
    make_synthetic_run(root)
    run_case(SYNTHETIC[name], root, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINED)
def test_bad_input_on_a_trained_run(name, tmp_path, monkeypatch, trained_run):
    root = tmp_path / "run"
    shutil.copytree(trained_run.root, root)
    run_case(TRAINED[name], root, monkeypatch)


def test_the_corpus_covers_every_command():
    cases = [*SYNTHETIC.values(), *TRAINED.values()]
    assert len(cases) >= 40
    assert {case.args[0] for case in cases} >= {"train", "inspect", "score", "animate",
                                                "explain", "report", "data"}


def test_pickles_are_refused_not_run(tmp_path, monkeypatch):
    """The Payload really would run if loaded with allow_pickle=True."""
    monkeypatch.chdir(tmp_path)
    np.load(io.BytesIO(pickled_array()), allow_pickle=True)
    assert (tmp_path / "PICKLE_RAN").exists()
