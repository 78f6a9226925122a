"""Attention rows in 8 bits ("q8"): half of float16's disk, with every error bounded.

A row of weights w (one query over Lk keys, w >= 0) is stored as Lk + 2 bytes: Lk codes and
its scale s (float16, the row's maximum rounded up, in the last two bytes). Codes round the
running sum, not each weight:

    C_j = round(254 * (w_1 + ... + w_j) / s)        code_j = C_j - C_(j-1)      (C_0 = 0)
    decoded w'_j = code_j * s / 254

so every code lies in 0..255 (one weight adds at most 254 to the running sum, and rounding at
most 1), and every bound is a bound on a running sum:
    - one weight:                          |w'_j - w_j| <= s / 254
    - any span of keys a..b (one key, a
      prefix, the keys after a delimiter):  |sum w' - sum w| <= s / 254
    - the whole row:                       |sum w' - 1| <= s / 508
    - a mask of m separate spans:          <= m * s / 254
where s <= 1.001 * max(w). Small weights are not rounded away: a tail of many tiny weights
keeps its total mass (as occasional codes of 1), which per-weight rounding would zero.
"""

from __future__ import annotations

import numpy as np

Q8 = "q8"
LEVELS = 254  # the running sum's steps per scale; one weight adds at most 254 + 1 < 256
SCALE_BYTES = 2  # float16, little-endian, after the codes


def encode(weights: np.ndarray) -> np.ndarray:
    """(..., Lk) non-negative weights as (..., Lk + 2) uint8: codes, then the row's scale."""
    weights = np.asarray(weights)
    if weights.size and not (np.isfinite(weights).all() and weights.min() >= 0):
        raise ValueError("attention weights must be finite and non-negative to store as q8")
    peak = weights.max(axis=-1, initial=0).astype(np.float64)
    scale = np.asarray(peak, dtype=np.float16)
    up = np.nextafter(scale, np.float16(np.inf))  # where float16 rounded the maximum down
    scale = np.where(scale.astype(np.float64) < peak, up, scale)
    scale = np.asarray(np.where(peak > 0, scale, np.float16(1.0)), dtype="<f2")
    # float64 running sums: exact enough that rounding them is the only error (float32's
    # would be off by several codes over 512 keys)
    running = np.cumsum(weights, axis=-1, dtype=np.float64)
    running *= (LEVELS / scale.astype(np.float64))[..., None]
    np.rint(running, out=running)
    stored = np.empty(weights.shape[:-1] + (weights.shape[-1] + SCALE_BYTES,), np.uint8)
    if weights.shape[-1]:
        # the running sums never fall and rise by at most 255 a key: each difference is a code
        stored[..., 0] = running[..., 0]
        np.subtract(running[..., 1:], running[..., :-1], out=stored[..., 1:-SCALE_BYTES],
                    casting="unsafe")
    stored[..., -SCALE_BYTES:] = scale[..., None].view(np.uint8)
    return stored


def decode(stored: np.ndarray) -> np.ndarray:
    """(..., Lk + 2) uint8 as encode wrote it: the (..., Lk) weights, float32."""
    stored = np.asarray(stored, dtype=np.uint8)
    scale = np.ascontiguousarray(stored[..., -SCALE_BYTES:]).view("<f2")[..., 0]
    codes = stored[..., :-SCALE_BYTES].astype(np.float32)
    return codes * (scale.astype(np.float32) / LEVELS)[..., None]


def stored_shape(shape) -> list[int]:
    """The .npy shape that holds weights of `shape` as q8."""
    return [*shape[:-1], int(shape[-1]) + SCALE_BYTES]
