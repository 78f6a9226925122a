"""`attnviz report` pages in a real browser: Debian's headless Chromium through Playwright.

Every page is opened offline from file://, and a test fails on any console error, page
error, dialog, or request for anything but file:, data: or blob:. Without /usr/bin/chromium
these tests skip and say how to install it (.ci/run installs it).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from attnviz.keras.training import run_spec
from attnviz.store.run import Run
from attnviz.store.samples import TaskBatch
from attnviz.views import report
from attnviz.views.report import ReportOptions, write_report

from conftest import explain_report, make_synthetic_run, many_heads_run, mixed_keys_run, new_run

expect = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev "
                             "extra has it)").expect

DOCS = Path(__file__).parent.parent / "docs"
spec = importlib.util.spec_from_file_location("report_screenshot", DOCS / "report_screenshot.py")
report_screenshot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report_screenshot)

pytestmark = pytest.mark.skipif(
    not report_screenshot.CHROMIUM.exists(),
    reason=f"needs Chromium at {report_screenshot.CHROMIUM}: {report_screenshot.INSTALL_HINT}")
LOCAL = ("file:", "data:", "blob:")
PAYLOADS = ['<script>window.__pwned = "script"</script>',
            "<img src=x onerror=\"window.__pwned = 'img'\">"]


@pytest.fixture(scope="module")
def browser():
    with report_screenshot.open_browser() as browser:
        yield browser


class Watched:
    """A page whose console errors, page errors, dialogs and remote requests are problems."""

    def __init__(self, browser, path: Path):
        self.context = browser.new_context(viewport=report_screenshot.VIEWPORT, offline=True)
        self.page = page = self.context.new_page()
        self.problems: list[str] = []
        page.on("console", lambda message: message.type == "error" and self.problems.append(
            f"console: {message.text}"))
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("request", lambda request: request.url.startswith(LOCAL) or
                self.problems.append(f"request: {request.url}"))
        page.on("dialog", self._dialog)
        page.goto(path.resolve().as_uri())
        page.wait_for_selector("#heatmap[aria-label]")

    def _dialog(self, dialog) -> None:
        self.problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    def pixels(self, selector: str = "#heatmap") -> str:
        return self.page.eval_on_selector(selector, "canvas => canvas.toDataURL()")

    def text(self, selector: str) -> str:
        return self.page.text_content(selector)

    def close(self) -> None:
        self.context.close()
        assert self.problems == []


@pytest.fixture
def open_page(browser):
    pages = []

    def opener(path: Path) -> Watched:
        pages.append(Watched(browser, path))
        return pages[-1]

    yield opener
    for page in pages:
        page.close()


def write(run: Run, path: Path, **options) -> Path:
    return write_report(run.root, ReportOptions(output=path, **options)).path


def test_slider_play_curves_and_hover_on_the_founding_case(open_page, tmp_path):
    run = make_synthetic_run(tmp_path / "run", epochs=15)
    page = open_page(write(run, tmp_path / "report.html"))
    assert page.text("#epoch-label") == "epoch 15 of 15"
    assert "mass on delimiter 1, prefix 0" in page.text("#probe-caption")
    last = page.pixels()
    page.page.focus("#epoch")
    page.page.keyboard.press("Home")  # the slider is keyboard-operable
    assert page.text("#epoch-label") == "epoch 0 of 15 (untrained)"
    first = page.pixels()
    assert first != last
    page.page.keyboard.press("ArrowRight")
    assert page.text("#epoch-label").startswith("epoch 1 ")
    page.page.keyboard.press("End")
    assert page.pixels() == last
    # curves: the loss with its baselines, and each metric as score shows them (not
    # topk-precision and topk-recall, equal to topk-f1); a click on one picks that epoch
    charts = page.page.locator("#curves canvas")
    assert [charts.nth(i).get_attribute("aria-label") for i in range(charts.count())] == [
        "loss (mean squared error)", "mass (higher is better)", "topk-f1 (higher is better)",
        "auprc (higher is better)", "iou-f1 (higher is better)", "jsd (lower is better)",
        "entropy (lower is better; any mask)"]
    assert "baseline: half-delimiter-index" in page.text("#legend")
    chart = page.page.locator("#curves canvas").first
    box = chart.bounding_box()
    chart.click(position={"x": 44 + 1, "y": box["height"] / 2})  # the x axis starts at 44 px
    assert page.text("#epoch-label") == "epoch 0 of 15 (untrained)"
    # play runs to the last epoch and stops there (expect polls; the page's CSP forbids eval)
    page.page.click("#play")
    assert page.page.get_attribute("#play", "aria-pressed") == "true"
    expect(page.page.locator("#epoch-label")).to_have_text("epoch 15 of 15", timeout=20_000)
    expect(page.page.locator("#play")).to_have_attribute("aria-pressed", "false")
    # hovering a cell names it and its weight
    heatmap = page.page.locator("#heatmap")
    heatmap.hover(position={"x": heatmap.bounding_box()["width"] - 80, "y": 14})
    tooltip = page.text("#tooltip")
    assert tooltip.startswith("sample 0 · position ") and "attention " in tooltip
    assert "input " in tooltip and "target of sample 0" in tooltip


def distinct_heads_run(root: Path) -> Run:
    """A self-attention run whose head 1 looks at a different position than head 0."""
    run = make_synthetic_run(root, attention="self", heads=2, epochs=3)
    for epoch in run.attention_epochs:
        weights = run.attention(epoch)
        weights[:, 1] = np.roll(weights[:, 1], 7, axis=-1)  # (n, Lq, Lk): keys shifted
        run.save_attention(epoch, weights)
    run.commit()
    return Run.open(root)


def test_model_view_selects_heads_and_the_query_map_selects_queries(open_page, tmp_path):
    run = distinct_heads_run(tmp_path / "run")
    page = open_page(write(run, tmp_path / "report.html"))
    thumbs = page.page.locator("button.thumb")
    assert thumbs.count() == 3  # one layer: the mean of heads, head 0, head 1
    assert thumbs.nth(0).get_attribute("aria-pressed") == "true"
    mean = page.pixels()
    thumbs.nth(2).click()
    assert thumbs.nth(2).get_attribute("aria-pressed") == "true"
    assert thumbs.nth(0).get_attribute("aria-pressed") == "false"
    assert "head 1 · query 19 (last)" in page.text("#probe-caption")
    head_one = page.pixels()
    assert head_one != mean
    thumbs.nth(1).click()
    assert "head 0" in page.text("#probe-caption") and page.pixels() not in (mean, head_one)
    # the queries x keys map: a click on a row shows that query above
    assert page.page.is_visible("#qk-panel")
    qk = page.page.locator("#qk")
    qk.click(position={"x": 44 + 5, "y": 8 + 3 * (qk.bounding_box()["height"] - 48) / 20 + 2})
    assert "query 3" in page.text("#probe-caption")
    page.page.select_option("#selectors select >> nth=1", "mean")  # head, query, sample
    assert "mean of queries" in page.text("#probe-caption")


def test_layers_over_different_keys_each_show_their_own_masks(open_page, tmp_path):
    run = mixed_keys_run(tmp_path / "run")
    page = open_page(write(run, tmp_path / "report.html"))
    caption = page.text("#probe-caption")
    assert "layer dec/attention" in caption and "mass on first 1" in caption
    assert "delimiter" not in caption
    decoder = page.pixels()
    thumbs = page.page.locator("button.thumb")
    assert thumbs.count() == 2
    thumbs.nth(1).click()
    caption = page.text("#probe-caption")
    assert "layer enc/attention" in caption and "mass on delimiter 1, prefix 0" in caption
    assert "first" not in caption and page.pixels() != decoder


def payload_run(root: Path, base: Run) -> Run:
    """`base` again, with names that are HTML: masks, the task's words, a baseline, a path."""
    names = dict(zip(base.mask_names, PAYLOADS, strict=True))
    spec = run_spec(base.config)
    spec.layers[0]["name"] = PAYLOADS[0]  # a layer name, as a user's model may have
    info = spec.task
    info.update(mask_names=[names[name] for name in info["mask_names"]],
                main_mask=names[info["main_mask"]],
                description=PAYLOADS[1] + " </script><!-- & done")
    info["baselines"][0]["name"] = PAYLOADS[0]
    probe = TaskBatch(x=base.probe.x, y=base.probe.y,
                      masks={names[name]: mask for name, mask in base.probe.masks.items()})
    run = new_run(root, dataclasses.replace(spec, main_mask=names[spec.main_mask]), probe)
    run.save_attention(0, base.attention(0))
    run.commit()
    for record in base.history:
        run.save_attention(record["epoch"], base.attention(record["epoch"]))
        run.commit(record)
    run.save_explain(explain_report([PAYLOADS[0], PAYLOADS[1]], masks=PAYLOADS,
                                    predictor=PAYLOADS[1]))
    return Run.open(root)


