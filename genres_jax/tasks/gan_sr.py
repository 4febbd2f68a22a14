"""GAN super-resolution (SRGAN, ESRGAN, Real-ESRGAN): pixel + perceptual + adversarial losses.

With ``sr = G(lr)`` and the weights of ``config.loss``, one step minimises

    L_G = pixel_weight * pixel(sr, hr) + perceptual_weight * perceptual(sr, hr)
          + adversarial_weight * adv_G(D(hr), D(sr))
    L_D = adv_D(D(hr), D(stop_gradient(sr)))

``pixel`` is L1 (or Charbonnier), ``perceptual`` the VGG19 feature distance of
`genres_jax.losses.perceptual` on named layers (``conv5_4`` is ESRGAN's pre-activation choice), and
adv_G / adv_D a `genres_jax.losses` objective: "vanilla" (non-saturating), "relativistic"
(relativistic average, ESRGAN) or "hinge". Both losses are evaluated at the step's current
(G, D) and both networks are updated from them, as ESRGAN's training code does (a generator
step with D frozen, then a discriminator step on the same, detached, output); here one
discriminator pass in training mode (real batch, then fake batch) gives the logits of both. A
term with weight 0 is not computed (no discriminator at all without the adversarial term, no
VGG without the perceptual one); the pixel loss is always reported.

Batches hold uint8 ``hr`` (N, p*s, p*s, 3) crops mapped to [0, 1], and with
``degradation.kind`` "bicubic" the pipeline's ``lr`` (N, p, p, 3) crops to train on. With
"realesrgan" the pipeline ships HR only and the step makes LR with Real-ESRGAN's random
degradations (`genres_jax.ops.degradations.degrade`, keyed by ``fold_in(rng, step)``), from
the unsharp-masked HR when ``sharpen.degradation_input`` is set. ``degradation.pool_size`` > 0
mixes pairs across steps through `genres_jax.tasks.pair_pool`; ``sharpen.*_target`` replace
HR by its unsharp mask (`genres_jax.ops.sharpen`) as the target of that loss term, as
Real-ESRGAN does for the pixel and perceptual losses.

The generator's EMA weights are what `predict` (validation PSNR/SSIM and panels, ``evaluate``,
``upscale``) uses and what ``best/`` keeps. Two-stage training as in ESRGAN: a PSNR-oriented
run first (task ``sr``, or this task with the perceptual and adversarial weights 0), then this
one with ``init_from`` naming its workdir (generator and EMA start from its best weights).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genres_jax.losses import adversarial, perceptual
from genres_jax.ops import degradations, sharpen
from genres_jax.tasks import base, pair_pool, sr
from genres_jax.tasks import gan_sr_parts as parts
from genres_jax.train import ema, optim, precision

# What its workdirs support beyond training (`genres_jax.tasks`).
CAPABILITIES = frozenset({"upscale"})

validate = parts.validate


class GanSrState(flax.struct.PyTreeNode):
    """Everything a GAN SR run checkpoints, as one pytree.

    ``d_*`` are empty without an adversarial term; ``d_stats`` holds the discriminator's batch
    norm statistics or spectral-norm vectors. ``vgg_params`` are the frozen VGG19 weights of the
    perceptual loss (never updated; carried here rather than closed over so the compiled step
    takes them as an argument instead of embedding them), {} without that loss.
    """

    step: jax.Array
    g_params: Any
    g_opt_state: Any
    ema_params: Any
    d_params: Any
    d_stats: Any
    d_opt_state: Any
    vgg_params: Any
    pool: Any = flax.struct.field(default_factory=dict)  # pair_pool's arrays, {} without one.


def _lr_shape(batch: base.Batch, scale: int) -> tuple[int, ...]:
    n, h, w, c = jnp.shape(batch["hr"])
    return (n, h // scale, w // scale, c)


def _init(
    rng, batch, *, g: nn.Module, d: nn.Module | None, g_tx, d_tx, vgg_params, scale, pool_size
) -> GanSrState:
    g_key, d_key = jax.random.split(rng)
    lr_shape = _lr_shape(batch, scale)
    g_params = g.init(g_key, jnp.zeros(lr_shape, jnp.float32))["params"]
    d_params = d_stats = d_opt_state = {}
    if d is not None:
        d_params, d_stats = base.init_model(d, d_key, base.uint8_to_unit(batch["hr"]))
        d_opt_state = d_tx.init(d_params)
    return GanSrState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_params,
        g_opt_state=g_tx.init(g_params),
        ema_params=g_params,
        d_params=d_params,
        d_stats=d_stats,
        d_opt_state=d_opt_state,
        vgg_params=vgg_params,
        pool=pair_pool.empty(pool_size, lr_shape[1:], batch["hr"].shape[1:]) if pool_size else {},
    )


def _sharpened(images: jax.Array, settings: parts.SharpenSettings) -> jax.Array:
    return sharpen.unsharp_mask(
        images, weight=settings.weight, radius=settings.radius, threshold=settings.threshold
    )


def training_lr(
    state: GanSrState,
    batch: base.Batch,
    rng: jax.Array,
    *,
    degradation: degradations.DegradationConfig | None,
    scale: int,
    sharpen_settings: parts.SharpenSettings | None = None,
) -> jax.Array:
    """The LR input of this step in [0, 1]: the batch's, or HR degraded on the device."""
    if degradation is None:
        return base.uint8_to_unit(batch["lr"])
    key = jax.random.fold_in(rng, state.step)
    hr = base.uint8_to_unit(batch["hr"])
    if sharpen_settings is not None and sharpen_settings.degradation_input:
        hr = _sharpened(hr, sharpen_settings)
    return degradations.degrade(key, hr, degradation, scale)


