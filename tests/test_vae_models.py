"""Shapes, parameter counts and the reparameterisation of the VAE models."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genres_jax.models.vae import MLPVAE, ConvVAE, reparameterize

KEY = jax.random.key(0)


def _count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _images(shape, seed=1):
    return jax.random.uniform(jax.random.key(seed), shape)


@pytest.mark.parametrize(
    "model",
    [
        MLPVAE(),
        MLPVAE(latent_dim=8, hidden=(64, 32), image_shape=(32, 32, 3)),
        ConvVAE(),
        ConvVAE(latent_dim=16, features=(8, 16), image_shape=(32, 32, 3)),
        ConvVAE(latent_dim=4, features=(4, 8, 16), image_shape=(32, 32, 1)),
    ],
    ids=["mlp28", "mlp32", "conv28", "conv32", "conv32_3stages"],
)
def test_vae_shapes(model):
    """Shapes and dtypes only: traced with eval_shape, nothing is compiled."""
    x = jnp.zeros((3, *model.image_shape))
    variables = jax.eval_shape(model.init, KEY, x, KEY)
    logits, mean, logvar = jax.eval_shape(model.apply, variables, x, KEY)
    assert logits.shape == x.shape and logits.dtype == jnp.float32
    assert mean.shape == logvar.shape == (3, model.latent_dim)
    assert mean.dtype == logvar.dtype == jnp.float32
    z = jnp.zeros((5, model.latent_dim))
    decoded = jax.eval_shape(
        functools.partial(model.apply, method=type(model).decode), variables, z
    )
    assert decoded.shape == (5, *model.image_shape) and decoded.dtype == jnp.float32


@pytest.mark.parametrize(
    "model",
    [MLPVAE(latent_dim=8, hidden=(32,)), ConvVAE(latent_dim=8, features=(4, 8))],
    ids=["mlp", "conv"],
)
def test_vae_call_is_encode_sample_decode(model):
    x = _images((3, *model.image_shape))
    variables = model.init(KEY, x, jax.random.key(1))
    logits, mean, logvar = model.apply(variables, x, jax.random.key(2))

    mean2, logvar2 = model.apply(variables, x, method=type(model).encode)
    z = reparameterize(mean2, logvar2, jax.random.key(2))
    decoded = model.apply(variables, z, method=type(model).decode)
    np.testing.assert_allclose(decoded, logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mean2, mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(logvar2, logvar, rtol=1e-6, atol=1e-6)

    # Different keys give different samples, hence different logits.
    other, _, _ = model.apply(variables, x, jax.random.key(3))
    assert not np.allclose(other, logits)


def test_mlp_vae_parameter_count():
    model = MLPVAE()
    variables = jax.eval_shape(model.init, KEY, jnp.zeros((1, 28, 28, 1)), KEY)
    expected = (
        (784 * 400 + 400)  # encoder
        + 2 * (400 * 20 + 20)  # mean and logvar heads
        + (20 * 400 + 400)  # decoder hidden
        + (400 * 784 + 784)  # decoder output
    )
    assert _count(variables["params"]) == expected == 652_824


def test_conv_vae_parameter_count():
    model = ConvVAE()
    variables = jax.eval_shape(model.init, KEY, jnp.zeros((1, 28, 28, 1)), KEY)
    conv = lambda cin, cout: 4 * 4 * cin * cout + cout
    dense = lambda nin, nout: nin * nout + nout
    expected = (
        conv(1, 32) + conv(32, 64)  # encoder 28 -> 14 -> 7
        + 2 * dense(7 * 7 * 64, 32)  # heads
        + dense(32, 7 * 7 * 64)  # decoder input
        + conv(64, 32) + conv(32, 1)  # decoder 7 -> 14 -> 28
    )  # fmt: skip
    assert _count(variables["params"]) == expected


def test_conv_vae_rejects_unsupported_sizes():
    with pytest.raises(ValueError, match="divisible by 4"):
        ConvVAE(image_shape=(30, 30, 1)).init(KEY, jnp.zeros((1, 30, 30, 1)), KEY)


def test_reparameterize_with_vanishing_variance_returns_mean():
    mean = jnp.array([[0.5, -2.0, 3.0], [1.0, 0.0, -7.5]])
    logvar = jnp.full_like(mean, -1e4)  # exp(-5e3) underflows to exactly 0
    z = reparameterize(mean, logvar, KEY)
    np.testing.assert_array_equal(z, mean)


def test_reparameterize_sample_moments():
    n = 200_000
    mean = jnp.broadcast_to(jnp.array([1.0, -3.0]), (n, 2))
    logvar = jnp.broadcast_to(jnp.log(jnp.array([4.0, 0.25])), (n, 2))
    z = np.asarray(reparameterize(mean, logvar, KEY), np.float64)
    # Standard errors: std / sqrt(n) < 0.005 for the mean; the std's is about std / sqrt(2n).
    np.testing.assert_allclose(z.mean(axis=0), [1.0, -3.0], atol=0.025)
    np.testing.assert_allclose(z.std(axis=0), [2.0, 0.5], rtol=0.02)


def test_reparameterize_gradients():
    mean = jnp.array([[0.3, -0.7]])
    logvar = jnp.array([[0.2, -1.0]])
    eps = (reparameterize(mean, logvar, KEY) - mean) / jnp.exp(0.5 * logvar)
    d_mean, d_logvar = jax.grad(lambda m, lv: jnp.sum(reparameterize(m, lv, KEY)), (0, 1))(
        mean, logvar
    )
    np.testing.assert_allclose(d_mean, 1.0)
    np.testing.assert_allclose(d_logvar, 0.5 * jnp.exp(0.5 * logvar) * eps, rtol=1e-5)


@pytest.mark.parametrize("model_cls", [MLPVAE, ConvVAE])
def test_bfloat16_vae_keeps_float32_params_and_outputs(model_cls):
    model = model_cls(dtype=jnp.bfloat16)
    x = jnp.zeros((2, 28, 28, 1))
    variables = jax.eval_shape(model.init, KEY, x, KEY)
    outputs = jax.eval_shape(model.apply, variables, x, KEY)
    assert all(o.dtype == jnp.float32 for o in outputs)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
