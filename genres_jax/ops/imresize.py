"""MATLAB-compatible image resizing and Gaussian blur, in JAX.

`imresize` reproduces MATLAB's `imresize` for floating-point images: the same output size rule,
the same kernels, the same antialiasing when downscaling, the same symmetric border handling and
the same order of the two separable passes. SR benchmarks build their low-resolution inputs with
MATLAB's bicubic `imresize`, so any deviation here shifts every PSNR/SSIM we report.

The resampling weights and source indices depend only on static shapes, so they are computed once
per (size, scale, method) in float64 numpy at trace time; the device work is a gather plus a
weighted sum over a few taps per axis, i.e. O(N * taps) rather than a dense (out x in) matrix.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

# MATLAB's `eps` (double machine epsilon), which its Lanczos kernels add to avoid 0/0 at x = 0.
_MATLAB_EPS = float(np.finfo(np.float64).eps)

# Gaussian resampling kernel: sigma in input pixels, support truncated at 3 sigma.
_GAUSSIAN_SIGMA = 0.5
_GAUSSIAN_HALF_WIDTH = 3.0 * _GAUSSIAN_SIGMA


def _cubic(x: np.ndarray) -> np.ndarray:
    # Keys cubic convolution with a = -0.5, exactly as MATLAB's `cubic`.
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    inner = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    outer = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return inner + outer


def _box(x: np.ndarray) -> np.ndarray:
    # Half-open interval, so that a sample exactly between two pixels picks exactly one of them.
    return ((x >= -0.5) & (x < 0.5)).astype(np.float64)


def _triangle(x: np.ndarray) -> np.ndarray:
    left = (x + 1.0) * ((x >= -1) & (x < 0))
    right = (1.0 - x) * ((x >= 0) & (x <= 1))
    return left + right


def _lanczos(a: int) -> Callable[[np.ndarray], np.ndarray]:
    def kernel(x: np.ndarray) -> np.ndarray:
        num = np.sin(np.pi * x) * np.sin(np.pi * x / a) + _MATLAB_EPS
        den = np.pi**2 * x**2 / a + _MATLAB_EPS
        return (num / den) * (np.abs(x) < a)

    return kernel


def _gaussian(x: np.ndarray) -> np.ndarray:
    weights = np.exp(-(x**2) / (2.0 * _GAUSSIAN_SIGMA**2))
    return weights * (np.abs(x) <= _GAUSSIAN_HALF_WIDTH)


# name -> (kernel, kernel width in input pixels at scale 1), as MATLAB's method table.
RESIZE_KERNELS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], float]] = {
    "bicubic": (_cubic, 4.0),
    "bilinear": (_triangle, 2.0),
    "nearest": (_box, 1.0),
    "lanczos2": (_lanczos(2), 4.0),
    "lanczos3": (_lanczos(3), 6.0),
    # Gaussian-filtered interpolation: each output sample is a normalised Gaussian average of the
    # input (sigma = 0.5 input pixels, support +-3 sigma), stretched like the others when
    # downscaling with antialiasing.
    "gaussian": (_gaussian, 2.0 * _GAUSSIAN_HALF_WIDTH),
}


def _get_kernel(method: str) -> tuple[Callable[[np.ndarray], np.ndarray], float]:
    if method not in RESIZE_KERNELS:
        raise ValueError(
            f"Unknown resize method {method!r}; valid methods: {sorted(RESIZE_KERNELS)}"
        )
    return RESIZE_KERNELS[method]


def output_size(in_size: int, scale: float) -> int:
    """MATLAB's output length ceil(in_size * scale), robust to float error in the product.

    0.37 * 100 evaluates to 37.000000000000007 in float64; a plain ceil would give 38 where the
    intended size is 37, so products within a few ulps of an integer are snapped to it first.
    """
    product = in_size * scale
    nearest = round(product)
    if abs(product - nearest) <= 1e-9 * max(1.0, abs(product)):
        return int(nearest)
    return int(math.ceil(product))


@functools.lru_cache(maxsize=256)
def contributions(
    in_length: int, out_length: int, scale: float, method: str, antialiasing: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Resampling weights and 0-based source indices, both (out_length, taps), as MATLAB.

    Output pixel x (1-based) maps to input coordinate u = x / scale + 0.5 * (1 - 1 / scale); taps
    left..left + P - 1 with left = floor(u - width / 2), P = ceil(width) + 2. When downscaling with
    antialiasing the kernel is stretched by 1 / scale (weights scale * h(scale * t)). Weights are
    normalised per output pixel, out-of-range indices are mirrored with MATLAB's mod-based
    symmetric rule, and taps whose weight is zero for every output pixel are dropped.
    """
    kernel, width = _get_kernel(method)
    if scale < 1 and antialiasing:
        h = lambda t: scale * kernel(scale * t)
        width = width / scale
    else:
        h = kernel
    x = np.arange(1, out_length + 1, dtype=np.float64)[:, None]
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    indices = left + np.arange(taps, dtype=np.float64)[None, :]
    weights = h(u - indices)
    weights = weights / np.sum(weights, axis=1, keepdims=True)

    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]

    keep = np.any(weights != 0, axis=0)
    weights, indices = weights[:, keep], indices[:, keep]
    weights.setflags(write=False)
    indices.setflags(write=False)
    return weights, indices


