import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnviz.analysis.tasks import DELIMITER, TASKS, get_task
from attnviz.errors import AttnvizError


def rng(seed=0):
    return np.random.default_rng(seed)


def test_add_before_delimiter_worked_example():
    batch = get_task("add-before-delimiter").generate(200, 20, rng())
    x = batch.x[..., 0]
    for i in range(200):
        a = int(np.flatnonzero(batch.masks["delimiter"][i])[0])
        assert 1 <= a <= 19
        assert x[i, a] == DELIMITER
        assert batch.y[i, 0] == pytest.approx(x[i, :a].sum(), abs=1e-5)
        assert batch.masks["prefix"][i].tolist() == [j < a for j in range(20)]


def test_mean_before_delimiter_is_prefix_mean():
    batch = get_task("mean-before-delimiter").generate(50, 12, rng(1))
    prefix = batch.masks["prefix"]
    expected = (batch.x[..., 0] * prefix).sum(1) / prefix.sum(1)
    np.testing.assert_allclose(batch.y[:, 0], expected, rtol=1e-5)


def test_add_after_delimiters_marks_values_after_two_delimiters():
    batch = get_task("add-after-delimiters").generate(100, 20, rng(2))
    x = batch.x[..., 0]
    for i in range(100):
        first, second = np.flatnonzero(batch.masks["marked"][i])
        assert second >= first + 2
        assert x[i, first - 1] == DELIMITER and x[i, second - 1] == DELIMITER
        assert batch.y[i, 0] == pytest.approx(0.5 * (x[i, first] + x[i, second]), abs=1e-6)


def test_find_max_mask_is_argmax_and_max_is_uniform():
    batch = get_task("find-max").generate(4000, 20, rng(3))
    x = batch.x[..., 0]
    assert (x[batch.masks["argmax"]] == batch.y[:, 0]).all()
    assert batch.masks["argmax"].sum(1).tolist() == [1] * 4000
    # Beta(1/L, 1) makes the max uniform: mean 1/2, variance 1/12.
    assert batch.y.mean() == pytest.approx(0.5, abs=0.02)
    assert batch.y.var() == pytest.approx(1 / 12, abs=0.005)


def test_probe_positions_are_fixed():
    probe = get_task("add-before-delimiter").probe(10, 20, rng())
    assert probe.masks["delimiter"][:, 4].all() and probe.masks["delimiter"].sum() == 10
    marked = get_task("add-after-delimiters").probe(10, 20, rng()).masks["marked"]
    assert marked[:, 4].all() and marked[:, 9].all() and marked.sum() == 20


def test_probe_positions_move_inside_short_sequences():
    probe = get_task("add-after-delimiters").probe(3, 6, rng())
    first, second = np.flatnonzero(probe.masks["marked"][0])
    assert 1 <= first < second <= 5


def test_baselines_by_hand_at_length_20():
    # a ~ U{1..19}: E[a] = 10, Var[a] = (19^2 - 1) / 12 = 30.
    mean, shortcut = get_task("add-before-delimiter").baselines(20)
    assert mean.mse == pytest.approx(10 / 12 + 30 / 4)
    assert shortcut.name == "half-delimiter-index" and shortcut.mse == pytest.approx(10 / 12)
    (mean,) = get_task("mean-before-delimiter").baselines(20)
    harmonic = sum(1 / a for a in range(1, 20))
    assert mean.mse == pytest.approx(harmonic / 19 / 12)
    assert get_task("add-after-delimiters").baselines(20)[0].mse == pytest.approx(1 / 24)
    assert get_task("find-max").baselines(20)[0].mse == pytest.approx(1 / 12)


REGRESSION = [name for name, task in TASKS.items() if not task.tokens]  # (n, L, 1) -> (n, 1)


@pytest.mark.parametrize("name", REGRESSION)
def test_baselines_match_simulation(name):
    task = get_task(name)
    batch = task.generate(40_000, 10, rng(4))
    y = batch.y[:, 0].astype(np.float64)
    baselines = {b.name: b.mse for b in task.baselines(10)}
    assert np.mean((y - y.mean()) ** 2) == pytest.approx(baselines["mean"], rel=0.05)
    if name == "add-before-delimiter":
        a = batch.masks["prefix"].sum(1)
        assert np.mean((y - a / 2) ** 2) == pytest.approx(baselines["half-delimiter-index"],
                                                          rel=0.05)


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(REGRESSION), n=st.integers(1, 20), seq_len=st.integers(4, 40),
       seed=st.integers(0, 2**32 - 1))
def test_shapes_dtypes_and_seeding(name, n, seq_len, seed):
    task = get_task(name)
    first = task.generate(n, seq_len, rng(seed))
    again = task.generate(n, seq_len, rng(seed))
    assert first.x.shape == (n, seq_len, 1) and first.x.dtype == np.float32
    assert first.y.shape == (n, 1)
    for mask in first.masks.values():
        assert mask.shape == (n, seq_len) and mask.dtype == bool and mask.any(axis=1).all()
    np.testing.assert_array_equal(first.x, again.x)


def test_unknown_task_names_the_choices():
    with pytest.raises(AttnvizError, match="add-before-delimiter"):
        get_task("sum")
