"""attnviz.analysis.score: metrics against hand-computed values, a loop reference, properties."""

from __future__ import annotations

import math
import weakref

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from attnviz.analysis.score import (
    METRIC_NAMES,
    METRICS,
    attention_rows,
    check_attention,
    check_mask,
    check_recorded_heads,
    check_thresholds,
    first_sustained_epoch,
    mean_scores,
    parse_head,
    parse_threshold,
    sample_scores,
    score_run,
    score_stream,
)
from attnviz.errors import AttnvizError

from conftest import make_synthetic_run

LN2 = math.log(2.0)
TOL = 1e-6  # float32 rows: sums and logs are exact to about 1e-7


def scores_of(rows, mask) -> dict[str, np.ndarray]:
    values = sample_scores(np.asarray(rows, dtype=np.float64), np.asarray(mask, dtype=bool))
    return dict(zip(METRIC_NAMES, values, strict=True))


def reference(row: list[float], mask: list[bool]) -> list[float]:
    """One sample's metrics written from docs/metrics.md with plain loops."""
    seq_len, k = len(row), sum(mask)
    mass = sum(r for r, m in zip(row, mask, strict=True) if m)
    # rank by score, ties: outside-mask positions first, then by position
    order = sorted(range(seq_len), key=lambda j: (-row[j], mask[j], j))
    top = set(order[:k])
    topk = sum(mask[j] for j in top) / k
    if k == seq_len:
        auprc = math.nan
    else:
        auprc = 0.0
        for j in (j for j in range(seq_len) if mask[j]):
            at_or_above = [i for i in range(seq_len) if row[i] >= row[j]]
            auprc += sum(mask[i] for i in at_or_above) / len(at_or_above) / k

    def runs(on):
        spans, start = [], None
        for j in range(seq_len + 1):
            if j < seq_len and on[j] and start is None:
                start = j
            elif (j == seq_len or not on[j]) and start is not None:
                spans.append(set(range(start, j)))
                start = None
        return spans

    predicted, true = runs([j in top for j in range(seq_len)]), runs(mask)

    def iou(a, b):
        return len(a & b) / len(a | b)

    precision = sum(any(iou(p, t) >= 0.5 for t in true) for p in predicted) / len(predicted)
    recall = sum(any(iou(p, t) >= 0.5 for p in predicted) for t in true) / len(true)
    iou_f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    uniform = [m / k for m in mask]
    middle = [(p + u) / 2 for p, u in zip(row, uniform, strict=True)]

    def kl(a, b):
        return sum(x * math.log(x / y) for x, y in zip(a, b, strict=True) if x > 0)

    jsd = 0.5 * kl(row, middle) + 0.5 * kl(uniform, middle)
    entropy = -sum(p * math.log(p) for p in row if p > 0) / math.log(seq_len) if seq_len > 1 else 0
    return [mass, topk, topk, topk, auprc, iou_f1, jsd, entropy]


@st.composite
def rows_and_masks(draw, max_len: int = 16, ties: bool = True):
    """(n, L) attention rows summing to 1 (often with tied scores) and masks marking >= 1."""
    n = draw(st.integers(1, 5))
    seq_len = draw(st.integers(1, max_len))
    if ties and draw(st.booleans()):  # few distinct levels: ties and zeros everywhere
        raw = draw(hnp.arrays(np.float64, (n, seq_len), elements=st.integers(0, 3)))
    else:
        raw = draw(hnp.arrays(np.float64, (n, seq_len),
                              elements=st.floats(0, 1, allow_subnormal=False)))
    raw[raw.sum(axis=1) == 0] = 1.0
    rows = (raw / raw.sum(axis=1, keepdims=True)).astype(np.float32)
    mask = draw(hnp.arrays(np.bool_, (n, seq_len)))
    mask[~mask.any(axis=1), draw(st.integers(0, seq_len - 1))] = True
    return rows, mask


# ---- hand-computed examples ----------------------------------------------------------------


def test_attention_on_the_mask_is_perfect():
    s = scores_of([[0.5, 0.5, 0.0, 0.0]], [[1, 1, 0, 0]])
    assert s["mass"][0] == pytest.approx(1.0)
    for metric in ("topk-precision", "topk-recall", "topk-f1", "auprc", "iou-f1"):
        assert s[metric][0] == pytest.approx(1.0), metric
    assert s["jsd"][0] == pytest.approx(0.0, abs=TOL)
    assert s["entropy"][0] == pytest.approx(math.log(2) / math.log(4))