def _resize_axis(x: jax.Array, axis: int, weights: np.ndarray, indices: np.ndarray) -> jax.Array:
    # One gather per tap keeps the peak memory at one output-sized buffer, instead of materialising
    # all taps at once (which for strong downscaling can be dozens of image copies).
    bcast = [1] * x.ndim
    bcast[axis] = weights.shape[0]
    out = None
    for p in range(weights.shape[1]):
        taken = jnp.take(x, indices[:, p].astype(np.int32), axis=axis, mode="clip")
        term = taken * weights[:, p].astype(x.dtype).reshape(bcast)
        out = term if out is None else out + term
    return out


@functools.partial(jax.jit, static_argnames=("out_hw", "scale_hw", "method", "antialiasing"))
def _imresize(
    x: jax.Array,
    out_hw: tuple[int, int],
    scale_hw: tuple[float, float],
    method: str,
    antialiasing: bool,
) -> jax.Array:
    x = x.astype(jnp.result_type(x.dtype, jnp.float32))
    # MATLAB resizes along the dimension with the smaller scale first (stable sort: height on ties).
    order = sorted(range(2), key=lambda d: scale_hw[d])
    for d in order:
        axis = x.ndim - 3 + d
        weights, indices = contributions(
            x.shape[axis], out_hw[d], scale_hw[d], method, antialiasing
        )
        x = _resize_axis(x, axis, weights, indices)
    return x


def _plan(
    in_hw: tuple[int, int],
    scale: float | None,
    output_shape: tuple[int, int] | None,
    method: str,
    antialiasing: bool | None,
) -> tuple[tuple[int, int], tuple[float, float], bool, list[int]]:
    """Checked arguments: output size, per-axis scales, antialiasing, pass order."""
    _get_kernel(method)
    if (scale is None) == (output_shape is None):
        raise ValueError("Give exactly one of `scale` and `output_shape`.")
    if scale is not None:
        scale = float(scale)
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        out_hw = (output_size(in_hw[0], scale), output_size(in_hw[1], scale))
        scale_hw = (scale, scale)
    else:
        out_hw = (int(output_shape[0]), int(output_shape[1]))
        if min(out_hw) < 1:
            raise ValueError(f"output_shape must be positive, got {output_shape}")
        scale_hw = (out_hw[0] / in_hw[0], out_hw[1] / in_hw[1])
    if antialiasing is None:  # MATLAB's default: on, except for nearest neighbour.
        antialiasing = method != "nearest"
    # MATLAB resizes along the dimension with the smaller scale first (stable sort: height on ties).
    order = sorted(range(2), key=lambda d: scale_hw[d])
    return out_hw, scale_hw, bool(antialiasing), order


def imresize(
    x: jax.Array,
    scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
    method: str = "bicubic",
    antialiasing: bool | None = None,
) -> jax.Array:
    """Resize (..., H, W, C) images exactly as MATLAB's `imresize` does for floating-point input.

    Give either `scale` (output size ceil(H * scale) x ceil(W * scale), both axes resampled at
    `scale`) or `output_shape` (H', W') (axis scales H'/H and W'/W). `method` is one of
    `RESIZE_KERNELS`. `antialiasing` widens the kernel when downscaling; None means MATLAB's
    default (on, except for "nearest"). Computes in float32 (or the input dtype if wider) and
    returns that dtype; values are not clipped, so bicubic/Lanczos may overshoot [0, 1] as in
    MATLAB. Jit-able: shapes and arguments other than `x` are static.
    """
    x = jnp.asarray(x)
    if x.ndim < 3:
        raise ValueError(f"Expected an array of shape (..., H, W, C), got shape {x.shape}")
    out_hw, scale_hw, antialiasing, _ = _plan(
        x.shape[-3:-1], scale, output_shape, method, antialiasing
    )
    return _imresize(x, out_hw, scale_hw, method, antialiasing)


def imresize_numpy(
    x: np.ndarray,
    scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
    method: str = "bicubic",
    antialiasing: bool | None = None,
) -> np.ndarray:
    """`imresize` in float64 numpy, for input pipelines that must stay off the accelerator.

    Same weights, indices and pass order as `imresize` (shared code); returns float64.
    """
    x = np.asarray(x, np.float64)
    if x.ndim < 3:
        raise ValueError(f"Expected an array of shape (..., H, W, C), got shape {x.shape}")
    out_hw, scale_hw, antialiasing, order = _plan(
        x.shape[-3:-1], scale, output_shape, method, antialiasing
    )
    for d in order:
        axis = x.ndim - 3 + d
        weights, indices = contributions(
            x.shape[axis], out_hw[d], scale_hw[d], method, antialiasing
        )
        bcast = [1] * x.ndim
        bcast[axis] = weights.shape[0]
        out = np.zeros(x.shape[:axis] + (weights.shape[0],) + x.shape[axis + 1 :])
        for p in range(weights.shape[1]):
            out += np.take(x, indices[:, p], axis=axis) * weights[:, p].reshape(bcast)
        x = out
    return x


