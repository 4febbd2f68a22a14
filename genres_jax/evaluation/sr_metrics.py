"""Evaluation metrics: small pure functions, jit-able, one value per image.

Super-resolution fidelity (PSNR, SSIM)
    Follow the convention of the SR literature as implemented by BasicSR's `calculate_psnr` /
    `calculate_ssim`, so that our numbers are comparable with published tables:
    1. model output and ground truth are float images in [0, 1]; both are clipped to [0, 1],
       scaled to [0, 255] and rounded to integers (what saving to uint8 PNG would do);
    2. `crop_border` pixels are removed from every edge (SR papers crop `scale` pixels);
    3. with `y_only=True` the quantised RGB is converted to BT.601 luma on the [0, 255] scale,
       Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, kept as a float (not re-rounded);
    4. PSNR = 10 log10(255^2 / MSE); SSIM with an 11x11 Gaussian window (sigma 1.5), 'valid'
       filtering, C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2, averaged over the map, then over
       channels.
    Inputs are (H, W, C) or batched (..., H, W, C); the result has the leading (batch) shape.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# ---------------------------------------------------------------------------------------------
# Super-resolution fidelity: PSNR and SSIM (BasicSR convention)
# ---------------------------------------------------------------------------------------------

_PIXEL_MAX = 255.0
# BT.601 luma coefficients for R, G, B on the [0, 255] scale (MATLAB's rgb2ycbcr, first row).
_LUMA = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)
_LUMA_OFFSET = 16.0

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = (0.01 * _PIXEL_MAX) ** 2
_SSIM_C2 = (0.03 * _PIXEL_MAX) ** 2


def quantize_to_255(x: jax.Array) -> jax.Array:
    """Float image in [0, 1] -> integer-valued float32 on [0, 255]: round(clip(x, 0, 1) * 255).

    Rounds half to even, like NumPy/PyTorch `round` in BasicSR's `tensor2img`.
    """
    x = jnp.asarray(x)
    x = x.astype(jnp.result_type(x.dtype, jnp.float32))
    return jnp.round(jnp.clip(x, 0.0, 1.0) * _PIXEL_MAX)


def _luma(rgb: jax.Array, offset: float) -> jax.Array:
    y = _LUMA[0] * rgb[..., 0] + _LUMA[1] * rgb[..., 1] + _LUMA[2] * rgb[..., 2]
    return (y + offset)[..., None]


def _prepare(
    pred: jax.Array, target: jax.Array, crop_border: int, y_only: bool
) -> tuple[jax.Array, jax.Array]:
    """Quantise and crop both images; returns them on [0, 255], RGB (or grey) channels."""
    pred, target = jnp.asarray(pred), jnp.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"Shape mismatch: pred {pred.shape} vs target {target.shape}")
    if not (
        jnp.issubdtype(pred.dtype, jnp.floating) and jnp.issubdtype(target.dtype, jnp.floating)
    ):
        raise ValueError(f"Expected float images in [0, 1], got {pred.dtype} and {target.dtype}")
    if pred.ndim < 3:
        raise ValueError(f"Expected (..., H, W, C) images, got shape {pred.shape}")
    channels = pred.shape[-1]
    if y_only and channels not in (1, 3):
        raise ValueError(f"y_only needs 3 (RGB) or 1 (already luma) channels, got {channels}")
    if crop_border < 0 or 2 * crop_border >= min(pred.shape[-3], pred.shape[-2]):
        raise ValueError(f"crop_border={crop_border} invalid for images of shape {pred.shape}")
    pred, target = quantize_to_255(pred), quantize_to_255(target)
    if crop_border:
        crop = (
            ...,
            slice(crop_border, -crop_border),
            slice(crop_border, -crop_border),
            slice(None),
        )
        pred, target = pred[crop], target[crop]
    return pred, target


def _mean_image(x: jax.Array) -> jax.Array:
    """Mean over the last two axes (H, W) of (..., H, W)."""
    # Rows first, then columns: two short float32 sums instead of one sum over millions of pixels.
    return jnp.mean(jnp.mean(x, axis=-2), axis=-1)


@functools.partial(jax.jit, static_argnames=("crop_border", "y_only"))
def psnr(
    pred: jax.Array, target: jax.Array, crop_border: int = 0, y_only: bool = False
) -> jax.Array:
    """PSNR in dB, 10 log10(255^2 / MSE), on uint8-quantised images (BasicSR `calculate_psnr`).

    `pred`, `target`: float images in [0, 1], (H, W, C) or (..., H, W, C); returns one value per
    image (shape `pred.shape[:-3]`). `crop_border` pixels are removed from every edge; `y_only`
    measures on the BT.601 Y channel (float, [0, 255] scale), else on all channels. Identical
    images give `+inf` (MSE = 0), as BasicSR does; average over a data set with that in mind.
    """
    pred, target = _prepare(pred, target, crop_border, y_only)
    # Quantised values are integers, so their difference is exact; the luma of the difference
    # (the offset cancels) avoids rounding the two ~235-sized Y values separately.
    diff = pred - target
    if y_only and diff.shape[-1] == 3:
        diff = _luma(diff, 0.0)
    mse = _mean_image(jnp.mean(diff**2, axis=-1))
    return 10.0 * jnp.log10(_PIXEL_MAX**2 / mse)


def _ssim_kernel_1d() -> np.ndarray:
    """The normalised 11-tap Gaussian, sigma 1.5; its outer product is the 2-D SSIM window."""
    offsets = np.arange(_SSIM_WINDOW, dtype=np.float64) - (_SSIM_WINDOW - 1) / 2
    kernel = np.exp(-(offsets**2) / (2.0 * _SSIM_SIGMA**2))
    return kernel / kernel.sum()


def _pool_moments(
    stats: tuple[jax.Array | None, ...], axis: int, kernel: np.ndarray
) -> tuple[jax.Array, ...]:
    """Combine per-position (mean_a, mean_b, var_a, var_b, cov) over a 1-D window along `axis`.

    Law of total (co)variance, with the means taken relative to the window's centre value c:
    var = sum_i w_i var_i + sum_i w_i d_i^2 - (sum_i w_i d_i)^2, d_i = mean_i - c (same for cov).
    The textbook E[x^2] - E[x]^2 on raw pixels cancels ~1e-3 grey levels^2 in float32 on bright
    flat regions, visible at the 1e-5 level in SSIM; here sum w d^2 is at most ~5x the variance
    (the centre carries weight ~0.27), so float32 keeps its relative precision. 'valid' mode.
    """
    mean_a, mean_b, var_a, var_b, cov = stats
    length = mean_a.shape[axis] - kernel.shape[0] + 1

    def window(t: jax.Array, i: int) -> jax.Array:
        return jax.lax.slice_in_dim(t, i, i + length, axis=axis)

    centre_a, centre_b = window(mean_a, kernel.shape[0] // 2), window(mean_b, kernel.shape[0] // 2)
    sum_a = sum_b = sq_a = sq_b = sq_ab = 0.0
    for i, w in enumerate(float(w) for w in kernel):
        da, db = window(mean_a, i) - centre_a, window(mean_b, i) - centre_b
        spread_a, spread_b, spread_ab = da * da, db * db, da * db
        if var_a is not None:
            spread_a, spread_b = spread_a + window(var_a, i), spread_b + window(var_b, i)
            spread_ab = spread_ab + window(cov, i)
        sum_a, sum_b = sum_a + w * da, sum_b + w * db
        sq_a, sq_b, sq_ab = sq_a + w * spread_a, sq_b + w * spread_b, sq_ab + w * spread_ab
    return (
        centre_a + sum_a,
        centre_b + sum_b,
        sq_a - sum_a * sum_a,
        sq_b - sum_b * sum_b,
        sq_ab - sum_a * sum_b,
    )


def _ssim_per_channel(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean SSIM map of (..., H, W, C) images on [0, 255], per channel: shape (..., C)."""
    kernel = _ssim_kernel_1d()
    # Single pixels have zero variance; pool along W, then along H (the window is separable).
    stats = _pool_moments((a, b, None, None, None), a.ndim - 2, kernel)
    mu_a, mu_b, var_a, var_b, cov = _pool_moments(stats, a.ndim - 3, kernel)
    luminance = (2.0 * mu_a * mu_b + _SSIM_C1) / (mu_a * mu_a + mu_b * mu_b + _SSIM_C1)
    structure = (2.0 * cov + _SSIM_C2) / (var_a + var_b + _SSIM_C2)
    ssim_map = luminance * structure
    return jnp.mean(jnp.mean(ssim_map, axis=-3), axis=-2)


