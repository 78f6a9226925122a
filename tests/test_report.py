"""`attnviz report` without a browser: what the page holds, its budget, its safety, bad input.

tests/test_report_browser.py opens the pages in Chromium."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from attnviz.analysis.score import METRIC_NAMES, score_run
from attnviz.analysis.tasks import get_task
from attnviz.cli import app
from attnviz.errors import AttnvizError
from attnviz.store.run import Run, RunSpec
from attnviz.views.report import BYTES_PER_WEIGHT, Layer, embed_json, estimate_bytes

from conftest import explain_report, make_synthetic_run, many_heads_run, mixed_keys_run, new_run

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["report", *map(str, args)])


def page_data(path) -> dict:
    page = path.read_text()
    found = re.search(r'<script type="application/json" id="attnviz-data">(.*?)</script>', page,
                      re.DOTALL)
    return json.loads(found[1])


def decode(text: str, shape) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), "<u2").reshape(shape) / 65535


@pytest.fixture
def founding(tmp_path) -> Run:
    """The founding case's shape: 15 epochs recorded every epoch, 10 samples, L = 20."""
    return make_synthetic_run(tmp_path / "run", epochs=15)


def test_writes_one_file_beside_the_run_and_says_so(founding):
    result = invoke(founding.root)
    assert result.exit_code == 0, result.output
    path = founding.root / "report.html"
    said = " ".join(result.stdout.split())  # the line wraps at the terminal's width
    assert said.startswith(f"wrote {path}: 16 epochs (0-15), 1 layer(s), 1 head(s), ")
    assert path.read_text().startswith("<!DOCTYPE html>")


def test_json_says_what_was_written(founding, tmp_path):
    out = tmp_path / "r.html"
    result = invoke(founding.root, "-o", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["path"] == str(out) and summary["bytes"] == out.stat().st_size
    assert summary["epochs"] == list(range(16)) and summary["layers"] == ["attention"]
    assert summary["heads"] == 1 and summary["samples"] == 10 and summary["explain"] is False


def test_the_founding_case_fits_its_budget(founding):
    """<= 2 MB, and the budget formula of docs/report.md predicts the size within 10 %."""
    assert invoke(founding.root).exit_code == 0
    size = (founding.root / "report.html").stat().st_size
    assert size <= 2_000_000
    budget = estimate_bytes(16, [Layer("attention", "temporal", (10, 20))], 10, 2)
    assert abs(size - budget) <= 0.1 * size, (size, budget)


def test_weights_and_scores_are_the_runs(tmp_path):
    run = make_synthetic_run(tmp_path / "self", attention="self", heads=2, epochs=3)
    out = tmp_path / "r.html"
    assert invoke(run.root, "-o", out).exit_code == 0
    data = page_data(out)
    layer = data["layers"][0]
    assert (layer["kind"], layer["heads"], layer["queries"], layer["keys"]) == ("self", 2, 20, 20)
    for index, epoch in enumerate(data["epochs"]):
        np.testing.assert_allclose(decode(layer["weights"][index], (10, 2, 20, 20)),
                                   run.attention(epoch), atol=1 / 65535)
    report = score_run(run, epoch="all")
    assert layer["scores"]["views"] == report.heads == ["mean", 0, 1]
    assert layer["scores"]["masks"] == report.masks == ["delimiter", "prefix"]
    np.testing.assert_allclose(np.array(layer["scores"]["values"], dtype=float),
                               np.round(report.values, 4), atol=1e-9)
    assert [m["name"] for m in data["metrics"]] == list(METRIC_NAMES)
    assert data["history"]["loss"] == [record["loss"] for record in run.history]
    assert [b["name"] for b in data["baselines"]] == ["mean", "half-delimiter-index"]
    assert data["masks"][0]["name"] == "delimiter" and np.array_equal(
        data["masks"][0]["rows"], run.mask("delimiter"))
    assert data["run"]["written_by"] == run.header["attnviz_version"]


def test_every_layer_and_samples_thin_it(founding, tmp_path):
    out = tmp_path / "thin.html"
    result = invoke(founding.root, "-o", out, "--every", "4", "--samples", "3", "--layer",
                    "attention")
    assert result.exit_code == 0, result.output
    data = page_data(out)
    assert data["epochs"] == [0, 4, 8, 12, 15]  # and the last
    assert data["samples"] == 3 and len(data["masks"][0]["rows"]) == 3
    assert len(base64.b64decode(data["layers"][0]["weights"][0])) == 3 * 20 * 2


def test_layer_takes_a_path_or_a_glob_as_every_command_does(tmp_path):
    probe = get_task("add-before-delimiter").probe(4, 20, np.random.default_rng(0))
    layers = [{"name": name, "class": "TemporalAttention", "shape": [4, 20], "dtype": "float32"}
              for name in ("enc/first", "enc/second", "dec/attention")]
    run = new_run(tmp_path / "three", RunSpec(layers, {"epochs": 1, "record_every": 1,
                                                          "checkpoint_every": 0,
                                                          "record_heads": "all"}), probe)
    run.save_attention(0, {layer["name"]: np.full((4, 20), 1 / 20, np.float32)
                           for layer in layers})
    run.commit()
    for args, shown in [((), ["enc/first", "enc/second", "dec/attention"]),
                        (("--layer", "enc/*"), ["enc/first", "enc/second"]),
                        (("--layer", "dec/attention", "--layer", "*second"),
                         ["enc/second", "dec/attention"])]:
        out = tmp_path / "r.html"
        result = invoke(run.root, "-o", out, *args)
        assert result.exit_code == 0, result.output
        assert [layer["name"] for layer in page_data(out)["layers"]] == shown


def test_each_layer_gets_the_masks_over_its_own_keys(tmp_path):
    run = mixed_keys_run(tmp_path / "run")
    out = tmp_path / "r.html"
    assert invoke(run.root, "-o", out).exit_code == 0
    data = page_data(out)
    assert [mask["name"] for mask in data["masks"]] == ["delimiter", "prefix", "first"]
    assert [(layer["name"], layer["keys"], layer["scores"]["masks"]) for layer in data["layers"]
            ] == [("dec/attention", 6, ["first"]), ("enc/attention", 20, ["delimiter", "prefix"])]
    assert invoke(run.root, "-o", out, "--layer", "enc/*").exit_code == 0
    assert [mask["name"] for mask in page_data(out)["masks"]] == ["delimiter", "prefix"]


def test_the_page_is_self_contained_and_only_its_own_script_may_run(founding):
    assert invoke(founding.root).exit_code == 0
    page = (founding.root / "report.html").read_text()
    assert not re.search(r"https?:|<link|<iframe|<img|\s(src|href)=|url\(|@import", page,
                         re.IGNORECASE)
    policy = html.unescape(
        re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)[1])
    assert "default-src 'none'" in policy
    scripts = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def test_embedded_json_cannot_close_its_script_or_open_a_comment():
    nasty = {"name": "</script><script>alert(1)</script><!-- & \u2028"}
    text = embed_json(nasty)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == nasty


