"""SRResNet (Ledig et al. 2017), the generator of SRGAN.

Layout: 9x9 head conv + PReLU -> ``num_blocks`` residual blocks (conv-[BN]-PReLU-conv-[BN]) ->
3x3 conv [+ BN] with a global skip from the head -> pixel-shuffle stages (conv, shuffle, PReLU;
x4 is two x2 stages) -> 9x9 tail conv. Batch norm is off by default: later SRResNet variants
(e.g. "MSRResNet") drop it because it brings artefacts and costs PSNR; ``batch_norm=True``
gives the paper's layout, whose statistics then live in the ``batch_stats`` collection and
need ``train=True`` with ``mutable=["batch_stats"]`` while training.

Every PReLU has one shared slope initialised to 0.25, as PyTorch's ``nn.PReLU()``.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genres_jax.models.layers import (
    UPSAMPLER_SCALES,
    check_scale,
    lr_receptive_radius,
    pixel_shuffle,
    same_conv,
    upsampler_reaches,
    upsampler_stages,
)

Dtype = Any

SRRESNET_SCALES: tuple[int, ...] = UPSAMPLER_SCALES


class _Norm(nn.Module):
    """BatchNorm with PyTorch's defaults (momentum 0.1, eps 1e-5), or the identity."""

    enabled: bool
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if not self.enabled:
            return x
        return nn.BatchNorm(
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="bn",
        )(x)


class SRResBlock(nn.Module):
    """conv 3x3 - [BN] - PReLU - conv 3x3 - [BN], added to the input."""

    features: int
    batch_norm: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        conv = same_conv(self.dtype, self.param_dtype, features=self.features, kernel_size=(3, 3))
        norm = functools.partial(
            _Norm, self.batch_norm, dtype=self.dtype, param_dtype=self.param_dtype
        )
        h = norm(name="norm_0")(conv(name="conv_0")(x), train)
        h = nn.PReLU(param_dtype=self.param_dtype, negative_slope_init=0.25, name="prelu")(h)
        h = norm(name="norm_1")(conv(name="conv_1")(h), train)
        return x + h


class SRResNet(nn.Module):
    """SRResNet, (N, h, w, C) in [0, 1] -> (N, h*scale, w*scale, C) float32.

    ``train`` only matters with ``batch_norm=True`` (batch statistics instead of running ones).
    """

    scale: int
    channels: int = 3
    features: int = 64
    num_blocks: int = 16
    batch_norm: bool = False
    compute_dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        check_scale("SRResNet", self.scale, SRRESNET_SCALES)
        super().__post_init__()

    @property
    def receptive_radius(self) -> int:
        """LR pixels on each side of an output pixel that can influence it (rounded up)."""
        # 9x9 head (reach 4), two 3x3 per block and the body conv at LR, the upsampler convs,
        # then the 9x9 tail at HR.
        lr_convs = [(4, 1)] + [(1, 1)] * (2 * self.num_blocks + 1)
        return lr_receptive_radius([*lr_convs, *upsampler_reaches(self.scale), (4, self.scale)])

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        conv = same_conv(self.compute_dtype, self.param_dtype)
        prelu = functools.partial(nn.PReLU, param_dtype=self.param_dtype, negative_slope_init=0.25)
        x = x.astype(self.compute_dtype)
        head = prelu(name="head_prelu")(conv(self.features, (9, 9), name="head")(x))

        h = head
        for i in range(self.num_blocks):
            h = SRResBlock(
                self.features,
                self.batch_norm,
                dtype=self.compute_dtype,
                param_dtype=self.param_dtype,
                name=f"block_{i}",
            )(h, train)
        h = conv(self.features, (3, 3), name="body_conv")(h)
        norm = _Norm(self.batch_norm, self.compute_dtype, self.param_dtype, name="body_norm")
        h = norm(h, train)
        h = h + head

        for i, r in enumerate(upsampler_stages(self.scale)):
            h = conv(self.features * r * r, (3, 3), name=f"upsample_conv_{i}")(h)
            h = prelu(name=f"upsample_prelu_{i}")(pixel_shuffle(h, r))
        return conv(self.channels, (9, 9), name="tail")(h).astype(jnp.float32)
