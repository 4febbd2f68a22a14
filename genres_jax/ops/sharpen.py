"""Unsharp masking (USM) of HR training targets, Real-ESRGAN's convention, in JAX.

Real-ESRGAN (Wang et al. 2021) sharpens every HR target before it is used: the sharpened
image is the target of the pixel (L1) and perceptual losses (the GAN loss keeps the plain
image in the published x4 recipe), and it is also the image the degradation pipeline blurs,
resizes and compresses into the LR input. The network so learns to restore crisper edges than
the originals carry. The definition is BasicSR's `USMSharp` module (the one training calls);
for an image I in [0, 1], with G the Gaussian blur described below:

    R = I - G * I                                  residual (high frequencies)
    M = [ |R| * 255 > threshold ]                  hard mask, per pixel and per channel
    S = G * M                                      soft mask
    K = clip(I + weight * R, 0, 1)                 sharpened image
    out = S * K + (1 - S) * I

The mask is elementwise: each channel is thresholded on its own residual, with no sum or
mean over channels. BasicSR's numpy `usm_sharp` (built on OpenCV's GaussianBlur) uses the same
per-channel test, kernel and border, so the two versions agree.

The blur. `radius` is BasicSR's argument of that name, which is the kernel *size*, not a
half-width: the kernel has k = radius taps, plus one when radius is even (the default 50 gives
k = 51). Its taps are OpenCV's `getGaussianKernel(k, 0)`:

    k > 7:   w_i = exp(-x_i^2 / (2 sigma^2)) / sum,  x_i = i - (k - 1) / 2,
             sigma = 0.3 * ((k - 1) / 2 - 1) + 0.8   (sigma = 8 for k = 51)
    k <= 7:  OpenCV's fixed table, which it uses instead of the formula when sigma <= 0:
             [1], [1, 2, 1] / 4, [1, 4, 6, 4, 1] / 16, [2, 7, 14, 18, 14, 7, 2] / 64

The 2-D kernel is the outer product of the 1-D one with itself, applied here as two 1-D passes
(the same result up to float32 rounding), each pass a matrix product: along a side of n <= 512
pixels with an (n, n) matrix that folds the border into the weights, along longer sides as
banded products over 256-pixel blocks of the padded image. Borders are reflected without
repeating the edge sample (OpenCV's BORDER_REFLECT_101, PyTorch's "reflect" padding). When an
image side is not longer than k // 2, the reflection is repeated as often as needed (numpy's /
`jnp.pad`'s "reflect", OpenCV's `borderInterpolate`), and a side of length 1 reads as
constant; BasicSR's torch module rejects such images, its OpenCV version follows this same
rule.

Both blurs run at `Precision.HIGHEST`: the hard threshold on |R| makes the output sensitive to
the blur's accuracy, and accelerators default to reduced-precision float32 products. The
output is clipped to [0, 1], which only removes rounding (in exact arithmetic S lies in [0, 1]
and the result between I and K).
"""

from __future__ import annotations

import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

# OpenCV's getGaussianKernel(k, sigma <= 0) returns these fixed taps for k = 1, 3, 5, 7 rather
# than sampling the Gaussian; kept as integer numerators over a power of two (exact in float).
_SMALL_TAPS = {
    1: ((1,), 1),
    3: ((1, 2, 1), 4),
    5: ((1, 4, 6, 4, 1), 16),
    7: ((2, 7, 14, 18, 14, 7, 2), 64),
}


def _check_radius(radius: int) -> int:
    if isinstance(radius, bool) or not isinstance(radius, numbers.Integral):
        raise ValueError(f"radius must be an integer >= 1 (the blur kernel size), got {radius!r}")
    if radius < 1:
        raise ValueError(f"radius must be an integer >= 1 (the blur kernel size), got {radius}")
    return int(radius)


def usm_kernel_size(radius: int) -> int:
    """Number of taps of the USM blur: `radius`, plus one when it is even (BasicSR)."""
    radius = _check_radius(radius)
    return radius + 1 if radius % 2 == 0 else radius


