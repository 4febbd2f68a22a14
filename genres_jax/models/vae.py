"""Variational autoencoders (Kingma & Welling 2014) with a diagonal Gaussian posterior.

Both models share one interface:

* ``encode(x) -> (mean, logvar)``, each (B, latent_dim), for images x of shape (B, H, W, C);
* ``decode(z) -> logits`` of shape (B, H, W, C), the Bernoulli decoder's logits;
* ``__call__(x, key) -> (logits, mean, logvar)`` with z drawn by ``reparameterize``.

Call a single method with ``model.apply(variables, z, method=MLPVAE.decode)``. Parameters are
float32; ``dtype`` sets the computation dtype; outputs are float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from genres_jax.models import upconv


def reparameterize(mean: jax.Array, logvar: jax.Array, key: jax.Array) -> jax.Array:
    """Draws z ~ N(mean, exp(logvar)) as z = mean + exp(logvar / 2) * eps, eps ~ N(0, I).

    Written this way z is a differentiable function of (mean, logvar) for a fixed eps.
    """
    eps = jax.random.normal(key, mean.shape, jnp.float32)
    return mean + jnp.exp(0.5 * logvar) * eps


class MLPVAE(nn.Module):
    """Fully connected VAE: Dense/ReLU encoder -> (mean, logvar) heads; mirrored decoder."""

    latent_dim: int = 20
    hidden: Sequence[int] = (400,)
    image_shape: Sequence[int] = (28, 28, 1)
    dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        self.encoder_layers = [nn.Dense(w, dtype=self.dtype) for w in self.hidden]
        self.mean_head = nn.Dense(self.latent_dim, dtype=self.dtype)
        self.logvar_head = nn.Dense(self.latent_dim, dtype=self.dtype)
        self.decoder_layers = [nn.Dense(w, dtype=self.dtype) for w in reversed(self.hidden)]
        self.output_layer = nn.Dense(math.prod(self.image_shape), dtype=self.dtype)

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Returns the posterior's (mean, logvar), each (B, latent_dim)."""
        h = x.reshape((x.shape[0], -1)).astype(self.dtype)
        for layer in self.encoder_layers:
            h = nn.relu(layer(h))
        return self.mean_head(h).astype(jnp.float32), self.logvar_head(h).astype(jnp.float32)

    def decode(self, z: jax.Array) -> jax.Array:
        """Returns Bernoulli logits (B, H, W, C) for latents z (B, latent_dim)."""
        h = z.astype(self.dtype)
        for layer in self.decoder_layers:
            h = nn.relu(layer(h))
        logits = self.output_layer(h).astype(jnp.float32)
        return logits.reshape((z.shape[0], *self.image_shape))

    def __call__(self, x: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Encodes x, samples z with ``key``, decodes; returns (logits, mean, logvar)."""
        mean, logvar = self.encode(x)
        return self.decode(reparameterize(mean, logvar, key)), mean, logvar


class ConvVAE(nn.Module):
    """Convolutional VAE.

    Encoder: one 4x4 stride-2 conv + ReLU per entry of ``features`` (28 -> 14 -> 7 for the
    default two), flatten, Dense (mean, logvar) heads. Decoder: Dense -> ReLU -> the encoder's last
    feature map shape, then 4x4 stride-2 transposed convs (ReLU between them) back to the image
    size, the last one giving the logits. H and W must be divisible by 2 ** len(features); 28x28
    and 32x32 both work with the default.
    """

    latent_dim: int = 32
    features: Sequence[int] = (32, 64)
    image_shape: Sequence[int] = (28, 28, 1)
    dtype: jnp.dtype = jnp.float32
    conv_form: str = "auto"  # How the transposed convs are computed (`upconv.FORMS`).

    def setup(self) -> None:
        height, width, channels = self.image_shape
        factor = 2 ** len(self.features)
        if height % factor or width % factor:
            raise ValueError(
                f"ConvVAE with {len(self.features)} stride-2 stages needs H and W divisible by "
                f"{factor}; got image_shape {tuple(self.image_shape)}"
            )
        self._bottom_shape = (height // factor, width // factor, self.features[-1])
        self.encoder_convs = [
            nn.Conv(f, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), dtype=self.dtype)
            for f in self.features
        ]
        self.mean_head = nn.Dense(self.latent_dim, dtype=self.dtype)
        self.logvar_head = nn.Dense(self.latent_dim, dtype=self.dtype)
        self.decoder_input = nn.Dense(math.prod(self._bottom_shape), dtype=self.dtype)
        # Each 4x4/2 transposed conv (padding 2 of the stride-dilated input) doubles H and W.
        self.decoder_convs = [
            upconv.ConvTranspose2x(f, dtype=self.dtype, form=self.conv_form)
            for f in [*reversed(self.features[:-1]), channels]
        ]

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Returns the posterior's (mean, logvar), each (B, latent_dim)."""
        h = x.astype(self.dtype)
        for conv in self.encoder_convs:
            h = nn.relu(conv(h))
        h = h.reshape((x.shape[0], -1))
        return self.mean_head(h).astype(jnp.float32), self.logvar_head(h).astype(jnp.float32)

    def decode(self, z: jax.Array) -> jax.Array:
        """Returns Bernoulli logits (B, H, W, C) for latents z (B, latent_dim)."""
        h = nn.relu(self.decoder_input(z.astype(self.dtype)))
        h = h.reshape((z.shape[0], *self._bottom_shape))
        for i, conv in enumerate(self.decoder_convs):
            h = conv(h)
            if i < len(self.decoder_convs) - 1:
                h = nn.relu(h)
        return h.astype(jnp.float32)

    def __call__(self, x: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Encodes x, samples z with ``key``, decodes; returns (logits, mean, logvar)."""
        mean, logvar = self.encode(x)
        return self.decode(reparameterize(mean, logvar, key)), mean, logvar
