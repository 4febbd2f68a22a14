"""Super-resolution evaluation on whole images: the protocol of the SR literature.

Each LR image is upscaled whole or by tiles (`genres_jax.ops.tiling`, exact for an overlap of
at least the model's receptive radius), then compared with its HR image by PSNR and SSIM on RGB
and on Y (`genres_jax.evaluation.sr_metrics`: uint8 quantisation, ``crop_border`` pixels
removed). Used by validation during training and by ``python -m genres_jax.evaluate``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from genres_jax import UserError
from genres_jax.evaluation import sr_metrics
from genres_jax.ops import imresize

Upscaler = Callable[[np.ndarray], np.ndarray]  # (h, w, C) float in [0, 1] -> (h*s, w*s, C)


METRIC_NAMES = ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y")


MIN_MEASURED_SIZE = 11


BEST_METRICS = {
    "psnr_y": True,
    "ssim_y": True,
    "psnr_rgb": True,
    "ssim_rgb": True,
    "lpips": False,
}


BEST_CHOICES = ("auto", "latest", *BEST_METRICS)


class EvaluationError(UserError):
    """An image that cannot be evaluated by the protocol; the message names it."""


def best_metric(config) -> str:
    """The ``best/`` policy of an SR config: a key of `BEST_METRICS`, or "latest".

    "auto" is Y-PSNR for PSNR-oriented training. With a perceptual or adversarial loss term,
    Y-PSNR would keep the least GAN-like weights (the earliest, blurriest ones), so "auto" is
    LPIPS when ``sr_eval.lpips_weights`` is given and otherwise the newest validated weights,
    as Real-ESRGAN users take the latest generator. ValueError for an unknown name, or for
    "lpips" without weights.
    """
    cfg = config.sr_eval
    choice = cfg.get("best_metric", "auto")
    if choice not in BEST_CHOICES:
        valid = ", ".join(BEST_CHOICES)
        raise ValueError(f"unknown sr_eval.best_metric {choice!r}; valid: {valid}")
    has_lpips = bool(cfg.get("lpips_weights", ""))
    if choice == "lpips" and not has_lpips:
        raise ValueError(
            "sr_eval.best_metric='lpips' needs LPIPS weights: pass --config.sr_eval.lpips_weights="
            "FILE (see genres_jax.evaluation.lpips for how to make it)"
        )
    if choice != "auto":
        return choice
    loss = config.get("loss", {})
    perceptual = float(loss.get("perceptual_weight", 0.0)) > 0
    adversarial = float(loss.get("adversarial_weight", 0.0)) > 0
    if not (perceptual or adversarial):
        return "psnr_y"
    return "lpips" if has_lpips else "latest"


@functools.lru_cache(maxsize=2)
def _read_lpips(path: str, mtime_ns: int, size: int):
    del mtime_ns, size  # Cache keys: a rewritten file is read again.
    from genres_jax.evaluation import lpips

    return lpips.load_lpips(path)


def load_lpips(path: str):
    """(net name, parameters) of an LPIPS weights file, read once per file version.

    ValueError naming the problem (and how to make the file) for a missing or malformed file.
    """
    from genres_jax.evaluation import lpips

    if not os.path.isfile(path):
        raise ValueError(
            f"LPIPS weights {path!r} is not a file; make it once with: {lpips.CONVERSION_COMMAND}"
        )
    stat = os.stat(path)
    return _read_lpips(os.path.abspath(path), stat.st_mtime_ns, stat.st_size)


def validate_settings(config) -> None:
    """ValueError for ``sr_eval`` settings that cannot work (best metric, LPIPS weights)."""
    best_metric(config)
    if config.sr_eval.get("lpips_weights", ""):
        load_lpips(config.sr_eval.lpips_weights)


def lpips_scorer(path: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """LPIPS distance of one image pair ((h, w, 3) floats in [0, 1]) with the weights of ``path``.

    ValueError for a missing or malformed file (`load_lpips`). One compilation per image size.
    """
    from genres_jax.evaluation import lpips

    net, params = load_lpips(path)
    distance = jax.jit(lambda p, x, y: lpips.lpips_distance(p, x, y, net=net))

    def score(sr: np.ndarray, hr: np.ndarray) -> float:
        return float(distance(params, jnp.asarray(sr)[None], jnp.asarray(hr)[None])[0])

    return score


def image_metrics(sr: np.ndarray, hr: np.ndarray, crop_border: int) -> dict[str, float]:
    """PSNR/SSIM on RGB and Y of one SR image (float in [0, 1]) against HR (float in [0, 1])."""
    sr, hr = jnp.asarray(sr, jnp.float32), jnp.asarray(hr, jnp.float32)
    return {
        "psnr_rgb": float(sr_metrics.psnr(sr, hr, crop_border=crop_border)),
        "ssim_rgb": float(sr_metrics.ssim(sr, hr, crop_border=crop_border)),
        "psnr_y": float(sr_metrics.psnr(sr, hr, crop_border=crop_border, y_only=True)),
        "ssim_y": float(sr_metrics.ssim(sr, hr, crop_border=crop_border, y_only=True)),
    }


def evaluate_pairs(
    upscale: Upscaler,
    pairs: Iterable[Mapping[str, Any]],
    *,
    crop_border: int,
    on_image: Callable[[str, np.ndarray, Mapping[str, Any]], None] | None = None,
    lpips: Callable[[np.ndarray, np.ndarray], float] | None = None,
) -> dict[str, Any]:
    """Metrics per image and their means over ``pairs`` ({"name", "lr", "hr"} uint8 images).

    ``on_image(name, sr, pair)`` sees every SR result (for panels or saving). ``lpips`` (a
    `lpips_scorer`) adds the LPIPS distance, on the whole image after the same uint8
    quantisation as PSNR (the saved image is what is measured; no border crop, as LPIPS is
    usually reported).
    """
    per_image = {}
    for pair in pairs:
        lr = np.asarray(pair["lr"], np.float32) / 255.0
        hr = np.asarray(pair["hr"], np.float32) / 255.0
        if min(hr.shape[:2]) - 2 * crop_border < MIN_MEASURED_SIZE:
            raise EvaluationError(
                f"{pair['name']}: {hr.shape[1]}x{hr.shape[0]} pixels leave less than "
                f"{MIN_MEASURED_SIZE}x{MIN_MEASURED_SIZE} for SSIM after cropping {crop_border} "
                "from each edge"
            )
        sr = upscale(lr)
        if sr.shape != hr.shape:
            raise ValueError(f"{pair['name']}: SR shape {sr.shape} != HR shape {hr.shape}")
        per_image[pair["name"]] = image_metrics(sr, hr, crop_border)
        if lpips is not None:
            quantized = np.round(np.clip(sr, 0.0, 1.0) * 255.0) / 255.0
            per_image[pair["name"]]["lpips"] = lpips(quantized, hr)
        if on_image is not None:
            on_image(pair["name"], sr, pair)
    if not per_image:
        raise ValueError("no images to evaluate")
    names = METRIC_NAMES + (("lpips",) if lpips is not None else ())
    mean = {k: float(np.mean([m[k] for m in per_image.values()])) for k in names}
    return {"per_image": per_image, "mean": mean, "num_images": len(per_image)}


def comparison_panel(
    lr: np.ndarray, sr: np.ndarray, hr: np.ndarray, *, scale: int, size: int = 96
) -> np.ndarray:
    """bicubic | model | HR side by side on the same central ``size`` x ``size`` HR crop.

    ``lr`` uint8 or float LR image, ``sr`` float SR in [0, 1], ``hr`` uint8 HR; returns float
    (size, 3 * size + 4, 3) in [0, 1] with white separators.
    """
    lr = np.asarray(lr, np.float32) / (255.0 if np.asarray(lr).dtype == np.uint8 else 1.0)
    hr = np.asarray(hr, np.float32) / (255.0 if np.asarray(hr).dtype == np.uint8 else 1.0)
    h, w = hr.shape[:2]
    size = min(size, h, w) // scale * scale
    y, x = (h - size) // 2 // scale * scale, (w - size) // 2 // scale * scale
    lr_crop = lr[y // scale : (y + size) // scale, x // scale : (x + size) // scale]
    bicubic = np.asarray(imresize.imresize(jnp.asarray(lr_crop), scale=scale))
    crops = [
        np.clip(c, 0.0, 1.0)
        for c in (bicubic, sr[y : y + size, x : x + size], hr[y : y + size, x : x + size])
    ]
    gap = np.ones((size, 2, crops[0].shape[-1]), np.float32)
    return np.concatenate([crops[0], gap, crops[1], gap, crops[2]], axis=1)
