"""Efficient SR networks that work at LR resolution: ESPCN, FSRCNN and SRVGGNetCompact.

- ESPCN (Shi et al. 2016, "Real-Time Single Image and Video Super-Resolution Using an Efficient
  Sub-Pixel Convolutional Neural Network"): conv 5x5 (64) - tanh - conv 3x3 (32) - tanh -
  conv 3x3 (C*r*r) - pixel shuffle.
- FSRCNN (Dong et al. 2016, "Accelerating the Super-Resolution Convolutional Neural Network"):
  feature extraction 5x5 (d) - shrinking 1x1 (s) - m mapping 3x3 (s) - expanding 1x1 (d), each
  followed by a per-channel PReLU, then a 9x9 transposed convolution with stride r.
- SRVGGNetCompact (Wang et al. 2021, Real-ESRGAN's compact models ``realesr-general-x4v3`` and
  ``realesr-animevideov3``): conv 3x3 + PReLU, ``num_conv`` x (conv 3x3 + PReLU), conv 3x3 to
  C*r*r, pixel shuffle, plus the nearest-upsampled input.

All map (N, h, w, C) in [0, 1] to (N, h*scale, w*scale, C) and state their receptive radius.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genres_jax.models.layers import (
    ChannelPReLU,
    check_integer_scale,
    lr_receptive_radius,
    pixel_shuffle,
    same_conv,
)
from genres_jax.models.srcnn import BICUBIC_REACH_LR, bicubic_upsample

Dtype = Any


# Optional global skips of the output: none (the papers' form) or the bicubic-upsampled input,
# so the network learns only the residual detail (as VDSR does); far faster to train.
RESIDUALS = ("none", "bicubic")


def check_residual(model: str, residual: str) -> None:
    if residual not in RESIDUALS:
        raise ValueError(f"{model} residual must be one of {RESIDUALS}, got {residual!r}")


def with_residual(y: jax.Array, x: jax.Array, scale: int, residual: str) -> jax.Array:
    if residual == "bicubic":
        return y + bicubic_upsample(x.astype(jnp.float32), scale)
    return y


def residual_radius(radius: int, residual: str) -> int:
    # The bicubic kernel reaches 2 LR pixels; the two paths are added, so the larger reach wins.
    return max(radius, lr_receptive_radius([BICUBIC_REACH_LR])) if residual != "none" else radius


class ESPCN(nn.Module):
    """ESPCN: three LR convolutions (tanh between) and one sub-pixel (pixel-shuffle) layer."""

    scale: int
    channels: int = 3
    features: tuple[int, int] = (64, 32)
    kernel_sizes: tuple[int, int, int] = (5, 3, 3)
    residual: str = "none"  # or "bicubic": learn the detail over the bicubic upsampling
    compute_dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        check_integer_scale("ESPCN", self.scale)
        check_residual("ESPCN", self.residual)
        super().__post_init__()

    @property
    def receptive_radius(self) -> int:
        """LR pixels on each side of an output pixel that can influence it (rounded up)."""
        radius = lr_receptive_radius([(k // 2, 1) for k in self.kernel_sizes])
        return residual_radius(radius, self.residual)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = same_conv(self.compute_dtype, self.param_dtype)
        h = x.astype(self.compute_dtype)
        widths = (*self.features, self.channels * self.scale * self.scale)
        for i, (width, k) in enumerate(zip(widths, self.kernel_sizes, strict=True)):
            h = conv(width, (k, k), name=f"conv_{i}")(h)
            if i < len(widths) - 1:
                h = jnp.tanh(h)
        y = pixel_shuffle(h, self.scale).astype(jnp.float32)
        return with_residual(y, x, self.scale, self.residual)


# FSRCNN's deconvolution: a 9x9 kernel, so 4 HR pixels of reach each way on the stride-r grid.
FSRCNN_DECONV_SIZE = 9


def fsrcnn_deconv_reach(scale: int, kernel: int = FSRCNN_DECONV_SIZE) -> int:
    """LR pixels on each side that a stride-``scale`` transposed conv mixes into one HR pixel.

    HR pixel ``o`` (LR cell ``o // r``) reads LR pixels ``i`` with ``|i*r - o| <= kernel // 2``,
    so the farthest lies ``max(half // r, (r - 1 + half) // r)`` cells away.
    """
    half = kernel // 2
    return max(half // scale, (scale - 1 + half) // scale)


class FSRCNN(nn.Module):
    """FSRCNN(d, s, m): extraction, shrinking, m mappings, expanding (PReLU each), deconvolution.

    The deconvolution (`StridedDeconv`) has stride ``scale`` and an output exactly ``scale`` times
    the input, aligned as PyTorch's ``ConvTranspose2d(k=9, stride=r, padding=4,
    output_padding=r-1)`` (its kernel is this one flipped in both axes).
    """

    scale: int
    channels: int = 3
    d: int = 56
    s: int = 12
    m: int = 4
    residual: str = "none"  # or "bicubic": learn the detail over the bicubic upsampling
    compute_dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        check_integer_scale("FSRCNN", self.scale)
        check_residual("FSRCNN", self.residual)
        if self.m < 0:
            raise ValueError(f"FSRCNN needs m >= 0 mapping layers, got {self.m}")
        super().__post_init__()

    @property
    def receptive_radius(self) -> int:
        """LR pixels on each side of an output pixel that can influence it (rounded up)."""
        lr = lr_receptive_radius([(2, 1)] + [(1, 1)] * self.m)
        return residual_radius(lr + fsrcnn_deconv_reach(self.scale), self.residual)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        # He initialisation as in the paper for the PReLU layers.
        conv = same_conv(
            self.compute_dtype, self.param_dtype, kernel_init=nn.initializers.he_normal()
        )
        prelu = functools.partial(ChannelPReLU, param_dtype=self.param_dtype)
        h = x.astype(self.compute_dtype)
        h = prelu(name="prelu_extract")(conv(self.d, (5, 5), name="extract")(h))
        h = prelu(name="prelu_shrink")(conv(self.s, (1, 1), name="shrink")(h))
        for i in range(self.m):
            h = prelu(name=f"prelu_map_{i}")(conv(self.s, (3, 3), name=f"map_{i}")(h))
        h = prelu(name="prelu_expand")(conv(self.d, (1, 1), name="expand")(h))
        y = StridedDeconv(
            self.channels,
            self.scale,
            dtype=self.compute_dtype,
            param_dtype=self.param_dtype,
            name="deconv",
        )(h)
        return with_residual(y.astype(jnp.float32), x, self.scale, self.residual)


def deconv_as_subpixel_kernel(kernel: jax.Array, scale: int) -> jax.Array:
    """The LR convolution kernel that, followed by a pixel shuffle, equals a stride-``scale``
    transposed convolution with ``kernel`` ((k, k, Ci, Co), odd k, aligned as `StridedDeconv`).

    HR pixel ``o = r*i + j`` takes deconvolution tap ``t = d*r - j + k//2`` from LR pixel
    ``i + d``; gathering those taps per phase ``(j_y, j_x)`` gives a (2R+1)^2 kernel to
    ``Co*r*r`` channels in pixel-shuffle order (taps outside the kernel are zero).
    """
    k, r = kernel.shape[0], scale
    reach = fsrcnn_deconv_reach(r, k)
    taps = np.arange(-reach, reach + 1)[:, None] * r - np.arange(r)[None, :] + k // 2
    valid = (taps >= 0) & (taps < k)
    taps = np.clip(taps, 0, k - 1)
    # (L, r, L, r, Ci, Co): [d_y, j_y, d_x, j_x] -> kernel[t_y, t_x].
    g = kernel[taps[:, :, None, None], taps[None, None, :, :]]
    mask = valid[:, :, None, None] & valid[None, None, :, :]
    g = jnp.where(mask[..., None, None], g, 0)
    size, cin, cout = 2 * reach + 1, kernel.shape[2], kernel.shape[3]
    return g.transpose(0, 2, 4, 5, 1, 3).reshape(size, size, cin, cout * r * r)


class StridedDeconv(nn.Module):
    """A k x k transposed convolution with stride ``scale`` whose output is exactly ``scale``
    times its input: PyTorch's ``ConvTranspose2d(k, stride=r, padding=k//2,
    output_padding=r-1)`` with the kernel flipped in both axes.

    Computed as an LR convolution and a pixel shuffle (`deconv_as_subpixel_kernel`), the same
    function with far less work than convolving the zero-dilated input, for its gradients too.
    """

    features: int
    scale: int
    kernel_size: int = FSRCNN_DECONV_SIZE
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        # The paper's deconvolution starts from a Gaussian with std 0.001.
        kernel = self.param(
            "kernel",
            nn.initializers.normal(1e-3),
            (k, k, x.shape[-1], self.features),
            self.param_dtype,
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
        lr_kernel = deconv_as_subpixel_kernel(kernel, self.scale).astype(self.dtype)
        y = jax.lax.conv_general_dilated(
            x.astype(self.dtype),
            lr_kernel,
            (1, 1),
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        y = y + jnp.repeat(bias, self.scale * self.scale).astype(self.dtype)
        return pixel_shuffle(y, self.scale)


def nearest_upsample(x: jax.Array, scale: int) -> jax.Array:
    """Each pixel repeated ``scale`` times along height and width (``F.interpolate`` nearest)."""
    return jnp.repeat(jnp.repeat(x, scale, axis=1), scale, axis=2)


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact VGG-style net: LR convs with PReLU, pixel shuffle, nearest skip."""

    scale: int
    channels: int = 3
    num_feat: int = 64
    num_conv: int = 16
    compute_dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        check_integer_scale("SRVGGNetCompact", self.scale)
        super().__post_init__()

    @property
    def receptive_radius(self) -> int:
        """LR pixels on each side of an output pixel that can influence it (rounded up)."""
        return lr_receptive_radius([(1, 1)] * (self.num_conv + 2))

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = same_conv(self.compute_dtype, self.param_dtype, kernel_size=(3, 3))
        x = x.astype(jnp.float32)
        h = x.astype(self.compute_dtype)
        for i in range(self.num_conv + 1):
            h = conv(self.num_feat, name=f"conv_{i}")(h)
            h = ChannelPReLU(param_dtype=self.param_dtype, name=f"prelu_{i}")(h)
        h = conv(self.channels * self.scale * self.scale, name="conv_last")(h)
        # The skip is added in float32 so reduced-precision compute only rounds the residual.
        return pixel_shuffle(h, self.scale).astype(jnp.float32) + nearest_upsample(x, self.scale)


# realesr-animevideov3: 16 convs; realesr-general-x4v3: 32 convs (both 64 features).
SRVGGNetCompact16 = functools.partial(SRVGGNetCompact, num_feat=64, num_conv=16)
SRVGGNetCompact32 = functools.partial(SRVGGNetCompact, num_feat=64, num_conv=32)
