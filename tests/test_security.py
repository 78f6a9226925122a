"""Files are data, never code: no pickles, no Lambda layers without --unsafe, and commands
write nothing but the outputs they were asked for."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import attnviz
from attnviz.analysis.inspection import load_input
from attnviz.cli import app
from attnviz.errors import AttnvizError

from conftest import make_synthetic_run

runner = CliRunner()
PACKAGE = Path(attnviz.__file__).parent


def calls_named(name: str):
    """(file, call) for every call of a function or method called `name` in the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and name in (
                getattr(node.func, "attr", None), getattr(node.func, "id", None)
            ):
                yield path.name, node


def keyword(call: ast.Call, name: str):
    return next((ast.unparse(k.value) for k in call.keywords if k.arg == name), None)


def test_every_np_load_refuses_pickles():
    loads = [(file, call) for file, call in calls_named("load")
             if ast.unparse(call.func) in ("np.load", "numpy.load")]
    assert loads, "no np.load found: the test looks in the wrong place"
    for file, call in loads:
        assert keyword(call, "allow_pickle") == "False", f"{file}: {ast.unparse(call)}"


def test_every_model_load_is_in_safe_mode_unless_unsafe():
    loads = list(calls_named("load_model"))
    assert loads
    for file, call in loads:
        if ast.unparse(call.func) in ("keras.models.load_model", "keras.saving.load_model"):
            assert keyword(call, "safe_mode") in ("True", "not unsafe"), (
                f"{file}: {ast.unparse(call)}")


def lambda_model(path: Path, marker: Path) -> None:
    """A .keras model with a Lambda layer whose code would create `marker` if it ran."""
    import keras

    inputs = keras.Input((4,))
    touch = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    outputs = keras.layers.Lambda(eval(f"lambda x: ({touch}, x)[1]"))(inputs)
    marker.unlink(missing_ok=True)  # building the model may run it, here in the test
    keras.Model(inputs, outputs).save(path)


@pytest.mark.slow
def test_a_model_with_a_lambda_layer_is_refused_without_unsafe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, marker = tmp_path / "model.keras", tmp_path / "lambda-ran"
    lambda_model(model, marker)
    before = model.read_bytes()
    result = runner.invoke(app, ["inspect", str(model), "--list"])
    assert result.exit_code == 2, result.output
    assert "Lambda" in result.output and "--unsafe" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not marker.exists() and model.read_bytes() == before
    runner.invoke(app, ["inspect", str(model), "--list", "--unsafe"])
    assert marker.exists()  # the control: with --unsafe the file's code does run


@pytest.mark.slow
def test_a_run_checkpoint_with_a_lambda_layer_is_refused(tmp_path, monkeypatch, trained_run):
    """Even with its checksum recorded, the checkpoint's code never runs: safe mode always."""
    from attnviz.store.run import STATE, _checksum

    root = tmp_path / "run"
    shutil.copytree(trained_run.root, root)
    marker = tmp_path / "lambda-ran"
    name = "checkpoints/epoch_0003.keras"
    lambda_model(root / name, marker)
    state = json.loads((root / STATE).read_text())
    state["files"][name] = hashlib.sha256((root / name).read_bytes()).hexdigest()
    state["checksum"] = _checksum(state)
    (root / STATE).write_text(json.dumps(state))
    monkeypatch.chdir(tmp_path)
    for args in (["explain", str(root)], ["inspect", str(root), "--checkpoint", "last"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "epoch_0003.keras" in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert not marker.exists()


def test_a_pickled_attention_file_is_refused_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pickle-ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    buffer = io.BytesIO()
    np.save(buffer, np.array([Payload(), Payload()], dtype=object), allow_pickle=True)
    (tmp_path / "a.npy").write_bytes(buffer.getvalue())
    np.save(tmp_path / "m.npy", np.ones((2, 2), bool))
    result = runner.invoke(app, ["score", "--attention", "a.npy", "--mask", "m.npy"])
    assert result.exit_code == 2 and "allow_pickle=False" in result.output, result.output
    with pytest.raises(AttnvizError, match="a.npy: not a readable .npy"):
        load_input(tmp_path / "a.npy")  # what `inspect --input a.npy` reads
    assert not marker.exists()


def snapshot(directory: Path) -> dict[str, str]:
    return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in directory.rglob("*") if p.is_file()}


@pytest.mark.parametrize("args, outputs", [
    (["animate", "run"], {"run/attention.gif"}),
    (["animate", "run", "-o", "out/a.gif", "--frames", "out/frames"],
     {"out/a.gif", *(f"out/frames/epoch_{e:04d}.png" for e in range(6))}),
    (["score", "run", "--junit", "out/j.xml", "--plot", "out/p.png", "--min",
      "mass=0.1"], {"out/j.xml", "out/p.png"}),
    (["inspect", "run", "--save", "out/w.npy", "--png", "out/w.png"],
     {"out/w.npy", "out/w.png"}),
    (["score", "run", "--json"], set()),
])
def test_commands_write_only_their_outputs(tmp_path, monkeypatch, args, outputs):
    monkeypatch.chdir(tmp_path)
    make_synthetic_run(tmp_path / "run")
    (tmp_path / "out").mkdir()
    before = snapshot(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    after = snapshot(tmp_path)
    assert {name: after[name] for name in before} == before  # nothing changed
    assert set(after) - set(before) == outputs  # nothing new but the outputs
