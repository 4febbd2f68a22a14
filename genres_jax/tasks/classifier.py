"""Image classification: softmax cross-entropy on labelled images, test accuracy as evaluation.

The project trains its own feature extractor this way (``configs/classifier_fashion_mnist.py``):
its embedding (`genres_jax.models.classifier.ConvClassifier.embed`) is the feature space of the
generative metrics (`genres_jax.features`). Batches hold uint8 ``image`` and int ``label``;
pixels are mapped to [0, 1].
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

from genres_jax.models import classifier as classifier_models
from genres_jax.tasks import base
from genres_jax.train import optim, precision

# What its workdirs support beyond training (`genres_jax.tasks`).
CAPABILITIES = frozenset({"embed"})


class ClassifierState(flax.struct.PyTreeNode):
    step: jax.Array
    params: Any
    opt_state: Any


def _conv(cfg: ml_collections.ConfigDict, num_classes: int, dtype) -> nn.Module:
    return classifier_models.ConvClassifier(
        num_classes=num_classes,
        features=tuple(cfg.features),
        embed_dim=cfg.embed_dim,
        dropout=cfg.dropout,
        dtype=dtype,
    )


# Architectures by ``config.model.name``.
CLASSIFIER_MODELS = {"conv": _conv}


def build_model(config: ml_collections.ConfigDict) -> nn.Module:
    """The classifier of ``config`` (architecture, class count, compute dtype)."""
    make_model = base.lookup(CLASSIFIER_MODELS, config.model.name, "classifier model")
    return make_model(config.model, config.model.num_classes, precision.compute_dtype(config))


def validate(config: ml_collections.ConfigDict) -> None:
    base.lookup(CLASSIFIER_MODELS, config.model.name, "classifier model")
    if config.model.num_classes < 2:
        raise ValueError("model.num_classes must be >= 2")
    if not 0.0 <= config.model.dropout < 1.0:
        raise ValueError("model.dropout must be in [0, 1)")
    if config.model.embed_dim < 1 or not config.model.features:
        raise ValueError("model.embed_dim must be >= 1 and model.features non-empty")
    optim.validate(config.optimizer)


def _init(rng, batch, *, model, tx) -> ClassifierState:
    params = model.init(rng, base.uint8_to_unit(batch["image"]))["params"]
    return ClassifierState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example -log softmax(logits)[label]."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32))


def _train_step(state: ClassifierState, batch, rng, *, model, tx):
    key = jax.random.fold_in(rng, state.step)
    x = base.uint8_to_unit(batch["image"])
    labels = batch["label"]

    def loss_fn(params):
        logits = model.apply({"params": params}, x, train=True, rngs={"dropout": key})
        return jnp.mean(_cross_entropy(logits, labels)), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, {"loss": loss, "accuracy": accuracy}


def _eval_step(state: ClassifierState, batch, rng, *, model):
    del rng  # Dropout is off at evaluation.
    logits = model.apply({"params": state.params}, base.uint8_to_unit(batch["image"]))
    labels, mask = batch["label"], batch["mask"]
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return {
        "loss": base.masked_sum(_cross_entropy(logits, labels), mask),
        "accuracy": base.masked_sum(correct, mask),
        "count": jnp.sum(mask),
    }


def make(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int]) -> base.Task:
    """The classification task of ``config``; the model is fully convolutional up to its
    embedding, so ``image_shape`` only fixes the embedding's input size at init."""
    del image_shape
    validate(config)
    model = build_model(config)
    tx = optim.make_optimizer(config.optimizer, config.total_steps)
    return base.Task(
        init=functools.partial(_init, model=model, tx=tx),
        train_step=functools.partial(_train_step, model=model, tx=tx),
        eval_step=functools.partial(_eval_step, model=model),
        inference_params=lambda state: state.params,
        with_params=lambda state, params: state.replace(params=params),
    )