def usm_kernel(radius: int = 50) -> np.ndarray:
    """1-D float64 Gaussian taps of the USM blur, summing to 1: OpenCV getGaussianKernel(k, 0).

    k = `usm_kernel_size(radius)`; sigma = 0.3 * ((k - 1) / 2 - 1) + 0.8 and
    w_i proportional to exp(-x_i^2 / (2 sigma^2)) for k > 7, OpenCV's fixed table for k <= 7.
    """
    k = usm_kernel_size(radius)
    if k in _SMALL_TAPS:
        taps, denominator = _SMALL_TAPS[k]
        return np.asarray(taps, np.float64) / denominator
    sigma = 0.3 * ((k - 1) * 0.5 - 1.0) + 0.8
    x = np.arange(k, dtype=np.float64) - (k - 1) / 2
    w = np.exp(-(x**2) / (2.0 * sigma**2))
    return w / w.sum()


def _check_scalar(name: str, value, minimum: float | None) -> None:
    # Traced values (weight or threshold passed through jit) cannot be inspected; they are
    # the caller's responsibility.
    if isinstance(value, jax.core.Tracer):
        return
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if math.isnan(v):
        raise ValueError(f"{name} must be a real number, got NaN")
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")


def _reflect_101(i: np.ndarray, n: int) -> np.ndarray:
    # Index of the sample read at position i: mirrored without repeating the edge, as often
    # as needed; a side of length 1 reads its only sample.
    if n == 1:
        return np.zeros_like(i)
    period = 2 * (n - 1)
    r = np.mod(i, period)
    return np.where(r < n, r, period - r)


