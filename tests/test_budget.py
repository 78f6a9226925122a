"""The run's disk budget (attnviz.store.budget): what is given up, in order, and how much."""

import pytest

from attnviz.store import budget

# one epoch's maps 100 bytes (q8: 52), a checkpoint 300, probe and config 10; 10 epochs,
# maps every epoch (11 with epoch 0), a checkpoint every epoch, the last 2 kept
SIZES = budget.Sizes(maps=100, maps_q8=52, checkpoint=300, once=10)


def plan(limit, **changes):
    options = {"every": 1, "checkpoint_every": 1, "keep": 2, **changes}
    return budget.fit(SIZES, 10, limit, **options)


def test_recorded_epochs_count_epoch_zero_and_the_last():
    assert budget.recorded_epochs(10, 1) == 11
    assert budget.recorded_epochs(10, 3) == 5  # 0, 3, 6, 9, 10
    assert budget.recorded_epochs(9, 3) == 4  # 0, 3, 6, 9
    assert budget.checkpoint_epochs(10, 4) == 3  # 4, 8, 10
    assert budget.checkpoint_epochs(10, 0) == 0


@pytest.mark.parametrize("limit", [None, 1710])
def test_within_the_budget_nothing_is_given_up(limit):
    result = plan(limit)
    assert (result.compact, result.every, result.keep, result.checkpoints) == (False, 1, 2, True)
    assert result.size == 10 + 11 * 100 + 2 * 300 and result.said(1) is None


@pytest.mark.parametrize("limit, compact, every, keep, checkpoints, size", [
    (1200, True, 1, 2, True, 10 + 11 * 52 + 2 * 300),  # q8 is enough
    (1000, True, 1, 1, True, 10 + 11 * 52 + 300),  # then one checkpoint
    (600, True, 3, 1, True, 10 + 5 * 52 + 300),  # then maps every 3 epochs (every 2: 622)
    (200, True, 10, 1, False, 10 + 2 * 52),  # then no checkpoint
])
def test_over_the_budget_the_least_is_given_up_in_order(limit, compact, every, keep,
                                                         checkpoints, size):
    result = plan(limit)
    assert (result.compact, result.every, result.keep, result.checkpoints) == (
        compact, every, keep, checkpoints)
    assert result.size == size <= limit
    assert "Raise max_run_mb" in result.said(limit / budget.MB)


def test_a_budget_nothing_meets_says_what_the_run_needs():
    result = plan(50)
    assert result.size == 114 and not result.checkpoints
    said = result.said(50 / budget.MB)
    assert "even so the run needs 0.0 MB" in said
    assert "only the last checkpoint" not in said  # none are kept: not said twice


def test_q8_is_not_chosen_when_it_saves_nothing():
    temporal = budget.Sizes(maps=40, maps_q8=40, checkpoint=0, once=0)
    result = budget.fit(temporal, 10, 200, every=1, checkpoint_every=0, keep=0)
    assert not result.compact and result.every == 3  # 0, 3, 6, 9, 10: 200 bytes
