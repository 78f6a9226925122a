"""Attention rollout (Abnar & Zuidema 2020): attention followed through every layer, with
the residual connection counted as attention to oneself (numpy only).

For layers 1..N of self-attention, each (n, H, L, L), in the order the model calls them:

    A_l = the mean of layer l's heads            (n, L, L), rows sum to 1
    B_l = (A_l + I) / 2                          half of each position stays itself
    R   = B_N · B_(N-1) · ... · B_1              row q: how much of the last layer's position q
                                                 flows from each input position

Worked example, two layers over L = 2, both attending only to position 0:

    A = [[1, 0], [1, 0]]    B = [[1, 0], [.5, .5]]    R = B · B = [[1, 0], [.75, .25]]

What it is not: it ignores the values' norms, the MLPs and everything that is not the
attention and the residual; heads are averaged. It says where information *could* have
flowed by attention, not what the model used (attribution and interventions do that).
"""

from __future__ import annotations

import numpy as np

from attnviz.errors import AttnvizError


def rollout(layers: list[np.ndarray]) -> np.ndarray:
    """(n, L, L) rollout of `layers`, each (n, H, L, L) self-attention, first layer first."""
    if not layers:
        raise AttnvizError("rollout needs at least one self-attention layer")
    shape = layers[0].shape
    for weights in layers:
        if weights.ndim != 4 or weights.shape[2] != weights.shape[3]:
            raise AttnvizError(f"rollout follows self-attention (n, heads, L, L) layer to "
                               f"layer; a layer has shape {weights.shape}")
        if (weights.shape[0], weights.shape[2]) != (shape[0], shape[2]):
            raise AttnvizError(f"rollout needs every layer over the same samples and "
                               f"positions: {shape} and {weights.shape} differ")
    n, length = shape[0], shape[2]
    identity = np.eye(length)
    flow = np.broadcast_to(identity, (n, length, length)).copy()
    for weights in layers:
        mixed = (weights.astype(np.float64).mean(axis=1) + identity) / 2.0
        flow = mixed @ flow  # this layer's mixing after everything below it
    return flow.astype(np.float32)
