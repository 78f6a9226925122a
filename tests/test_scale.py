"""A keras_hub BERT, 4 layers x 4 heads (BERT-base's shape made small), recorded by the
callback in a fit within a disk budget: q8 maps, the last checkpoint only, no optimizer state;
every command reads the run in a fresh process."""

import os
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest

from attnviz.store.run import Run

pytestmark = pytest.mark.slow

L, N, EPOCHS, BUDGET_MB = 64, 64, 6, 3


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory):
    keras_hub = pytest.importorskip("keras_hub")
    import keras

    from attnviz.keras import AttentionRecorder

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=100, num_layers=4, num_heads=4,
                                             hidden_dim=32, intermediate_dim=64,
                                             max_sequence_length=L)
    head = keras.layers.Dense(2)(backbone(backbone.input)["pooled_output"])
    model = keras.Model(backbone.input, head)
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(1, 100, (N, L)).astype(np.int32),
         "segment_ids": np.zeros((N, L), np.int32), "padding_mask": np.ones((N, L), np.int32)}
    x["padding_mask"][::2, 50:] = 0
    probe = {key: value[:8] for key, value in x.items()}
    root = tmp_path_factory.mktemp("bert") / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, rng.integers(0, 2, N), epochs=EPOCHS, batch_size=16, verbose=0,
                  callbacks=[AttentionRecorder(root, probe=probe, checkpoint_every=1,
                                               max_run_mb=BUDGET_MB)])
    said = [str(w.message) for w in caught if str(w.message).startswith("attnviz")]
    return Run.open(root), said, probe


def test_the_run_stays_within_its_budget_saying_what_it_gave_up(bert_run):
    run, said, _ = bert_run
    size = sum(path.stat().st_size for path in run.root.rglob("*") if path.is_file())
    assert size <= BUDGET_MB * 2**20
    assert len(said) == 1 and f"max_run_mb={BUDGET_MB}" in said[0]
    assert "q8" in said[0] and "only the last checkpoint is kept" in said[0]
    assert all(layer["dtype"] == "q8" for layer in run.layers)
    assert run.recording["keep_checkpoints"] == 1 and run.checkpoints == [EPOCHS]
    assert sorted(p.name for p in (run.root / "checkpoints").iterdir()) == ["epoch_0006.keras"]
    assert run.attention_epochs[0] == 0 and run.attention_epochs[-1] == EPOCHS


def test_the_checkpoint_holds_no_optimizer_and_reproduces_the_recorded_maps(bert_run):
    import h5py
    import keras
    import keras_hub  # noqa: F401 (registers the backbone's classes for loading)

    from attnviz.keras.capture import capture

    run, _, probe = bert_run
    path = run.checkpoint_path()
    with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as weights:
        assert "optimizer" not in h5py.File(weights, "r")
    model = keras.saving.load_model(path, compile=False)
    captured = capture(model, probe)
    assert [call.name for call in captured.calls] == run.layer_names
    for name in run.layer_names:
        recorded, fresh = run.attention(EPOCHS, name), captured.weights[name]
        bound = fresh.max(axis=-1, keepdims=True) * 1.001 / 254 + 1e-5  # q8's, per row
        assert np.all(np.abs(recorded - fresh) <= bound)
        assert np.all(recorded[::2, ..., 50:] == 0)  # padded keys: exactly none


def _attnviz(*args, cwd):
    env = {**os.environ, "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "attnviz", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env)


def test_every_command_reads_the_compact_run_in_a_fresh_process(bert_run, tmp_path):
    run, _, _ = bert_run
    shown = _attnviz("inspect", str(run.root), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "transformer_layer_3" in shown.stdout
    assert max(map(len, shown.stdout.splitlines())) <= 80
    gif = _attnviz("animate", str(run.root), "-o", str(tmp_path / "a.gif"), cwd=tmp_path)
    assert gif.returncode == 0, gif.stderr
    assert (tmp_path / "a.gif").stat().st_size > 0
    report = _attnviz("report", str(run.root), "-o", str(tmp_path / "r.html"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "r.html").stat().st_size > 0
    listed = _attnviz("inspect", str(run.root), "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr


def test_its_compact_report_opens_in_chromium_and_shows_each_head(bert_run, tmp_path):
    """The 4-layer run's report, made compact (--max-mb 1), in headless Chromium: the heads
    panel shows 4 layers x 4 heads, and choosing one shows it, with no error on the page."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "report_screenshot", Path(__file__).parent.parent / "docs" / "report_screenshot.py")
    screenshot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(screenshot)
    if not screenshot.CHROMIUM.exists():
        pytest.skip(f"needs Chromium at {screenshot.CHROMIUM}: {screenshot.INSTALL_HINT}")
    run, _, _ = bert_run
    made = _attnviz("report", str(run.root), "-o", str(tmp_path / "r.html"), "--max-mb", "1",
                    cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "compact page, within --max-mb: maps of " in " ".join(made.stdout.split())
    assert (tmp_path / "r.html").stat().st_size <= 1e6
    problems = []
    with screenshot.open_browser() as browser:
        page = browser.new_context(viewport=screenshot.VIEWPORT, offline=True).new_page()
        page.on("console", lambda m: m.type == "error" and problems.append(m.text))
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto((tmp_path / "r.html").resolve().as_uri())
        page.wait_for_selector("#heatmap[aria-label]")
        assert page.get_attribute("#heads", "aria-label").startswith(
            "statistic entropy of 4 layers by 4 heads over ")
        box = page.locator("#heads").bounding_box()
        cell_w, cell_h = (box["width"] - 44 - 70) / 4, (box["height"] - 28) / 4
        page.locator("#heads").click(position={"x": 44 + 3.5 * cell_w, "y": 20 + 3.5 * cell_h})
        # the backbone's name is Keras' (bert_backbone_1 when another was built before)
        assert f"{run.layer_names[3]} · head 3" in page.text_content("#probe-caption")
    assert problems == []