def _blur_matrix(n: int, taps: np.ndarray) -> np.ndarray:
    """(n, n) matrix B with (B x)_i = sum_t taps[t] x[reflect(i + t - k // 2)]."""
    k = taps.shape[0]
    rows = np.repeat(np.arange(n), k)
    cols = _reflect_101(rows + np.tile(np.arange(k), n) - k // 2, n)
    matrix = np.zeros((n, n), np.float64)
    np.add.at(matrix, (rows, cols), np.tile(taps, n))
    return matrix


# Dense matrix products run one to two orders of magnitude faster than single-channel
# convolutions on a CPU, so every pass is a matmul. Sides up to _DENSE_MAX pixels use one
# (n, n) matrix with the border folded in (n multiply-adds per sample); longer sides are cut
# into blocks of _BLOCK samples, each output block a banded product of the padded input's
# blocks from the same position on (_BLOCK + k - 1 multiply-adds per sample, rounded up to
# whole blocks; memory linear in n and in k).
_DENSE_MAX = 512
_BLOCK = 256


def _band(block: int, taps: np.ndarray, n_terms: int) -> np.ndarray:
    """(block, n_terms * block) matrix, row o holding the taps at columns o .. o + k - 1."""
    k = taps.shape[0]
    band = np.zeros((block, n_terms * block), np.float64)
    rows = np.repeat(np.arange(block), k)
    band[rows, rows + np.tile(np.arange(k), block)] = np.tile(taps, block)
    return band


def _blur_last(x: jax.Array, taps: np.ndarray) -> jax.Array:
    """Correlate (..., n) with the taps along the last axis, reflect-101 borders."""
    n, k = x.shape[-1], taps.shape[0]
    hi = jax.lax.Precision.HIGHEST
    if n <= _DENSE_MAX:
        matrix = jnp.asarray(_blur_matrix(n, taps), jnp.float32)
        return jnp.einsum("...j,ij->...i", x, matrix, precision=hi)
    n_blocks = -(-n // _BLOCK)
    # Output block b reads padded samples b * _BLOCK .. (b + 1) * _BLOCK + k - 2, which lie in
    # input blocks b .. b + n_terms - 1.
    n_terms = 1 + -(-(k - 1) // _BLOCK)
    lead = [(0, 0)] * (x.ndim - 1)
    padded = jnp.pad(x, lead + [(k // 2, k // 2)], mode="reflect")
    total = (n_blocks + n_terms - 1) * _BLOCK
    blocks = jnp.pad(padded, lead + [(0, total - padded.shape[-1])])
    blocks = blocks.reshape(*x.shape[:-1], n_blocks + n_terms - 1, _BLOCK)
    band = jnp.asarray(_band(_BLOCK, taps, n_terms), jnp.float32)
    out = sum(
        jnp.einsum(
            "...bj,ij->...bi",
            blocks[..., m : m + n_blocks, :],
            band[:, m * _BLOCK : (m + 1) * _BLOCK],
            precision=hi,
        )
        for m in range(n_terms)
    )
    return out.reshape(*x.shape[:-1], n_blocks * _BLOCK)[..., :n]


def _blur_axis(x: jax.Array, taps: np.ndarray, axis: int) -> jax.Array:
    """Correlate the (B, H, W) stack with the 1-D taps along axis 1 (H) or 2 (W)."""
    return jnp.moveaxis(_blur_last(jnp.moveaxis(x, axis, -1), taps), -1, axis)


def _blur(x: jax.Array, taps: np.ndarray) -> jax.Array:
    return _blur_axis(_blur_axis(x, taps, 1), taps, 2)


@functools.partial(jax.jit, static_argnames=("radius",))
def _unsharp_mask(images: jax.Array, weight, threshold, radius: int) -> jax.Array:
    n, h, w, c = images.shape
    taps = usm_kernel(radius)
    # Channels become batch entries: every channel is filtered alone with the same taps.
    planes = jnp.transpose(images, (0, 3, 1, 2)).reshape(n * c, h, w)
    residual = planes - _blur(planes, taps)
    mask = (jnp.abs(residual) * 255.0 > threshold).astype(jnp.float32)
    soft = _blur(mask, taps)
    sharp = jnp.clip(planes + weight * residual, 0.0, 1.0)
    # S K + (1 - S) I written as I + S (K - I): equal in exact arithmetic, and where K = I
    # (weight 0, or no residual) the input comes back bit for bit.
    out = jnp.clip(planes + soft * (sharp - planes), 0.0, 1.0)
    return jnp.transpose(out.reshape(n, c, h, w), (0, 2, 3, 1))


def unsharp_mask(
    images: jax.Array,
    *,
    weight: float | jax.Array = 0.5,
    radius: int = 50,
    threshold: float | jax.Array = 10.0,
) -> jax.Array:
    """Real-ESRGAN's USM sharpening of (N, H, W, C) or (H, W, C) images in [0, 1] (float32 out).

    out = S K + (1 - S) I with R = I - G*I, K = clip(I + weight R, 0, 1), S = G*[|R| 255 >
    threshold] (per channel); G is OpenCV's sigma-0 Gaussian of `usm_kernel_size(radius)` taps
    (51 for the default radius 50, as BasicSR's USMSharp) with reflect-101 borders. See the
    module docstring for the conventions and the border rule for images smaller than the kernel.

    `radius` must be a Python int (static under jit); `weight` (>= 0) and `threshold` (on the
    0..255 scale) may be traced. Any image size works, down to 1 x 1.
    """
    radius = _check_radius(radius)
    _check_scalar("weight", weight, 0.0)
    _check_scalar("threshold", threshold, None)
    images = jnp.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(
            f"images must have shape (N, H, W, C) or (H, W, C), got shape {images.shape}"
        )
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(
            f"images must be floating point in [0, 1], got dtype {images.dtype} "
            "(convert 8-bit images with x / 255 first)"
        )
    if 0 in images.shape[-3:-1]:
        raise ValueError(f"images must have H, W >= 1, got shape {images.shape}")
    single = images.ndim == 3
    batch = images[None] if single else images
    out = _unsharp_mask(
        batch.astype(jnp.float32),
        jnp.asarray(weight, jnp.float32),
        jnp.asarray(threshold, jnp.float32),
        radius=radius,
    )
    return out[0] if single else out
