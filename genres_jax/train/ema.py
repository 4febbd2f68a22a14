"""Exponential moving average of parameters (GAN generators, SR networks), with its warm-up."""

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


def warmed_up_decay(step: jax.Array, decay: float) -> jax.Array:
    """``min(decay, (1 + step) / (10 + step))``: the decay ramps up over the first steps.

    As TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``, so that the EMA weights
    of a short run follow training instead of staying near the random initial weights.
    """
    step_f = jnp.asarray(step).astype(jnp.float32)
    return jnp.minimum(decay, (1.0 + step_f) / (10.0 + step_f))
