"""Super-resolution reconstruction losses on images, computed in float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _f32(x: jax.Array) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


def l1_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean absolute error mean(|pred - target|) over all elements (EDSR's training loss)."""
    return jnp.mean(jnp.abs(_f32(pred) - _f32(target)))


def charbonnier_loss(pred: jax.Array, target: jax.Array, eps: float = 1e-3) -> jax.Array:
    """Charbonnier loss mean(sqrt((pred - target)^2 + eps^2)), a smooth L1 (as in LapSRN)."""
    diff = _f32(pred) - _f32(target)
    return jnp.mean(jnp.sqrt(jnp.square(diff) + eps**2))