def test_names_from_a_run_or_a_model_are_text_never_markup(open_page, tmp_path):
    base = make_synthetic_run(tmp_path / "base", attention="self", heads=2, epochs=2)
    run = payload_run(tmp_path / PAYLOADS[1], base)  # the run's path is a payload too
    # token labels (--tokens FILE.json), shown on the axes and in tooltips
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps([[PAYLOADS[k % 2] for k in range(20)] for _ in range(10)]))
    page = open_page(write(run, tmp_path / "report.html", tokens=tokens))
    body = page.page.inner_text("body")
    for payload in PAYLOADS:
        assert f"mask {payload}" in body  # the curves' legend
        assert payload in page.text("#verdict") and payload in page.text("#explain-tables")
    assert f"attnviz report · {tmp_path / PAYLOADS[1]}" == page.text("#title")
    assert PAYLOADS[1] + " </script><!-- & done" in body
    assert page.page.evaluate("window.__pwned") is None
    assert page.page.evaluate("document.querySelectorAll('img, iframe').length") == 0
    assert page.page.evaluate("document.scripts.length") == 2  # the data and the viewer
    assert page.page.locator(f"#grid th:text-is('{PAYLOADS[0]}')").count() == 1  # the layer
    page.page.locator("#qk").hover(position={"x": 64 + 2, "y": 8 + 2})  # tokens: 64 px left
    assert "query 0 → key 0" in page.text("#tooltip")
    assert f"tokens {PAYLOADS[0]} → {PAYLOADS[0]}" in page.text("#tooltip")
    heatmap = page.page.locator("#heatmap")
    heatmap.hover(position={"x": heatmap.bounding_box()["width"] / 2, "y": 12})
    assert "token " in page.text("#tooltip")
    assert any(payload in page.text("#tooltip") for payload in PAYLOADS)