def test_the_stored_explain_verdict_is_in_the_page(founding, tmp_path):
    report = explain_report(["Attention sits on the delimiter position."])
    founding.save_explain(report)
    out = tmp_path / "r.html"
    result = invoke(founding.root, "-o", out, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["explain"] is True
    shown = page_data(out)["explain"]
    assert shown["verdict"] == report["verdict"] and shown["epoch"] == 15
    assert [table["title"].split(":")[0] for table in shown["tables"]] == [
        "where attention and attribution sit",
        "faithfulness of the inputs at the attended positions", "baselines", "interventions"]
    assert shown["tables"][0]["rows"][0][:3] == ["delimiter", "0.05", "0.91"]


@pytest.mark.parametrize(("args", "message"), [
    (["{missing}"], "no run at"),
    (["{run}", "--every", "0"], "--every 0 must be 1 or more"),
    (["{run}", "--samples", "0"], "--samples 0 must be 1 or more"),
    (["{run}", "--samples", "11"], "choose 1..10"),
    (["{run}", "--layer", "atention"], "--layer atention (did you mean attention?): "),
    (["{run}", "--layer", "atention"], " recorded no such layer; it recorded attention"),
    (["{run}", "--layer", "enc/*"], " recorded no such layer"),
    (["{run}", "--cmap", "nope"], "unknown --cmap 'nope'"),
    (["{run}", "--max-mb", "0"], "--max-mb 0 must be above 0"),
    (["{run}", "--max-mb", "0.01"], "over --max-mb 0.01: thin it with --every K"),
    (["{run}", "-o", "{tmp}/report.txt"], "name an .html file"),
    (["{run}", "-o", "{tmp}"], "is a directory"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    make_synthetic_run(tmp_path / "run")
    before = sorted(tmp_path.rglob("*"))
    places = {"missing": tmp_path / "missing", "run": tmp_path / "run", "tmp": tmp_path}
    result = invoke(*(arg.format(**places) for arg in args))
    assert result.exit_code == 2, result.output
    assert message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert sorted(tmp_path.rglob("*")) == before


def test_the_budget_grows_with_epochs_layers_heads_and_samples():
    one = estimate_bytes(1, [Layer("a", "self", (10, 12, 128, 128))], 10, 2)
    assert estimate_bytes(2, [Layer("a", "self", (10, 12, 128, 128))], 10, 2) > 1.99 * one - 1e5
    weights = 10 * 12 * 128 * 128 * BYTES_PER_WEIGHT
    assert weights <= one <= weights * 1.01 + 50_000
    assert estimate_bytes(1, [Layer("a", "self", (10, 12, 128, 128))], 1, 2) < one / 9


def test_report_does_not_import_tensorflow(founding):
    code = ("import sys; from typer.testing import CliRunner; from attnviz.cli import app; "
            f"r = CliRunner().invoke(app, ['report', {str(founding.root)!r}]); "
            "print(r.exit_code, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.split() == ["0", "False", "False"]


# ---- a run too large for every map: the compact page ----------------------------------------


def test_a_compact_page_holds_every_heads_statistics_and_the_maps_that_fit(tmp_path):
    from attnviz.analysis import structural
    from attnviz.analysis.heads import STATISTICS, head_labels, head_statistics
    from attnviz.store import quant

    run = many_heads_run(tmp_path / "bert", layers=3, heads=4, keys=32, samples=3, dtype="q8",
                         epochs=10)
    out = tmp_path / "r.html"
    result = invoke(run.root, "-o", out, "--max-mb", "0.2", "--json")
    assert result.exit_code == 0, result.output
    said = json.loads(result.stdout)
    data = page_data(out)
    assert said["bytes"] <= 0.2e6 and data["maps"]["mode"] == said["maps"]["mode"] == "compact"
    held = data["maps"]["epochs"]
    assert said["maps"]["epochs"] == [data["epochs"][i] for i in held]
    assert held[0] == 0 and held[-1] == 10 and 2 <= len(held) < 11  # evenly, first and last
    assert data["samples"] == said["maps"]["samples"] == 1
    assert data["maps"]["probe_samples"] == 3 and len(data["masks"][0]["rows"]) == 1
    assert data["statistics"] == list(STATISTICS)
    for layer, name in zip(data["layers"], run.layer_names, strict=True):
        assert layer["encoding"] == "q8"
        assert [i for i, text in enumerate(layer["weights"]) if text is not None] == held
        for index in held:  # the first sample's maps, as the run holds them
            codes = np.frombuffer(base64.b64decode(layer["weights"][index]), np.uint8)
            decoded = quant.decode(codes.reshape(1, 4, 32, 34))
            np.testing.assert_allclose(decoded, run.attention(data["epochs"][index], name)[:1],
                                       atol=1e-6)
        tokens = structural.probe_tokens(run.probe.x)  # the probe's ids: induction applies
        assert tokens is not None
        for index, epoch in enumerate(data["epochs"]):  # statistics of every sample
            stats = head_statistics(run.attention(epoch, name), tokens)
            shown = np.array(layer["stats"][index], dtype=float)  # None (does not apply): NaN
            for s, statistic in enumerate(STATISTICS):
                if stats[statistic] is None:
                    assert np.isnan(shown[:, s]).all(), statistic
                else:
                    np.testing.assert_allclose(shown[:, s], stats[statistic], atol=1e-4)
            labels = head_labels(run.attention(epoch, name), tokens)
            assert [label for label, _ in layer["labels"][index]] == [
                label for label, _ in labels]
            np.testing.assert_allclose([value for _, value in layer["labels"][index]],
                                       [value for _, value in labels], atol=1e-4)
    assert "compact page" not in result.stdout  # --json says it as data
    plain = invoke(run.root, "-o", out, "--max-mb", "0.2")
    assert "compact page, within --max-mb: maps of sample 0 of 3 at epochs 0, " in " ".join(
        plain.stdout.split())


def test_maps_fill_what_the_budget_leaves():
    from attnviz.views.report import _fixed_bytes, _q8_bytes, plan_maps

    layers = [Layer("a", "self", (8, 12, 128, 128))]
    fixed, per_map = _fixed_bytes(21, layers, 8, 0), _q8_bytes(layers)
    assert plan_maps(21, layers, 8, 0, 1e12).mode == "full"
    every = plan_maps(21, layers, 8, 0, fixed + 21 * 3 * per_map)
    assert (every.mode, every.samples, every.epochs) == ("compact", 3, tuple(range(21)))
    five = plan_maps(21, layers, 8, 0, fixed + 5.5 * per_map)
    assert (five.samples, five.epochs) == (1, (0, 5, 10, 15, 20))
    assert plan_maps(1, layers, 8, 0, fixed + per_map).epochs == (0,)
    with pytest.raises(AttnvizError, match="even with the maps of one sample at the first "
                                           "and last epoch"):
        plan_maps(21, layers, 8, 0, fixed + 1.5 * per_map)
