"""Losses and EMA against float64 NumPy references worked out in the tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genres_jax.losses import adversarial, likelihood, pixel
from genres_jax.models.gan import DCGANDiscriminator
from genres_jax.train.ema import ema_update

REAL = np.array([2.0, -0.5, 0.0, 3.5])
FAKE = np.array([-1.5, 0.25, 1.0])
KEY_GP = jax.random.key(4)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------------------------
# GAN objectives
# --------------------------------------------------------------------------------------------


def test_nonsaturating_discriminator_loss_is_bce_real1_fake0():
    expected = -np.mean(np.log(_sigmoid(REAL))) - np.mean(np.log(1.0 - _sigmoid(FAKE)))
    got = adversarial.discriminator_loss("nonsaturating", jnp.array(REAL), jnp.array(FAKE))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_nonsaturating_generator_loss():
    expected = -np.mean(np.log(_sigmoid(FAKE)))
    got = adversarial.generator_loss("nonsaturating", jnp.array(FAKE))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_nonsaturating_losses_are_stable_for_large_logits():
    # D confidently wrong: -log sigmoid(-100) = 100 + log(1 + e^-100) ~ 100 for both terms.
    d = adversarial.discriminator_loss("nonsaturating", jnp.array([-100.0]), jnp.array([100.0]))
    g = adversarial.generator_loss("nonsaturating", jnp.array([-200.0]))
    np.testing.assert_allclose(d, 200.0, rtol=1e-6)
    np.testing.assert_allclose(g, 200.0, rtol=1e-6)
    grad = jax.grad(lambda f: adversarial.generator_loss("nonsaturating", f))(jnp.array([-200.0]))
    np.testing.assert_allclose(grad, -1.0)  # non-saturating: full gradient when D rejects


def test_hinge_losses():
    # relu(1 - real) = [0, 1.5, 1, 0] -> mean 0.625; relu(1 + fake) = [0, 1.25, 2] -> mean 3.25/3.
    expected_d = 0.625 + 3.25 / 3.0
    d = adversarial.discriminator_loss("hinge", jnp.array(REAL), jnp.array(FAKE))
    np.testing.assert_allclose(d, expected_d, rtol=1e-6)
    g = adversarial.generator_loss("hinge", jnp.array(FAKE))
    np.testing.assert_allclose(g, -(-1.5 + 0.25 + 1.0) / 3.0, rtol=1e-6)


def test_wgan_losses():
    # mean(fake) = -1/12, mean(real) = 5/4.
    d = adversarial.discriminator_loss("wgan", jnp.array(REAL), jnp.array(FAKE))
    np.testing.assert_allclose(d, -1.0 / 12.0 - 1.25, rtol=1e-6)
    g = adversarial.generator_loss("wgan", jnp.array(FAKE))
    np.testing.assert_allclose(g, 1.0 / 12.0, rtol=1e-6)


def test_unknown_gan_loss_lists_valid_kinds():
    with pytest.raises(ValueError, match="hinge.*nonsaturating.*wgan"):
        adversarial.discriminator_loss("lsgan", jnp.zeros(2), jnp.zeros(2))
    with pytest.raises(ValueError, match="hinge.*nonsaturating.*wgan"):
        adversarial.generator_loss("lsgan", jnp.zeros(2))


# --------------------------------------------------------------------------------------------
# Gradient penalty
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_w", [3.0, 1.0, 0.25])
def test_gradient_penalty_linear_critic(norm_w):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 4, 2))
    w *= norm_w / np.linalg.norm(w)
    critic = lambda x: jnp.sum(x * jnp.asarray(w, jnp.float32), axis=(1, 2, 3))
    real = jnp.asarray(rng.normal(size=(5, 4, 4, 2)), jnp.float32)
    fake = jnp.asarray(rng.normal(size=(5, 4, 4, 2)), jnp.float32)
    # The gradient is w wherever the interpolate lies, so the penalty is (||w|| - 1)^2.
    gp = adversarial.gradient_penalty(critic, real, fake, jax.random.key(1))
    np.testing.assert_allclose(gp, (norm_w - 1.0) ** 2, rtol=1e-5, atol=1e-6)


def test_gradient_penalty_quadratic_critic():
    rng = np.random.default_rng(1)
    a = rng.uniform(0.5, 2.0, size=(3, 3, 1))
    x = rng.normal(size=(6, 3, 3, 1))
    critic = lambda v: 0.5 * jnp.sum(jnp.asarray(a, jnp.float32) * v**2, axis=(1, 2, 3))
    # real == fake pins the interpolate to x whatever eps is; grad = a * x.
    norms = np.sqrt(np.sum((a * x) ** 2, axis=(1, 2, 3)))
    expected = np.mean((norms - 1.0) ** 2)
    xs = jnp.asarray(x, jnp.float32)
    gp = adversarial.gradient_penalty(critic, xs, xs, jax.random.key(2))
    np.testing.assert_allclose(gp, expected, rtol=1e-5)


def test_gradient_penalty_interpolates_uniformly_per_sample():
    # critic(x) = x^2 / 2 on a scalar, real = 1, fake = 0: the gradient is eps itself and the
    # penalty mean((eps - 1)^2) estimates E[(U - 1)^2] = 1/3 (std of one term: 0.298).
    n = 4096
    critic = lambda v: 0.5 * v[:, 0] ** 2
    gp = adversarial.gradient_penalty(
        critic, jnp.ones((n, 1)), jnp.zeros((n, 1)), jax.random.key(3)
    )
    assert abs(float(gp) - 1.0 / 3.0) < 5 * 0.298 / np.sqrt(n)


def test_gradient_penalty_differentiable_even_at_zero_gradient():
    def gp_of(w):
        critic = lambda x: jnp.sum(x * w, axis=-1)
        return adversarial.gradient_penalty(critic, jnp.ones((3, 4)), jnp.zeros((3, 4)), KEY_GP)

    w = jnp.zeros(4)
    value, grad = jax.value_and_grad(gp_of)(w)
    np.testing.assert_allclose(value, 1.0, rtol=1e-5)
    assert jnp.all(jnp.isfinite(grad))
    # Away from zero: d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||.
    w = jnp.array([1.0, 2.0, 2.0, 0.0])
    np.testing.assert_allclose(jax.grad(gp_of)(w), 2 * 2.0 * w / 3.0, rtol=1e-5)


def test_gradient_penalty_matches_per_sample_gradients_of_a_layernorm_critic():
    critic = DCGANDiscriminator(features=4, norm="layer")
    x = jax.random.normal(jax.random.key(5), (3, 28, 28, 1))
    variables = critic.init(KEY_GP, x)
    critic_fn = lambda v: critic.apply(variables, v)
    single = lambda v: critic_fn(v[None])[0]
    per_sample = jax.jit(jax.vmap(jax.grad(single)))(x)
    norms = np.sqrt(np.sum(np.asarray(per_sample, np.float64) ** 2, axis=(1, 2, 3)))
    expected = np.mean((norms - 1.0) ** 2)
    gp = jax.jit(adversarial.gradient_penalty, static_argnums=0)(critic_fn, x, x, KEY_GP)
    np.testing.assert_allclose(gp, expected, rtol=1e-4)


# --------------------------------------------------------------------------------------------
# VAE terms
# --------------------------------------------------------------------------------------------


def _kl_reference(mean, logvar):
    return 0.5 * np.sum(np.exp(logvar) + mean**2 - 1.0 - logvar, axis=-1)


def test_kl_standard_normal_closed_form():
    mean = np.array([[0.0, 0.0], [1.0, -2.0], [0.3, 0.1]])
    logvar = np.array([[0.0, 0.0], [0.0, 0.0], [np.log(4.0), -1.0]])
    got = likelihood.kl_standard_normal(jnp.array(mean), jnp.array(logvar))
    assert got.shape == (3,)
    # Row 0: identical distributions; row 1: 0.5 * ||mean||^2 = 2.5.
    np.testing.assert_allclose(got[:2], [0.0, 2.5], atol=1e-7)
    np.testing.assert_allclose(got, _kl_reference(mean, logvar), rtol=1e-6)


def test_kl_standard_normal_monte_carlo():
    mean = np.array([0.7, -1.2, 0.0])
    logvar = np.array([np.log(0.5), 0.4, -2.0])
    std = np.exp(0.5 * logvar)
    rng = np.random.default_rng(6)
    n = 400_000
    z = mean + std * rng.standard_normal((n, 3))
    log_q = np.sum(-0.5 * np.log(2 * np.pi) - np.log(std) - 0.5 * ((z - mean) / std) ** 2, -1)
    log_p = np.sum(-0.5 * np.log(2 * np.pi) - 0.5 * z**2, -1)
    samples = log_q - log_p
    standard_error = samples.std() / np.sqrt(n)
    got = float(likelihood.kl_standard_normal(jnp.array(mean[None]), jnp.array(logvar[None]))[0])
    assert abs(got - samples.mean()) < 5 * standard_error


def test_bernoulli_log_likelihood():
    rng = np.random.default_rng(7)
    logits = rng.normal(scale=3.0, size=(2, 3, 3, 1))
    x = rng.uniform(size=(2, 3, 3, 1))
    x[0, 0, 0, 0], x[0, 0, 1, 0] = 0.0, 1.0
    p = _sigmoid(logits)
    expected = np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=(1, 2, 3))
    got = likelihood.bernoulli_log_likelihood(jnp.array(logits), jnp.array(x))
    assert got.shape == (2,)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_bernoulli_log_likelihood_stable_for_large_logits():
    logits = jnp.array([[100.0, -100.0], [-100.0, 100.0]])
    x = jnp.array([[1.0, 0.0], [1.0, 0.0]])
    got = likelihood.bernoulli_log_likelihood(logits, x)
    # Row 0 is certain and correct; row 1 is wrong twice: log sigmoid(-100) ~ -100 each.
    np.testing.assert_allclose(got, [0.0, -200.0], atol=1e-6, rtol=1e-6)


def test_gaussian_log_likelihood():
    rng = np.random.default_rng(8)
    mean = rng.normal(size=(2, 4, 4, 3))
    x = rng.normal(size=(2, 4, 4, 3))
    log_scale = rng.normal(scale=0.5, size=(2, 4, 4, 3))
    sigma = np.exp(log_scale)
    density = np.exp(-0.5 * ((x - mean) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    expected = np.sum(np.log(density), axis=(1, 2, 3))
    got = likelihood.gaussian_log_likelihood(jnp.array(mean), jnp.array(x), jnp.array(log_scale))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # Scalar scale, x at the mean: D * log N(0; 0, 1) = -D/2 * log(2 pi).
    at_mean = likelihood.gaussian_log_likelihood(jnp.array(mean), jnp.array(mean), 0.0)
    np.testing.assert_allclose(at_mean, [-24.0 * np.log(2 * np.pi)] * 2, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# SR losses and EMA
# --------------------------------------------------------------------------------------------


def test_l1_and_charbonnier():
    pred = jnp.array([[1.0, 5.0], [2.0, -1.0]])
    target = jnp.array([[1.0, 2.0], [6.0, -1.0]])  # differences 0, 3, -4, 0
    np.testing.assert_allclose(pixel.l1_loss(pred, target), 7.0 / 4.0, rtol=1e-6)
    eps = 1e-3
    expected = np.mean(np.sqrt(np.array([0.0, 9.0, 16.0, 0.0]) + eps**2))
    np.testing.assert_allclose(pixel.charbonnier_loss(pred, target, eps), expected, rtol=1e-6)
    # At zero error the Charbonnier loss is eps, not 0, and it is smooth there.
    np.testing.assert_allclose(pixel.charbonnier_loss(target, target, 0.1), 0.1, rtol=1e-6)


def test_ema_update_arithmetic():
    ema = {"w": jnp.array([1.0, 2.0]), "b": {"c": jnp.array(10.0)}}
    new = {"w": jnp.array([3.0, -2.0]), "b": {"c": jnp.array(0.0)}}
    out = ema_update(ema, new, 0.9)
    np.testing.assert_allclose(out["w"], [0.9 * 1 + 0.1 * 3, 0.9 * 2 - 0.1 * 2], rtol=1e-6)
    np.testing.assert_allclose(out["b"]["c"], 9.0, rtol=1e-6)
    jax.tree.map(np.testing.assert_array_equal, ema_update(ema, new, 0.0), new)
    jax.tree.map(np.testing.assert_array_equal, ema_update(ema, new, 1.0), ema)
    jitted = jax.jit(ema_update)(ema, new, jnp.float32(0.5))
    np.testing.assert_allclose(jitted["w"], [2.0, 0.0])


def test_ema_update_keeps_dtype():
    ema = {"w": jnp.ones(3, jnp.bfloat16)}
    new = {"w": jnp.zeros(3, jnp.float32)}
    out = ema_update(ema, new, 0.5)
    assert out["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(out["w"].astype(jnp.float32), 0.5)
