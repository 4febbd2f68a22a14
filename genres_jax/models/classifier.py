"""A small image classifier whose penultimate layer serves as the feature space for FID/KID.

``ConvClassifier``: per entry of ``features`` one 3x3 conv + ReLU and a 2x2 max pool
(28 -> 14 -> 7 -> 3 for the default three), flatten, Dense(``embed_dim``) (the embedding), ReLU,
dropout, Dense(``num_classes``). NHWC images in [0, 1]; outputs are float32.

The embedding is taken *before* its ReLU: an always-negative unit would be a constant 0 after
it, and constant dimensions make the feature covariance singular, which the Frechet distance's
matrix square root handles badly.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class ConvClassifier(nn.Module):
    """conv/ReLU/max-pool stages -> Dense embedding -> ReLU -> dropout -> Dense logits."""

    num_classes: int = 10
    features: Sequence[int] = (32, 64, 64)
    embed_dim: int = 128
    dropout: float = 0.3
    dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        self.convs = [nn.Conv(f, (3, 3), padding="SAME", dtype=self.dtype) for f in self.features]
        self.embedding = nn.Dense(self.embed_dim, dtype=self.dtype)
        self.drop = nn.Dropout(self.dropout)
        self.head = nn.Dense(self.num_classes, dtype=self.dtype)

    def embed(self, x: jax.Array) -> jax.Array:
        """Pre-activation embedding (B, embed_dim), float32, of images (B, H, W, C) in [0, 1]."""
        h = x.astype(self.dtype)
        for conv in self.convs:
            h = nn.max_pool(nn.relu(conv(h)), (2, 2), strides=(2, 2))
        h = h.reshape((x.shape[0], -1))
        return self.embedding(h).astype(jnp.float32)

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Class logits (B, num_classes); dropout (rng stream ``dropout``) only when training."""
        h = nn.relu(self.embed(x)).astype(self.dtype)
        h = self.drop(h, deterministic=not train)
        return self.head(h).astype(jnp.float32)