def test_attention_off_the_mask_scores_zero_and_jsd_ln2():
    s = scores_of([[0.0, 0.0, 1.0, 0.0]], [[1, 1, 0, 0]])
    assert s["mass"][0] == 0.0
    assert s["topk-f1"][0] == 0.0 and s["iou-f1"][0] == 0.0
    assert s["jsd"][0] == pytest.approx(LN2)
    assert s["entropy"][0] == 0.0
    # the two mask positions tie with the last at 0: one threshold that sees 2 of 4
    assert s["auprc"][0] == pytest.approx(0.5)


def test_average_precision_by_hand():
    # ranks: 0 (in), 1 (out), 2 (in), 3 (out): AP = (1/1 + 2/3) / 2
    s = scores_of([[0.4, 0.3, 0.2, 0.1]], [[1, 0, 1, 0]])
    assert s["auprc"][0] == pytest.approx((1 + 2 / 3) / 2)
    assert s["topk-precision"][0] == pytest.approx(0.5)  # top 2: positions 0 and 1


def test_span_iou_f1_by_hand():
    # mask spans {0,1,2} and {6,7}; the top 5 are spans {1,2,3,4} and {7}:
    # IoU({1..4}, {0..2}) = 2/5 < 0.5 (no match); IoU({7}, {6,7}) = 1/2 (a match)
    mask = [1, 1, 1, 0, 0, 0, 1, 1]
    attention = np.array([0.0, 0.2, 0.2, 0.2, 0.2, 0.0, 0.05, 0.15])
    s = scores_of([attention / attention.sum()], [mask])
    assert s["iou-f1"][0] == pytest.approx(0.5)  # precision 1/2, recall 1/2
    assert s["topk-f1"][0] == pytest.approx(3 / 5)  # positions 1, 2 and 7 are in the mask


@pytest.mark.parametrize("seq_len,size", [(20, 1), (20, 4), (512, 4), (9, 3), (6, 6)])
def test_uniform_attention_gives_the_closed_forms(seq_len, size):
    mask = np.zeros((1, seq_len), dtype=bool)
    mask[0, :size] = True
    s = scores_of(np.full((1, seq_len), 1.0 / seq_len), mask)
    m, n = size, seq_len
    assert s["mass"][0] == pytest.approx(m / n)
    # every score ties, and ties count against the attention: outside positions come first
    assert s["topk-f1"][0] == pytest.approx(max(0, 2 * m - n) / m)
    if m < n:
        assert s["auprc"][0] == pytest.approx(m / n)  # one threshold holding everything
    else:
        assert math.isnan(s["auprc"][0])
    # P = 1/n everywhere, U = 1/m on the mask, M = (P + U) / 2:
    # KL(P||M) = (m/n) ln(2m/(m+n)) + ((n-m)/n) ln 2 and KL(U||M) = ln(2n/(m+n))
    jsd = 0.5 * ((m / n) * math.log(2 * m / (m + n)) + ((n - m) / n) * LN2) + 0.5 * math.log(
        2 * n / (m + n))
    assert s["jsd"][0] == pytest.approx(jsd, abs=TOL)
    assert s["entropy"][0] == pytest.approx(1.0)


# ---- properties ----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(rows_and_masks())
def test_vectorised_metrics_equal_the_loop_reference(case):
    rows, mask = case
    got = sample_scores(rows, mask)
    for i in range(rows.shape[0]):
        expected = reference([float(x) for x in rows[i]], [bool(m) for m in mask[i]])
        np.testing.assert_allclose(got[:, i], expected, atol=TOL, err_msg=str((rows[i], mask[i])))


@settings(max_examples=200, deadline=None)
@given(rows_and_masks(max_len=64))
def test_every_metric_stays_within_its_range(case):
    rows, mask = case
    scores = sample_scores(rows, mask)
    for metric, values in zip(METRIC_NAMES, scores, strict=True):
        info = METRICS[metric]
        defined = values[~np.isnan(values)]
        assert (defined >= info.low - TOL).all() and (defined <= info.high + TOL).all(), metric
    # auprc is skipped exactly where the mask is all one class
    np.testing.assert_array_equal(np.isnan(scores[METRIC_NAMES.index("auprc")]),
                                  mask.all(axis=1))


@settings(max_examples=150, deadline=None)
@given(rows_and_masks(max_len=64))
def test_the_normalised_mask_scores_perfectly(case):
    _, mask = case
    rows = mask / mask.sum(axis=1, keepdims=True)
    s = scores_of(rows, mask)
    for metric in ("mass", "topk-precision", "topk-recall", "topk-f1", "iou-f1"):
        np.testing.assert_allclose(s[metric], 1.0, atol=TOL, err_msg=metric)
    full = mask.all(axis=1)
    np.testing.assert_allclose(s["auprc"][~full], 1.0, atol=TOL)
    np.testing.assert_allclose(s["jsd"], 0.0, atol=TOL)