def _training_pair(state, batch, rng, *, degradation, scale, sharpen_settings):
    """(new pool, LR, HR) of this step in [0, 1]: degraded, then exchanged with the pool."""
    lr = training_lr(
        state, batch, rng, degradation=degradation, scale=scale, sharpen_settings=sharpen_settings
    )
    if not state.pool:
        return state.pool, lr, base.uint8_to_unit(batch["hr"])
    # LR is on 8-bit levels (bicubic pipeline or degrade): uint8 keeps it exactly.
    lr_u8 = jnp.round(lr * 255.0).astype(jnp.uint8)
    key = jax.random.fold_in(jax.random.fold_in(rng, state.step), 1)
    pool, lr_u8, hr_u8 = pair_pool.exchange(state.pool, lr_u8, batch["hr"], key)
    return pool, base.uint8_to_unit(lr_u8), base.uint8_to_unit(hr_u8)


def _train_step(
    state: GanSrState,
    batch: base.Batch,
    rng: jax.Array,
    *,
    g: nn.Module,
    d: nn.Module | None,
    g_tx: optax.GradientTransformation,
    d_tx: optax.GradientTransformation | None,
    loss: parts.LossSettings,
    ema_decay: float,
    degradation: degradations.DegradationConfig | None,
    scale: int,
    compute_dtype: jnp.dtype,
    sharpen_settings: parts.SharpenSettings,
) -> tuple[GanSrState, base.Metrics]:
    pool, lr, hr = _training_pair(
        state,
        batch,
        rng,
        degradation=degradation,
        scale=scale,
        sharpen_settings=sharpen_settings,
    )
    sharp = _sharpened(hr, sharpen_settings) if sharpen_settings.any_target else hr
    pixel_hr = sharp if sharpen_settings.pixel_target else hr
    perceptual_hr = sharp if sharpen_settings.perceptual_target else hr
    real_hr = sharp if sharpen_settings.adversarial_target else hr
    # The gradient of L_G is pulled back through G once, from dL_G/d(sr) of every term.
    sr_images, g_vjp = jax.vjp(lambda p: sr.predict(p, lr, model=g), state.g_params)

    def content_loss(x):
        terms = {"pixel_loss": loss.pixel(x, pixel_hr)}
        total = loss.pixel_weight * terms["pixel_loss"]
        if loss.perceptual_weight > 0:
            terms["perceptual_loss"] = perceptual.perceptual_loss(
                state.vgg_params,
                x,
                perceptual_hr,
                layer_weights=dict(loss.perceptual_layers),
                distance=loss.perceptual_distance,
                compute_dtype=compute_dtype,
            )
            total = total + loss.perceptual_weight * terms["perceptual_loss"]
        return total, terms

    (g_loss, metrics), sr_cotangent = jax.value_and_grad(content_loss, has_aux=True)(sr_images)
    d_params, d_stats, d_opt_state = state.d_params, state.d_stats, state.d_opt_state
    if d is not None:
        # One discriminator pass (training mode: real batch, then fake batch) gives the logits
        # of both losses; its pullback serves D's gradient and the adversarial term's dL/d(sr).
        def d_forward(params, fake):
            real_logits, stats = base.apply_model(d, params, state.d_stats, real_hr, train=True)
            fake_logits, stats = base.apply_model(d, params, stats, fake, train=True)
            return (real_logits, fake_logits), stats

        (real_logits, fake_logits), d_vjp, d_stats = jax.vjp(
            d_forward, state.d_params, sr_images, has_aux=True
        )
        d_loss, logit_grads = jax.value_and_grad(
            functools.partial(adversarial.discriminator_loss, loss.adversarial), argnums=(0, 1)
        )(real_logits, fake_logits)
        d_grads = d_vjp(logit_grads)[0]
        # The real logits depend on no generator parameter: constants for L_G.
        g_adv, fake_grad = jax.value_and_grad(
            lambda f: adversarial.generator_loss_with_real(loss.adversarial, real_logits, f)
        )(fake_logits)
        adv_cotangent = d_vjp((jnp.zeros_like(real_logits), fake_grad))[1]
        sr_cotangent = sr_cotangent + loss.adversarial_weight * adv_cotangent
        g_loss = g_loss + loss.adversarial_weight * g_adv
        d_updates, d_opt_state = d_tx.update(d_grads, state.d_opt_state, state.d_params)
        d_params = optax.apply_updates(state.d_params, d_updates)
        metrics.update(
            g_adv_loss=g_adv,
            d_loss=d_loss,
            d_real_logit=jnp.mean(real_logits),
            d_fake_logit=jnp.mean(fake_logits),
            d_grad_norm=optax.global_norm(d_grads),
        )

    (g_grads,) = g_vjp(sr_cotangent)
    g_updates, g_opt_state = g_tx.update(g_grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, g_updates)
    metrics.update(g_loss=g_loss, g_grad_norm=optax.global_norm(g_grads))

    decay = ema.warmed_up_decay(state.step, ema_decay)
    new_state = state.replace(
        step=state.step + 1,
        g_params=g_params,
        g_opt_state=g_opt_state,
        ema_params=ema.ema_update(state.ema_params, g_params, decay),
        d_params=d_params,
        d_stats=d_stats,
        d_opt_state=d_opt_state,
        pool=pool,
    )
    return new_state, metrics


