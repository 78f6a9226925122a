"""jax.nn.dot_product_attention on an explicit path, for capture: Keras' JAX backend sends
keras.ops.dot_product_attention there (keras_hub's Llama, Mistral, Gemma... on JAX), and the
fused call computes its softmax inside jax, where capture does not look. This path computes
the same output with the weights as one softmax, which capture then records.

Only JAX imports this module.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

ORIGINAL = jax.nn.dot_product_attention
# options of the fused call the explicit path does not take: such a call is left fused
_FUSED_ONLY = ("query_seq_lengths", "key_value_seq_lengths", "local_window_size",
               "return_residual")


def explicit(softmax: Callable, query, key, value, bias=None, mask=None, *, scale=None,
             is_causal=False, **options):
    """ORIGINAL's output, (B, T, N, H), with its weights from `softmax(logits, axis=-1)` over
    logits (B, N, T, S): query (B, T, N, H), key and value (B, S, K, H) with K dividing N
    (grouped heads: head n reads key head n // (N / K)), bias and mask broadcast to the
    logits, a causal mask with is_causal. jax's own reference, written out."""
    if any(options.get(name) not in (None, False) for name in _FUSED_ONLY) \
            or query.ndim != 4:
        return ORIGINAL(query, key, value, bias=bias, mask=mask, scale=scale,
                        is_causal=is_causal, **options)
    batch, length, heads, width = query.shape
    keys, groups = key.shape[2], heads // key.shape[2]
    scale = 1.0 / jnp.sqrt(width).astype(query.dtype) if scale is None else scale
    grouped = jnp.reshape(query, (batch, length, keys, groups, width))
    logits = jnp.einsum("btkgh,bskh->bkgts", grouped, key) * scale
    logits = jnp.reshape(logits, (batch, heads, length, key.shape[1]))
    if bias is not None:
        logits = logits + bias.astype(logits.dtype)
    keep = None
    if mask is not None:
        keep = mask.astype(bool)
    if is_causal:
        causal = jnp.tril(jnp.ones((length, key.shape[1]), dtype=bool))
        keep = causal if keep is None else jnp.logical_and(keep, causal)
    if keep is not None:
        logits = jnp.where(keep, logits, jnp.finfo(logits.dtype).min)
    weights = softmax(logits, axis=-1).astype(value.dtype)
    weights = jnp.reshape(weights, (batch, keys, groups, length, key.shape[1]))
    output = jnp.einsum("bkgts,bskh->btkgh", weights, value)
    return jnp.reshape(output, (batch, length, heads, value.shape[-1]))
