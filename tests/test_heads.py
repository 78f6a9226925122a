"""Per-head statistics (attnviz.analysis.heads) against hand computations."""

import numpy as np
import pytest

from attnviz.analysis.heads import head_statistics


def test_three_heads_by_hand():
    # L = 3, one sample. Head 0 looks at the previous key (query 0 at itself), head 1 at the
    # first key, head 2 is uniform.
    prev = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0]], float)
    first = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0]], float)
    uniform = np.full((3, 3), 1 / 3)
    stats = head_statistics(np.stack([prev, first, uniform])[None])
    # prev: keys q-1 of queries 1 and 2 hold 1 and 1 -> 2/2; self: query 0 only -> 1/3
    np.testing.assert_allclose(stats["prev"], [1.0, 1 / 2, 1 / 3])
    np.testing.assert_allclose(stats["self"], [1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(stats["first"], [2 / 3, 1.0, 1 / 3])
    np.testing.assert_allclose(stats["entropy"], [0.0, 0.0, 1.0], atol=1e-6)
    # distance: head 0 |0-0| + |1-0| + |2-1| = 2 over 3 queries; head 1 0 + 1 + 2 = 3 -> 1;
    # uniform: (0+1+2)/3 + (1+0+1)/3 + (2+1+0)/3 = 8/3, over 3 queries = 8/9
    np.testing.assert_allclose(stats["distance"], [2 / 3, 1.0, 8 / 9])


def test_averages_over_samples_and_cross_attention_has_no_positions():
    rng = np.random.default_rng(0)
    weights = rng.dirichlet(np.ones(5), size=(4, 2, 3))  # (n 4, H 2, Lq 3, Lk 5)
    stats = head_statistics(weights)
    assert stats["self"] is None and stats["prev"] is None and stats["distance"] is None
    np.testing.assert_allclose(stats["first"], weights[..., 0].mean(axis=(0, 2)))
    by_hand = -(weights * np.log(weights)).sum(-1) / np.log(5)
    np.testing.assert_allclose(stats["entropy"], by_hand.mean(axis=(0, 2)), rtol=1e-5)


@pytest.mark.parametrize("length", [1, 2])
def test_tiny_sequences(length):
    stats = head_statistics(np.ones((1, 1, length, length)) / length)
    assert stats["entropy"][0] == pytest.approx(0.0 if length == 1 else 1.0)
    assert stats["prev"][0] == (0.0 if length == 1 else 0.5)


def test_planted_heads_get_exactly_their_labels():
    """Heads set by hand: previous-token, first-token, uniform, self, and one that splits its
    attention between the first and the previous key (neither reaches 0.5: mixed)."""
    from attnviz.analysis.heads import head_labels

    length = 12
    eye = np.eye(length)
    prev = np.roll(eye, -1, axis=1)  # query q looks at key q - 1 ...
    prev[0] = eye[0]  # ... and query 0 at itself
    first = np.zeros((length, length))
    first[:, 0] = 1
    uniform = np.full((length, length), 1 / length)
    split = 0.4 * first + 0.4 * prev + 0.2 * uniform
    weights = np.stack([prev, first, uniform, eye, split])[None].repeat(2, axis=0)
    labels = head_labels(weights)
    assert [label for label, _ in labels] == [
        "previous-token", "first-token", "broad", "self", "mixed"]
    assert labels[0][1] == pytest.approx(1.0) and labels[1][1] == pytest.approx(1.0)
    assert labels[2][1] == pytest.approx(1.0)  # entropy of uniform rows


def test_a_local_head_and_an_untrained_one():
    from attnviz.analysis.heads import head_labels

    length = 16
    q, k = np.arange(length)[:, None], np.arange(length)[None, :]
    near = np.exp(-np.abs(q - k) * 0.7)  # a band around the diagonal, no key above 0.5
    near /= near.sum(axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    untrained = np.exp(rng.normal(size=(length, length)) * 0.1)  # random init: near uniform
    untrained /= untrained.sum(axis=1, keepdims=True)
    labels = [label for label, _ in head_labels(np.stack([near, untrained])[None])]
    assert labels == ["local", "broad"]


def test_next_token_special_token_and_induction_heads_planted():
    """With token ids: a head on the next key, one on [SEP] (the id at the last position of
    every sample) and one on the key after the earlier copy of the query's token."""
    from attnviz.analysis.heads import head_labels, special_ids

    rng = np.random.default_rng(3)
    n, half = 4, 6
    body = rng.permutation(np.arange(10, 40))[:n * half].reshape(n, half)  # no id twice
    tokens = np.concatenate([np.full((n, 1), 101), body, body, np.full((n, 1), 102)], axis=1)
    length = tokens.shape[1]
    assert special_ids(tokens) == [101, 102]
    nxt = np.eye(length, k=1)
    nxt[-1, -1] = 1
    sep = np.zeros((length, length))
    sep[:, -1] = 1
    induction = np.zeros((n, length, length))
    for q in range(length):
        # the second copy's queries look at the key after their token's first copy
        k = q - half + 1 if half + 1 <= q < length - 1 else 0
        induction[:, q, k] = 1
    weights = np.stack([np.broadcast_to(nxt, (n, length, length)),
                        np.broadcast_to(sep, (n, length, length)), induction], axis=1)
    labels = head_labels(weights, tokens)
    assert [label for label, _ in labels] == ["next-token", "special-token", "induction"]
    assert labels[2][1] == pytest.approx(1.0)
    # the same heads without token ids: special and induction do not apply
    assert [label for label, _ in head_labels(weights)][:1] == ["next-token"]


def test_an_untrained_head_is_no_induction_head():
    from attnviz.analysis.heads import head_labels, head_statistics

    rng = np.random.default_rng(4)
    n, length = 8, 24
    tokens = rng.integers(0, 6, size=(n, length))  # many earlier copies of each token
    scores = rng.normal(size=(n, 4, length, length)) * 0.1
    scores = np.where(np.tril(np.ones((length, length))) > 0, scores, -np.inf)  # causal
    weights = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
    stats = head_statistics(weights, tokens)
    assert (stats["induction"] < 0.3).all()
    assert "induction" not in [label for label, _ in head_labels(weights, tokens)]
