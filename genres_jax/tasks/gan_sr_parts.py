"""What a ``gan_sr`` config asks for, checked and built: networks, loss terms, degradation.

Everything here runs before compilation, so a config that cannot work is a ValueError (a
`ConfigError` for ``train.py``) naming the key and the valid choices, never a failure inside a
jitted step. `genres_jax.tasks.gan_sr` uses the parts built here.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from genres_jax.evaluation import sr_protocol
from genres_jax.losses import perceptual
from genres_jax.models import sr_discriminators, vgg
from genres_jax.ops import degradations
from genres_jax.tasks import base, pair_pool, sr
from genres_jax.train import optim, precision

# Discriminators by ``config.discriminator.name``.
DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {
    "vgg": sr_discriminators.VGGStyleDiscriminator,
    "unet": sr_discriminators.UNetDiscriminatorSN,
}

# ``config.loss.adversarial`` -> the objective's name in `genres_jax.losses.adversarial.GAN_LOSSES`.
# "vanilla" is the standard (non-saturating, binary cross-entropy) GAN, as ESRGAN's code calls
# it; "relativistic" is the relativistic average GAN of ESRGAN.
ADVERSARIAL_LOSSES: dict[str, str] = {
    "vanilla": "nonsaturating",
    "nonsaturating": "nonsaturating",
    "relativistic": "relativistic",
    "hinge": "hinge",
}

# ``config.degradation.kind``: "bicubic" takes the LR images the input pipeline makes (MATLAB
# bicubic, or a dataset's own LR); "realesrgan" makes them in the train step from the HR crops
# with `genres_jax.ops.degradations.degrade`.
DEGRADATIONS = ("bicubic", "realesrgan")

# ``config.degradation.validation``: which LR images validation upscales. "bicubic" is the
# pipeline's (MATLAB bicubic); "degraded" applies the training degradation to each validation
# HR image with a key fixed by ``degradation.validation_seed`` and the image's index, so every
# evaluation sees the same LR and the figures measure the blind task the model is trained for.
VALIDATION_LR = ("bicubic", "degraded")

# ``config.sharpen`` flags: the images that are unsharp-masked HR instead of HR.
SHARPEN_FLAGS = ("degradation_input", "pixel_target", "perceptual_target", "adversarial_target")


@dataclasses.dataclass(frozen=True)
class SharpenSettings:
    """Unsharp masking of HR (`genres_jax.ops.sharpen`) and where its output replaces HR.

    Real-ESRGAN degrades the sharpened HR and uses it as the target of the pixel and
    perceptual losses, the discriminator seeing plain HR.
    """

    weight: float = 0.5
    radius: int = 50
    threshold: float = 10.0
    degradation_input: bool = False
    pixel_target: bool = False
    perceptual_target: bool = False
    adversarial_target: bool = False

    @property
    def any_target(self) -> bool:
        return self.pixel_target or self.perceptual_target or self.adversarial_target


def sharpen_settings(config: ml_collections.ConfigDict) -> SharpenSettings:
    """``config.sharpen`` checked; absent (older configs): nothing is sharpened."""
    cfg = config.get("sharpen")
    if cfg is None:
        return SharpenSettings()
    unknown = set(cfg.keys()) - {"weight", "radius", "threshold", *SHARPEN_FLAGS}
    if unknown:
        raise ValueError(f"unknown sharpen keys {sorted(unknown)}")
    for flag in SHARPEN_FLAGS:
        if not isinstance(cfg.get(flag, False), bool):
            raise ValueError(f"sharpen.{flag} must be True or False, got {cfg[flag]!r}")
    radius = cfg.get("radius", 50)
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
        raise ValueError(f"sharpen.radius must be an integer >= 1, got {radius!r}")
    weight, threshold = float(cfg.get("weight", 0.5)), float(cfg.get("threshold", 10.0))
    if not weight >= 0 or not threshold >= 0:
        raise ValueError("sharpen.weight and sharpen.threshold must be >= 0")
    return SharpenSettings(
        weight=weight,
        radius=radius,
        threshold=threshold,
        **{flag: bool(cfg.get(flag, False)) for flag in SHARPEN_FLAGS},
    )


@dataclasses.dataclass(frozen=True)
class LossSettings:
    """The weighted terms of the generator loss, as plain Python values bound before jit."""

    pixel: Callable[[jax.Array, jax.Array], jax.Array]
    pixel_weight: float
    perceptual_weight: float
    perceptual_layers: tuple[tuple[str, float], ...]
    perceptual_distance: str
    adversarial: str  # A key of adversarial.GAN_LOSSES.
    adversarial_weight: float


def loss_settings(config: ml_collections.ConfigDict) -> LossSettings:
    """The loss block of ``config``; ValueError for unknown names or negative weights."""
    cfg = config.loss
    pixel = base.lookup(sr.PIXEL_LOSSES, cfg.pixel, "pixel loss")
    if cfg.pixel == "charbonnier":
        pixel = functools.partial(pixel, eps=float(cfg.charbonnier_eps))
    adversarial = base.lookup(ADVERSARIAL_LOSSES, cfg.adversarial, "adversarial loss")
    names = ("pixel_weight", "perceptual_weight", "adversarial_weight")
    weights = {k: float(cfg[k]) for k in names}
    for key, value in weights.items():
        if not value >= 0:  # Also catches NaN.
            raise ValueError(f"loss.{key} must be >= 0, got {value}")
    if not any(weights.values()):
        raise ValueError("every loss weight is 0: nothing to train")
    layers = tuple((str(k), float(v)) for k, v in dict(cfg.perceptual_layers).items())
    if weights["perceptual_weight"] > 0:
        perceptual.validate_perceptual(dict(layers), cfg.perceptual_distance)
    return LossSettings(
        pixel=pixel,
        pixel_weight=weights["pixel_weight"],
        perceptual_weight=weights["perceptual_weight"],
        perceptual_layers=layers,
        perceptual_distance=str(cfg.perceptual_distance),
        adversarial=adversarial,
        adversarial_weight=weights["adversarial_weight"],
    )


def build_generator(config: ml_collections.ConfigDict) -> nn.Module:
    """The generator: the SR network of ``config.model`` (the same one `tasks.sr` builds)."""
    model = sr.build_model(config)
    if getattr(model, "batch_norm", False):
        # The EMA weights are what inference uses; running batch statistics would need their
        # own averaging and would not fit the SR tools, which load parameters only.
        raise ValueError(
            "model.overrides.batch_norm=True is not supported by gan_sr (SRResNet without batch "
            "norm, as later SRResNet variants train); drop the override"
        )
    return model


def hr_patch_size(config: ml_collections.ConfigDict) -> int:
    return int(config.dataset.lr_patch_size) * int(config.scale)


def build_discriminator(config: ml_collections.ConfigDict) -> nn.Module | None:
    """The discriminator of ``config.discriminator``, or None without an adversarial term.

    The VGG-style discriminator's ``input_size`` defaults to the HR patch size.
    """
    if not float(config.loss.adversarial_weight) > 0:
        return None
    cfg = config.discriminator
    constructor = base.lookup(DISCRIMINATORS, cfg.name, "discriminator")
    overrides = dict(cfg.get("overrides", {}))
    if cfg.name == "vgg":
        overrides.setdefault("input_size", hr_patch_size(config))
    dtype = precision.compute_dtype(config)
    try:
        d = constructor(dtype=dtype, **overrides)
    except TypeError as e:
        raise ValueError(f"discriminator.overrides: {e}") from None
    # Shape checks (patch size against the VGG head, multiples of 8 for the U-Net) raise here,
    # from an abstract trace: nothing is computed.
    p = hr_patch_size(config)
    try:
        jax.eval_shape(
            functools.partial(d.init, train=False),
            jax.random.key(0),
            jax.ShapeDtypeStruct((1, p, p, 3), jnp.float32),
        )
    except ValueError as e:
        raise ValueError(
            f"discriminator {cfg.name!r} on HR patches of {p}x{p} (dataset.lr_patch_size x "
            f"scale): {e}"
        ) from None
    return d


def degradation(config: ml_collections.ConfigDict) -> degradations.DegradationConfig | None:
    """The on-device degradation of ``config.degradation``, or None for the pipeline's LR."""
    cfg = config.degradation
    if cfg.kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation.kind {cfg.kind!r}; valid: {', '.join(DEGRADATIONS)}")
    if cfg.kind == "bicubic":
        return None
    if config.dataset.lr_patch_size < 4:
        raise ValueError("degradation.kind='realesrgan' needs dataset.lr_patch_size >= 4")
    overrides = cfg.get("overrides", {})
    overrides = overrides.to_dict() if hasattr(overrides, "to_dict") else dict(overrides)
    return degradations.DegradationConfig.from_dict(overrides)


