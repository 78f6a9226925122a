"""Tokens on the axes: what each position of a probe sample is called (numpy only).

A run's positions are labelled, in this order of preference, by
    1. --tokens FILE.json given to a command (inspect, animate, report);
    2. the labels the run stored (AttentionRecorder(tokens=...));
    3. the probe's own token ids, as numbers ("17"): a model that reads token ids.
FILE.json holds either one list of strings per probe sample, or {"vocabulary": [...]}, a
list whose entry i names token id i (what a keras_hub tokenizer's get_vocabulary() returns),
applied to the probe's token ids. Labels are data: HTML shows them as text, the terminal
escapes control characters and shortens long ones (`short`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from attnviz.analysis import structural
from attnviz.errors import AttnvizError

MAX_CHARS = 100  # a label longer than this is stored shortened (the terminal shows less)
ELLIPSIS = "…"


def check_labels(labels, n: int, lengths: Sequence[int], what: str) -> list[list[str]]:
    """`labels` as n lists of strings, each as long as one of `lengths` (the positions the
    recorded layers attend over), or raise naming the problem. Long labels are shortened."""
    if isinstance(labels, np.ndarray):
        labels = labels.tolist()
    if not isinstance(labels, (list, tuple)) or not all(
            isinstance(row, (list, tuple)) for row in labels):
        raise AttnvizError(f"{what}: give one list of strings per probe sample (or "
                           '{"vocabulary": [...]} in a file)')
    if len(labels) < n:
        raise AttnvizError(f"{what} has {len(labels)} rows: the probe holds {n} samples, "
                           "give one row of labels for each")
    rows = [list(row) for row in labels[:n]]
    bad = next((row for row in rows if len(row) not in lengths), None)
    if bad is not None:
        raise AttnvizError(f"{what}: a row has {len(bad)} labels, the positions are "
                           f"{' or '.join(map(str, sorted(set(lengths))))}")
    if not all(isinstance(label, str) for row in rows for label in row):
        raise AttnvizError(f"{what}: every label must be a string")
    return [[_clip(label) for label in row] for row in rows]


def from_ids(name: Callable[[int], object] | Sequence[str], ids: np.ndarray,
             what: str) -> list[list[str]]:
    """Labels of the (n, L) token `ids`: `name` is a callable from id to string (a keras_hub
    tokenizer's id_to_token) or a vocabulary (entry i names id i)."""
    if callable(name):
        lookup = {}
        for token in np.unique(ids).tolist():
            try:
                lookup[token] = str(name(int(token)))
            except Exception as err:  # noqa: BLE001 (the user's own function)
                raise AttnvizError(f"{what}: calling it on token id {token} raised "
                                   f"{type(err).__name__}: {err}") from None
    else:
        vocabulary = list(name)
        if not all(isinstance(label, str) for label in vocabulary):
            raise AttnvizError(f"{what}: the vocabulary must be a list of strings")
        high = int(ids.max()) if ids.size else -1
        if high >= len(vocabulary) or (ids.size and int(ids.min()) < 0):
            raise AttnvizError(f"{what}: the probe has token id {high}, the vocabulary "
                               f"names ids 0..{len(vocabulary) - 1}")
        lookup = {token: vocabulary[token] for token in np.unique(ids).tolist()}
    return [[_clip(lookup[token]) for token in row] for row in ids.tolist()]


def given_labels(tokens, x, n: int, lengths: Sequence[int],
                 what: str = "tokens") -> list[list[str]]:
    """The labels `tokens` gives a probe `x` of n samples: one list of strings per sample,
    a callable from token id to string, or {"vocabulary": [...]}."""
    if callable(tokens) or isinstance(tokens, dict):
        ids = structural.probe_tokens(x)
        if ids is None:
            raise AttnvizError(f"{what} names token ids, and the probe has none (an integer "
                               "input of shape (n, L), or keras_hub's token_ids): give one "
                               "list of strings per sample")
        if isinstance(tokens, dict):
            if set(tokens) != {"vocabulary"}:
                raise AttnvizError(f'{what}: an object must be {{"vocabulary": [...]}}')
            tokens = tokens["vocabulary"]
            if not isinstance(tokens, list):
                raise AttnvizError(f"{what}: the vocabulary must be a list of strings")
        return check_labels(from_ids(tokens, ids[:n], what), n, lengths, what)
    return check_labels(tokens, n, lengths, what)


def load_tokens(path: Path):
    """What a --tokens FILE.json holds (checked against the probe by given_labels)."""
    path = Path(path)
    if not path.is_file():
        raise AttnvizError(f"--tokens {path}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise AttnvizError(f"--tokens {path}: not a JSON file ({type(err).__name__}): give "
                           'one list of strings per sample, or {"vocabulary": [...]}') from None


def position_labels(run, path: Path | None = None) -> list[list[str]] | None:
    """The labels of a run's probe positions: --tokens `path`, else the run's own, else its
    token ids as numbers; None when there is nothing to name them by."""
    n = run.header["probe"]["size"]
    lengths = sorted({int(layer["shape"][-1]) for layer in run.layers})
    if path is not None:
        return given_labels(load_tokens(path), run.probe.x, n, lengths, f"--tokens {path}")
    stored = run.header["probe"].get("tokens")
    if stored is not None:
        return stored
    ids = structural.probe_tokens(run.probe.x)
    if ids is None:
        return None
    return [[str(token) for token in row] for row in ids.tolist()]


def short(label: str, width: int = 12) -> str:
    """A label for the terminal: control characters escaped, at most `width` characters (the
    end replaced by an ellipsis)."""
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                    for c in label) or "''"
    return shown if len(shown) <= width else shown[:max(width - 1, 1)] + ELLIPSIS


def _clip(label: str) -> str:
    return label if len(label) <= MAX_CHARS else label[:MAX_CHARS - 1] + ELLIPSIS
