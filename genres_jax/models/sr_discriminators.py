"""Discriminators for GAN super-resolution; both return logits (no sigmoid), float32.

* :class:`VGGStyleDiscriminator`: the SRGAN discriminator (Ledig et al. 2017). Eight 3x3 convs
  with LeakyReLU(0.2), features 64, 64, 128, 128, 256, 256, 512, 512, every second one with
  stride 2 (the first without batch norm, the others with it), then Dense(1024), LeakyReLU(0.2),
  Dense(1). Output (B,). Its flattening head fixes the input size: ``input_size=128`` (the
  default, the patch size of ESRGAN's "VGG128") raises a ValueError for any other size, and
  ``input_size=None`` swaps the flattening for a global average pool, which accepts any size
  (a different model: the dense layer then sees 512 features instead of 8*8*512).
* :class:`UNetDiscriminatorSN`: Real-ESRGAN's U-Net discriminator (Wang et al. 2021) with
  spectral normalisation (Miyato et al. 2018). Output: one logit per pixel, (B, H, W, 1), so its
  realness judgement is local; H and W must be multiples of 8.

Both take ``(x, train)`` like the other discriminators of the project. ``train=True`` uses batch
statistics (VGG) or runs the power iteration and stores its vectors (U-Net); either way the
``batch_stats`` collection must then be mutable: ``apply(..., train=True,
mutable=["batch_stats"])``.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genres_jax.models.layers import torch_default_kernel_init

Dtype = Any

# PyTorch Conv2d padding=1 on both sides: a stride-2 3x3 or 4x4 conv then sees the same pixels as
# in the PyTorch models ("SAME" would pad only at the bottom/right for even sizes).
_PAD1 = ((1, 1), (1, 1))


def _lrelu(x: jax.Array) -> jax.Array:
    return nn.leaky_relu(x, negative_slope=0.2)


def upsample_bilinear_x2(x: jax.Array) -> jax.Array:
    """Bilinear x2 upsampling of NHWC maps with half-pixel centres.

    Matches PyTorch's ``interpolate(scale_factor=2, mode="bilinear", align_corners=False)``:
    output pixel i samples input coordinate (i + 0.5) / 2 - 0.5, clamped at the borders.
    """
    n, h, w, c = x.shape
    return jax.image.resize(x, (n, 2 * h, 2 * w, c), method="linear", antialias=False)


class VGGStyleDiscriminator(nn.Module):
    """SRGAN discriminator: (B, H, W, C) -> (B,) logits. See the module docstring."""

    features: int = 64
    input_size: int | None = 128
    hidden: int = 1024
    batch_norm: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"expected NHWC images, got shape {x.shape}")
        size = self.input_size
        if size is not None and tuple(x.shape[1:3]) != (size, size):
            raise ValueError(
                f"VGGStyleDiscriminator(input_size={size}) takes {size}x{size} inputs, got "
                f"{x.shape[1]}x{x.shape[2]}; set input_size to the patch size, or to None for "
                "global average pooling over any size"
            )
        h = x.astype(self.dtype)
        multipliers = (1, 1, 2, 2, 4, 4, 8, 8)
        for i, m in enumerate(multipliers):
            stride = 1 if i % 2 == 0 else 2
            # A bias before batch norm would be cancelled by its mean subtraction.
            normed = self.batch_norm and i > 0
            h = nn.Conv(
                self.features * m,
                (3, 3),
                strides=(stride, stride),
                padding=_PAD1,
                use_bias=not normed,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                kernel_init=torch_default_kernel_init,
                name=f"conv_{i}",
            )(h)
            if normed:
                h = nn.BatchNorm(
                    use_running_average=not train,
                    momentum=0.9,
                    epsilon=1e-5,
                    dtype=self.dtype,
                    param_dtype=self.param_dtype,
                    name=f"bn_{i}",
                )(h)
            h = _lrelu(h)
        h = jnp.mean(h, axis=(1, 2)) if size is None else h.reshape((h.shape[0], -1))
        dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype)
        h = _lrelu(dense(self.hidden, name="dense_0")(h))
        return dense(1, name="dense_1")(h)[:, 0].astype(jnp.float32)


class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's U-Net discriminator: (B, H, W, C) -> (B, H, W, 1) per-pixel logits.

    Encoder: 3x3 conv (``features``, no normalisation) then three spectrally normalised 4x4
    stride-2 convs (2x, 4x, 8x ``features``). Decoder: three stages of bilinear x2 and a
    spectrally normalised 3x3 conv (4x, 2x, 1x ``features``), each added to the encoder map of
    the same size when ``skip_connection``. Then two spectrally normalised 3x3 convs and a plain
    3x3 conv to one channel. LeakyReLU(0.2) after every conv but the last; spectrally normalised
    convs have no bias. ``power_iterations`` power-iteration steps run per call.
    """

    features: int = 64
    skip_connection: bool = True
    power_iterations: int = 1
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        if x.ndim != 4 or x.shape[1] % 8 or x.shape[2] % 8:
            raise ValueError(
                "UNetDiscriminatorSN needs NHWC images whose height and width are multiples of "
                f"8 (three stride-2 stages), got shape {x.shape}"
            )
        f = self.features

        def conv(features, kernel, stride, name, use_bias=True):
            return nn.Conv(
                features,
                (kernel, kernel),
                strides=(stride, stride),
                padding=_PAD1,
                use_bias=use_bias,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                kernel_init=torch_default_kernel_init,
                name=name,
            )

        def sn_conv(h, features, kernel, stride, name):
            layer = conv(features, kernel, stride, name, use_bias=False)
            return nn.SpectralNorm(
                layer,
                n_steps=self.power_iterations,
                param_dtype=self.param_dtype,
                name=f"sn_{name}",
            )(h, update_stats=train)

        h = x.astype(self.dtype)
        x0 = _lrelu(conv(f, 3, 1, "conv_0")(h))
        x1 = _lrelu(sn_conv(x0, 2 * f, 4, 2, "conv_1"))
        x2 = _lrelu(sn_conv(x1, 4 * f, 4, 2, "conv_2"))
        x3 = _lrelu(sn_conv(x2, 8 * f, 4, 2, "conv_3"))

        h = x3
        for i, (width, skip) in enumerate([(4 * f, x2), (2 * f, x1), (f, x0)]):
            h = _lrelu(sn_conv(upsample_bilinear_x2(h), width, 3, 1, f"conv_{4 + i}"))
            if self.skip_connection:
                h = h + skip

        h = _lrelu(sn_conv(h, f, 3, 1, "conv_7"))
        h = _lrelu(sn_conv(h, f, 3, 1, "conv_8"))
        return conv(1, 3, 1, "conv_9")(h).astype(jnp.float32)
