"""Perceptual (VGG feature) and style (Gram) losses for GAN super-resolution.

Images in [0, 1] are normalised with the ImageNet mean and standard deviation, run through the
frozen VGG19 trunk of ``genres_jax.models.vgg`` (weights from ``load_vgg19_params``), and
compared layer by layer:

    perceptual = sum_l w_l * D(phi_l(pred), phi_l(target))
    style      = sum_l w_l * D(G(phi_l(pred)), G(phi_l(target)))

with D the mean absolute ("l1", default) or mean squared ("l2") difference over all elements,
phi_l the layer's output and G the Gram matrix below. ESRGAN's choice is the conv5_4 output
*before* its ReLU (``{"conv5_4": 1.0}``, the default), which keeps more information than the
post-activation features SRGAN used (``relu5_4``). Gradients never reach the VGG weights.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from genres_jax.models.vgg import VGG19Features, check_layer_names

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# ESRGAN: conv5_4 before activation, weight 1.
ESRGAN_LAYER_WEIGHTS: dict[str, float] = {"conv5_4": 1.0}

DISTANCES = {
    "l1": lambda a, b: jnp.mean(jnp.abs(a - b)),
    "l2": lambda a, b: jnp.mean(jnp.square(a - b)),
}


def imagenet_normalize(x: jax.Array) -> jax.Array:
    """(x - mean) / std per RGB channel, x in [0, 1]: the input convention of torchvision's VGG."""
    x = jnp.asarray(x, jnp.float32)
    mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
    std = jnp.asarray(IMAGENET_STD, jnp.float32)
    return (x - mean) / std


def gram_matrix(features: jax.Array) -> jax.Array:
    """(B, H, W, C) -> (B, C, C): F^T F / (C * H * W) with F the (H*W, C) feature matrix."""
    b, h, w, c = features.shape
    f = jnp.asarray(features, jnp.float32).reshape(b, h * w, c)
    return jnp.einsum("bnc,bnd->bcd", f, f) / (c * h * w)


def validate_perceptual(layer_weights: Mapping[str, float], distance: str) -> None:
    """Raises a ValueError for an unknown layer or distance, or an empty layer list."""
    if not layer_weights:
        raise ValueError("layer_weights must name at least one VGG19 layer, e.g. {'conv5_4': 1}")
    check_layer_names(layer_weights)
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; valid: {', '.join(sorted(DISTANCES))}")


def perceptual_terms(
    vgg_params: Mapping[str, object],
    pred: jax.Array,
    target: jax.Array,
    *,
    layer_weights: Mapping[str, float] = ESRGAN_LAYER_WEIGHTS,
    distance: str = "l1",
    compute_dtype: jnp.dtype = jnp.float32,
) -> dict[str, jax.Array]:
    """``{"perceptual": ..., "style": ...}`` between RGB images ``pred`` and ``target`` in [0, 1].

    Both terms come from one VGG pass over the two batches stacked; see the module docstring
    for their formulas. ``target`` features carry no gradient.
    """
    validate_perceptual(layer_weights, distance)
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[-1] != 3:
        raise ValueError(
            f"pred and target must be RGB NHWC images of one shape, got {pred.shape} and "
            f"{target.shape}"
        )
    params = jax.lax.stop_gradient(vgg_params)
    layers = tuple(layer_weights)
    both = imagenet_normalize(jnp.concatenate([pred, target], axis=0))
    feats = VGG19Features(dtype=compute_dtype).apply({"params": params}, both, layers)
    dist = DISTANCES[distance]
    n = pred.shape[0]
    content = jnp.zeros((), jnp.float32)
    style = jnp.zeros((), jnp.float32)
    for name, weight in layer_weights.items():
        f = jnp.asarray(feats[name], jnp.float32)
        fp, ft = f[:n], jax.lax.stop_gradient(f[n:])
        content = content + weight * dist(fp, ft)
        style = style + weight * dist(gram_matrix(fp), gram_matrix(ft))
    return {"perceptual": content, "style": style}


def perceptual_loss(
    vgg_params: Mapping[str, object],
    pred: jax.Array,
    target: jax.Array,
    *,
    layer_weights: Mapping[str, float] = ESRGAN_LAYER_WEIGHTS,
    distance: str = "l1",
    style_weight: float = 0.0,
    compute_dtype: jnp.dtype = jnp.float32,
) -> jax.Array:
    """perceptual + style_weight * style (see :func:`perceptual_terms`); a float32 scalar."""
    terms = perceptual_terms(
        vgg_params,
        pred,
        target,
        layer_weights=layer_weights,
        distance=distance,
        compute_dtype=compute_dtype,
    )
    if style_weight == 0:
        return terms["perceptual"]
    return terms["perceptual"] + style_weight * terms["style"]
