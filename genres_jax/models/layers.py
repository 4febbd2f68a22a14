"""Building blocks shared by the CNN super-resolution models.

All arrays are NHWC. ``pixel_shuffle`` uses the channel ordering of PyTorch's ``nn.PixelShuffle``
so that convolution weights converted from PyTorch checkpoints line up channel for channel.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

# Mean RGB of the DIV2K training set in [0, 1] pixel range; EDSR centres its inputs with it.
DIV2K_RGB_MEAN: tuple[float, float, float] = (0.4488, 0.4371, 0.4040)

# Scales an Upsampler can build: one stage for 2 and 3, two x2 stages for 4.
UPSAMPLER_SCALES: tuple[int, ...] = (2, 3, 4)

# U(-1/sqrt(fan_in), 1/sqrt(fan_in)): the default initialisation of PyTorch convolutions, which
# is what EDSR and RDN were trained with; it keeps the deep residual stacks tame at step 0.
torch_default_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def same_conv(dtype: Dtype, param_dtype: Dtype, kernel_init=torch_default_kernel_init, **fixed):
    """``nn.Conv`` with SAME padding, the model's dtypes and (by default) PyTorch's initialisation;
    ``fixed`` pins other arguments (features, kernel_size) for every call."""
    return functools.partial(
        nn.Conv,
        padding="SAME",
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=kernel_init,
        **fixed,
    )


def pixel_shuffle(x: jax.Array, scale: int) -> jax.Array:
    """Rearranges (N, H, W, C*r*r) into (N, H*r, W*r, C), PyTorch ``nn.PixelShuffle`` ordering.

    Input channel ``c*r*r + i*r + j`` becomes the pixel at offset ``(i, j)`` of output channel
    ``c`` inside each r x r output block.
    """
    if scale < 1:
        raise ValueError(f"pixel_shuffle scale must be a positive integer, got {scale}")
    n, h, w, cin = x.shape
    r = scale
    if cin % (r * r):
        raise ValueError(f"channels ({cin}) must be divisible by scale**2 ({r * r})")
    c = cin // (r * r)
    x = x.reshape(n, h, w, c, r, r)
    # (n, h, i, w, j, c): row offset i sits beside h, column offset j beside w.
    x = x.transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(n, h * r, w * r, c)


def mean_shift(x: jax.Array, mean: Sequence[float], sign: int) -> jax.Array:
    """Returns ``x + sign * mean`` with a per-channel ``mean`` (sign -1 centres, +1 restores)."""
    if sign not in (-1, 1):
        raise ValueError(f"sign must be -1 or 1, got {sign}")
    if len(mean) != x.shape[-1]:
        raise ValueError(f"mean has {len(mean)} entries but the input has {x.shape[-1]} channels")
    return x + sign * jnp.asarray(mean, dtype=x.dtype)


def check_scale(model: str, scale: int, supported: Iterable[int]) -> None:
    """Raises a ValueError naming the supported scales when ``scale`` is not one of them."""
    supported = tuple(supported)
    if scale not in supported:
        raise ValueError(f"{model} supports scales {supported}, got {scale!r}")


def check_integer_scale(model: str, scale: int) -> None:
    """Raises a ValueError unless ``scale`` is a positive integer (models that build any scale)."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"{model} needs a positive integer scale (e.g. 2, 3, 4), got {scale!r}")


def lr_receptive_radius(reaches: Iterable[tuple[int, int]]) -> int:
    """Conservative reach, in LR pixels, of a chain of stencil ops at various resolutions.

    ``reaches`` holds ``(reach, factor)`` pairs: an op that mixes ``reach`` pixels on each side
    on a grid ``factor`` times finer than the LR image (a 3x3 conv at LR is ``(1, 1)``, one after
    a x2 pixel shuffle is ``(1, 2)``). Pixel shuffles and nearest-cell maps move no information
    sideways, so the perturbed region of one LR cell grows by ``sum(reach / factor)`` LR units on
    each side, and an output pixel is touched only if its LR cell index is within the ceiling of
    that sum. Exact fractions avoid rounding a whole number up by float error.
    """
    total = sum((Fraction(k, f) for k, f in reaches), Fraction(0))
    return math.ceil(total)


def upsampler_stages(scale: int) -> tuple[int, ...]:
    """Pixel-shuffle factor of each :class:`Upsampler` stage, in order (x4 is two x2 stages)."""
    check_scale("Upsampler", scale, UPSAMPLER_SCALES)
    return (2, 2) if scale == 4 else (scale,)


def upsampler_reaches(scale: int) -> list[tuple[int, int]]:
    """``(reach, factor)`` of each 3x3 conv of an :class:`Upsampler`, for lr_receptive_radius."""
    reaches, factor = [], 1
    for r in upsampler_stages(scale):
        reaches.append((1, factor))
        factor *= r
    return reaches


class Upsampler(nn.Module):
    """Convolution to ``features * r * r`` channels then pixel shuffle; x4 is two x2 stages.

    No activation between stages, matching the EDSR/RDN upsamplers.
    """

    features: int
    scale: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernel_init: Any = torch_default_kernel_init

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, r in enumerate(upsampler_stages(self.scale)):
            x = nn.Conv(
                self.features * r * r,
                (3, 3),
                padding="SAME",
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                kernel_init=self.kernel_init,
                name=f"conv_{i}",
            )(x)
            x = pixel_shuffle(x, r)
        return x


class ChannelPReLU(nn.Module):
    """PReLU with one learned slope per channel (PyTorch ``nn.PReLU(num_parameters=C)``).

    ``max(x, 0) + alpha * min(x, 0)`` with ``alpha`` of shape (C,), initialised to 0.25 as in
    PyTorch; the parameter is named ``alpha`` so converted ``*.weight`` tensors map one to one.
    """

    negative_slope_init: float = 0.25
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        alpha = self.param(
            "alpha",
            nn.initializers.constant(self.negative_slope_init),
            (x.shape[-1],),
            self.param_dtype,
        )
        return jnp.where(x >= 0, x, alpha.astype(x.dtype) * x)
