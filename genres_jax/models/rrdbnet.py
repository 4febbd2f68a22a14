"""RRDBNet (Wang et al. 2018, ESRGAN): residual-in-residual dense blocks, no batch norm.

Layout: [pixel unshuffle] -> 3x3 first conv -> ``num_blocks`` RRDBs -> 3x3 body conv, plus a
skip from the first conv -> two stages of nearest-neighbour x2 + 3x3 conv + LeakyReLU(0.2) ->
3x3 HR conv + LeakyReLU -> 3x3 last conv. Each RRDB is three residual dense blocks (five 3x3
convs, densely connected, ``growth`` channels each, the fifth back to ``features``) with
residual scaling 0.2 inside each dense block and around the RRDB.

The body always upsamples x4. Scales 2 and 1 (Real-ESRGAN, Wang et al. 2021) first fold the
input with a pixel unshuffle by 2 or 4 (3 channels -> 12 or 48), so the same body runs on a
grid 2 or 4 times coarser than the input. Inputs whose size is not a multiple of that factor
are reflect-padded up to one and the output cropped back. Those two scales are therefore
equivariant to shifts by multiples of the unshuffle factor only.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genres_jax.models.layers import check_scale, same_conv, torch_default_kernel_init

Dtype = Any

RRDBNET_SCALES: tuple[int, ...] = (1, 2, 4)

# He-normal scaled by 0.1 (variance 2 / fan_in * 0.1^2) for the convs of the dense blocks, the
# initialisation ESRGAN trains with: it starts each of the 69 dense blocks close to the identity
# so the deep trunk does not blow up at step 0.
dense_block_kernel_init = nn.initializers.variance_scaling(0.02, "fan_in", "normal")


def _lrelu(x: jax.Array) -> jax.Array:
    return nn.leaky_relu(x, negative_slope=0.2)


def pixel_unshuffle(x: jax.Array, factor: int) -> jax.Array:
    """(N, H*r, W*r, C) -> (N, H, W, C*r*r), PyTorch ``nn.PixelUnshuffle`` channel ordering.

    The pixel at offset ``(i, j)`` of each r x r block of input channel ``c`` becomes output
    channel ``c*r*r + i*r + j``: the inverse of ``layers.pixel_shuffle``.
    """
    if factor < 1:
        raise ValueError(f"pixel_unshuffle factor must be a positive integer, got {factor}")
    n, hr, wr, c = x.shape
    r = factor
    if hr % r or wr % r:
        raise ValueError(f"spatial size {hr}x{wr} must be divisible by the factor {r}")
    x = x.reshape(n, hr // r, r, wr // r, r, c)
    x = x.transpose(0, 1, 3, 5, 2, 4)  # (n, h, w, c, i, j)
    return x.reshape(n, hr // r, wr // r, c * r * r)


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
    """Nearest-neighbour upsampling of NHWC maps: each pixel becomes a factor x factor block."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


class ResidualDenseBlock5C(nn.Module):
    """Five densely connected 3x3 convs; output ``x + res_scale * conv5(...)``.

    Conv k (k = 1..4) sees the input and the outputs of convs 1..k-1 and adds ``growth``
    channels (LeakyReLU 0.2); conv 5 maps all of them back to the input width, no activation.
    """

    growth: int = 32
    res_scale: float = 0.2
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = same_conv(self.dtype, self.param_dtype, dense_block_kernel_init, kernel_size=(3, 3))
        features = [x]
        for k in range(4):
            h = conv(self.growth, name=f"conv_{k}")(jnp.concatenate(features, axis=-1))
            features.append(_lrelu(h))
        h = conv(x.shape[-1], name="conv_4")(jnp.concatenate(features, axis=-1))
        return x + self.res_scale * h


class RRDB(nn.Module):
    """Three residual dense blocks in a chain, scaled by ``res_scale`` and added to the input."""

    growth: int = 32
    res_scale: float = 0.2
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = x
        for i in range(3):
            h = ResidualDenseBlock5C(
                self.growth,
                self.res_scale,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"rdb_{i}",
            )(h)
        return x + self.res_scale * h


class RRDBNet(nn.Module):
    """ESRGAN generator, (N, h, w, C) in [0, 1] -> (N, h*scale, w*scale, C) float32."""

    scale: int
    channels: int = 3
    features: int = 64
    num_blocks: int = 23
    growth: int = 32
    res_scale: float = 0.2
    compute_dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        check_scale("RRDBNet", self.scale, RRDBNET_SCALES)
        super().__post_init__()

    @property
    def unshuffle_factor(self) -> int:
        """Pixel-unshuffle factor applied to the input: 4 // scale (1 means none)."""
        return 4 // self.scale

    @property
    def receptive_radius(self) -> int:
        """LR pixels on each side of an output pixel that can influence it (exact bound).

        The body grid is ``r = unshuffle_factor`` times coarser than the input: an input pixel
        sits in one body cell, and B = 2 + 15 * num_blocks 3x3 convs (first conv, five per dense
        block, body conv) spread it over B cells each side, i.e. r*B input pixels plus up to
        r - 1 for its place inside its cell. After the two nearest-neighbour x2 stages (which
        move nothing sideways) the first up conv reaches 2 output pixels and the HR and last
        convs one each: E = 5 output pixels, ceil(E / scale) input pixels.
        """
        r = self.unshuffle_factor
        body_convs = 2 + 15 * self.num_blocks
        return r * body_convs + (r - 1) + math.ceil(5 / self.scale)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = same_conv(
            self.compute_dtype, self.param_dtype, features=self.features, kernel_size=(3, 3)
        )
        if x.shape[-1] != self.channels:
            raise ValueError(f"RRDBNet expects {self.channels} channels, got input {x.shape}")
        n, h, w, _ = x.shape
        r = self.unshuffle_factor
        x = x.astype(self.compute_dtype)
        if r > 1:
            pad_h, pad_w = -h % r, -w % r
            if pad_h or pad_w:
                x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="reflect")
            x = pixel_unshuffle(x, r)

        first = conv(name="conv_first")(x)
        body = first
        for i in range(self.num_blocks):
            body = RRDB(
                self.growth,
                self.res_scale,
                dtype=self.compute_dtype,
                param_dtype=self.param_dtype,
                name=f"rrdb_{i}",
            )(body)
        feat = first + conv(name="conv_body")(body)

        feat = _lrelu(conv(name="conv_up_0")(upsample_nearest(feat)))
        feat = _lrelu(conv(name="conv_up_1")(upsample_nearest(feat)))
        feat = _lrelu(conv(name="conv_hr")(feat))
        y = nn.Conv(
            self.channels,
            (3, 3),
            padding="SAME",
            dtype=self.compute_dtype,
            param_dtype=self.param_dtype,
            kernel_init=torch_default_kernel_init,
            name="conv_last",
        )(feat)
        return y[:, : h * self.scale, : w * self.scale].astype(jnp.float32)
