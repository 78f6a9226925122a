"""Tokens on the axes: AttentionRecorder(tokens=...) and --tokens FILE.json label positions in
inspect, animate, report and JSON; labels are data, escaped and shortened where shown."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers
from PIL import Image
from typer.testing import CliRunner

from attnviz.analysis.tokens import given_labels, short
from attnviz.cli import app
from attnviz.errors import AttnvizError
from attnviz.keras import AttentionRecorder
from attnviz.store.run import Run
from attnviz.views.animation import drawable
from attnviz.views.frames import HEADER_LINE_PX

runner = CliRunner()
L, N = 6, 3
VOCAB = ["[CLS]", "the", "cat\n", "sat", "<b>on</b>", "mat", "[SEP]", "supercalifragilistic"]
IDS = np.array([[0, 1, 2, 3, 4, 6], [0, 7, 5, 1, 2, 6], [0, 3, 3, 4, 5, 6]], np.int32)


def test_labels_come_from_rows_a_vocabulary_or_a_callable():
    rows = [[f"t{k}" for k in range(L)] for _ in range(N)]
    assert given_labels(rows, IDS, N, [L]) == rows
    named = given_labels({"vocabulary": VOCAB}, IDS, N, [L])
    assert named[1] == ["[CLS]", "supercalifragilistic", "mat", "the", "cat\n", "[SEP]"]
    assert given_labels(VOCAB.__getitem__, IDS, N, [L]) == named
    assert given_labels(VOCAB.__getitem__, {"token_ids": IDS, "padding_mask": IDS > 0},
                        N, [L]) == named  # keras_hub's inputs


@pytest.mark.parametrize(("tokens", "said"), [
    ([["a"] * L] * 2, "has 2 rows: the probe holds 3 samples"),
    ([["a"] * 5] * N, "a row has 5 labels, the positions are 6"),
    ([["a"] * (L - 1) + [7]] * N, "every label must be a string"),
    ("abc", "give one list of strings per probe sample"),
    ({"vocabulary": ["a", "b"]}, "the probe has token id 7, the vocabulary names ids 0..1"),
    ({"vocab": VOCAB}, 'an object must be {"vocabulary": [...]}'),
    (lambda i: 1 / 0, "calling it on token id 0 raised ZeroDivisionError"),
])
def test_labels_that_do_not_fit_the_probe_are_refused_naming_why(tokens, said):
    with pytest.raises(AttnvizError, match=None) as raised:
        given_labels(tokens, IDS, N, [L])
    assert said in str(raised.value)


def test_labels_shown_in_the_terminal_and_in_frames_are_escaped_and_short():
    assert short("cat\n") == "cat\\n" and short("") == "''"
    assert short("supercalifragilistic", 8) == "superca…"
    assert drawable("supercalifragilistic") == "superc.." and drawable("é") == "\\xe9"
    assert drawable("▁the", 12) == "\\u2581the"


def _model():
    keras.utils.set_random_seed(0)
    tokens = keras.Input((L,), dtype="int32")
    x = layers.Embedding(len(VOCAB), 8)(tokens)
    x = layers.MultiHeadAttention(2, 4)(x, x, use_causal_mask=True)
    model = keras.Model(tokens, layers.Dense(len(VOCAB))(x))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.fixture(scope="module")
def token_run(tmp_path_factory) -> Run:
    root = tmp_path_factory.mktemp("tokens") / "run"
    x = np.random.default_rng(0).integers(0, len(VOCAB), (64, L)).astype(np.int32)
    x[:N] = IDS
    _model().fit(x, np.roll(x, 1, 1), epochs=1, batch_size=16, verbose=0, callbacks=[
        AttentionRecorder(root, probe=x[:N], tokens=VOCAB.__getitem__, checkpoint_every=0)])
    return Run.open(root)


def test_the_recorder_keeps_the_labels_and_inspect_names_the_attended_tokens(token_run):
    assert token_run.header["probe"]["tokens"][1][1] == "supercalifragilistic"
    result = runner.invoke(app, ["inspect", str(token_run.root), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["tokens"] == [[VOCAB[i] for i in row] for row in IDS.tolist()]
    text = runner.invoke(app, ["inspect", str(token_run.root)]).output
    assert "most attended tokens" in text and "sample 2:" in text
    assert "cat\\n" in text or "supercalifr…" in text or "[SEP] @5" in text
    assert "cat\n" not in text  # a newline in a label never breaks the line


def test_a_tokens_file_overrides_the_runs_labels_everywhere(token_run, tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps([[f"w{k}" for k in range(L)]] * N))
    root = str(token_run.root)
    result = runner.invoke(app, ["inspect", root, "--tokens", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["tokens"][2] == [f"w{k}" for k in range(L)]
    report = runner.invoke(app, ["report", root, "-o", str(tmp_path / "r.html"), "--tokens",
                                 str(path)])
    assert report.exit_code == 0, report.output
    assert '"w5"' in (tmp_path / "r.html").read_text()
    # the run's labels differ by sample: sample 0's are a header line; the file's are the
    # same for every sample: they name the columns instead
    plain = runner.invoke(app, ["animate", root, "-o", str(tmp_path / "a.gif"), "--frames",
                                str(tmp_path / "plain")])
    named = runner.invoke(app, ["animate", root, "-o", str(tmp_path / "b.gif"), "--frames",
                                str(tmp_path / "named"), "--tokens", str(path)])
    assert plain.exit_code == 0 and named.exit_code == 0, plain.output + named.output
    first = sorted((tmp_path / "plain").iterdir())[-1].name
    a = np.asarray(Image.open(tmp_path / "plain" / first))
    b = np.asarray(Image.open(tmp_path / "named" / first))
    assert a.shape[0] == b.shape[0] + HEADER_LINE_PX
    assert not np.array_equal(a[-14:], b[-14:])  # the position row: numbers, then labels
    heads = runner.invoke(app, ["animate", root, "-o", str(tmp_path / "c.gif"), "--head", "all",
                                "--tokens", str(path)])
    assert heads.exit_code == 0, heads.output


@pytest.mark.parametrize(("content", "said"), [
    (None, "no such file"),
    ("{not json", "not a JSON file"),
    (json.dumps([["a", "b"]] * N), "a row has 2 labels, the positions are 6"),
])
def test_a_bad_tokens_file_is_one_line_and_exit_code_2(token_run, tmp_path, content, said):
    path = tmp_path / "tokens.json"
    if content is not None:
        path.write_text(content)
    for command in (["inspect"], ["report", "-o", str(tmp_path / "r.html")],
                    ["animate", "-o", str(tmp_path / "a.gif")]):
        result = runner.invoke(app, [command[0], str(token_run.root), *command[1:],
                                     "--tokens", str(path)])
        assert result.exit_code == 2, result.output
        assert said in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "a.gif").exists()


def test_tokens_in_a_fresh_process(token_run):
    done = subprocess.run([sys.executable, "-m", "attnviz", "inspect", str(token_run.root)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "most attended tokens" in done.stdout
