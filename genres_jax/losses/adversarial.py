"""GAN objectives on discriminator/critic logits (B,), each a scalar to minimise, the WGAN-GP
penalty and ESRGAN's relativistic average losses; computed in float32 whatever the input dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def _f32(x: jax.Array) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


def _sum_per_example(x: jax.Array) -> jax.Array:
    return jnp.sum(x.reshape((x.shape[0], -1)), axis=-1)


def nonsaturating_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Standard GAN discriminator loss (Goodfellow et al. 2014).

    mean(softplus(-real)) + mean(softplus(fake)), i.e. binary cross-entropy on logits with label
    1 for real and 0 for fake (-log sigmoid(l) = softplus(-l), -log(1 - sigmoid(l)) = softplus(l)):
    the negation of the minimax value function.
    """
    return jnp.mean(jax.nn.softplus(-_f32(real_logits))) + jnp.mean(
        jax.nn.softplus(_f32(fake_logits))
    )


def nonsaturating_generator_loss(fake_logits: jax.Array) -> jax.Array:
    """Non-saturating generator loss (Goodfellow et al. 2014): mean(softplus(-fake)).

    Equal to -mean(log sigmoid(fake)); it gives strong gradients when D rejects the samples,
    unlike minimising mean(log(1 - sigmoid(fake))).
    """
    return jnp.mean(jax.nn.softplus(-_f32(fake_logits)))


def hinge_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Hinge discriminator loss (Lim & Ye 2017; Miyato et al. 2018, SN-GAN).

    mean(relu(1 - real)) + mean(relu(1 + fake)).
    """
    return jnp.mean(jax.nn.relu(1.0 - _f32(real_logits))) + jnp.mean(
        jax.nn.relu(1.0 + _f32(fake_logits))
    )


def wgan_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Wasserstein critic loss (Arjovsky et al. 2017): mean(fake) - mean(real).

    Needs a Lipschitz constraint on the critic, e.g. ``gradient_penalty`` (WGAN-GP).
    """
    return jnp.mean(_f32(fake_logits)) - jnp.mean(_f32(real_logits))


def negated_mean_generator_loss(fake_logits: jax.Array) -> jax.Array:
    """Generator loss shared by hinge GAN and WGAN: -mean(fake)."""
    return -jnp.mean(_f32(fake_logits))


GAN_LOSSES: dict[str, tuple[Callable[..., jax.Array], Callable[..., jax.Array]]] = {
    "nonsaturating": (nonsaturating_discriminator_loss, nonsaturating_generator_loss),
    "hinge": (hinge_discriminator_loss, negated_mean_generator_loss),
    "wgan": (wgan_discriminator_loss, negated_mean_generator_loss),
}


def _gan_loss_pair(kind: str) -> tuple[Callable[..., jax.Array], Callable[..., jax.Array]]:
    if kind not in GAN_LOSSES:
        raise ValueError(f"Unknown GAN loss {kind!r}; valid kinds: {sorted(GAN_LOSSES)}")
    return GAN_LOSSES[kind]


def discriminator_loss(kind: str, real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Discriminator (critic) loss of the GAN objective ``kind`` (a key of ``GAN_LOSSES``)."""
    return _gan_loss_pair(kind)[0](real_logits, fake_logits)


def generator_loss(kind: str, fake_logits: jax.Array) -> jax.Array:
    """Generator loss of the GAN objective ``kind`` (a key of ``GAN_LOSSES``)."""
    return _gan_loss_pair(kind)[1](fake_logits)


def gradient_penalty(
    critic_fn: Callable[[jax.Array], jax.Array],
    real: jax.Array,
    fake: jax.Array,
    key: jax.Array,
) -> jax.Array:
    """WGAN-GP gradient penalty (Gulrajani et al. 2017), without the weight lambda.

    x_hat = eps * real + (1 - eps) * fake with eps ~ U[0, 1] drawn per sample; the penalty is
    mean_i (||grad_x critic(x_hat)_i||_2 - 1)^2. The caller multiplies it by lambda (10 in the
    paper).

    ``critic_fn`` maps (B, ...) to (B,). The per-sample gradients are taken as the gradient of
    sum_i critic(x_hat)_i, which equals the stack of per-sample gradients only if each output
    depends on its own input alone: the critic must not mix samples (no BatchNorm in train mode;
    use layer norm or none). A tiny constant inside the square root keeps the penalty
    differentiable where a gradient is exactly zero.
    """
    real = _f32(real)
    fake = _f32(fake)
    eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), jnp.float32)
    x_hat = eps * real + (1.0 - eps) * fake
    grads = jax.grad(lambda x: jnp.sum(_f32(critic_fn(x))))(x_hat)
    norms = jnp.sqrt(_sum_per_example(jnp.square(grads)) + 1e-12)
    return jnp.mean(jnp.square(norms - 1.0))


def relativistic_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Relativistic average discriminator loss (Jolicoeur-Martineau 2018; ESRGAN).

    0.5 * [BCE(real - mean(fake), 1) + BCE(fake - mean(real), 0)]
    = 0.5 * [mean(softplus(-(real - mean(fake)))) + mean(softplus(fake - mean(real)))].
    Each term is averaged, and their mean (weights 0.5) taken, as in ESRGAN's released training
    code; the paper writes their sum, twice this. Means run over every element, so per-pixel
    logit maps work too. Gradients flow through both means (no stop-gradient).
    """
    real, fake = _f32(real_logits), _f32(fake_logits)
    real_rel = real - jnp.mean(fake)
    fake_rel = fake - jnp.mean(real)
    return 0.5 * (jnp.mean(jax.nn.softplus(-real_rel)) + jnp.mean(jax.nn.softplus(fake_rel)))


def relativistic_generator_loss(
    real_logits: jax.Array, fake_logits: jax.Array | None = None
) -> jax.Array:
    """Relativistic average generator loss (ESRGAN): the discriminator loss with labels swapped.

    0.5 * [BCE(real - mean(fake), 0) + BCE(fake - mean(real), 1)], weights 0.5 as in
    ``relativistic_discriminator_loss``. It needs the discriminator's logits on real images:
    reach it through ``generator_loss_with_real``; ``generator_loss`` (fake logits only) gets a
    ValueError saying so.
    """
    if fake_logits is None:
        raise ValueError(
            "the relativistic generator loss needs the discriminator's logits on real images "
            "too: call generator_loss_with_real(kind, real_logits, fake_logits)"
        )
    real, fake = _f32(real_logits), _f32(fake_logits)
    real_rel = real - jnp.mean(fake)
    fake_rel = fake - jnp.mean(real)
    return 0.5 * (jnp.mean(jax.nn.softplus(real_rel)) + jnp.mean(jax.nn.softplus(-fake_rel)))


GAN_LOSSES["relativistic"] = (relativistic_discriminator_loss, relativistic_generator_loss)


GENERATOR_LOSSES_WITH_REAL: frozenset[str] = frozenset({"relativistic"})


def generator_loss_with_real(
    kind: str, real_logits: jax.Array, fake_logits: jax.Array
) -> jax.Array:
    """Generator loss of any GAN objective ``kind``, given D's logits on real and fake images.

    Kinds in ``GENERATOR_LOSSES_WITH_REAL`` use both; the others ignore ``real_logits`` and
    equal ``generator_loss(kind, fake_logits)``. The real logits depend on no generator
    parameter, so the caller may compute them without gradient.
    """
    g_loss = _gan_loss_pair(kind)[1]
    if kind in GENERATOR_LOSSES_WITH_REAL:
        return g_loss(real_logits, fake_logits)
    return g_loss(fake_logits)
