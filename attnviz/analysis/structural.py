"""Masks computed from positions, the padding mask and token ids, never drawn by hand (numpy
only). Every command that takes a mask name takes these too; docs/metrics.md ("Structural
masks") has each definition and a worked example.

Query masks, (n, L, L) over self-attention's queries and keys, one row per query:

    self       key q of query q
    prev       key q - 1 (query 0 has none)
    next       key q + 1 (the last query has none)
    induction  key k + 1 for every earlier k < q - 1 whose token is the query's token:
               the token that followed an earlier copy of the current one (Olsson et al. 2022)

Key masks, (n, L), the same keys for every query (and for temporal attention):

    first      key 0 ([CLS], a BOS token, an attention sink)
    last       the last key that is not padding ([SEP], an EOS token)
    pad        the padded keys: attention there is a bug in the model
    token:ID   every key holding token id ID (e.g. token:102, BERT's [SEP])

Padded queries have no row in any mask, and padded keys are never marked except by `pad`.
A query whose row marks nothing (query 0 for `prev`, a token seen for the first time for
`induction`) is left out of the averages: it has nothing to attend to there.

Worked example, tokens [5, 7, 5, 7, 9]:

    prev       query 3 -> key 2;  induction  query 2 (token 5) -> key 1, query 3 -> key 2,
               query 0, 1, 4 -> none (no earlier copy of their token)
"""

from __future__ import annotations

import numpy as np

from attnviz.errors import AttnvizError, did_you_mean

QUERY_MASKS = ("self", "prev", "next", "induction")
KEY_MASKS = ("first", "last", "pad")
TOKEN = "token:"  # token:ID
NAMES = (*QUERY_MASKS, *KEY_MASKS, f"{TOKEN}ID")
# The inputs attnviz reads token ids and the padding mask from (keras_hub's names).
TOKEN_INPUT = "token_ids"
PADDING_INPUT = "padding_mask"


def is_structural(name: str) -> bool:
    return name in QUERY_MASKS or name in KEY_MASKS or name.startswith(TOKEN)


def is_query_mask(name: str) -> bool:
    return name in QUERY_MASKS


def probe_tokens(x) -> np.ndarray | None:
    """The (n, L) integer token ids among a probe's inputs: the `token_ids` input of a dict
    (keras_hub's), else the one integer input of shape (n, L); None when there is none."""
    inputs = _inputs(x)
    if TOKEN_INPUT in inputs and _is_ids(inputs[TOKEN_INPUT]):
        return np.asarray(inputs[TOKEN_INPUT])
    ids = [array for name, array in inputs.items() if name != PADDING_INPUT and _is_ids(array)]
    return np.asarray(ids[0]) if len(ids) == 1 else None


def probe_padding(x) -> np.ndarray | None:
    """The (n, L) bool mask of real (not padded) positions: the `padding_mask` input of a
    dict (keras_hub's); None when the probe has none."""
    array = _inputs(x).get(PADDING_INPUT)
    if array is None or np.ndim(array) != 2:
        return None
    return np.asarray(array).astype(bool)


def _inputs(x) -> dict:
    if isinstance(x, dict):
        return dict(x)
    if isinstance(x, (list, tuple)):
        return {f"input_{i}": array for i, array in enumerate(x)}
    return {"x": x}


def _is_ids(array) -> bool:
    array = np.asarray(array)
    return array.ndim == 2 and array.dtype.kind in "iu"


def structural_mask(name: str, n: int, queries: int, keys: int,
                    tokens: np.ndarray | None = None,
                    padding: np.ndarray | None = None) -> np.ndarray:
    """The mask `name` for attention of n samples, `queries` x `keys`: (n, Lq, Lk) bool for a
    query mask, (n, Lk) bool for a key mask. `tokens` (n, Lk) ids and `padding` (n, Lk) bool
    (True: a real position) come from the probe (probe_tokens, probe_padding)."""
    if not is_structural(name):
        raise AttnvizError(f"unknown mask {name!r}{did_you_mean(name, NAMES)}: the built-in "
                           f"masks are {', '.join(NAMES)}")
    real = np.ones((n, keys), dtype=bool) if padding is None else _checked(
        padding, (n, keys), "the padding mask").astype(bool)
    if name in QUERY_MASKS:
        if queries != keys:
            raise AttnvizError(f"mask {name} needs self-attention (as many queries as keys): "
                               f"this layer has {queries} queries over {keys} keys; use first, "
                               "last, pad or token:ID")
        return _query_mask(name, n, keys, tokens, real)
    if name == "first":
        mask = np.zeros((n, keys), dtype=bool)
        mask[:, 0] = True
        return mask & real
    if name == "last":
        mask = np.zeros((n, keys), dtype=bool)
        last = keys - 1 - np.argmax(real[:, ::-1], axis=1)  # the last real key of each row
        mask[np.arange(n), last] = real.any(axis=1)
        return mask
    if name == "pad":
        if padding is None:
            raise AttnvizError("mask pad needs a padding mask: the probe has no "
                               f"{PADDING_INPUT!r} input (keras_hub's name for it)")
        return ~real
    token = name[len(TOKEN):]
    if not token.lstrip("-").isdigit():
        raise AttnvizError(f"mask {name!r}: write token:ID with an integer id, e.g. token:102")
    return (_tokens(tokens, name, (n, keys)) == int(token)) & real


def _query_mask(name: str, n: int, length: int, tokens: np.ndarray | None,
                real: np.ndarray) -> np.ndarray:
    positions = np.arange(length)
    if name == "induction":
        ids = _tokens(tokens, name, (n, length))
        same = ids[:, :, None] == ids[:, None, :]  # (n, q, k): token k is query q's token
        earlier = positions[None, :] < positions[:, None] - 1  # k < q - 1
        copies = same & earlier & real[:, None, :]
        mask = np.zeros((n, length, length), dtype=bool)
        mask[:, :, 1:] = copies[:, :, :-1]  # key k + 1 after each copy k
    else:
        offset = {"self": 0, "prev": -1, "next": 1}[name]
        mask = np.broadcast_to(positions[None, :] == positions[:, None] + offset,
                               (n, length, length)).copy()
    return mask & real[:, None, :] & real[:, :, None]


def _tokens(tokens: np.ndarray | None, name: str, shape: tuple[int, int]) -> np.ndarray:
    if tokens is None:
        raise AttnvizError(f"mask {name} needs token ids: the probe has no integer (n, L) input "
                           f"(or a {TOKEN_INPUT!r} input) to read them from")
    return _checked(tokens, shape, "the token ids")


def _checked(array: np.ndarray, shape: tuple[int, int], what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.shape != shape:
        raise AttnvizError(f"{what} have shape {array.shape}, but the attention is over "
                           f"{shape[0]} samples x {shape[1]} keys")
    return array


def valid_queries(padding: np.ndarray | None, n: int, queries: int) -> np.ndarray:
    """(n, Lq) bool: the queries that count (not padding; every query without a padding mask
    or when queries and keys differ in length)."""
    if padding is None or np.shape(padding) != (n, queries):
        return np.ones((n, queries), dtype=bool)
    return np.asarray(padding).astype(bool)