@functools.partial(jax.jit, static_argnames=("crop_border", "y_only"))
def ssim(
    pred: jax.Array, target: jax.Array, crop_border: int = 0, y_only: bool = False
) -> jax.Array:
    """SSIM (Wang et al. 2004) on uint8-quantised images, BasicSR `calculate_ssim` convention.

    SSIM = mean over the map of ((2 mu_x mu_y + C1)(2 sigma_xy + C2)) /
    ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2)), local statistics from an 11x11 Gaussian
    window (sigma 1.5, 'valid' filtering, biased moments), C1 = (0.01 * 255)^2,
    C2 = (0.03 * 255)^2, averaged over channels. `pred`, `target`: float images in [0, 1],
    (H, W, C) or (..., H, W, C); returns one value per image. `crop_border` and `y_only` as in
    `psnr`. Needs at least 11x11 pixels after cropping.
    """
    pred, target = _prepare(pred, target, crop_border, y_only)
    if min(pred.shape[-3], pred.shape[-2]) < _SSIM_WINDOW:
        raise ValueError(f"SSIM needs >= {_SSIM_WINDOW}x{_SSIM_WINDOW} pixels, got {pred.shape}")
    if y_only and pred.shape[-1] == 3:
        pred, target = _luma(pred, _LUMA_OFFSET), _luma(target, _LUMA_OFFSET)
    return jnp.mean(_ssim_per_channel(pred, target), axis=-1)
