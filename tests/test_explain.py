"""attnviz.keras.explain: attribution, faithfulness, tau_b and the report, on tiny real models."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from attnviz.analysis.tasks import DELIMITER, TASKS
from attnviz.keras import attribution, explain

from conftest import train_tiny

L = 8


def linear_model(weights: np.ndarray) -> keras.Model:
    """f(x) = sum_t w_t x_t: every attribution of it is known in closed form."""
    inputs = keras.Input((len(weights), 1))
    output = keras.layers.Dense(1, use_bias=False)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, output)
    model.layers[-1].set_weights([weights.reshape(-1, 1).astype(np.float32)])
    return model


@pytest.fixture
def sequences():
    return np.random.default_rng(0).uniform(0.0, 1.0, (16, L, 1)).astype(np.float32)


# ---- attribution ---------------------------------------------------------------------------


def test_integrated_gradients_are_exact_on_a_linear_model(sequences):
    weights = np.linspace(-2.0, 3.0, L)
    ig = attribution.integrated_gradients(linear_model(weights), sequences, 0.5, steps=4)
    assert ig.shape == (16, L) and ig.dtype == np.float32
    np.testing.assert_allclose(ig, (sequences[..., 0] - 0.5) * weights, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_integrated_gradients_satisfy_completeness_within_one_percent(trained_run):
    _, model = explain.load_checkpoint(trained_run, None)
    x = trained_run.probe.x
    erase = trained_run.task["erase_value"]
    ig = attribution.integrated_gradients(model, x, erase, steps=attribution.IG_STEPS)
    gap, delta = attribution.completeness_gaps(model, x, erase, ig)
    clear = np.abs(delta) >= 0.01  # below that float32 rounding, not the integral, dominates
    assert clear.sum() >= 5
    assert np.all(np.abs(gap[clear]) <= 0.01 * np.abs(delta[clear])), (gap, delta)
    assert attribution.completeness_error(model, x, erase, ig) < 0.01
    # Too few steps miss it, so the check above can fail.
    coarse = attribution.integrated_gradients(model, x, erase, steps=1)
    coarse_gap = attribution.completeness_gaps(model, x, erase, coarse)[0]
    assert np.abs(coarse_gap).max() > np.abs(gap).max()


def test_gradient_x_input_is_signed_and_l1_normalised_per_sample(sequences):
    weights = np.linspace(-2.0, 3.0, L)
    values = attribution.gradient_x_input(linear_model(weights), sequences)
    assert values.shape == (16, L) and values.dtype == np.float32
    raw = sequences[..., 0] * weights
    np.testing.assert_allclose(values, raw / np.abs(raw).sum(1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(np.abs(values).sum(axis=1), 1.0, rtol=1e-5)
    assert (values[:, 0] < 0).all() and (values[:, -1] > 0).all()


def test_gradient_x_input_leaves_an_all_zero_row_at_zero():
    zeros = np.zeros((2, L, 1), dtype=np.float32)
    assert not attribution.gradient_x_input(linear_model(np.ones(L)), zeros).any()


# ---- faithfulness --------------------------------------------------------------------------


def test_erasing_the_one_position_the_model_reads_changes_it_and_random_ones_do_not():
    n = 400
    x = np.random.default_rng(1).uniform(0.0, 1.0, (n, L, 1)).astype(np.float32)
    model = linear_model(np.eye(L)[3] * 5.0)  # f(x) = 5 x_3
    on_three = np.full((n, L), 0.01)
    on_three[:, 3] = 1.0 - 0.01 * (L - 1)
    y = 5.0 * x[:, 3]
    faith = explain.faithfulness(model, x, np.std(y), on_three, 0.5, 1, np.random.default_rng(0))
    assert faith["comprehensiveness"]["top"] == pytest.approx(
        np.abs(5.0 * (x[:, 3, 0] - 0.5)).mean(), rel=1e-4)
    assert faith["comprehensiveness"]["random"] < 0.3 * faith["comprehensiveness"]["top"]
    assert faith["sufficiency"]["top"] == pytest.approx(0.0, abs=1e-5)
    assert faith["sufficiency"]["random"] > 0.5 * faith["comprehensiveness"]["top"]
    on_zero = np.roll(on_three, -3, axis=1)  # now the top position is 0, which f ignores
    elsewhere = explain.faithfulness(model, x, np.std(y), on_zero, 0.5, 1,
                                     np.random.default_rng(0))
    assert elsewhere["comprehensiveness"]["top"] == pytest.approx(0.0, abs=1e-5)
    assert faith["target_std"] == pytest.approx(float(np.std(y)), rel=1e-5)


@pytest.mark.parametrize("name", [t for t in TASKS if "delimiter" in t])
def test_erase_value_of_delimiter_tasks_is_not_the_delimiter(name):
    erase = TASKS[name].erase_value(20)
    assert erase != DELIMITER
    assert 0.0 < erase < 1.0  # inside the range of the values, so erasing looks like a value


# ---- numpy measures ------------------------------------------------------------------------


def test_kendall_tau_b_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    a = rng.integers(0, 4, (50, 12)).astype(float)  # many ties
    b = rng.integers(0, 4, (50, 12)).astype(float)
    b[:5] = a[:5]  # some perfectly concordant rows
    expected = [stats.kendalltau(row_a, row_b).statistic for row_a, row_b in zip(a, b, strict=True)]
    np.testing.assert_allclose(explain.kendall_tau_b(a, b), expected, atol=1e-12)
    assert explain.kendall_tau_b(a[:5], b[:5]) == pytest.approx(np.ones(5))
    assert explain.kendall_tau_b(a[:1], -a[:1])[0] == pytest.approx(-1.0)


def test_kendall_tau_b_is_nan_for_a_constant_row():
    assert np.isnan(explain.kendall_tau_b(np.ones((1, 5)), np.arange(5.0)[None]))[0]


def test_masses_use_absolute_values_and_count_what_no_mask_covers():
    rows = np.array([[-0.5, 0.25, 0.25, 0.0]])
    masks = {"first": np.array([[True, False, False, False]]),
             "middle": np.array([[False, True, False, False]])}
    assert explain.masses(rows, masks) == {"masks": {"first": 0.5, "middle": 0.25},
                                           "outside": 0.25}


def test_mask_order_says_which_mask_comes_first():
    prefix = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=bool)
    delimiter = np.array([[0, 0, 1, 0], [0, 1, 0, 0]], dtype=bool)
    order = explain.mask_order({"prefix": prefix, "delimiter": delimiter})
    assert order == {"prefix": {"delimiter": 1.0}, "delimiter": {"prefix": 0.0}}


# ---- the report on real tiny runs ----------------------------------------------------------


@pytest.mark.slow
def test_report_on_the_trained_run(trained_run):
    report = explain.explain_run(trained_run, explain.ExplainOptions(samples=200, steps=16))
    assert report["epoch"] == trained_run.checkpoints[-1]
    assert report["recurrent"] and report["samples"] == {"probe": 10, "heldout": 200}
    assert report["faithfulness"]["erase_value"] == trained_run.task["erase_value"] != 0.0
    for part in (report["attention"], report["integrated_gradients"],
                 report["gradient_x_input"]):
        for batch in ("probe", "heldout"):
            # delimiter and prefix are disjoint: the masses and "outside" add up to 1
            total = sum(part[batch]["masks"].values()) + part[batch]["outside"]
            assert total == pytest.approx(1.0, abs=1e-5)
    assert report["mask_zero_inputs"]["delimiter"] == 1.0
    assert report["gradient_x_input"]["heldout"]["masks"]["delimiter"] == 0.0
    base = report["baselines"]
    assert base["val_loss"] == trained_run.history[-1]["val_loss"]
    assert [p["ratio"] for p in base["predictors"]] == pytest.approx(
        [base["heldout_loss"] / p["loss"] for p in base["predictors"]])


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory):
    """A 1-epoch position-wise (non-recurrent) run trained with --attribution."""
    return train_tiny(tmp_path_factory.mktemp("dense") / "run", encoder="dense",
                      attribution=True, epochs=1, checkpoint_every=1)


@pytest.mark.slow
def test_train_with_attribution_records_it_every_epoch(dense_run):
    assert dense_run.attribution_epochs == dense_run.attention_epochs == [0, 1]
    for epoch in dense_run.attribution_epochs:
        values = dense_run.attribution(epoch)
        assert values.shape == (dense_run.config.probe_size, dense_run.config.seq_len)
        np.testing.assert_allclose(np.abs(values).sum(axis=1), 1.0, rtol=1e-5)
        assert not values[dense_run.probe.masks["delimiter"]].any()  # x = 0.0 there


@pytest.mark.slow
def test_verdict_on_a_position_wise_run_follows_its_numbers(dense_run):
    from attnviz.analysis.verdict import compose

    report = explain.explain_run(dense_run, explain.ExplainOptions(samples=200, steps=16))
    assert not report["recurrent"]
    joined = "\n".join(compose(report))
    assert "recurrent" not in joined and "So the recurrent state" not in joined
    mean, shortcut = report["baselines"]["predictors"]
    assert f"{mean['ratio']:.2f}x the mean predictor's" in joined
    # one epoch of a tiny model: whichever side of the baselines it lands, the verdict says it
    assert ("no better than the mean predictor's" in joined) == (mean["ratio"] >= 1)
    assert "SHORTCUT" not in joined  # one epoch: not even the shortcut yet


def test_bad_epoch_names_the_checkpoints(synthetic_run):
    from attnviz.errors import AttnvizError

    with pytest.raises(AttnvizError, match="no checkpoint"):
        explain.explain_run(synthetic_run.root, explain.ExplainOptions(epoch=3))
