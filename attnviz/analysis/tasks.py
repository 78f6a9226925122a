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
    # a token task: inputs are (n, L) token ids, targets (n, L) the next token (-1: not
    # scored), and its model the attention-only Transformer; `defaults` are the options it
    # trains with unless given (measured in docs/heads.md)
    tokens: bool = False
    defaults: tuple[tuple[str, object], ...] = ()

    @property
    def main_mask(self) -> str | None:
        return self.mask_names[0] if self.mask_names else None

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


# ---- token tasks: next-token prediction, scored only where copying can tell -----------------

ATTENTION_LAYER = "attention"  # the built-in models' attention layer


def attention_layer_names(config: TrainConfig) -> list[str]:
    """The attention layers a built-in model records: "attention", or one per block of the
    token tasks' Transformer ("attention_0", "attention_1", ...)."""
    if config.encoder == "embedding":
        return [f"{ATTENTION_LAYER}_{index}" for index in range(config.layers)]
    return [ATTENTION_LAYER]


IGNORED = -1  # a target that is not scored (SparseCategoricalCrossentropy's ignore_class)


def _repeat_batch(rng: np.random.Generator, n: int, seq_len: int, vocab: int) -> TaskBatch:
    """Random tokens, the first half repeated as the second: the period L/2 is the same in
    every sample, so a head that looks L/2 - 1 positions back solves it without induction."""
    half = seq_len // 2
    first = rng.integers(0, vocab, size=(n, half))
    tail = rng.integers(0, vocab, size=(n, seq_len - 2 * half))  # odd L: one more token
    x = np.concatenate([first, first, tail], axis=1)
    y = np.full((n, seq_len), IGNORED)
    # query q of the copy predicts token q + 1, the one after q's first copy
    y[:, half:2 * half - 1] = x[:, half + 1:2 * half]
    return TaskBatch(x.astype(np.int32), y.astype(np.int32), {})


def _induction_batch(rng: np.random.Generator, n: int, seq_len: int, vocab: int) -> TaskBatch:
    """K = L / 8 segments of 2 or 3 tokens, each twice, in random order at random gaps, over
    filler drawn from the tokens no segment uses: the token after an earlier copy of the
    current one is predictable only by finding that copy (an induction circuit), and no fixed
    offset finds it. Scored: each second copy's positions after its first token."""
    segments = max(1, seq_len // 8)
    x = np.empty((n, seq_len + 1), np.int64)
    y = np.full((n, seq_len), IGNORED)
    for i in range(n):
        sizes = rng.integers(2, 4, size=segments)
        tokens = rng.permutation(vocab)
        used = int(sizes.sum())
        x[i] = tokens[used:][rng.integers(0, vocab - used, size=seq_len + 1)]
        starts = np.cumsum(sizes) - sizes
        blocks = rng.permutation(np.repeat(np.arange(segments), 2))
        gaps = np.sort(rng.integers(0, seq_len + 1 - 2 * used + 1, size=blocks.size))
        position, seen = 0, set()
        for gap, block in zip(gaps, blocks, strict=True):
            start, size = position + gap, sizes[block]
            x[i, start:start + size] = tokens[starts[block]:starts[block] + size]
            if block in seen:
                y[i, start:start + size - 1] = x[i, start + 1:start + size]
            seen.add(block)
            position += size
    return TaskBatch(x[:, :-1].astype(np.int32), y.astype(np.int32), {})


def check_vocab(task: Task, seq_len: int, vocab: int) -> None:
    """The induction task's segments need distinct tokens and filler besides them."""
    needed = 3 * max(1, seq_len // 8) + 2 if task.name == "induction" else 2
    if vocab < needed:
        raise AttnvizError(f"--vocab {vocab} is too small for {task.name} at --seq-len "
                           f"{seq_len}: use at least {needed}")


# An epoch of a token task is 100 steps of new sequences (6,400 at batch 64). Measured in
# docs/heads.md: with these, seeds 0 and 1 form an induction circuit by epoch 7 (~70 s on 2
# cores); seed 7 solves the task another way, with no induction head.
TOKEN_DEFAULTS = (("encoder", "embedding"), ("attention", "self"), ("layers", 2),
                  ("heads", 4), ("units", 64), ("seq_len", 32), ("vocab", 32),
                  ("learning_rate", 3e-3), ("warmup_steps", 200), ("dropout", 0.0),
                  ("samples", 6400), ("val_samples", 640), ("seed", 0), ("record_steps", 25))


VOCAB = dict(TOKEN_DEFAULTS)["vocab"]  # Task.generate's; a run's config says its own

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
        Task(
            name="repeat",
            description="next token; random tokens whose first half repeats as the second "
            "(a fixed period: solvable by position, without induction)",
            mask_names=(), probe_positions=(), erase_value=lambda seq_len: 0.0,
            min_seq_len=4, _draw=lambda rng, n, L, fixed: _repeat_batch(rng, n, L, VOCAB),
            _baselines=lambda seq_len: [], tokens=True,
            defaults=TOKEN_DEFAULTS,
        ),
        Task(
            name="induction",
            description="next token; short segments each repeated at random offsets (only "
            "an induction circuit predicts the second copies)",
            mask_names=(), probe_positions=(), erase_value=lambda seq_len: 0.0,
            min_seq_len=8, _draw=lambda rng, n, L, fixed: _induction_batch(rng, n, L, VOCAB),
            _baselines=lambda seq_len: [], tokens=True,
            defaults=TOKEN_DEFAULTS,
        ),
    )
}
TOKEN_BATCHES = {"repeat": _repeat_batch, "induction": _induction_batch}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise AttnvizError(
            f"unknown task {name!r}{did_you_mean(name, TASKS)}: choose one of {', '.join(TASKS)}"
        ) from None


