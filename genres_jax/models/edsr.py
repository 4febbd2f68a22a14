"""EDSR (Lim et al. 2017): residual blocks without batch norm, pixel-shuffle upsampling.

Layout: mean shift -> head conv -> ``num_blocks`` residual blocks + conv, with a global skip ->
upsampler -> tail conv -> mean shift back. Variants are ``functools.partial`` of :class:`EDSR`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genres_jax.models.layers import (
    DIV2K_RGB_MEAN,
    UPSAMPLER_SCALES,
    Upsampler,
    check_scale,
    lr_receptive_radius,
    mean_shift,
    same_conv,
    upsampler_reaches,
)

Dtype = Any


class ResBlock(nn.Module):
    """conv 3x3 - ReLU - conv 3x3, scaled by ``res_scale`` and added to the input."""

    features: int
    res_scale: float = 1.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = same_conv(self.dtype, self.param_dtype, features=self.features, kernel_size=(3, 3))
        h = conv(name="conv_0")(x)
        h = conv(name="conv_1")(nn.relu(h))
        # Down-weighting the branch (0.1 in EDSR-L) is what keeps training of the wide model stable.
        if self.res_scale != 1.0:
            h = h * self.res_scale
        return x + h


class EDSR(nn.Module):
    """EDSR super-resolution network, (N, h, w, C) in [0, 1] -> (N, h*scale, w*scale, C).

    ``rgb_mean`` is subtracted at the input and added back at the output (pixel range 1); pass
    ``None`` to skip it, or a per-channel mean when ``channels`` is not 3.
    """

    scale: int
    channels: int = 3
    features: int = 64
    num_blocks: int = 16
    res_scale: float = 1.0
    rgb_mean: Sequence[float] | None = DIV2K_RGB_MEAN
    compute_dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        check_scale("EDSR", self.scale, UPSAMPLER_SCALES)
        if self.rgb_mean is not None and len(self.rgb_mean) != self.channels:
            raise ValueError(
                f"rgb_mean has {len(self.rgb_mean)} entries but channels={self.channels}; "
                "pass rgb_mean=None or one mean per channel"
            )
        super().__post_init__()

    @property
    def receptive_radius(self) -> int:
        """LR pixels on each side of an output pixel that can influence it (rounded up)."""
        # head + 2 per block + body conv, then the upsampler convs, then the tail at HR.
        lr_convs = [(1, 1)] * (2 + 2 * self.num_blocks)
        upsampler = upsampler_reaches(self.scale)
        return lr_receptive_radius([*lr_convs, *upsampler, (1, self.scale)])

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = same_conv(self.compute_dtype, self.param_dtype, kernel_size=(3, 3))
        x = x.astype(jnp.float32)
        if self.rgb_mean is not None:
            x = mean_shift(x, self.rgb_mean, -1)
        x = conv(self.features, name="head")(x.astype(self.compute_dtype))

        h = x
        for i in range(self.num_blocks):
            h = ResBlock(
                self.features,
                self.res_scale,
                dtype=self.compute_dtype,
                param_dtype=self.param_dtype,
                name=f"block_{i}",
            )(h)
        h = conv(self.features, name="body_conv")(h)
        h = h + x

        h = Upsampler(
            self.features,
            self.scale,
            dtype=self.compute_dtype,
            param_dtype=self.param_dtype,
            name="upsampler",
        )(h)
        y = conv(self.channels, name="tail")(h).astype(jnp.float32)
        if self.rgb_mean is not None:
            y = mean_shift(y, self.rgb_mean, 1)
        return y


# EDSR-baseline ("M"): 64 features, 16 blocks, no residual scaling (~1.37M params at x2).
EDSRBaseline = functools.partial(EDSR, features=64, num_blocks=16, res_scale=1.0)
# EDSR-L: 256 features, 32 blocks, residual scaling 0.1 (~40.7M params at x2).
EDSRLarge = functools.partial(EDSR, features=256, num_blocks=32, res_scale=0.1)
