"""GAN generators and discriminators (NHWC, images in [-1, 1]).

Two families:

* ``MLPGenerator`` / ``MLPDiscriminator``: the fully connected GAN for small greyscale images.
* ``DCGANGenerator`` / ``DCGANDiscriminator``: the DCGAN architecture (Radford et al. 2016). At
  64x64 both match the classic DCGAN layer list exactly (4x4 kernels, stride 2, padding 1, no
  biases before BatchNorm); 28x28 and 32x32 variants use fewer stride-2 stages.

Every generator takes ``(z, train)`` with ``z`` of shape (B, latent_dim) and returns images of
shape (B, H, W, C) in [-1, 1]; every discriminator takes ``(x, train)`` and returns logits of
shape (B,). Parameters are float32; ``dtype`` sets the computation dtype; outputs are float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genres_jax.models import upconv

# DCGAN paper initialisation: weights ~ N(0, 0.02), BatchNorm scale ~ N(1, 0.02).
_dcgan_kernel_init = nn.initializers.normal(stddev=0.02)


def _dcgan_scale_init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


# The 4x4 stride-2 transposed convs (`upconv.ConvTranspose2x`) are PyTorch's
# ConvTranspose2d(kernel_size=4, stride=2, padding=1); with transpose_kernel=True each is the
# adjoint of the matching strided conv, as in PyTorch.

# PyTorch Conv2d(kernel_size=4, stride=2, padding=1): halves even sizes exactly.
_DOWN_PADDING = ((1, 1), (1, 1))

# image size -> (spatial size of the first feature map, channel multipliers of the feature maps
# from the first one to the last before the output layer, each later map twice as large).
_DCGAN_LAYOUTS: dict[int, tuple[int, tuple[int, ...]]] = {
    28: (7, (2, 1)),
    32: (4, (4, 2, 1)),
    64: (4, (8, 4, 2, 1)),
}


def _upsample_conv(features: int, dtype: jnp.dtype, form: str, name: str) -> nn.Module:
    # No bias, as in the reference DCGAN (a bias before BatchNorm would be cancelled by it).
    return upconv.ConvTranspose2x(
        features,
        use_bias=False,
        transpose_kernel=True,
        kernel_init=_dcgan_kernel_init,
        dtype=dtype,
        form=form,
        name=name,
    )


def _check_size(image_size: int) -> tuple[int, tuple[int, ...]]:
    if image_size not in _DCGAN_LAYOUTS:
        raise ValueError(
            f"Unsupported DCGAN image size {image_size}; valid sizes: {sorted(_DCGAN_LAYOUTS)}"
        )
    return _DCGAN_LAYOUTS[image_size]


class MLPGenerator(nn.Module):
    """Fully connected generator: z -> Dense/LeakyReLU(0.2) stack -> Dense -> tanh image."""

    latent_dim: int = 100
    hidden: Sequence[int] = (128, 256)
    image_shape: Sequence[int] = (28, 28, 1)
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
        """Maps z (B, latent_dim) to images (B, H, W, C) in [-1, 1]; ``train`` is unused."""
        del train  # kept so that all generators share one signature
        if z.shape[-1] != self.latent_dim:
            raise ValueError(f"Expected z with {self.latent_dim} features, got {z.shape}")
        h = z.astype(self.dtype)
        for width in self.hidden:
            h = nn.leaky_relu(nn.Dense(width, dtype=self.dtype)(h), negative_slope=0.2)
        h = nn.Dense(math.prod(self.image_shape), dtype=self.dtype)(h)
        h = jnp.tanh(h.astype(jnp.float32))
        return h.reshape((z.shape[0], *self.image_shape))


class MLPDiscriminator(nn.Module):
    """Fully connected discriminator: flatten -> Dense/LeakyReLU(0.2) stack -> one logit."""

    hidden: Sequence[int] = (256, 128)
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        """Maps images (B, H, W, C) to logits (B,) (no sigmoid); ``train`` is unused."""
        del train
        h = x.reshape((x.shape[0], -1)).astype(self.dtype)
        for width in self.hidden:
            h = nn.leaky_relu(nn.Dense(width, dtype=self.dtype)(h), negative_slope=0.2)
        h = nn.Dense(1, dtype=self.dtype)(h)
        return h[:, 0].astype(jnp.float32)


class DCGANGenerator(nn.Module):
    """DCGAN generator: z as a 1x1 map -> transposed convs with BatchNorm + ReLU -> tanh.

    The first layer is a VALID transposed conv whose kernel equals the first feature map size
    (4 for 32/64, 7 for 28), i.e. a dense projection of z; each later layer is a 4x4 stride-2
    transposed conv that doubles the spatial size. Feature maps (features ``f``):
    64: 4x4x8f, 8x8x4f, 16x16x2f, 32x32xf, 64x64xC; 32: 4x4x4f, 8x8x2f, 16x16xf, 32x32xC;
    28: 7x7x2f, 14x14xf, 28x28xC.
    """

    image_size: int
    channels: int
    features: int = 64
    latent_dim: int = 100
    dtype: jnp.dtype = jnp.float32
    conv_form: str = "auto"  # How the transposed convs are computed (`upconv.FORMS`).

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
        """Maps z (B, latent_dim) to images (B, S, S, channels) in [-1, 1]."""
        first_size, multipliers = _check_size(self.image_size)
        if z.shape[-1] != self.latent_dim:
            raise ValueError(f"Expected z with {self.latent_dim} features, got {z.shape}")

        def norm_relu(h: jax.Array) -> jax.Array:
            h = nn.BatchNorm(
                use_running_average=not train,
                momentum=0.9,
                epsilon=1e-5,
                dtype=self.dtype,
                scale_init=_dcgan_scale_init,
            )(h)
            return nn.relu(h)

        h = z.astype(self.dtype).reshape((z.shape[0], 1, 1, self.latent_dim))
        # The layers keep the names nn.ConvTranspose gave them, so older checkpoints load.
        h = upconv.Project(
            multipliers[0] * self.features,
            size=first_size,
            use_bias=False,
            transpose_kernel=True,
            kernel_init=_dcgan_kernel_init,
            dtype=self.dtype,
            form=self.conv_form,
            name="ConvTranspose_0",
        )(h)
        h = norm_relu(h)
        for i, multiplier in enumerate(multipliers[1:], start=1):
            h = _upsample_conv(
                multiplier * self.features, self.dtype, self.conv_form, f"ConvTranspose_{i}"
            )(h)
            h = norm_relu(h)
        h = _upsample_conv(
            self.channels, self.dtype, self.conv_form, f"ConvTranspose_{len(multipliers)}"
        )(h)
        return jnp.tanh(h.astype(jnp.float32))


_DISCRIMINATOR_NORMS = ("batch", "layer", "none")


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator: 4x4 stride-2 convs with LeakyReLU(0.2) -> VALID conv to one logit.

    The layer count follows the input size: 64: 64->32->16->8->4, 32: 32->16->8->4, 28: 28->14->7,
    with f, 2f, 4f, 8f channels (as many as there are layers); the last map is reduced to one
    logit by a conv whose kernel covers it. The first layer has no normalisation.
    ``norm="batch"`` is the classic DCGAN; WGAN-GP needs a critic whose outputs are independent
    per sample, hence ``"layer"`` (per-sample LayerNorm over H, W, C) or ``"none"``.
    """

    features: int = 64
    norm: str = "batch"
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        """Maps images (B, S, S, C), S in {28, 32, 64}, to logits (B,) (no sigmoid)."""
        if self.norm not in _DISCRIMINATOR_NORMS:
            raise ValueError(f"Unknown norm {self.norm!r}; valid norms: {_DISCRIMINATOR_NORMS}")
        image_size = x.shape[1]
        if x.shape[2] != image_size:
            raise ValueError(f"Expected square images, got shape {x.shape}")
        first_size, multipliers = _check_size(image_size)
        # The discriminator mirrors the generator: f, 2f, ... up to the generator's first width.
        widths = [m * self.features for m in reversed(multipliers)]

        h = x.astype(self.dtype)
        for i, width in enumerate(widths):
            normalised = i > 0 and self.norm != "none"
            h = nn.Conv(
                width,
                (4, 4),
                strides=(2, 2),
                padding=_DOWN_PADDING,
                # The reference has no biases; without any normalisation the hidden layers get one.
                use_bias=i > 0 and not normalised,
                kernel_init=_dcgan_kernel_init,
                dtype=self.dtype,
            )(h)
            if normalised and self.norm == "batch":
                h = nn.BatchNorm(
                    use_running_average=not train,
                    momentum=0.9,
                    epsilon=1e-5,
                    dtype=self.dtype,
                    scale_init=_dcgan_scale_init,
                )(h)
            elif normalised:
                h = nn.LayerNorm(
                    epsilon=1e-5, reduction_axes=(1, 2, 3), feature_axes=-1, dtype=self.dtype
                )(h)
            h = nn.leaky_relu(h, negative_slope=0.2)
        h = nn.Conv(
            1,
            (first_size, first_size),
            padding="VALID",
            use_bias=False,
            kernel_init=_dcgan_kernel_init,
            dtype=self.dtype,
        )(h)
        return h.reshape((x.shape[0],)).astype(jnp.float32)
