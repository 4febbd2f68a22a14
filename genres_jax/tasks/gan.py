"""GAN training: one discriminator update and (every ``n_critic`` steps) one generator update.

Losses come from `genres_jax.losses` (non-saturating, hinge, WGAN with gradient penalty). The
generator's EMA weights are what samples, grids and evaluation use. Data images are uint8 and
are mapped to [-1, 1], the range of the generator's tanh output.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from genres_jax.losses import adversarial
from genres_jax.models import gan as gan_models
from genres_jax.models import upconv
from genres_jax.tasks import base
from genres_jax.train import ema, optim, precision
from genres_jax.train.sharding import constrain_batch

# What its workdirs support beyond training (`genres_jax.tasks`).
CAPABILITIES = frozenset({"generate", "sample_quality"})


class GanState(flax.struct.PyTreeNode):
    """Everything a GAN run checkpoints, as one pytree."""

    step: jax.Array
    g_params: Any
    d_params: Any
    g_stats: Any
    d_stats: Any
    g_opt_state: Any
    d_opt_state: Any
    ema_params: Any


def _mlp_pair(cfg: ml_collections.ConfigDict, image_shape: tuple[int, int, int], dtype):
    g = gan_models.MLPGenerator(
        latent_dim=cfg.latent_dim, hidden=tuple(cfg.g_hidden), image_shape=image_shape, dtype=dtype
    )
    return g, gan_models.MLPDiscriminator(hidden=tuple(cfg.d_hidden), dtype=dtype)


def _dcgan_pair(cfg: ml_collections.ConfigDict, image_shape: tuple[int, int, int], dtype):
    h, w, c = image_shape
    if h != w:
        raise ValueError(f"DCGAN needs square images, got {h}x{w}")
    g = gan_models.DCGANGenerator(
        image_size=h,
        channels=c,
        features=cfg.features,
        latent_dim=cfg.latent_dim,
        dtype=dtype,
        conv_form=cfg.get("conv_form", "auto"),
    )
    d = gan_models.DCGANDiscriminator(features=cfg.features, norm=cfg.d_norm, dtype=dtype)
    return g, d


# Generator/discriminator architectures by ``config.model.name``.
GAN_MODELS = {"mlp": _mlp_pair, "dcgan": _dcgan_pair}


def validate(config: ml_collections.ConfigDict) -> None:
    """Config errors caught before any data is read or anything compiled."""
    base.lookup(GAN_MODELS, config.model.name, "GAN model")
    base.lookup(adversarial.GAN_LOSSES, config.gan.loss, "GAN loss")
    if config.gan.gp_weight < 0:
        raise ValueError("gan.gp_weight must be >= 0")
    if config.gan.gp_weight > 0 and config.model.name == "dcgan" and config.model.d_norm == "batch":
        raise ValueError(
            "a gradient penalty needs a critic that treats samples independently: set "
            "model.d_norm to 'layer' or 'none' (batch norm mixes the samples of a batch)"
        )
    if config.gan.n_critic < 1:
        raise ValueError("gan.n_critic must be >= 1")
    upconv.check_form(config.model.get("conv_form", "auto"))
    if not 0.0 <= config.gan.ema_decay < 1.0:
        raise ValueError("gan.ema_decay must be in [0, 1)")
    if g_fakes(config) not in G_FAKES:
        raise ValueError(
            f"gan.g_fakes must be one of {', '.join(G_FAKES)}, got {g_fakes(config)!r}"
        )
    optim.validate(config.g_optimizer, "g_optimizer")
    optim.validate(config.d_optimizer, "d_optimizer")


# What the generator update trains on: "fresh" (the default) = new latents and a second
# generator forward; "shared" = the fakes the discriminator just saw, one generator forward per
# step, as PyTorch's DCGAN loop and the benchmark reference do. "shared" matches the composed
# gradient on one process and 1 vs 8 devices, but with a BatchNorm discriminator a 2-process CPU
# run (gloo) drifted from the 1-process one by up to 7e-4 relative in the generator after one
# step ("fresh", d_norm="none" and the MLP GAN agree to 2e-6; a 1e-7 nudge of the
# discriminator moves that update by 1.5e-6 only): until that is understood it is opt-in.
G_FAKES = ("shared", "fresh")


def g_fakes(config: ml_collections.ConfigDict) -> str:
    return config.gan.get("g_fakes", "fresh")


def _to_signed(image: jax.Array) -> jax.Array:
    return base.uint8_to_unit(image) * 2.0 - 1.0


def _latents(key: jax.Array, n: int, dim: int) -> jax.Array:
    return constrain_batch(jax.random.normal(key, (n, dim), jnp.float32))


def _init(rng, batch, *, g: nn.Module, d: nn.Module, g_tx, d_tx, latent_dim: int) -> GanState:
    g_key, d_key = jax.random.split(rng)
    n = batch["image"].shape[0]
    g_params, g_stats = base.init_model(g, g_key, jnp.zeros((n, latent_dim), jnp.float32))
    d_params, d_stats = base.init_model(d, d_key, _to_signed(batch["image"]))
    return GanState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_params,
        d_params=d_params,
        g_stats=g_stats,
        d_stats=d_stats,
        g_opt_state=g_tx.init(g_params),
        d_opt_state=d_tx.init(d_params),
        ema_params=g_params,
    )


def _train_step(
    state: GanState,
    batch: base.Batch,
    rng: jax.Array,
    *,
    g: nn.Module,
    d: nn.Module,
    g_tx: optax.GradientTransformation,
    d_tx: optax.GradientTransformation,
    loss: str,
    gp_weight: float,
    n_critic: int,
    ema_decay: float,
    latent_dim: int,
    shared_fakes: bool,
) -> tuple[GanState, base.Metrics]:
    rng = jax.random.fold_in(rng, state.step)
    z_d_key, z_g_key, gp_key = jax.random.split(rng, 3)
    real = _to_signed(batch["image"])
    n = real.shape[0]

    # Discriminator update; the generator's BatchNorm statistics move with its forward pass,
    # as in the usual PyTorch loop. With shared fakes the forward is kept differentiable (its
    # VJP) for the generator update below.
    def g_forward(g_params):
        return base.apply_model(
            g, g_params, state.g_stats, _latents(z_d_key, n, latent_dim), train=True
        )

    if shared_fakes:
        fake, g_vjp, g_stats = jax.vjp(g_forward, state.g_params, has_aux=True)
    else:
        fake, g_stats = g_forward(state.g_params)
    fake = jax.lax.stop_gradient(fake)

    def d_loss_fn(d_params):
        real_logits, stats = base.apply_model(d, d_params, state.d_stats, real, train=True)
        fake_logits, stats = base.apply_model(d, d_params, stats, fake, train=True)
        d_loss = adversarial.discriminator_loss(loss, real_logits, fake_logits)
        gp = jnp.zeros((), jnp.float32)
        if gp_weight > 0:
            critic = lambda x: d.apply({"params": d_params}, x, train=True)
            gp = adversarial.gradient_penalty(critic, real, fake, gp_key)
        aux = (stats, jnp.mean(real_logits), jnp.mean(fake_logits), d_loss, gp)
        return d_loss + gp_weight * gp, aux

    d_grads, (d_stats, real_mean, fake_mean, d_loss, gp) = jax.grad(d_loss_fn, has_aux=True)(
        state.d_params
    )
    d_updates, d_opt_state = d_tx.update(d_grads, state.d_opt_state, state.d_params)
    d_params = optax.apply_updates(state.d_params, d_updates)

    # Generator update against the freshly updated discriminator. The discriminator's own
    # BatchNorm statistics are not changed by this pass.
    def g_loss_of_fakes(fakes):
        fake_logits, _ = base.apply_model(d, d_params, d_stats, fakes, train=True)
        return adversarial.generator_loss(loss, fake_logits)

    def g_loss_fn(g_params):
        fakes, stats = base.apply_model(
            g, g_params, g_stats, _latents(z_g_key, n, latent_dim), train=True
        )
        return g_loss_of_fakes(fakes), stats

    decay = ema.warmed_up_decay(state.step, ema_decay)

    def g_update(_):
        if shared_fakes:
            g_loss, fake_grads = jax.value_and_grad(g_loss_of_fakes)(fake)
            (g_grads,), stats = g_vjp(fake_grads), g_stats
        else:
            (g_loss, stats), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.g_params)
        updates, opt_state = g_tx.update(g_grads, state.g_opt_state, state.g_params)
        params = optax.apply_updates(state.g_params, updates)
        return params, stats, opt_state, ema.ema_update(state.ema_params, params, decay), g_loss

    def g_skip(_):
        nan = jnp.full((), jnp.nan, jnp.float32)
        return state.g_params, g_stats, state.g_opt_state, state.ema_params, nan

    if n_critic == 1:
        g_params, g_stats, g_opt_state, ema_params, g_loss = g_update(None)
    else:
        do_g = (state.step % n_critic) == n_critic - 1
        g_params, g_stats, g_opt_state, ema_params, g_loss = jax.lax.cond(
            do_g, g_update, g_skip, None
        )

    new_state = state.replace(
        step=state.step + 1,
        g_params=g_params,
        d_params=d_params,
        g_stats=g_stats,
        d_stats=d_stats,
        g_opt_state=g_opt_state,
        d_opt_state=d_opt_state,
        ema_params=ema_params,
    )
    metrics = {"d_loss": d_loss, "d_real_logit": real_mean, "d_fake_logit": fake_mean}
    if n_critic == 1:
        metrics["g_loss"] = g_loss
    if gp_weight > 0:
        metrics["gradient_penalty"] = gp
    return new_state, metrics


def generate(state: GanState, z: jax.Array, *, g: nn.Module) -> jax.Array:
    """Images in [0, 1] from the EMA generator (BatchNorm in inference mode)."""
    images, _ = base.apply_model(g, state.ema_params, state.g_stats, z, train=False)
    return (images.astype(jnp.float32) + 1.0) / 2.0


def _eval_step(state: GanState, batch, rng, *, g, d, latent_dim: int) -> base.Metrics:
    """How well the discriminator tells held-out real images from EMA-generator samples."""
    mask = batch["mask"]
    real = _to_signed(batch["image"])
    z = _latents(jax.random.fold_in(rng, 1), real.shape[0], latent_dim)
    fake = generate(state, z, g=g) * 2.0 - 1.0
    real_logits, _ = base.apply_model(d, state.d_params, state.d_stats, real, train=False)
    fake_logits, _ = base.apply_model(d, state.d_params, state.d_stats, fake, train=False)
    correct = (real_logits > 0).astype(jnp.float32) + (fake_logits < 0).astype(jnp.float32)
    return {
        "d_accuracy": base.masked_sum(correct / 2.0, mask),
        "d_real_logit": base.masked_sum(real_logits, mask),
        "d_fake_logit": base.masked_sum(fake_logits, mask),
        "count": jnp.sum(mask),
    }


def _sample_images(state: GanState, rng, *, g, latent_dim: int, num: int):
    z = jax.random.normal(rng, (num, latent_dim), jnp.float32)
    return {"samples": generate(state, z, g=g)}


def make(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int]) -> base.Task:
    """The GAN task of ``config`` for images of ``image_shape`` (H, W, C)."""
    validate(config)
    dtype = precision.compute_dtype(config)
    g, d = GAN_MODELS[config.model.name](config.model, image_shape, dtype)
    g_tx = optim.make_optimizer(config.g_optimizer, config.total_steps)
    d_tx = optim.make_optimizer(config.d_optimizer, config.total_steps)
    latent_dim = config.model.latent_dim
    return base.Task(
        init=functools.partial(_init, g=g, d=d, g_tx=g_tx, d_tx=d_tx, latent_dim=latent_dim),
        train_step=functools.partial(
            _train_step,
            g=g,
            d=d,
            g_tx=g_tx,
            d_tx=d_tx,
            loss=config.gan.loss,
            gp_weight=float(config.gan.gp_weight),
            n_critic=int(config.gan.n_critic),
            ema_decay=float(config.gan.ema_decay),
            latent_dim=latent_dim,
            shared_fakes=g_fakes(config) == "shared",
        ),
        eval_step=functools.partial(_eval_step, g=g, d=d, latent_dim=latent_dim),
        sample_images=functools.partial(
            _sample_images, g=g, latent_dim=latent_dim, num=config.num_samples
        ),
    )
