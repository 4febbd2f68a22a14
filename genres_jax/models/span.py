"""SPAN (Wan et al. 2024, "Swift Parameter-free Attention Network for Efficient
Super-Resolution", winner of the NTIRE 2024 efficient-SR challenge).

Every 3x3 convolution is a re-parameterisable `Conv3XC`: for training, a 1x1 expansion (x2),
a 3x3 convolution and a 1x1 reduction on the zero-padded input, plus a 1x1 skip; for inference,
one 3x3 convolution that computes the same function. A SPAB block is three of them (SiLU
between) and the parameter-free attention ``(out + x) * (sigmoid(out) - 0.5)``. The network:
mean shift and x255 scaling, one Conv3XC, six SPABs, a Conv3XC on the last block, a 1x1 fusion
of four feature maps, and a conv + pixel-shuffle upsampler.

`reparameterize` folds the training parameters into the inference form (``deploy=True``); the
two agree to float rounding everywhere, borders included, because the training branch pads the
input before its 1x1 expansion (so the padding sees the expansion's bias exactly as every tap of
the folded kernel does).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genres_jax.models import efficient
from genres_jax.models.layers import (
    DIV2K_RGB_MEAN,
    check_integer_scale,
    lr_receptive_radius,
    pixel_shuffle,
    torch_default_kernel_init,
)

Dtype = Any

# Names of a training-form Conv3XC's parameters; `reparameterize` folds a dict with these keys.
BRANCHES = ("expand", "conv", "reduce", "sk")


class Conv3XC(nn.Module):
    """A 3x3 convolution (SAME padding) trained as 1x1 -> 3x3 -> 1x1 plus a 1x1 skip.

    ``deploy``: one plain 3x3 convolution (``eval_conv``). Otherwise the parameters are the four
    branches; ``via_folded_kernel`` computes them through `fold_conv3xc`'s kernel and bias, which
    is the same function of the same parameters (so the same gradients reach every branch) at a
    quarter of the FLOPs, instead of running the branches one after another.
    """

    features: int
    gain: int = 2
    deploy: bool = False
    via_folded_kernel: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(
            nn.Conv,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=torch_default_kernel_init,
        )
        if self.deploy:
            return conv(self.features, (3, 3), padding="SAME", name="eval_conv")(x)
        mid_in, mid_out = x.shape[-1] * self.gain, self.features * self.gain
        branches = {
            "expand": conv(mid_in, (1, 1), padding="VALID", name="expand"),
            "conv": conv(mid_out, (3, 3), padding="VALID", name="conv"),
            "reduce": conv(self.features, (1, 1), padding="VALID", name="reduce"),
            "sk": conv(self.features, (1, 1), padding="VALID", name="sk"),
        }
        if self.via_folded_kernel and not self.is_initializing():
            folded = fold_conv3xc({k: self._branch_params(k) for k in branches})
            y = jax.lax.conv_general_dilated(
                x.astype(self.dtype),
                folded["kernel"].astype(self.dtype),
                (1, 1),
                "SAME",
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )
            return y + folded["bias"].astype(self.dtype)
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        h = branches["reduce"](branches["conv"](branches["expand"](padded)))
        return h + branches["sk"](x)

    def _branch_params(self, name: str) -> dict:
        return dict(self.variables["params"][name])


def fold_conv3xc(branch: dict) -> dict:
    """The single 3x3 convolution ({kernel, bias}, HWIO) equal to a training-form Conv3XC.

    kernel[y, x, i, o] = sum_ab W1[i, a] W2[y, x, a, b] W3[b, o] (+ W_sk[i, o] at the centre);
    bias = sum_b (sum_yxa b1[a] W2[y, x, a, b] + b2[b]) W3[b, o] + b3[o] + b_sk[o].
    """
    w1 = branch["expand"]["kernel"][0, 0]  # (i, a)
    w2 = branch["conv"]["kernel"]  # (y, x, a, b)
    w3 = branch["reduce"]["kernel"][0, 0]  # (b, o)
    hi = jax.lax.Precision.HIGHEST
    kernel = jnp.einsum("ia,yxab,bo->yxio", w1, w2, w3, precision=hi)
    kernel = kernel.at[1, 1].add(branch["sk"]["kernel"][0, 0])
    b1 = branch["expand"]["bias"]
    b2 = jnp.einsum("a,yxab->b", b1, w2, precision=hi) + branch["conv"]["bias"]
    bias = jnp.einsum("b,bo->o", b2, w3, precision=hi) + branch["reduce"]["bias"]
    bias = bias + branch["sk"]["bias"]
    return {"kernel": kernel.astype(w2.dtype), "bias": bias.astype(w2.dtype)}


def reparameterize(params: Any) -> Any:
    """Training-form SPAN parameters -> the ``deploy=True`` form (every Conv3XC folded)."""
    if isinstance(params, dict) or hasattr(params, "items"):
        if set(params) == set(BRANCHES):
            return {"eval_conv": fold_conv3xc(params)}
        return {k: reparameterize(v) for k, v in params.items()}
    return params


class SPAB(nn.Module):
    """Swift parameter-free attention block; returns (output, first conv's output)."""

    features: int
    deploy: bool = False
    via_folded_kernel: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        c = functools.partial(
            Conv3XC,
            self.features,
            deploy=self.deploy,
            via_folded_kernel=self.via_folded_kernel,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        out1 = c(name="c1")(x)
        out2 = c(name="c2")(nn.silu(out1))
        out3 = c(name="c3")(nn.silu(out2))
        # The attention map is symmetric about zero and needs no parameters of its own.
        attention = nn.sigmoid(out3) - 0.5
        return (out3 + x) * attention, out1


class SPAN(nn.Module):
    """SPAN (feature_channels 48 in the paper, 28 in the NTIRE 2024 entry), six SPAB blocks.

    Like the reference, the input is centred with ``rgb_mean`` and scaled by ``img_range`` and
    the output is not shifted back: the network learns [0, 1] outputs directly.
    """

    scale: int
    channels: int = 3
    features: int = 48
    num_blocks: int = 6
    img_range: float = 255.0
    rgb_mean: Sequence[float] | None = DIV2K_RGB_MEAN
    deploy: bool = False
    # Training: the branches through their folded kernel (same function and gradients, see
    # Conv3XC) or, False, one after another as the reference runs them.
    via_folded_kernel: bool = True
    residual: str = "none"  # or "bicubic": learn the detail over the bicubic upsampling
    compute_dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        check_integer_scale("SPAN", self.scale)
        if self.num_blocks < 2:
            raise ValueError(f"SPAN needs at least 2 blocks, got {self.num_blocks}")
        if self.rgb_mean is not None and len(self.rgb_mean) != self.channels:
            raise ValueError(
                f"rgb_mean has {len(self.rgb_mean)} entries but channels={self.channels}; "
                "pass rgb_mean=None or one mean per channel"
            )
        efficient.check_residual("SPAN", self.residual)
        super().__post_init__()

    @property
    def receptive_radius(self) -> int:
        """LR pixels on each side of an output pixel that can influence it (rounded up)."""
        # conv_1, 3 per block, conv_2, the upsampler conv (the 1x1 fusion reaches nothing).
        radius = lr_receptive_radius([(1, 1)] * (3 + 3 * self.num_blocks))
        return efficient.residual_radius(radius, self.residual)

    def deployed(self) -> SPAN:
        """The same network in its inference form (parameters from `reparameterize`)."""
        return self.clone(deploy=True)

    reparameterize = staticmethod(reparameterize)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        lr = x
        kw = dict(
            deploy=self.deploy,
            via_folded_kernel=self.via_folded_kernel,
            dtype=self.compute_dtype,
            param_dtype=self.param_dtype,
        )
        x = x.astype(jnp.float32)
        if self.rgb_mean is not None:
            x = x - jnp.asarray(self.rgb_mean, jnp.float32)
        x = (x * self.img_range).astype(self.compute_dtype)
        feature = Conv3XC(self.features, name="conv_1", **kw)(x)
        h, out1 = feature, None
        blocks = []
        for i in range(self.num_blocks):
            h, out1 = SPAB(self.features, name=f"block_{i + 1}", **kw)(h)
            blocks.append(h)
        last = Conv3XC(self.features, name="conv_2", **kw)(h)
        # The fusion order of the reference: input features, last block, first block, and the
        # first conv of the last block.
        fused = jnp.concatenate([feature, last, blocks[0], out1], axis=-1)
        fused = nn.Conv(
            self.features,
            (1, 1),
            dtype=self.compute_dtype,
            param_dtype=self.param_dtype,
            kernel_init=torch_default_kernel_init,
            name="conv_cat",
        )(fused)
        y = nn.Conv(
            self.channels * self.scale * self.scale,
            (3, 3),
            padding="SAME",
            dtype=self.compute_dtype,
            param_dtype=self.param_dtype,
            kernel_init=torch_default_kernel_init,
            name="upsampler",
        )(fused)
        y = pixel_shuffle(y, self.scale).astype(jnp.float32)
        return efficient.with_residual(y, lr, self.scale, self.residual)


# The paper's model (48 channels, 0.43M parameters at x4) and the NTIRE 2024 entry (28).
SPAN48 = functools.partial(SPAN, features=48)
SPAN28 = functools.partial(SPAN, features=28)
