"""The training configuration: a frozen dataclass saved as JSON in every run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from attnviz.errors import AttnvizError, did_you_mean
from attnviz.store.layers import RECORD_HEADS

ENCODERS = ("lstm", "gru", "bilstm", "dense", "embedding")
ATTENTIONS = ("luong", "bahdanau", "self")
STRATEGIES = ("default", "mirrored", "data-parallel", "multi-worker")
# the backend each strategy needs (default runs on either)
STRATEGY_BACKEND = {"mirrored": "tensorflow", "data-parallel": "jax", "multi-worker": "tensorflow"}


@dataclass(frozen=True)
class TrainConfig:
    """Everything needed to rebuild the data, the model and the training of a run."""

    task: str = "add-before-delimiter"  # a name from attnviz.analysis.tasks.TASKS
    encoder: str = "lstm"  # lstm | gru | bilstm | dense (position-wise, no recurrence) |
    # embedding (token and position embeddings: the token tasks' attention-only Transformer)
    attention: str = "luong"  # luong | bahdanau | self (multi-head self-attention)
    seq_len: int = 20  # L, the sequence length
    units: int = 100  # encoder width, as in the founding case's LSTM(100)
    attention_units: int = 128  # width of the attention vector (the `attention` package's 128)
    heads: int = 2  # heads of self-attention; ignored by luong and bahdanau
    dropout: float = 0.2  # dropout after attention, as in the founding case
    samples: int = 20_000  # training samples
    val_samples: int = 4_000  # validation samples
    probe_size: int = 10  # samples in the probe batch whose attention is recorded
    epochs: int = 20  # total epochs of the run (resume trains up to this)
    batch_size: int = 64
    learning_rate: float = 1e-3  # Adam
    seed: int = 7  # seeds data, initialisation and shuffling
    checkpoint_every: int = 5  # a .keras checkpoint every N epochs, and always the last
    record_every: int = 1  # record probe attention every N epochs (epoch 0 and the last always)
    record_heads: str = "all"  # self-attention: "all" heads, or "mean" of heads (H times less)
    attribution: bool = False  # also record gradient x input attribution on the probe batch
    jit_compile: bool = False  # XLA-compile the train step: measured slower on 2-core EPYC CPUs
    steps_per_execution: int = 32  # batches per compiled call (~15 % faster epochs on CPU)
    strategy: str = "default"  # default | mirrored (tf.distribute) | data-parallel (JAX's
    # keras.distribution.DataParallel) | multi-worker (refused)
    layers: int = 1  # token tasks: attention-only Transformer blocks (causal, no MLP)
    vocab: int = 32  # token tasks: the token ids 0..vocab-1
    warmup_steps: int = 0  # steps of linear learning-rate warm-up from 0 (then constant)
    record_steps: int = 0  # also record every N training steps inside epochs (0: epochs only)

    def validate(self) -> TrainConfig:
        """Raise AttnvizError naming the first bad field; return self when all are fine.
        Whether the task exists and takes this --seq-len is attnviz.analysis.tasks.checked's
        to say (the tasks live there)."""
        _choice("encoder", self.encoder, ENCODERS)
        _choice("attention", self.attention, ATTENTIONS)
        _choice("strategy", self.strategy, STRATEGIES)
        if self.strategy == "multi-worker":
            # Tried on a two-worker localhost cluster: Keras 3.15's fit reduces a per-replica
            # batch it cannot convert ("Attempt to convert a value (PerReplica...)"), and past
            # that its metrics fail to trace. Refused here, before anything is written.
            raise AttnvizError(
                "--strategy multi-worker fails inside Keras 3.15's fit with TensorFlow 2.21 "
                "(see docs/train.md): use --strategy mirrored on one machine, or --backend jax "
                "--strategy data-parallel, with --num-processes N across machines"
            )
        _choice("record-heads", self.record_heads, RECORD_HEADS)
        for name, minimum in (
            ("epochs", 1), ("units", 1), ("attention_units", 1), ("heads", 1),
            ("probe_size", 1), ("batch_size", 1), ("checkpoint_every", 1),
            ("record_every", 1), ("steps_per_execution", 1), ("val_samples", 1),
            ("layers", 1), ("vocab", 2), ("warmup_steps", 0), ("record_steps", 0),
        ):
            value = getattr(self, name)
            if value < minimum:
                flag = "--" + name.replace("_", "-")
                raise AttnvizError(f"{flag} must be at least {minimum}, got {value}")
        if self.samples < self.batch_size:
            raise AttnvizError(
                f"--samples {self.samples} is fewer than --batch-size {self.batch_size}: "
                "raise --samples or lower --batch-size"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise AttnvizError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not self.learning_rate > 0:
            raise AttnvizError(f"--learning-rate must be positive, got {self.learning_rate}")
        return self

    def check_backend(self, backend: str, resume: bool = False) -> TrainConfig:
        """Refuse, in one line, a strategy of the other backend (before anything is written);
        a resumed run keeps its strategy, so then only --backend can help."""
        needs = STRATEGY_BACKEND.get(self.strategy)
        if needs is not None and needs != backend and resume:
            raise AttnvizError(
                f"this run trains with --strategy {self.strategy}, which runs on the {needs} "
                f"backend, and Keras runs on {backend}: resume it with --backend {needs}")
        if needs is not None and needs != backend:
            other = "data-parallel" if needs == "tensorflow" else "mirrored"
            raise AttnvizError(
                f"--strategy {self.strategy} runs on the {needs} backend, and Keras runs on "
                f"{backend}: add --backend {needs}, or use --strategy {other} on {backend}")
        return self

    def effective(self) -> TrainConfig:
        """The config as it trains: under tf.distribute's mirrored strategy XLA and multi-step
        calls are off (with TensorFlow 2.21 both fail on recurrent layers across replicas), and
        config.json records what ran. Recording by steps takes steps_per_execution down to
        the largest divisor of record_steps, so records fall on its multiples."""
        if self.strategy == "mirrored":
            return self.replace(jit_compile=False, steps_per_execution=1)
        if self.record_steps and self.record_steps % self.steps_per_execution:
            # a compiled call of k steps is one batch to callbacks: records fall on
            # multiples of record_steps when k divides it
            k = max(d for d in range(1, self.steps_per_execution + 1)
                    if self.record_steps % d == 0)
            return self.replace(steps_per_execution=k)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Rebuild from JSON, refusing unknown keys and wrong types with a clear message."""
        if not isinstance(data, dict):
            raise AttnvizError("config must be a JSON object")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise AttnvizError(f"config has unknown keys {unknown}")
        values = {}
        for name, value in data.items():
            expected = type(getattr(cls(), name))
            ok = isinstance(value, expected) and not (
                expected is not bool and isinstance(value, bool)
            )
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value, ok = float(value), True
            if not ok:
                raise AttnvizError(
                    f"config key {name!r} should be {expected.__name__}, got {value!r}"
                )
            values[name] = value
        return cls(**values).validate()

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def _choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise AttnvizError(f"unknown --{flag} {value!r}{did_you_mean(value, choices)}: choose one "
                           f"of {', '.join(choices)}")
