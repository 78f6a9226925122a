"""Built-in masks (attnviz.analysis.structural) and scoring every query against them, each
against a hand computation."""

import numpy as np
import pytest

from attnviz.analysis import structural
from attnviz.analysis.score import METRIC_NAMES, score_stream
from attnviz.errors import AttnvizError

MASS = METRIC_NAMES.index("mass")


def test_query_masks_by_hand():
    tokens = np.array([[5, 7, 5, 7, 9]])
    induction = structural.structural_mask("induction", 1, 5, 5, tokens)[0].astype(int)
    # query 2 (token 5) saw token 5 at key 0, followed by key 1; query 3 (7) -> key 2;
    # queries 0, 1, 4 have no earlier copy of their token
    expected = np.zeros((5, 5), int)
    expected[2, 1] = expected[3, 2] = 1
    np.testing.assert_array_equal(induction, expected)
    prev = structural.structural_mask("prev", 1, 4, 4)[0].astype(int)
    np.testing.assert_array_equal(prev, np.eye(4, k=-1, dtype=int))
    nxt = structural.structural_mask("next", 1, 4, 4)[0].astype(int)
    np.testing.assert_array_equal(nxt, np.eye(4, k=1, dtype=int))
    np.testing.assert_array_equal(structural.structural_mask("self", 2, 3, 3),
                                  np.eye(3, dtype=bool)[None].repeat(2, 0))


def test_a_repeated_token_right_before_the_query_is_not_induction():
    # key k + 1 = q would be the query itself: left out (k < q - 1)
    mask = structural.structural_mask("induction", 1, 3, 3, np.array([[4, 4, 4]]))[0]
    assert mask.astype(int).tolist() == [[0, 0, 0], [0, 0, 0], [0, 1, 0]]


def test_key_masks_follow_padding_and_tokens():
    padding = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    tokens = np.array([[101, 8, 102, 0, 0], [101, 8, 9, 9, 102]])
    last = structural.structural_mask("last", 2, 5, 5, tokens, padding)
    assert last.astype(int).tolist() == [[0, 0, 1, 0, 0], [0, 0, 0, 0, 1]]
    pad = structural.structural_mask("pad", 2, 5, 5, tokens, padding)
    assert pad.astype(int).tolist() == [[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]]
    sep = structural.structural_mask("token:102", 2, 5, 5, tokens, padding)
    assert sep.astype(int).tolist() == [[0, 0, 1, 0, 0], [0, 0, 0, 0, 1]]
    first = structural.structural_mask("first", 2, 5, 5)
    assert first[:, 0].all() and not first[:, 1:].any()
    # a padded query has no row, and a padded key is never marked
    prev = structural.structural_mask("prev", 2, 5, 5, tokens, padding)
    assert not prev[0, 3:].any() and not prev[0, :, 3:].any() and prev[1, 4, 3]


def test_token_ids_and_padding_are_read_from_the_probe():
    ids = np.array([[1, 2], [3, 4]], np.int32)
    keras_hub = {"token_ids": ids, "padding_mask": np.array([[1, 1], [1, 0]]),
                 "segment_ids": np.zeros((2, 2), np.int32)}
    np.testing.assert_array_equal(structural.probe_tokens(keras_hub), ids)
    assert structural.probe_padding(keras_hub).tolist() == [[True, True], [True, False]]
    np.testing.assert_array_equal(structural.probe_tokens(ids), ids)  # one integer input
    assert structural.probe_tokens(np.zeros((2, 2, 1), np.float32)) is None  # values
    assert structural.probe_tokens([ids, ids]) is None  # two candidates: none is guessed
    assert structural.probe_padding(ids) is None


@pytest.mark.parametrize(("name", "kwargs", "says"), [
    ("induction", {}, "needs token ids"),
    ("pad", {}, "needs a padding mask"),
    ("token:sep", {"tokens": np.zeros((1, 4), int)}, "write token:ID"),
    ("prevv", {}, "did you mean prev"),
])
def test_a_mask_that_cannot_be_built_says_why(name, kwargs, says):
    with pytest.raises(AttnvizError, match=says):
        structural.structural_mask(name, 1, 4, 4, **kwargs)


def test_cross_attention_refuses_query_masks():
    with pytest.raises(AttnvizError, match="needs self-attention"):
        structural.structural_mask("prev", 1, 3, 5)
    assert structural.structural_mask("first", 1, 3, 5).shape == (1, 5)


