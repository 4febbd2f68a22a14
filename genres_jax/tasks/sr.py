"""Super-resolution training: pixel loss (L1 or Charbonnier) on LR/HR patch pairs, EMA weights.

Batches hold uint8 ``lr`` (N, p, p, 3) and ``hr`` (N, p*s, p*s, 3) crops; pixels are mapped to
[0, 1]. `predict` (LR in [0, 1] -> SR, unclipped) uses the EMA weights and is what validation,
``evaluate`` and ``upscale`` run, whole-image or tiled.
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

from genres_jax.evaluation import sr_protocol
from genres_jax.losses import pixel
from genres_jax.models import sr_registry
from genres_jax.tasks import base
from genres_jax.train import ema, optim, precision

# What its workdirs support beyond training (`genres_jax.tasks`).
CAPABILITIES = frozenset({"upscale"})


class SrState(flax.struct.PyTreeNode):
    step: jax.Array
    params: Any
    opt_state: Any
    ema_params: Any


PIXEL_LOSSES = {"l1": pixel.l1_loss, "charbonnier": pixel.charbonnier_loss}


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
    """The SR network of ``config`` (name, scale, field overrides, compute dtype)."""
    overrides = dict(config.model.get("overrides", {}))
    return sr_registry.get_sr_model(
        config.model.name, config.scale, compute_dtype=precision.compute_dtype(config), **overrides
    )


def inference_form(model: nn.Module, params: Any) -> tuple[nn.Module, Any]:
    """(model, params) that inference runs: re-parameterisable models (SPAN) are folded into
    their single-convolution form, which computes the same function faster."""
    if hasattr(model, "deployed") and hasattr(model, "reparameterize"):
        return model.deployed(), model.reparameterize(params)
    return model, params


def validate(config: ml_collections.ConfigDict) -> None:
    build_model(config)  # Unknown names, unsupported scales and bad fields raise here.
    base.lookup(PIXEL_LOSSES, config.loss.name, "pixel loss")
    if config.dataset.lr_patch_size < 1:
        raise ValueError("dataset.lr_patch_size must be >= 1")
    if not 0.0 <= config.ema_decay < 1.0:
        raise ValueError("ema_decay must be in [0, 1)")
    optim.validate(config.optimizer)
    sr_protocol.validate_settings(config)


def _init(rng, batch, *, model, tx) -> SrState:
    params = model.init(rng, base.uint8_to_unit(batch["lr"]))["params"]
    return SrState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), ema_params=params
    )


def _train_step(state: SrState, batch, rng, *, model, tx, pixel_loss, ema_decay):
    del rng  # Deterministic: all randomness is in the crops.
    lr = base.uint8_to_unit(batch["lr"])
    hr = base.uint8_to_unit(batch["hr"])

    def loss_fn(params):
        pred = model.apply({"params": params}, lr).astype(jnp.float32)
        return pixel_loss(pred, hr)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    decay = ema.warmed_up_decay(state.step, ema_decay)
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        ema_params=ema.ema_update(state.ema_params, params, decay),
    )
    return new_state, {"loss": loss, "grad_norm": optax.global_norm(grads)}


def predict(params: Any, lr: jax.Array, *, model: nn.Module) -> jax.Array:
    """SR images (float32, unclipped) from LR images in [0, 1] with the given weights."""
    return model.apply({"params": params}, lr).astype(jnp.float32)


def make(config: ml_collections.ConfigDict, image_shape) -> base.Task:
    del image_shape  # SR networks are fully convolutional.
    validate(config)
    model = build_model(config)
    tx = optim.make_optimizer(config.optimizer, config.total_steps)
    pixel_loss = PIXEL_LOSSES[config.loss.name]
    if config.loss.name == "charbonnier":
        pixel_loss = functools.partial(pixel_loss, eps=config.loss.charbonnier_eps)
    return base.Task(
        init=functools.partial(_init, model=model, tx=tx),
        train_step=functools.partial(
            _train_step,
            model=model,
            tx=tx,
            pixel_loss=pixel_loss,
            ema_decay=float(config.ema_decay),
        ),
        predict=lambda state, lr: predict(state.ema_params, lr, model=model),
        inference_params=lambda state: state.ema_params,
        receptive_radius=int(model.receptive_radius),
        # Separate copies: the train step donates the state, and one buffer cannot be donated twice.
        with_params=lambda state, params: state.replace(
            params=params, ema_params=jax.tree.map(jnp.array, params)
        ),
    )
