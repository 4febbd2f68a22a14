"""RDN (Zhang et al. 2018): residual dense network for image super-resolution.

Shallow features (two 3x3 convs) -> D residual dense blocks -> global feature fusion (1x1 then
3x3) plus a global skip from the first shallow conv -> pixel-shuffle upsampler -> 3x3 conv.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genres_jax.models.layers import (
    UPSAMPLER_SCALES,
    Upsampler,
    check_scale,
    lr_receptive_radius,
    same_conv,
    upsampler_reaches,
)

Dtype = Any


class ResidualDenseBlock(nn.Module):
    """``num_layers`` densely connected conv-ReLU layers, 1x1 local fusion, local residual.

    Layer c sees the block input concatenated with the outputs of layers 0..c-1 and adds
    ``growth`` channels; the 1x1 fusion maps everything back to the input width.
    """

    num_layers: int
    growth: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = same_conv(self.dtype, self.param_dtype)
        features = [x]
        for c in range(self.num_layers):
            h = jnp.concatenate(features, axis=-1) if len(features) > 1 else x
            features.append(nn.relu(conv(self.growth, (3, 3), name=f"conv_{c}")(h)))
        fused = conv(x.shape[-1], (1, 1), name="fusion")(jnp.concatenate(features, axis=-1))
        return x + fused


class RDN(nn.Module):
    """Residual dense network, (N, h, w, C) in [0, 1] -> (N, h*scale, w*scale, C).

    ``num_blocks`` = D, ``num_layers`` = C, ``growth`` = G, ``features`` = G0 in the paper's
    notation.
    """

    scale: int
    channels: int = 3
    features: int = 64
    num_blocks: int = 16
    num_layers: int = 8
    growth: int = 64
    compute_dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        check_scale("RDN", self.scale, UPSAMPLER_SCALES)
        super().__post_init__()

    @property
    def receptive_radius(self) -> int:
        """LR pixels on each side of an output pixel that can influence it (rounded up)."""
        # Two shallow convs, C 3x3 convs per block (1x1s reach nothing), the 3x3 fusion conv.
        lr_convs = [(1, 1)] * (2 + self.num_blocks * self.num_layers + 1)
        upsampler = upsampler_reaches(self.scale)
        return lr_receptive_radius([*lr_convs, *upsampler, (1, self.scale)])

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = same_conv(self.compute_dtype, self.param_dtype)
        x = x.astype(self.compute_dtype)
        shallow = conv(self.features, (3, 3), name="shallow_0")(x)
        h = conv(self.features, (3, 3), name="shallow_1")(shallow)

        block_outputs = []
        for d in range(self.num_blocks):
            h = ResidualDenseBlock(
                self.num_layers,
                self.growth,
                dtype=self.compute_dtype,
                param_dtype=self.param_dtype,
                name=f"block_{d}",
            )(h)
            block_outputs.append(h)

        h = conv(self.features, (1, 1), name="global_fusion_0")(
            jnp.concatenate(block_outputs, axis=-1)
        )
        h = conv(self.features, (3, 3), name="global_fusion_1")(h)
        h = h + shallow

        # The upsampler works at width G, so converted checkpoints with G != G0 still fit.
        h = Upsampler(
            self.growth,
            self.scale,
            dtype=self.compute_dtype,
            param_dtype=self.param_dtype,
            name="upsampler",
        )(h)
        return conv(self.channels, (3, 3), name="tail")(h).astype(jnp.float32)