def causal_uniform(length: int) -> np.ndarray:
    weights = np.tril(np.ones((length, length)))
    return weights / weights.sum(axis=1, keepdims=True)


def test_every_query_is_scored_and_averaged_over_the_valid_ones():
    """L = 5, a previous-token head and a causal uniform one. prev over queries 1..4: head 0
    puts 1 there, head 1 1/2, 1/3, 1/4, 1/5 (mean 77/240); first over every query: head 0
    has queries 0 and 1 on key 0 (2/5), the uniform head 1, 1/2, 1/3, 1/4, 1/5 (137/300)."""
    length = 5
    prev = np.eye(length, k=-1)
    prev[0, 0] = 1
    weights = np.stack([prev, causal_uniform(length)])[None].astype(np.float32)
    masks = {name: structural.structural_mask(name, 1, length, length)
             for name in ("prev", "first")}
    scored = score_stream([(None, weights)], masks, "all", "test")
    assert scored.heads == ["mean", 0, 1]
    mass = scored.values[0, :, :, MASS]  # (masks, views)
    np.testing.assert_allclose(mass[0, 1:], [1.0, 77 / 240], rtol=1e-6)
    np.testing.assert_allclose(mass[1, 1:], [2 / 5, 137 / 300], rtol=1e-6)
    # the last query only: what the task asks when it predicts from the last position
    last = score_stream([(None, weights)], masks, "last", "test").values[0, :, :, MASS]
    np.testing.assert_allclose(last[0, 1:], [1.0, 1 / 5], rtol=1e-6)


def test_samples_weigh_the_same_whatever_their_valid_queries():
    """Sample 0 has one query with an induction key, sample 1 two: the mass is the mean of
    each sample's mean, (1 + (0 + 1) / 2) / 2 = 0.75."""
    tokens = np.array([[1, 2, 1, 3], [1, 2, 1, 2]])
    mask = structural.structural_mask("induction", 2, 4, 4, tokens)
    weights = np.zeros((2, 1, 4, 4), np.float32)
    weights[:, 0, :, 0] = 1.0  # every query on key 0 ...
    weights[0, 0, 2] = [0, 1, 0, 0]  # ... but sample 0's query 2 on its induction key 1
    weights[1, 0, 3] = [0, 0, 1, 0]  # and sample 1's query 3 on key 2
    weights[1, 0, 2] = [1, 0, 0, 0]  # sample 1's query 2 misses key 1
    scored = score_stream([(None, weights)], {"induction": mask}, "all", "test")
    assert scored.values[0, 0, 0, MASS] == pytest.approx(0.75)


def test_padded_queries_are_not_scored():
    length = 4
    weights = np.full((1, 1, length, length), 1 / length, np.float32)
    weights[0, 0, 3] = [0, 0, 0, 1]  # a padded query looking at itself
    padding = np.array([[1, 1, 1, 0]], bool)
    mask = structural.structural_mask("first", 1, length, length, padding=padding)
    scored = score_stream([(None, weights)], {"first": mask}, "all", "t", padding=padding)
    assert scored.values[0, 0, 0, MASS] == pytest.approx(1 / length)


def test_mean_of_queries_against_a_query_mask_is_refused():
    mask = structural.structural_mask("prev", 1, 3, 3)
    weights = np.full((1, 2, 3, 3), 1 / 3, np.float32)
    with pytest.raises(AttnvizError, match="use --query all"):
        score_stream([(None, weights)], {"prev": mask}, "mean", "test")


def test_head_statistics_are_scores_masses_over_every_query():
    """One formula: each head's prev, next, first and induction statistic equals score's
    mass with --query all against the mask of that name."""
    from attnviz.analysis.heads import head_statistics

    rng = np.random.default_rng(1)
    n, heads, length = 3, 2, 9
    tokens = rng.integers(0, 4, size=(n, length))
    padding = np.ones((n, length), bool)
    padding[1, 7:] = False
    weights = rng.dirichlet(np.ones(length), size=(n, heads, length)).astype(np.float32)
    stats = head_statistics(weights, tokens, padding)
    for name in ("prev", "next", "self", "first", "induction"):
        mask = structural.structural_mask(name, n, length, length, tokens, padding)
        scored = score_stream([(None, weights)], {name: mask}, "all", "t", padding=padding)
        np.testing.assert_allclose(scored.values[0, 0, 1:, MASS], stats[name], rtol=1e-5,
                                   err_msg=name)
