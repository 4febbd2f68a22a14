"""Camera noise of the Real-ESRGAN degradation model: Gaussian and Poisson (shot) noise, in JAX.

Jit- and vmap-able, no data-dependent control flow: the Poisson sampler evaluates a fixed
number of candidates instead of looping, which keeps the degradation pipeline's compile time
to seconds.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

# BT.601 luma weights of the grey-noise variants (torchvision's rgb_to_grayscale rounds them).
_LUMA = (0.299, 0.587, 0.114)


def gaussian_noise(
    key: jax.Array, shape: tuple[int, int, int], sigma: float | jax.Array, grey: bool | jax.Array
) -> jax.Array:
    """N(0, (sigma / 255)^2) noise of an (H, W, C) shape, sigma in 8-bit levels.

    grey: one draw shared by the C channels (noise of the luminance only); may be traced.
    """
    full = (*shape[:-1], shape[-1] + 1)
    normal = jax.random.normal(key, (math.prod(full),)).reshape(full)  # Flat: compiles faster.
    return jnp.where(grey, normal[..., -1:], normal[..., :-1]) * (sigma / 255.0)


_INVERSION_STEPS = 40  # lam < 10: P(X >= 40) < 1e-11.
_PTRS_ROUNDS = 12  # lam >= 10: all rounds rejected with probability < 1e-7.


def poisson(key: jax.Array, lam: jax.Array) -> jax.Array:
    """Poisson(lam) samples (float32) for lam >= 0, elementwise, from one uniform draw.

    lam < 10: inversion, X = #{k : P(X <= k) < U}, summing the pmf over 40 terms. lam >= 10:
    Hoermann's transformed rejection with squeeze (PTRS, 1993), 12 candidate rounds evaluated
    at once and the first accepted one kept (if none is, the last; probability < 1e-7).
    Replaces `jax.random.poisson`, whose data-dependent loops cost seconds of compile time.
    """
    lam = jnp.asarray(lam, jnp.float32)
    shape = (*lam.shape, 1 + 2 * _PTRS_ROUNDS)
    u = jax.random.uniform(key, (math.prod(shape),)).reshape(shape)  # Flat: compiles faster.
    small = jnp.minimum(lam, 10.0)
    pmf = jnp.exp(-small)
    cdf = pmf
    count = (cdf < u[..., 0]).astype(jnp.float32)
    for k in range(1, _INVERSION_STEPS):
        pmf = pmf * small / k
        cdf = cdf + pmf
        count = count + (cdf < u[..., 0])

    big = jnp.maximum(lam, 10.0)[..., None]
    centred, v = u[..., 1 : 1 + _PTRS_ROUNDS] - 0.5, u[..., 1 + _PTRS_ROUNDS :]
    b = 0.931 + 2.53 * jnp.sqrt(big)
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2.0)
    us = jnp.maximum(0.5 - jnp.abs(centred), 1e-6)
    k = jnp.floor((2.0 * a / us + b) * centred + big + 0.43)
    log_target = -big + k * jnp.log(big) - jax.lax.lgamma(jnp.maximum(k, 0.0) + 1.0)
    log_hat = jnp.log(v) + jnp.log(inv_alpha) - jnp.log(a / us**2 + b)
    accept = ((us >= 0.07) & (v <= v_r)) | (
        (k >= 0) & ~((us < 0.013) & (v > us)) & (log_hat <= log_target)
    )
    first = jnp.where(jnp.any(accept, axis=-1), jnp.argmax(accept, axis=-1), _PTRS_ROUNDS - 1)
    large = jnp.maximum(jnp.take_along_axis(k, first[..., None], axis=-1)[..., 0], 0.0)
    return jnp.where(lam < 10.0, count, large)


def _levels(x8: jax.Array, mask: jax.Array) -> jax.Array:
    """2^ceil(log2(number of distinct 8-bit values under mask))."""
    counts = jnp.bincount(x8.astype(jnp.int32).ravel(), weights=mask.ravel(), length=256)
    distinct = jnp.maximum(jnp.sum(counts > 0), 1)
    return 2.0 ** jnp.ceil(jnp.log2(distinct.astype(jnp.float32)))


def poisson_noise(
    key: jax.Array,
    x: jax.Array,
    scale: float | jax.Array,
    grey: bool | jax.Array,
    hw: tuple[Any, Any] | None = None,
) -> jax.Array:
    """Shot noise for an (H, W, 3) image in [0, 1]: scale * (Poisson(v L) / L - v).

    v is the image rounded to 8-bit levels and L = 2^ceil(log2(number of distinct levels)) in
    the image (all three channels of the top-left hw corner; default all of x), so the noise
    has mean 0 and variance scale^2 v / L. grey: the noise of the BT.601 luma
    0.299 R + 0.587 G + 0.114 B (rounded and counted the same way), shared by the channels.
    """
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"Expected an (H, W, 3) image, got shape {x.shape}")
    hw = x.shape[:2] if hw is None else hw
    inside = (jnp.arange(x.shape[0])[:, None] < hw[0]) & (jnp.arange(x.shape[1])[None, :] < hw[1])
    inside = inside[..., None].astype(jnp.float32)
    luma = _LUMA[0] * x[..., :1] + _LUMA[1] * x[..., 1:2] + _LUMA[2] * x[..., 2:]
    colour8, luma8 = (jnp.clip(jnp.round(c * 255.0), 0.0, 255.0) for c in (x, luma))
    colour_levels = _levels(colour8, jnp.broadcast_to(inside, colour8.shape))
    # Grey noise samples the luma in channel 0 and shares it: 3 Poisson draws a pixel, not 4.
    v = jnp.where(grey, luma8, colour8) / 255.0
    levels = jnp.where(grey, _levels(luma8, inside), colour_levels)
    noise = poisson(key, v * levels) / levels - v
    return jnp.where(grey, noise[..., :1], noise) * scale
