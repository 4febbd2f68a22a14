"""Exponential moving average of parameters (used for GAN generator weights)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


def ema_update(ema_params: PyTree, params: PyTree, decay: float | jax.Array) -> PyTree:
    """Returns decay * ema_params + (1 - decay) * params, leaf by leaf.

    Both pytrees must have the same structure; the result keeps the dtypes of ``ema_params``.
    decay = 0 copies ``params``; decay = 1 keeps ``ema_params``.
    """

    def update(ema: jax.Array, new: jax.Array) -> jax.Array:
        # Low-precision EMA leaves are updated in float32 so that (1 - decay) * new is not lost.
        compute = jnp.promote_types(jnp.result_type(ema), jnp.float32)
        ema_c, new_c = jnp.asarray(ema, compute), jnp.asarray(new, compute)
        return (decay * ema_c + (1.0 - decay) * new_c).astype(jnp.result_type(ema))

    return jax.tree.map(update, ema_params, params)