@settings(max_examples=100, deadline=None)
@given(rows_and_masks(max_len=32), st.randoms(use_true_random=False))
def test_permuting_samples_changes_nothing(case, random):
    rows, mask = case
    order = list(range(rows.shape[0]))
    random.shuffle(order)
    before = sample_scores(rows, mask)
    after = sample_scores(rows[order], mask[order])
    np.testing.assert_allclose(after, before[:, order], atol=1e-12)
    np.testing.assert_allclose(mean_scores(after), mean_scores(before), atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 200), st.data())
def test_uniform_attention_on_any_mask(seq_len, data):
    mask = data.draw(hnp.arrays(np.bool_, (1, seq_len)))
    mask[0, data.draw(st.integers(0, seq_len - 1))] = True
    m, n = int(mask.sum()), seq_len
    s = scores_of(np.full((1, n), 1.0 / n), mask)
    assert s["mass"][0] == pytest.approx(m / n, abs=TOL)
    assert s["topk-precision"][0] == pytest.approx(max(0, 2 * m - n) / m)
    assert s["entropy"][0] == pytest.approx(1.0, abs=TOL)
    if m < n:
        assert s["auprc"][0] == pytest.approx(m / n)


@given(st.lists(st.floats(0, 1), min_size=1, max_size=30), st.floats(0, 1))
def test_first_sustained_epoch_holds_from_there_on(values, threshold):
    epochs = list(range(10, 10 + len(values)))
    first = first_sustained_epoch(epochs, np.array(values), threshold, "min")
    if first is None:
        assert values[-1] < threshold
    else:
        start = epochs.index(first)
        assert all(v >= threshold for v in values[start:])
        assert start == 0 or values[start - 1] < threshold


def test_first_sustained_epoch_examples():
    epochs = [0, 1, 2, 3, 4]
    assert first_sustained_epoch(epochs, [0.1, 0.95, 0.5, 0.92, 0.97], 0.9) == 3
    assert first_sustained_epoch(epochs, [0.1, 0.95, 0.5, 0.92, 0.8], 0.9) is None
    assert first_sustained_epoch(epochs, [0.5, 0.3, 0.2, 0.1, 0.05], 0.25, "max") == 2
    assert first_sustained_epoch(epochs, [0.9, np.nan, 0.9, 0.9, 0.9], 0.5) == 2


# ---- input checks --------------------------------------------------------------------------


