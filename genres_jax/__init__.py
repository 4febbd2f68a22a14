"""genres_jax: image generation and super-resolution in JAX."""