def _gaussian_kernel_1d(sigma: jax.Array | float, kernel_size: int, dtype: jnp.dtype) -> jax.Array:
    offsets = jnp.arange(kernel_size, dtype=dtype) - (kernel_size - 1) / 2
    sigma = jnp.asarray(sigma, dtype=dtype)
    kernel = jnp.exp(-(offsets**2) / (2.0 * sigma**2))
    return kernel / jnp.sum(kernel)


@functools.partial(jax.jit, static_argnames=("kernel_size", "padding"))
def gaussian_blur(
    x: jax.Array,
    sigma: jax.Array | float,
    kernel_size: int,
    padding: str = "reflect",
) -> jax.Array:
    """Isotropic Gaussian blur of (..., H, W, C) images, separable, same output size.

    Kernel k(i) = exp(-i^2 / (2 sigma^2)) for i = -(kernel_size - 1)/2 ... (kernel_size - 1)/2,
    normalised to sum 1. `kernel_size` must be odd and static; `sigma` may be a traced scalar, so
    random-blur degradations can be jitted. `padding`: "reflect" (edge pixel not repeated, the
    OpenCV `filter2D` default used by blur-downscale degradation pipelines) or "symmetric"
    (edge pixel repeated, MATLAB's 'symmetric').
    """
    if kernel_size < 1 or kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    if padding not in ("reflect", "symmetric"):
        raise ValueError(f"Unknown padding {padding!r}; valid: ['reflect', 'symmetric']")
    if x.ndim < 3:
        raise ValueError(f"Expected an array of shape (..., H, W, C), got shape {x.shape}")
    dtype = jnp.result_type(x.dtype, jnp.float32)
    x = x.astype(dtype)
    kernel = _gaussian_kernel_1d(sigma, kernel_size, dtype)
    radius = kernel_size // 2
    for axis in (x.ndim - 3, x.ndim - 2):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (radius, radius)
        padded = jnp.pad(x, pad, mode=padding)
        length = x.shape[axis]
        out = None
        for i in range(kernel_size):
            term = kernel[i] * jax.lax.slice_in_dim(padded, i, i + length, axis=axis)
            out = term if out is None else out + term
        x = out
    return x


def upsample_integer(x: jax.Array, scale: int, method: str = "bicubic") -> jax.Array:
    """MATLAB ``imresize(x, scale)`` of an NHWC batch for an integer ``scale`` >= 1, for any
    (also symbolic, as in ``jax.export``) height and width.

    Upscaling by an integer is polyphase: output pixel ``i*r + p`` has the same kernel weights
    for every ``i``, over LR pixels ``i - R .. i + R`` (``R`` = half the kernel width, plus one),
    so it is a weighted sum of shifted copies of the symmetrically padded input per phase ``p``,
    interleaved. Equals `imresize` to float rounding (tested); needs no array sizes up front.
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"upsample_integer needs an integer scale >= 1, got {scale!r}")
    if scale == 1:
        return x
    kernel, width = _get_kernel(method)
    reach = int(np.ceil(width / 2))
    offsets = np.arange(-reach, reach + 1)
    # Phase p samples the LR grid at d = (p + 0.5) / r - 0.5 from its own cell's centre.
    d = (np.arange(scale) + 0.5) / scale - 0.5
    weights = kernel(d[:, None] - offsets[None, :])
    weights = weights / weights.sum(axis=1, keepdims=True)
    for axis in (1, 2):
        x = _polyphase_axis(x, weights, reach, axis)
    return x


def _polyphase_axis(x: jax.Array, weights: np.ndarray, reach: int, axis: int) -> jax.Array:
    n = x.shape[axis]
    # MATLAB's symmetric border, by index so it holds for any size (even 1) and symbolic ones:
    # position j reads j mod 2n, mirrored onto [0, n).
    j = jnp.mod(jnp.arange(-reach, n + reach), 2 * n)
    padded = jnp.take(x, jnp.where(j < n, j, 2 * n - 1 - j), axis=axis)
    shifted = [jax.lax.slice_in_dim(padded, k, k + n, axis=axis) for k in range(weights.shape[1])]
    phases = [
        sum(float(w) * s for w, s in zip(row, shifted, strict=True) if w != 0.0) for row in weights
    ]
    out = jnp.stack(phases, axis=axis + 1)  # (..., n, r, ...)
    shape = list(x.shape)
    shape[axis] = n * weights.shape[0]
    return out.reshape(shape)
