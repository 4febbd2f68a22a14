"""SRCNN (Dong et al. 2014) and VDSR (Kim et al. 2016): CNNs on a bicubic-upsampled input.

Both modules take the LR image and upsample it themselves with the MATLAB-style bicubic
``imresize``, so every SR model in the project has the same LR -> HR interface.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genres_jax.models.layers import check_integer_scale, lr_receptive_radius
from genres_jax.ops.imresize import upsample_integer

Dtype = Any

# The bicubic kernel is zero beyond 2 LR pixels from the sample point, and an HR pixel centre lies
# inside its own LR cell, so one LR cell reaches 1.5 LR pixels further each way; written as a
# (reach, factor) pair for lr_receptive_radius: 3 pixels on a grid twice as fine.
BICUBIC_REACH_LR = (3, 2)

# He initialisation: SRCNN/VDSR are plain ReLU stacks without skips inside, so a fan-in
# variance of 2 is what keeps 20 layers from vanishing at initialisation.
_he_init = nn.initializers.he_normal()


def bicubic_upsample(x: jax.Array, scale: int) -> jax.Array:
    """MATLAB-style bicubic upsampling of an NHWC float32 batch by an integer ``scale``, for any
    (also symbolic) image size, so models built on it export with ``jax.export``."""
    return upsample_integer(x, scale, method="bicubic")


class SRCNN(nn.Module):
    """SRCNN 9-1-5: conv 9x9 (64) - ReLU - conv 1x1 (32) - ReLU - conv 5x5 (channels).

    Maps (N, h, w, C) in [0, 1] to (N, h*scale, w*scale, C); the convolutions act on the
    bicubic-upsampled image with 'SAME' padding.
    """

    scale: int
    channels: int = 3
    features: tuple[int, int] = (64, 32)
    kernel_sizes: tuple[int, int, int] = (9, 1, 5)
    compute_dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        check_integer_scale("SRCNN", self.scale)
        super().__post_init__()

    @property
    def receptive_radius(self) -> int:
        """LR pixels on each side of an output pixel that can influence it (rounded up)."""
        reaches = [BICUBIC_REACH_LR] + [(k // 2, self.scale) for k in self.kernel_sizes]
        return lr_receptive_radius(reaches)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = bicubic_upsample(x.astype(jnp.float32), self.scale).astype(self.compute_dtype)
        widths = (*self.features, self.channels)
        for i, (width, k) in enumerate(zip(widths, self.kernel_sizes, strict=True)):
            x = nn.Conv(
                width,
                (k, k),
                padding="SAME",
                dtype=self.compute_dtype,
                param_dtype=self.param_dtype,
                kernel_init=_he_init,
                name=f"conv_{i}",
            )(x)
            if i < len(widths) - 1:
                x = nn.relu(x)
        return x.astype(jnp.float32)


class VDSR(nn.Module):
    """VDSR: ``num_layers`` 3x3 convs (ReLU between), output = bicubic input + residual.

    Maps (N, h, w, C) in [0, 1] to (N, h*scale, w*scale, C).
    """

    scale: int
    channels: int = 3
    features: int = 64
    num_layers: int = 20
    compute_dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        check_integer_scale("VDSR", self.scale)
        if self.num_layers < 2:
            raise ValueError(f"VDSR needs at least 2 conv layers, got {self.num_layers}")
        super().__post_init__()

    @property
    def receptive_radius(self) -> int:
        """LR pixels on each side of an output pixel that can influence it (rounded up)."""
        return lr_receptive_radius([BICUBIC_REACH_LR] + [(1, self.scale)] * self.num_layers)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        upsampled = bicubic_upsample(x.astype(jnp.float32), self.scale)
        h = upsampled.astype(self.compute_dtype)
        for i in range(self.num_layers):
            last = i == self.num_layers - 1
            h = nn.Conv(
                self.channels if last else self.features,
                (3, 3),
                padding="SAME",
                dtype=self.compute_dtype,
                param_dtype=self.param_dtype,
                kernel_init=_he_init,
                name=f"conv_{i}",
            )(h)
            if not last:
                h = nn.relu(h)
        # The skip is added in float32 so bf16 compute only rounds the residual, not the image.
        return upsampled + h.astype(jnp.float32)
