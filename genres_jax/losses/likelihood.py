"""VAE terms: per-example (B,) values in nats, computed in float32; the task reduces them."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def _f32(x: jax.Array) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


def _sum_per_example(x: jax.Array) -> jax.Array:
    return jnp.sum(x.reshape((x.shape[0], -1)), axis=-1)


def kl_standard_normal(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mean, diag(exp(logvar))) || N(0, I)) per example, summed over the last axis.

    Closed form (Kingma & Welling 2014, appendix B):
    0.5 * sum(exp(logvar) + mean^2 - 1 - logvar).
    """
    mean, logvar = _f32(mean), _f32(logvar)
    return 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar, axis=-1)


def bernoulli_log_likelihood(logits: jax.Array, x: jax.Array) -> jax.Array:
    """log p(x | logits) per example for a Bernoulli decoder, summed over all non-batch axes.

    sum(x * log sigmoid(l) + (1 - x) * log(1 - sigmoid(l))) with x in [0, 1] (the negated binary
    cross-entropy); log(1 - sigmoid(l)) = log sigmoid(-l) keeps it finite for large |l|.
    """
    logits, x = _f32(logits), _f32(x)
    terms = x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits)
    return _sum_per_example(terms)


def gaussian_log_likelihood(
    mean: jax.Array, x: jax.Array, log_scale: jax.Array | float
) -> jax.Array:
    """log N(x; mean, exp(log_scale)^2) per example, summed over all non-batch axes.

    Per element: -0.5 * log(2 pi) - log_scale - 0.5 * ((x - mean) / exp(log_scale))^2, the
    constant included so values are comparable across models. ``log_scale`` broadcasts to x.
    """
    mean, x, log_scale = _f32(mean), _f32(x), _f32(log_scale)
    z = (x - mean) * jnp.exp(-log_scale)
    terms = -0.5 * math.log(2.0 * math.pi) - log_scale - 0.5 * jnp.square(z)
    return _sum_per_example(jnp.broadcast_to(terms, jnp.broadcast_shapes(terms.shape, x.shape)))