@pytest.mark.slow
def test_a_trained_run_with_its_explain_verdict(open_page, explained_run, tmp_path):
    page = open_page(write(explained_run, tmp_path / "report.html"))
    verdict = explained_run.explain_report()["verdict"]
    items = page.page.locator("#verdict li")
    assert items.count() == len(verdict) and items.first.text_content() == verdict[0]
    assert page.page.locator("#explain-tables table").count() == 4
    assert page.page.is_visible("#explain-panel")
    assert f"epoch {explained_run.checkpoints[-1]}" in page.text("#explain-caption")


def test_the_docs_screenshot_script(browser, tmp_path):
    run = make_synthetic_run(tmp_path / "run", epochs=4)
    html = write(run, tmp_path / "report.html")
    png = report_screenshot.screenshot(browser, html, tmp_path / "report.png", height=700)
    from PIL import Image

    with Image.open(png) as image:
        assert image.size == (report_screenshot.VIEWPORT["width"], 700)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50  # a drawn page, not a blank one


REPORT_JS = Path(report.__file__).parent / "report_assets" / "report.js"


def js_functions(*names: str) -> str:
    """The source of report.js's own functions `names` (each from its `  function name(` line to
    the `  }` that closes it), to run outside the page on cases of the test's choosing."""
    lines = REPORT_JS.read_text().splitlines()
    out = []
    for name in names:
        start = next(i for i, line in enumerate(lines) if line.startswith(f"  function {name}("))
        end = next(i for i in range(start, len(lines)) if lines[i] == "  }")
        out += lines[start:end + 1]
    return "\n".join(out)


def test_the_viewer_computes_rows_mass_and_labels_as_python_does(browser):
    """report.js redraws what Python computes when the reader moves a slider: its rows of a
    head and query, its mass on each mask and its label step are Python's, on the same cases
    (the label step had drifted once: 1e5 against 1e6)."""
    from attnviz.analysis.score import attention_rows, mass
    from attnviz.views.frames import label_step

    rng = np.random.default_rng(3)
    n, heads, queries, keys = 3, 2, 4, 5
    attention = rng.dirichlet(np.ones(keys), size=(n, heads, queries)).astype(np.float32)
    masks = {"first": np.zeros((n, keys), bool), "odd": np.zeros((n, keys), bool)}
    masks["first"][:, 0] = True
    masks["odd"][:, 1::2] = True
    masks["odd"][0] = False  # one sample's mask differs
    cases = [(head, query) for head in ("mean", 0, 1) for query in ("last", "mean", 0, 2)]
    steps = [(cell, label) for cell in (0.01, 0.5, 1, 2, 3, 7, 14, 32)
             for label in (6, 14, 24, 100, 5000)]
    context = browser.new_context(offline=True)
    page = context.new_page()
    page.set_content("<html><body></body></html>")
    script = js_functions("range", "queryIndex", "probeRows", "masksOver", "masses", "labelStep")
    got = page.evaluate(
        "([source, values, spec, masks, n, cases, steps]) => {"
        "  const DATA = {samples: n, layers: [spec], masks: masks};"
        "  const weights = () => Float32Array.from(values);"
        "  const run = new Function('DATA', 'weights', source + '; return {probeRows, masses, "
        "labelStep};');"
        "  const js = run(DATA, weights);"
        "  return {rows: cases.map(([h, q]) => Array.from(js.probeRows(0, 0, h, q))),"
        "          masses: cases.map(([h, q]) => js.masses(js.probeRows(0, 0, h, q), spec.keys)),"
        "          steps: steps.map(([c, l]) => js.labelStep(c, l))};"
        "}",
        [script, attention.ravel().tolist(),
         {"kind": "self", "heads": heads, "queries": queries, "keys": keys},
         [{"name": name, "rows": mask.tolist()} for name, mask in masks.items()],
         n, [list(case) for case in cases], [list(step) for step in steps]])
    context.close()
    for (head, query), rows, masses in zip(cases, got["rows"], got["masses"], strict=True):
        expected = attention_rows(attention, head, query)
        np.testing.assert_allclose(np.reshape(rows, (n, keys)), expected, atol=1e-6,
                                   err_msg=f"head {head}, query {query}")
        assert dict(masses) == pytest.approx(
            {name: mass(expected, mask) for name, mask in masks.items()}, abs=1e-6)
    assert got["steps"] == [label_step(cell, label) for cell, label in steps]