def config_for(task: str, **given) -> TrainConfig:
    """The config `attnviz train` asks for: each option given, else the task's default
    (token tasks train another model), else TrainConfig's. Options left None count as not
    given; an unknown task is refused later, by `checked`."""
    defaults = dict(TASKS[task].defaults) if task in TASKS else {}
    values = {name: value for name, value in given.items() if value is not None}
    return TrainConfig(task=task, **{**defaults, **values})


def task_data(config: TrainConfig, stream: int, n: int) -> TaskBatch:
    """The samples of one stream of a built-in task's run: training, validation, probe or
    held-out."""
    task = get_task(config.task)
    rng = np.random.default_rng([config.seed, stream])
    if task.tokens:
        return TOKEN_BATCHES[task.name](rng, n, config.seq_len, config.vocab)
    if stream == PROBE_STREAM:
        return task.probe(n, config.seq_len, rng)
    return task.generate(n, config.seq_len, rng)


def token_batch(config: TrainConfig, epoch: int, index: int) -> TaskBatch:
    """Batch `index` of training epoch `epoch` (Keras' count, from 0) of a token task: new
    sequences every epoch (the task has as many as anyone could train on), the same ones for
    the same seed, epoch and index, so a resumed run trains on what it would have."""
    rng = np.random.default_rng([config.seed, TRAIN_STREAM, epoch, index])
    return TOKEN_BATCHES[config.task](rng, config.batch_size, config.seq_len, config.vocab)


def checked(config: TrainConfig) -> TrainConfig:
    """The config, validated (TrainConfig.validate) and checked against its task: the task
    exists and the sequences are long enough for it."""
    config.validate()
    task = get_task(config.task)
    if task.tokens:
        check_vocab(task, config.seq_len, config.vocab)
        if config.encoder != "embedding" or config.attention != "self":
            raise AttnvizError(f"task {task.name} reads token ids: its model is --encoder "
                               "embedding --attention self (the defaults for it)")
        if config.attribution:
            raise AttnvizError(f"--attribution measures regression tasks; task {task.name} "
                               "predicts tokens: drop --attribution")
    elif config.encoder == "embedding" or config.layers != 1:
        raise AttnvizError(f"--encoder embedding and --layers are for the token tasks "
                           f"(repeat, induction); task {task.name} reads values: drop them")
    if config.seq_len < task.min_seq_len:
        raise AttnvizError(
            f"--seq-len {config.seq_len} is too short for {config.task}: use at least "
            f"{task.min_seq_len}"
        )
    return config
