"""Relativistic average GAN losses and the generator-loss interface, against float64 NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genres_jax.losses import adversarial

RNG = np.random.default_rng(0)
REAL = RNG.normal(0.5, 2.0, size=(4,))
FAKE = RNG.normal(-0.5, 1.5, size=(3,))
# Per-pixel logit maps, as the U-Net discriminator gives: (B, H, W, 1).
REAL_MAP = RNG.normal(0.3, 1.0, size=(2, 5, 4, 1))
FAKE_MAP = RNG.normal(-0.2, 1.0, size=(2, 5, 4, 1))


def np_bce_with_logits(x, label):
    # -[y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))], straight from the definition.
    p = 1.0 / (1.0 + np.exp(-x))
    return -(label * np.log(p) + (1 - label) * np.log(1 - p))


def np_relativistic(real, fake, real_label, fake_label):
    real_rel = real - fake.mean()
    fake_rel = fake - real.mean()
    return 0.5 * (
        np_bce_with_logits(real_rel, real_label).mean()
        + np_bce_with_logits(fake_rel, fake_label).mean()
    )


@pytest.mark.parametrize(("real", "fake"), [(REAL, FAKE), (REAL_MAP, FAKE_MAP)])
def test_relativistic_losses_match_numpy(real, fake):
    r, f = jnp.asarray(real, jnp.float32), jnp.asarray(fake, jnp.float32)
    d = adversarial.discriminator_loss("relativistic", r, f)
    g = adversarial.generator_loss_with_real("relativistic", r, f)
    np.testing.assert_allclose(d, np_relativistic(real, fake, 1, 0), rtol=1e-6)
    np.testing.assert_allclose(g, np_relativistic(real, fake, 0, 1), rtol=1e-6)


def test_relativistic_losses_at_equal_logits_are_log2():
    # real - mean(fake) = fake - mean(real) = 0: every BCE term is log 2.
    x = jnp.full((3, 2, 2, 1), 0.7)
    np.testing.assert_allclose(
        adversarial.discriminator_loss("relativistic", x, x), np.log(2), 1e-6
    )
    np.testing.assert_allclose(
        adversarial.generator_loss_with_real("relativistic", x, x), np.log(2), rtol=1e-6
    )


def test_relativistic_losses_are_stable_for_large_logits():
    real, fake = jnp.array([-300.0]), jnp.array([300.0])
    # Relative logits -600 (label 1) and 600 (label 0): BCE = 600 each, mean of the two = 600.
    np.testing.assert_allclose(adversarial.discriminator_loss("relativistic", real, fake), 600.0)
    np.testing.assert_allclose(
        adversarial.generator_loss_with_real("relativistic", -real, -fake), 600.0
    )
    grads = jax.grad(lambda f: adversarial.generator_loss_with_real("relativistic", real, f))(fake)
    assert bool(jnp.all(jnp.isfinite(grads)))


def test_relativistic_generator_gradient_matches_finite_differences():
    real, fake = jnp.asarray(REAL), jnp.asarray(FAKE)
    grad = jax.grad(lambda f: adversarial.generator_loss_with_real("relativistic", real, f))(fake)
    eps = 1e-6
    for i in range(len(FAKE)):
        step = np.zeros_like(FAKE)
        step[i] = eps
        numeric = (
            np_relativistic(REAL, FAKE + step, 0, 1) - np_relativistic(REAL, FAKE - step, 0, 1)
        ) / (2 * eps)
        np.testing.assert_allclose(grad[i], numeric, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("kind", ["nonsaturating", "hinge", "wgan"])
def test_generator_loss_with_real_equals_generator_loss_for_other_kinds(kind):
    f = jnp.asarray(FAKE_MAP, jnp.float32)
    got = adversarial.generator_loss_with_real(kind, jnp.asarray(REAL_MAP, jnp.float32), f)
    np.testing.assert_allclose(got, adversarial.generator_loss(kind, f), rtol=1e-7)


def test_every_kind_reduces_logit_maps_over_all_elements():
    # A constant map gives the same loss as one logit per image with that value.
    real_map, fake_map = jnp.full((2, 4, 4, 1), 1.5), jnp.full((2, 4, 4, 1), -0.5)
    real_vec, fake_vec = jnp.full((2,), 1.5), jnp.full((2,), -0.5)
    expected = {  # closed forms of the D losses at these constants
        "nonsaturating": np.log1p(np.exp(-1.5)) + np.log1p(np.exp(-0.5)),
        "hinge": 0.0 + 0.5,
        "wgan": -0.5 - 1.5,
        "relativistic": 0.5 * (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-2.0))),
    }
    assert set(expected) == set(adversarial.GAN_LOSSES)
    for kind, value in expected.items():
        np.testing.assert_allclose(
            adversarial.discriminator_loss(kind, real_map, fake_map), value, 1e-6
        )
        np.testing.assert_allclose(
            adversarial.generator_loss_with_real(kind, real_map, fake_map),
            adversarial.generator_loss_with_real(kind, real_vec, fake_vec),
            rtol=1e-6,
        )


def test_generator_loss_without_real_logits_says_what_to_call():
    with pytest.raises(ValueError, match="generator_loss_with_real"):
        adversarial.generator_loss("relativistic", jnp.zeros(3))


def test_unknown_kind_lists_relativistic():
    with pytest.raises(ValueError, match="relativistic"):
        adversarial.generator_loss_with_real("lsgan", jnp.zeros(2), jnp.zeros(2))
