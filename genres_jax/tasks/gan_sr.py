"""GAN super-resolution (SRGAN, ESRGAN, Real-ESRGAN): pixel + perceptual + adversarial losses.

With ``sr = G(lr)`` and the weights of ``config.loss``, one step minimises

    L_G = pixel_weight * pixel(sr, hr) + perceptual_weight * perceptual(sr, hr)
          + adversarial_weight * adv_G(D(hr), D(sr))
    L_D = adv_D(D(hr), D(stop_gradient(sr)))

``pixel`` is L1 (or Charbonnier), ``perceptual`` the VGG19 feature distance of
`genres_jax.perceptual` on named layers (``conv5_4`` is ESRGAN's pre-activation choice), and
adv_G / adv_D a `genres_jax.losses` objective: "vanilla" (non-saturating), "relativistic"
(relativistic average, ESRGAN) or "hinge". Both losses are evaluated at the step's current
(G, D) and both networks are updated from them, as ESRGAN's training code does (a generator
step with D frozen, then a discriminator step on the same, detached, output); here one
discriminator pass in training mode (real batch, then fake batch) gives the logits of both. A
term with weight 0 is not computed (no discriminator at all without the adversarial term, no
VGG without the perceptual one); the pixel loss is always reported.

Batches hold uint8 ``lr`` (N, p, p, 3) and ``hr`` (N, p*s, p*s, 3) crops mapped to [0, 1].
``degradation.kind`` "bicubic" trains on the pipeline's LR; "realesrgan" ignores it and makes
LR in the step with Real-ESRGAN's random degradations
(`genres_jax.ops.degradations.degrade`, keyed by ``fold_in(rng, step)``).

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
import optax

from genres_jax import ema, losses, optim, perceptual, precision
from genres_jax.ops import degradations
from genres_jax.tasks import base, sr
from genres_jax.tasks import gan_sr_config as parts

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


def _init(rng, batch, *, g: nn.Module, d: nn.Module | None, g_tx, d_tx, vgg_params) -> GanSrState:
    g_key, d_key = jax.random.split(rng)
    g_params = g.init(g_key, base.uint8_to_unit(batch["lr"]))["params"]
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
    )


def training_lr(
    state: GanSrState,
    batch: base.Batch,
    rng: jax.Array,
    *,
    degradation: degradations.DegradationConfig | None,
    scale: int,
) -> jax.Array:
    """The LR input of this step in [0, 1]: the batch's, or HR degraded on the device."""
    if degradation is None:
        return base.uint8_to_unit(batch["lr"])
    key = jax.random.fold_in(rng, state.step)
    return degradations.degrade(key, base.uint8_to_unit(batch["hr"]), degradation, scale)


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
) -> tuple[GanSrState, base.Metrics]:
    hr = base.uint8_to_unit(batch["hr"])
    lr = training_lr(state, batch, rng, degradation=degradation, scale=scale)
    # The gradient of L_G is pulled back through G once, from dL_G/d(sr) of every term.
    sr_images, g_vjp = jax.vjp(lambda p: sr.predict(p, lr, model=g), state.g_params)

    def content_loss(x):
        terms = {"pixel_loss": loss.pixel(x, hr)}
        total = loss.pixel_weight * terms["pixel_loss"]
        if loss.perceptual_weight > 0:
            terms["perceptual_loss"] = perceptual.perceptual_loss(
                state.vgg_params,
                x,
                hr,
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
            real_logits, stats = base.apply_model(d, params, state.d_stats, hr, train=True)
            fake_logits, stats = base.apply_model(d, params, stats, fake, train=True)
            return (real_logits, fake_logits), stats

        (real_logits, fake_logits), d_vjp, d_stats = jax.vjp(
            d_forward, state.d_params, sr_images, has_aux=True
        )
        d_loss, logit_grads = jax.value_and_grad(
            functools.partial(losses.discriminator_loss, loss.adversarial), argnums=(0, 1)
        )(real_logits, fake_logits)
        d_grads = d_vjp(logit_grads)[0]
        # The real logits depend on no generator parameter: constants for L_G.
        g_adv, fake_grad = jax.value_and_grad(
            lambda f: losses.generator_loss_with_real(loss.adversarial, real_logits, f)
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

    # EMA decay warm-up as in tasks.sr: early EMA weights follow training.
    step_f = state.step.astype(jnp.float32)
    decay = jnp.minimum(ema_decay, (1.0 + step_f) / (10.0 + step_f))
    new_state = state.replace(
        step=state.step + 1,
        g_params=g_params,
        g_opt_state=g_opt_state,
        ema_params=ema.ema_update(state.ema_params, g_params, decay),
        d_params=d_params,
        d_stats=d_stats,
        d_opt_state=d_opt_state,
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
    return base.Task(
        init=functools.partial(_init, g=g, d=d, g_tx=g_tx, d_tx=d_tx, vgg_params=vgg_params),
        train_step=functools.partial(
            _train_step,
            g=g,
            d=d,
            g_tx=g_tx,
            d_tx=d_tx,
            loss=parts.loss_settings(config),
            ema_decay=float(config.ema_decay),
            degradation=parts.degradation(config),
            scale=int(config.scale),
            compute_dtype=precision.compute_dtype(config),
        ),
        predict=lambda state, lr: sr.predict(state.ema_params, lr, model=g),
        inference_params=lambda state: state.ema_params,
        receptive_radius=int(g.receptive_radius),
        # Separate copies: the train step donates the state, and one buffer cannot be donated twice.
        with_params=lambda state, params: state.replace(
            g_params=params, ema_params=jax.tree.map(jnp.array, params)
        ),
    )
