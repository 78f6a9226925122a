"""Synthetic sequence tasks with per-sample ground-truth attention masks (numpy only).

Every task draws inputs of shape (n, L, 1) and targets (n, 1) from a seeded
`np.random.Generator`, and says which positions a model *could* attend to as boolean
masks of shape (n, L). Worked example, the founding case `add-before-delimiter`:

    x = [.1, .2, .3, 0., .4, .5, ...]   delimiter 0.0 at a = 3
    y = .1 + .2 + .3 = .6
    masks["delimiter"] = [0, 0, 0, 1, 0, ...]   the position that holds a
    masks["prefix"]    = [1, 1, 1, 0, 0, ...]   the values that are summed

Each task also states its baselines: the MSE of predicting the mean of y, and of the best
shortcut a model can learn without solving the task (where one exists), exactly for L.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from attnviz.errors import AttnvizError, did_you_mean
from attnviz.store.config import TrainConfig
from attnviz.store.samples import TaskBatch

DELIMITER = 0.0

# Independent random streams of one seed, so adding a stream never shifts another.
TRAIN_STREAM, VAL_STREAM, PROBE_STREAM, HELDOUT_STREAM = 0, 1, 2, 3


@dataclass(frozen=True)
class Baseline:
    name: str  # "mean" or the shortcut's name
    mse: float  # its expected mean squared error on fresh data
    description: str  # what the predictor does, in words


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    mask_names: tuple[str, ...]  # the first is the main mask, shown while training
    probe_positions: tuple[int, ...]  # the fixed positions of the probe batch
    erase_value: Callable[[int], float]  # a neutral input value for erasure tests, given L
    min_seq_len: int
    _draw: Callable[[np.random.Generator, int, int, tuple[int, ...] | None], TaskBatch]
    _baselines: Callable[[int], list[Baseline]]

    @property
    def main_mask(self) -> str:
        return self.mask_names[0]

    def generate(self, n: int, seq_len: int, rng: np.random.Generator) -> TaskBatch:
        """Draw `n` training samples with random positions."""
        return self._draw(rng, n, seq_len, None)

    def probe(self, n: int, seq_len: int, rng: np.random.Generator) -> TaskBatch:
        """Draw `n` samples whose positions are fixed at `probe_positions` (scaled to L)."""
        return self._draw(rng, n, seq_len, self.probe_positions_for(seq_len))

    def probe_positions_for(self, seq_len: int) -> tuple[int, ...]:
        """The probe positions, moved inside the sequence when L is shorter than the default."""
        if not self.probe_positions:
            return ()
        limit = seq_len - 1
        if max(self.probe_positions) <= limit:
            return self.probe_positions
        scale = limit / max(self.probe_positions)
        return tuple(max(1, int(p * scale)) for p in self.probe_positions)

    def baselines(self, seq_len: int) -> list[Baseline]:
        return self._baselines(seq_len)


def _delimiter_batch(
    rng: np.random.Generator, n: int, seq_len: int, fixed: tuple[int, ...] | None, reduce: str
) -> TaskBatch:
    x = rng.uniform(0.0, 1.0, size=(n, seq_len))
    index = (
        np.full(n, fixed[0]) if fixed else rng.integers(1, seq_len, size=n)
    )  # a in 1..L-1
    positions = np.arange(seq_len)[None, :]  # (1, L)
    prefix = positions < index[:, None]  # (n, L)
    total = np.where(prefix, x, 0.0).sum(axis=1)
    y = total if reduce == "sum" else total / index
    x[np.arange(n), index] = DELIMITER
    return TaskBatch(
        x=x[..., None].astype(np.float32),
        y=y[:, None].astype(np.float32),
        masks={"delimiter": positions == index[:, None], "prefix": prefix},
    )


def _add_before_delimiter_baselines(seq_len: int) -> list[Baseline]:
    a = np.arange(1, seq_len, dtype=np.float64)  # the delimiter index, uniform on 1..L-1
    # y | a is a sum of a U[0,1) values: mean a/2, variance a/12.
    return [
        Baseline("mean", float(a.mean() / 12 + a.var() / 4), "predict the mean of y"),
        Baseline(
            "half-delimiter-index",
            float(a.mean() / 12),
            "predict a/2 from where the delimiter is, ignoring the values",
        ),
    ]


def _mean_before_delimiter_baselines(seq_len: int) -> list[Baseline]:
    a = np.arange(1, seq_len, dtype=np.float64)
    # y | a is a mean of a U[0,1) values: mean 1/2 for every a, variance 1/(12a).
    return [Baseline("mean", float(np.mean(1.0 / (12.0 * a))), "predict the mean of y (1/2)")]


def _after_delimiters_batch(
    rng: np.random.Generator, n: int, seq_len: int, fixed: tuple[int, ...] | None
) -> TaskBatch:
    x = rng.uniform(0.0, 1.0, size=(n, seq_len))
    if fixed:
        first, second = np.full(n, fixed[0]), np.full(n, fixed[1])
    else:
        first = rng.integers(1, seq_len - 2, size=n)  # 1..L-3
        second = rng.integers(first + 2, seq_len)  # first+2..L-1: its delimiter is not `first`
    rows = np.arange(n)
    y = 0.5 * (x[rows, first] + x[rows, second])
    x[rows, first - 1] = DELIMITER
    x[rows, second - 1] = DELIMITER
    marked = np.zeros((n, seq_len), dtype=bool)
    marked[rows, first] = True
    marked[rows, second] = True
    return TaskBatch(
        x[..., None].astype(np.float32), y[:, None].astype(np.float32), {"marked": marked}
    )


def _find_max_batch(
    rng: np.random.Generator, n: int, seq_len: int, fixed: tuple[int, ...] | None
) -> TaskBatch:
    # Beta(1/L, 1) makes the maximum of L values uniform on [0, 1): P(max <= t) = t.
    x = rng.beta(1.0 / seq_len, 1.0, size=(n, seq_len))
    argmax = x.argmax(axis=1)
    mask = np.arange(seq_len)[None, :] == argmax[:, None]
    return TaskBatch(
        x[..., None].astype(np.float32), x.max(axis=1)[:, None].astype(np.float32), {"argmax": mask}
    )


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            name="add-before-delimiter",
            description="y = sum of the values before the delimiter 0.0 (the founding case)",
            mask_names=("delimiter", "prefix"),
            probe_positions=(4,),
            erase_value=lambda seq_len: 0.5,
            min_seq_len=3,
            _draw=lambda rng, n, L, fixed: _delimiter_batch(rng, n, L, fixed, "sum"),
            _baselines=_add_before_delimiter_baselines,
        ),
        Task(
            name="add-after-delimiters",
            description="y = 0.5 * (the two values right after two delimiters 0.0)",
            mask_names=("marked",),
            probe_positions=(4, 9),
            erase_value=lambda seq_len: 0.5,
            min_seq_len=4,
            _draw=_after_delimiters_batch,
            # y is the mean of two U[0,1) values: variance (1/12) / 2.
            _baselines=lambda seq_len: [Baseline("mean", 1.0 / 24.0, "predict the mean of y")],
        ),
        Task(
            name="find-max",
            description="y = the largest value; values ~ Beta(1/L, 1)",
            mask_names=("argmax",),
            probe_positions=(),
            erase_value=lambda seq_len: 1.0 / (seq_len + 1.0),  # the mean of Beta(1/L, 1)
            min_seq_len=3,
            _draw=_find_max_batch,
            # max ~ U[0, 1): variance 1/12.
            _baselines=lambda seq_len: [Baseline("mean", 1.0 / 12.0, "predict the mean of y")],
        ),
        Task(
            name="mean-before-delimiter",
            description="y = mean of the values before the delimiter (control: uniform prefix "
            "attention solves it exactly)",
            mask_names=("prefix", "delimiter"),
            probe_positions=(4,),
            erase_value=lambda seq_len: 0.5,
            min_seq_len=3,
            _draw=lambda rng, n, L, fixed: _delimiter_batch(rng, n, L, fixed, "mean"),
            _baselines=_mean_before_delimiter_baselines,
        ),
    )
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise AttnvizError(
            f"unknown task {name!r}{did_you_mean(name, TASKS)}: choose one of {', '.join(TASKS)}"
        ) from None


def task_data(config: TrainConfig, stream: int, n: int) -> TaskBatch:
    """The samples of one stream of a built-in task's run: training, validation, probe or
    held-out."""
    task = get_task(config.task)
    rng = np.random.default_rng([config.seed, stream])
    if stream == PROBE_STREAM:
        return task.probe(n, config.seq_len, rng)
    return task.generate(n, config.seq_len, rng)


def checked(config: TrainConfig) -> TrainConfig:
    """The config, validated (TrainConfig.validate) and checked against its task: the task
    exists and the sequences are long enough for it."""
    config.validate()
    task = get_task(config.task)
    if config.seq_len < task.min_seq_len:
        raise AttnvizError(
            f"--seq-len {config.seq_len} is too short for {config.task}: use at least "
            f"{task.min_seq_len}"
        )
    return config
