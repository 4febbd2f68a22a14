"""What every training regime provides to the trainer, and small helpers they share.

A task is a bundle of pure functions built from a config. The trainer jits them once, with the
state replicated and the batch sharded over devices, and never looks inside the state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Task:
    """The pure functions of one training regime.

    init(rng, batch) -> state: a fresh state; ``batch`` only gives shapes and dtypes.
    train_step(state, batch, rng) -> (state, metrics): one optimisation step; per-step randomness
        is ``jax.random.fold_in(rng, state.step)``; metrics are scalar means over the batch.
    eval_step(state, batch, rng) -> sums: per-batch sums over rows with ``batch["mask"] == 1``,
        including ``count``; the trainer adds them over the split and divides by ``count``.
    sample_images(state, rng) -> {name: (N, H, W, C) images in [0, 1]} for grids.
    predict(state, images) -> images: inference on whole images (super-resolution), validated
        image by image instead of through ``eval_step``.
    inference_params(state) -> the parameters inference uses (EMA weights), kept as the best
        checkpoint.
    validation_lr(hr, index) -> the uint8 LR image validation upscales for the uint8 HR image
        ``hr`` (index-th of the split), when it is not the pipeline's bicubic LR.
    train_examples(state, batch, rng) -> {name: (N, H, W, C) images in [0, 1]}: what the model
        is trained on, from a training batch, for grids.
    """

    init: Callable[[jax.Array, Batch], Any]
    train_step: Callable[[Any, Batch, jax.Array], tuple[Any, Metrics]]
    eval_step: Callable[[Any, Batch, jax.Array], Metrics] | None = None
    sample_images: Callable[[Any, jax.Array], dict[str, jax.Array]] | None = None
    predict: Callable[[Any, jax.Array], jax.Array] | None = None
    inference_params: Callable[[Any], Any] | None = None
    receptive_radius: int = 0  # Input pixels that influence an output pixel, for tiling.
    with_params: Callable[[Any, Any], Any] | None = None  # (state, params) -> state.
    validation_lr: Callable[[np.ndarray, int], np.ndarray] | None = None
    train_examples: Callable[[Any, Batch, jax.Array], dict[str, jax.Array]] | None = None


def lookup(registry: Mapping[str, Any], name: str, what: str) -> Any:
    """``registry[name]``, or a ValueError that lists the valid names."""
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; valid: {', '.join(sorted(registry))}")
    return registry[name]


def apply_model(
    model: nn.Module,
    params: Any,
    stats: Any,
    x: jax.Array,
    *,
    train: bool,
    **kwargs: Any,
) -> tuple[jax.Array, Any]:
    """Applies a module that may carry BatchNorm statistics; returns (output, new stats)."""
    variables = {"params": params}
    if stats:
        variables["batch_stats"] = stats
    if train and stats:
        out, updates = model.apply(variables, x, train=True, mutable=["batch_stats"], **kwargs)
        return out, updates["batch_stats"]
    return model.apply(variables, x, train=train, **kwargs), stats


def init_model(model: nn.Module, rng: jax.Array, x: jax.Array, **kwargs: Any) -> tuple[Any, Any]:
    """(params, batch_stats) of a fresh module; stats is ``{}`` without BatchNorm."""
    variables = model.init(rng, x, train=False, **kwargs)
    return variables["params"], variables.get("batch_stats", {})


def merge_matching(target: Any, source: Any) -> tuple[Any, list[str]]:
    """``target`` with every leaf replaced by ``source``'s leaf at the same path and shape.

    Returns the merged tree and the paths taken from ``source`` (for fine-tuning a model from
    one whose head differs, e.g. x4 from x2 super-resolution weights).
    """
    flat_source = {
        jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(source)
    }
    taken = []

    def pick(path, leaf):
        key = jax.tree_util.keystr(path)
        value = flat_source.get(key)
        if value is not None and np.shape(value) == np.shape(leaf):
            taken.append(key)
            return jnp.asarray(value, dtype=leaf.dtype)
        return leaf

    return jax.tree_util.tree_map_with_path(pick, target), taken


def uint8_to_unit(image: jax.Array) -> jax.Array:
    """uint8 pixels to float32 in [0, 1]; batches travel as uint8 to keep transfers small."""
    return image.astype(jnp.float32) / 255.0


def masked_sum(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Sum of per-example ``values`` over rows where ``mask`` is 1."""
    return jnp.sum(values * mask.astype(values.dtype))


def image_shape_of(batch: Batch) -> tuple[int, int, int]:
    return tuple(int(d) for d in np.shape(batch["image"])[1:])