def pool_size(config: ml_collections.ConfigDict) -> int:
    """Pairs in the training pool (`genres_jax.tasks.pair_pool`); 0 = no pool."""
    size = config.degradation.get("pool_size", 0)
    pair_pool.check_size(size, int(config.batch_size))
    return size


def validation_lr(config: ml_collections.ConfigDict) -> str:
    """ "bicubic" or "degraded" (`VALIDATION_LR`); "degraded" needs an on-device degradation."""
    mode = config.degradation.get("validation", "bicubic")
    if mode not in VALIDATION_LR:
        raise ValueError(
            f"unknown degradation.validation {mode!r}; valid: {', '.join(VALIDATION_LR)}"
        )
    if mode == "degraded" and config.degradation.kind == "bicubic":
        raise ValueError(
            "degradation.validation='degraded' needs an on-device degradation "
            "(degradation.kind='realesrgan')"
        )
    return mode


@functools.lru_cache(maxsize=2)
def _read_vgg(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    del mtime_ns, size  # Cache keys: a rewritten file is read again.
    return vgg.load_vgg19_params(path)


def perceptual_params(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The VGG19 weights the perceptual loss needs (convs up to its deepest layer), or {}.

    Raises a ValueError saying how to make the file when ``loss.vgg_weights`` is unset, missing
    or not a VGG19 ``features`` state dict.
    """
    if not float(config.loss.perceptual_weight) > 0:
        return {}
    path = str(config.loss.get("vgg_weights", ""))
    hint = (
        "pass --config.loss.vgg_weights=PATH (a .safetensors or .npz file holding torchvision's "
        f"vgg19 'features.*' state dict; make it once with: {vgg.CONVERSION_COMMAND}), or train "
        "without the perceptual loss: --config.loss.perceptual_weight=0"
    )
    if not path:
        raise ValueError(f"loss.perceptual_weight > 0 needs VGG19 weights: {hint}")
    if not os.path.isfile(path):
        raise ValueError(f"loss.vgg_weights={path!r} is not a file: {hint}")
    stat = os.stat(path)
    params = _read_vgg(os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    layers = dict(config.loss.perceptual_layers)
    deepest = max(vgg.VGG19_LAYERS.index(name) for name in layers)
    return {
        name: layer
        for name, layer in params.items()
        if vgg.VGG19_LAYERS.index(name) <= deepest  # Deeper convs are never run.
    }


def validate(config: ml_collections.ConfigDict) -> None:
    """Config errors caught before any data is read or anything compiled."""
    build_generator(config)
    loss_settings(config)
    if config.dataset.get("kind", "sr_pairs") != "sr_pairs":
        raise ValueError("gan_sr trains on LR/HR pairs: dataset.kind must be 'sr_pairs'")
    if config.dataset.lr_patch_size < 1:
        raise ValueError("dataset.lr_patch_size must be >= 1")
    if not 0.0 <= config.ema_decay < 1.0:
        raise ValueError("ema_decay must be in [0, 1)")
    build_discriminator(config)
    degradation(config)
    pool_size(config)
    validation_lr(config)
    sharpen_settings(config)
    perceptual_params(config)
    sr_protocol.validate_settings(config)
    optim.validate(config.g_optimizer, "g_optimizer")
    optim.validate(config.d_optimizer, "d_optimizer")
