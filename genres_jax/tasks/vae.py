"""VAE training: maximise the ELBO, report it on the test split in nats per image.

ELBO(x) = E_q(z|x)[log p(x|z)] - KL(q(z|x) || N(0, I)), one reparameterised sample per image
during training and evaluation, analytic KL. Pixels are in [0, 1]. ``likelihood``:
``bernoulli`` (decoder logits, the usual choice for [0, 1] pixels) or ``gaussian`` (mean
sigmoid(decoder output), fixed log standard deviation ``gaussian_log_scale``).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from genres_jax.losses import likelihood as likelihoods
from genres_jax.models import upconv
from genres_jax.models import vae as vae_models
from genres_jax.tasks import base
from genres_jax.train import optim, precision
from genres_jax.train.sharding import constrain_batch

# What its workdirs support beyond training (`genres_jax.tasks`).
CAPABILITIES = frozenset({"generate", "sample_quality", "likelihood"})


class VaeState(flax.struct.PyTreeNode):
    step: jax.Array
    params: Any
    opt_state: Any


def _mlp(cfg: ml_collections.ConfigDict, image_shape, dtype) -> nn.Module:
    return vae_models.MLPVAE(
        latent_dim=cfg.latent_dim, hidden=tuple(cfg.hidden), image_shape=image_shape, dtype=dtype
    )


def _conv(cfg: ml_collections.ConfigDict, image_shape, dtype) -> nn.Module:
    return vae_models.ConvVAE(
        latent_dim=cfg.latent_dim,
        features=tuple(cfg.features),
        image_shape=image_shape,
        dtype=dtype,
        conv_form=cfg.get("conv_form", "auto"),
    )


# Architectures by ``config.model.name``.
VAE_MODELS = {"mlp": _mlp, "conv": _conv}
LIKELIHOODS = ("bernoulli", "gaussian")


def validate(config: ml_collections.ConfigDict) -> None:
    base.lookup(VAE_MODELS, config.model.name, "VAE model")
    if config.vae.likelihood not in LIKELIHOODS:
        raise ValueError(
            f"unknown vae.likelihood {config.vae.likelihood!r}; valid: {', '.join(LIKELIHOODS)}"
        )
    if config.model.latent_dim < 1:
        raise ValueError("model.latent_dim must be >= 1")
    upconv.check_form(config.model.get("conv_form", "auto"))
    optim.validate(config.optimizer)


def _log_likelihood(decoded: jax.Array, x: jax.Array, likelihood: str, log_scale: float):
    decoded = decoded.astype(jnp.float32)
    if likelihood == "bernoulli":
        return likelihoods.bernoulli_log_likelihood(decoded, x)
    return likelihoods.gaussian_log_likelihood(jax.nn.sigmoid(decoded), x, log_scale)


def elbo_terms(params, x, key, *, model, likelihood: str, log_scale: float):
    """Per-image (elbo, log-likelihood term, kl), each in nats."""
    decoded, mean, logvar = model.apply({"params": params}, x, key)
    rec = _log_likelihood(decoded, x, likelihood, log_scale)
    kl = likelihoods.kl_standard_normal(mean.astype(jnp.float32), logvar.astype(jnp.float32))
    return rec - kl, rec, kl


def _init(rng, batch, *, model, tx) -> VaeState:
    init_key, sample_key = jax.random.split(rng)
    params = model.init(init_key, base.uint8_to_unit(batch["image"]), sample_key)["params"]
    return VaeState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def _train_step(state: VaeState, batch, rng, *, model, tx, likelihood, log_scale):
    key = jax.random.fold_in(rng, state.step)
    x = base.uint8_to_unit(batch["image"])

    def loss_fn(params):
        elbo, rec, kl = elbo_terms(
            params, x, key, model=model, likelihood=likelihood, log_scale=log_scale
        )
        return -jnp.mean(elbo), (jnp.mean(rec), jnp.mean(kl))

    (loss, (rec, kl)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, {"loss": loss, "elbo": -loss, "log_likelihood": rec, "kl": kl}


def _eval_step(state: VaeState, batch, rng, *, model, likelihood, log_scale):
    x = base.uint8_to_unit(batch["image"])
    mask = batch["mask"]
    elbo, rec, kl = elbo_terms(
        state.params, x, rng, model=model, likelihood=likelihood, log_scale=log_scale
    )
    dims = math.prod(x.shape[1:])
    return {
        "elbo": base.masked_sum(elbo, mask),
        "log_likelihood": base.masked_sum(rec, mask),
        "kl": base.masked_sum(kl, mask),
        # Negative ELBO per dimension in bits: an upper bound on the NLL in bits/dim.
        "bits_per_dim": base.masked_sum(-elbo / (dims * math.log(2.0)), mask),
        "count": jnp.sum(mask),
    }


def _sample_images(state: VaeState, rng, *, model, num: int, latent_dim: int, likelihood: str):
    z = constrain_batch(jax.random.normal(rng, (num, latent_dim), jnp.float32))
    decoded = model.apply({"params": state.params}, z, method=model.decode).astype(jnp.float32)
    # The mean of p(x|z) in both likelihoods is sigmoid(decoder output).
    return {"samples": jax.nn.sigmoid(decoded)}


def make(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int]) -> base.Task:
    validate(config)
    dtype = precision.compute_dtype(config)
    model = VAE_MODELS[config.model.name](config.model, image_shape, dtype)
    tx = optim.make_optimizer(config.optimizer, config.total_steps)
    common = {
        "model": model,
        "likelihood": config.vae.likelihood,
        "log_scale": float(config.vae.gaussian_log_scale),
    }
    return base.Task(
        init=functools.partial(_init, model=model, tx=tx),
        train_step=functools.partial(_train_step, tx=tx, **common),
        eval_step=functools.partial(_eval_step, **common),
        sample_images=functools.partial(
            _sample_images,
            model=model,
            num=config.num_samples,
            latent_dim=config.model.latent_dim,
            likelihood=config.vae.likelihood,
        ),
    )