def make(config: ml_collections.ConfigDict, image_shape) -> base.Task:
    """The GAN SR task of ``config``; the networks are fully convolutional (shape unused)."""
    del image_shape
    validate(config)
    g = parts.build_generator(config)
    d = parts.build_discriminator(config)
    g_tx = optim.make_optimizer(config.g_optimizer, config.total_steps)
    d_tx = optim.make_optimizer(config.d_optimizer, config.total_steps) if d is not None else None
    vgg_params = parts.perceptual_params(config)
    degradation = parts.degradation(config)
    scale = int(config.scale)
    sharpen_settings = parts.sharpen_settings(config)
    validation_lr = None
    if parts.validation_lr(config) == "degraded":
        validation_lr = functools.partial(
            degraded_lr,
            degradation=degradation,
            scale=scale,
            seed=int(config.degradation.get("validation_seed", 0)),
        )
    return base.Task(
        init=functools.partial(
            _init,
            g=g,
            d=d,
            g_tx=g_tx,
            d_tx=d_tx,
            vgg_params=vgg_params,
            scale=scale,
            pool_size=parts.pool_size(config),
        ),
        train_step=functools.partial(
            _train_step,
            g=g,
            d=d,
            g_tx=g_tx,
            d_tx=d_tx,
            loss=parts.loss_settings(config),
            ema_decay=float(config.ema_decay),
            degradation=degradation,
            scale=scale,
            compute_dtype=precision.compute_dtype(config),
            sharpen_settings=sharpen_settings,
        ),
        predict=lambda state, lr: sr.predict(state.ema_params, lr, model=g),
        inference_params=lambda state: state.ema_params,
        receptive_radius=int(g.receptive_radius),
        # Separate copies: the train step donates the state, and one buffer cannot be donated twice.
        with_params=lambda state, params: state.replace(
            g_params=params, ema_params=jax.tree.map(jnp.array, params)
        ),
        validation_lr=validation_lr,
        train_examples=functools.partial(
            _train_examples,
            g=g,
            degradation=degradation,
            scale=scale,
            sharpen_settings=sharpen_settings,
        ),
    )


def degraded_lr(hr: np.ndarray, index: int, *, degradation, scale: int, seed: int) -> np.ndarray:
    """The index-th validation image degraded as in training, by a key fixed for that image.

    Plain HR is degraded (not its unsharp mask): the model should restore the real scene.
    """
    key = jax.random.fold_in(jax.random.key(seed), index)
    lr = degradations.degrade(key, base.uint8_to_unit(jnp.asarray(hr)[None]), degradation, scale)
    return np.asarray(jnp.round(lr[0] * 255.0), np.uint8)


# Training pairs shown per grid.
_EXAMPLES = 4


def _train_examples(state, batch, rng, *, g, degradation, scale, sharpen_settings):
    """LR (nearest-upscaled) | EMA model output | HR target panels of a training batch.

    The LR is made as the train step makes it (degraded on the device with this step's key),
    so the grid shows what the model is being trained on.
    """
    batch = jax.tree.map(lambda x: x[:_EXAMPLES], dict(batch))
    lr = training_lr(
        state, batch, rng, degradation=degradation, scale=scale, sharpen_settings=sharpen_settings
    )
    out = jnp.clip(sr.predict(state.ema_params, lr, model=g), 0.0, 1.0)
    hr = base.uint8_to_unit(batch["hr"])
    if sharpen_settings.pixel_target:
        hr = _sharpened(hr, sharpen_settings)  # The target the pixel loss sees.
    nearest = jnp.repeat(jnp.repeat(lr, scale, axis=1), scale, axis=2)
    gap = jnp.ones((*hr.shape[:2], 2, hr.shape[3]), hr.dtype)
    return {"train_pairs": jnp.concatenate([nearest, gap, out, gap, hr], axis=2)}