def test_a_compact_page_shows_every_head_and_the_nearest_map(open_page, tmp_path):
    """A run too large for every map (here: --max-mb 0.2): the heads panel is the way in.
    Head h of layer l looks at key (l + h) % 32, so each head's map is its own."""
    run = many_heads_run(tmp_path / "bert", layers=3, heads=4, keys=32, samples=3,
                         dtype="q8", epochs=10)
    result = write_report(run.root, ReportOptions(output=tmp_path / "r.html", max_mb=0.2))
    held = [result.epochs[i] for i in result.maps.epochs]
    assert result.maps.mode == "compact" and 10 in held and len(held) < 11
    page = open_page(result.path)
    assert page.page.is_visible("#heads-panel") and not page.page.is_visible("#grid-panel")
    assert page.page.get_attribute("#heads", "aria-label") == (
        "statistic entropy of 3 layers by 4 heads over 11 epochs")
    heads = page.page.locator("#heads")
    box = heads.bounding_box()
    cell_w, cell_h = (box["width"] - 44 - 70) / 4, (box["height"] - 28) / 3
    before = page.pixels("#qk")
    heads.click(position={"x": 44 + 2.5 * cell_w, "y": 20 + 1.5 * cell_h})  # layer 1, head 2
    caption = page.text("#probe-caption")
    assert "layer transformer_layer_1/self_attention/attention_softmax · head 2" in caption
    assert "sample 0 of 3" in caption
    assert page.pixels("#qk") != before
    heads.hover(position={"x": 44 + 0.5 * cell_w, "y": 20 + 0.5 * cell_h})
    assert page.text("#tooltip").startswith("transformer_layer_0/self_attention/attention_"
                                            "softmax\nhead 0 · epoch 10\nentropy ")
    page.page.select_option("#heads-controls select", "prev")
    assert page.page.get_attribute("#heads", "aria-label").startswith("statistic prev ")
    missing = next(epoch for epoch in range(11) if epoch not in held)
    page.page.focus("#epoch")
    page.page.keyboard.press("Home")
    for _ in range(missing):
        page.page.keyboard.press("ArrowRight")
    nearest = min(held, key=lambda epoch: abs(epoch - missing))
    assert f"map of epoch {nearest}, the nearest this page holds" in page.text("#probe-caption")


def test_the_viewer_decodes_q8_as_python_does(browser):
    from attnviz.store import quant

    rng = np.random.default_rng(5)
    weights = rng.dirichlet(np.full(9, 0.3), size=(2, 3, 4))  # sharp and flat rows
    weights[0, 0, 0] = 0.0  # a row of zeros: scale 1, every code 0
    stored = quant.encode(weights)
    context = browser.new_context(offline=True)
    page = context.new_page()
    page.set_content("<html><body></body></html>")
    got = page.evaluate(
        "([source, bytes, keys]) => {"
        "  const run = new Function(source + '; return decodeQ8;');"
        "  return Array.from(run()(String.fromCharCode(...bytes), keys));"
        "}", [js_functions("half", "decodeQ8"), stored.ravel().tolist(), 9])
    context.close()
    np.testing.assert_allclose(np.reshape(got, weights.shape), quant.decode(stored), rtol=1e-6,
                               atol=1e-9)