@pytest.mark.parametrize("bad,message", [
    (np.array([[0.5, np.nan]]), "NaN"),
    (np.array([[1.5, -0.5]]), "negative"),
    (np.array([[2.0, 3.0]]), "--normalize"),
    (np.ones((2, 3, 4)), "expected (n, L)"),
])
def test_check_attention_refuses(bad, message):
    with pytest.raises(AttnvizError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_attention(bad, "a.npy")


def test_check_attention_normalizes_on_request():
    rows = check_attention(np.array([[2.0, 6.0]]), "a.npy", normalize=True)
    np.testing.assert_allclose(rows, [[0.25, 0.75]])
    with pytest.raises(AttnvizError, match="all zero"):
        check_attention(np.array([[0.0, 0.0]]), "a.npy", normalize=True)


@pytest.mark.parametrize("mask,message", [
    (np.ones((2, 4)), "shape"),
    (np.array([[0, 2, 0]]), "0/1"),
    (np.array([[0, 0, 0]]), "mark no position"),
])
def test_check_mask_refuses(mask, message):
    with pytest.raises(AttnvizError, match=message):
        check_mask(mask, (1, 3), "m.npy")


@pytest.mark.parametrize("spec,bound,message", [
    ("mass", "min", "write METRIC=X"),
    ("nope=0.5", "min", "unknown metric 'nope'"),
    ("jsd=0.1", "min", "write --max jsd=0.1"),
    ("mass=0.5", "max", "write --min mass=0.5"),
    ("mass=1.5", "min", r"lies in \[0, 1\]"),
    ("jsd=0.8", "max", "lies in"),
    ("mass=high", "min", "lies in"),
])
def test_parse_threshold_refuses(spec, bound, message):
    with pytest.raises(AttnvizError, match=message):
        parse_threshold(spec, bound)


def test_parse_threshold_reads_metric_mask_and_value():
    threshold = parse_threshold("topk-f1@prefix=0.25", "min")
    assert (threshold.metric, threshold.mask, threshold.value) == ("topk-f1", "prefix", 0.25)
    assert parse_threshold("jsd=0.1", "max").mask is None


# ---- runs ----------------------------------------------------------------------------------


def test_score_run_streams_every_epoch_and_matches_sample_scores(tmp_path):
    run = make_synthetic_run(tmp_path / "run", epochs=4)
    report = score_run(run, epoch="all")
    assert report.epochs == [0, 1, 2, 3, 4]
    assert report.masks == ["delimiter", "prefix"] and report.heads == [None]
    assert report.values.shape == (5, 2, 1, len(METRIC_NAMES))
    for index, epoch in enumerate(report.epochs):
        rows = run.attention(epoch)
        for m, name in enumerate(report.masks):
            expected = mean_scores(sample_scores(rows / rows.sum(axis=1, keepdims=True),
                                                 run.mask(name)))
            np.testing.assert_allclose(report.values[index, m, 0], expected, atol=1e-9)
    # the synthetic attention drifts onto the main mask
    assert report.value("mass", "delimiter") == pytest.approx(1.0, abs=1e-3)
    assert report.select("last").epochs == [4] and report.select(2).epochs == [2]


def test_self_attention_is_scored_per_head_and_head_averaged(tmp_path):
    run = make_synthetic_run(tmp_path / "run", attention="self", heads=3, epochs=2)
    report = score_run(run, masks=["prefix"], epoch=1, query="last")
    assert report.kind == "self" and report.query == "last"
    assert report.heads == ["mean", 0, 1, 2]
    attention = run.attention(1)
    mask = run.mask("prefix")
    for head in (0, 1, 2):
        expected = mean_scores(sample_scores(attention_rows(attention, head, "last"), mask))
        np.testing.assert_allclose(report.values[0, 0, head + 1], expected, atol=1e-5)
    expected = mean_scores(sample_scores(attention_rows(attention, "mean", "last"), mask))
    np.testing.assert_allclose(report.values[0, 0, 0], expected, atol=1e-5)


def test_a_single_recorded_head_is_the_head_mean(tmp_path):
    run = make_synthetic_run(tmp_path / "run", attention="self", heads=1, epochs=1)
    report = score_run(run)
    assert report.heads == ["mean"] and report.values.shape == (1, 2, 1, len(METRIC_NAMES))


def test_thresholds_gate_the_head_mean_of_the_first_mask(tmp_path):
    run = make_synthetic_run(tmp_path / "run", attention="self", epochs=3)
    report = score_run(run, epoch="all")
    checks = check_thresholds(report, [parse_threshold("mass=0.9", "min"),
                                       parse_threshold("jsd@prefix=0.05", "max")])
    assert [c.name for c in checks] == ["mass@delimiter >= 0.9", "jsd@prefix <= 0.05"]
    assert [c.passed for c in checks] == [True, False]
    assert checks[0].head == "mean" and checks[0].epoch == 3 and checks[0].first_epoch == 3
    with pytest.raises(AttnvizError, match="add --mask prefix"):
        check_thresholds(score_run(run, masks=["delimiter"]),
                         [parse_threshold("mass@prefix=0.5", "min")])


def test_score_stream_holds_one_epoch_at_a_time():
    mask = np.zeros((4, 8), dtype=bool)
    mask[:, 2] = True
    alive: list[weakref.ref] = []

    def epochs():
        for epoch in range(6):
            # every earlier epoch's attention has been released before the next is read
            assert all(ref() is None for ref in alive), epoch
            attention = np.full((4, 8), 1 / 8, dtype=np.float32)
            alive.append(weakref.ref(attention))
            yield epoch, attention
            del attention

    scored = score_stream(epochs(), {"m": mask}, "last", "test")
    assert scored.epochs == list(range(6))
    assert scored.values.shape == (6, 1, 1, len(METRIC_NAMES))


def test_a_run_that_recorded_the_head_mean_takes_no_other_head():
    class Recorded:  # what check_recorded_heads reads of a run
        root = "runs/mean"

        @staticmethod
        def layer_info(layer=None):
            return {"kind": "multi-head", "record_heads": "mean"}

    for head in (None, "mean", "0"):
        check_recorded_heads(Recorded, head)
    with pytest.raises(AttnvizError, match="recorded only the mean of its heads"):
        check_recorded_heads(Recorded, "1")
    assert parse_head("mean") == "mean" and parse_head("3") == 3
    with pytest.raises(AttnvizError, match="--head 'x': use a head index or mean"):
        parse_head("x")
