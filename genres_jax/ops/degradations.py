"""Real-ESRGAN's two-stage ("high-order") degradation model, jit-compiled, batched and seedable.

`degrade(key, hr, cfg, scale)` turns (N, H, W, 3) HR images in [0, 1] into (N, H/scale,
W/scale, 3) LR images, every random draw taken from `key` per image (Wang et al. 2021,
"Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic Data"):

    stage 1: blur (random kernel) -> resize by s1 -> Gaussian or Poisson noise -> JPEG
    stage 2: blur (with probability blur_prob) -> resize to (H/scale) * s2 -> noise
    final:   [resize to H/scale + sinc filter, JPEG] or [JPEG, resize + sinc filter], 50/50;
             the sinc filter is applied with probability final_sinc_prob, and the output is
             clipped and rounded to 8-bit levels.

The operators: blur kernels in `genres_jax.ops.blur_kernels`, JPEG in `genres_jax.ops.jpeg`,
noise in `genres_jax.ops.noise`, resizing with traced sizes and filtering here.

Each resize draws up / down / keep, then s uniform in [1, high] / [low, 1] / {1}, and a method
among area, bilinear and bicubic. Every probability and range is a field of `DegradationConfig`
(`genres_jax.ops.degradation_config`, re-exported here), whose defaults are the published x4
recipe. The stage 2 JPEG settings are the final JPEG's (the recipe has two JPEG steps). With
blur, noise, JPEG and final sinc probabilities 0, resizes "keep" and the method "bicubic" the
pipeline is the classical degradation: MATLAB bicubic `imresize` by 1/scale, rounded to 8 bits.

Static shapes with random sizes. Under jit every array shape is fixed, so each stage works in
a fixed buffer big enough for its largest size (rounded up to whole 16x16 JPEG MCUs), holding
the image in its top-left (h, w) corner, h and w traced. Resizing is a product with dense
(out x in) weight matrices built from the traced sizes, so the scale factors stay continuous
as in the recipe; blurs read across the image border by reflection (the recipe's filter2D),
JPEG sees the image edge-replicated to the buffer, Poisson noise counts grey levels inside the
image only. Every image takes the same path, so a batch is one vmap with no branch selection;
optional steps are computed and selected, except that the two final orders share one JPEG
(its input is selected instead).

Differences from the original recipe (a PyTorch implementation):
- Sizes are floor(reference * s), clamped to at least 4 pixels (reachable only for inputs
  under ~27 pixels) and to the buffer.
- Bilinear and bicubic are MATLAB's `imresize` (Keys cubic a = -0.5, antialiased when
  downscaling, symmetric borders; the same weights as `genres_jax.ops.imresize`), not
  PyTorch's `interpolate` (bicubic a = -0.75, no antialiasing). "area" is the exact box
  average over each output pixel's footprint (PyTorch's adaptive average pooling rounds the
  footprint to whole pixels; the two agree at integer ratios).
- Every draw is per image; the original draws the resize factors and methods, the noise type,
  whether to apply the second blur and the final order once per batch.
- JPEG is the libjpeg-faithful round trip of `genres_jax.ops.jpeg` (quality rounded to an
  integer) rather than a differentiable approximation.
- The grey Poisson noise uses BT.601 luma weights (0.299, 0.587, 0.114).
- Noise and JPEG have probabilities (`noise_prob`, `jpeg_prob`; 1 in the recipe), so that
  every step can be switched off from the configuration.
- Unsharp masking of the HR target is not done here; pass a sharpened batch to blur it.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

from genres_jax.ops.blur_kernels import (
    KERNEL_DRAWS,
    KernelConfig,
    category_from_uniform,
    kernel_from_uniforms,
    sinc_kernel,
)
from genres_jax.ops.degradation_config import (
    FINAL_SINC_GRID,
    RESIZE_METHODS,
    DegradationConfig,
    StageConfig,
)
from genres_jax.ops.jpeg import jpeg_compress
from genres_jax.ops.noise import gaussian_noise, poisson, poisson_noise

__all__ = [
    "RESIZE_METHODS",
    "DegradationConfig",
    "KernelConfig",
    "StageConfig",
    "degrade",
    "filter2d",
    "gaussian_noise",
    "poisson",
    "poisson_noise",
    "resize",
]

_MIN_SIDE = 4
_HIGHEST = jax.lax.Precision.HIGHEST


# ------------------------------------------------------------------------------------------- #
# Resizing with traced sizes
# ------------------------------------------------------------------------------------------- #


def _cubic(t: jax.Array) -> jax.Array:
    a = jnp.abs(t)
    return jnp.where(
        a <= 1,
        1.5 * a**3 - 2.5 * a**2 + 1.0,
        jnp.where(a <= 2, -0.5 * a**3 + 2.5 * a**2 - 4.0 * a + 2.0, 0.0),
    )


def _triangle(t: jax.Array) -> jax.Array:
    return jnp.maximum(1.0 - jnp.abs(t), 0.0)


def _resize_matrix(out_len: int, in_len: int, n_out, n_in, method) -> jax.Array:
    """(out_len, in_len) weights mapping n_in valid samples to n_out, zero elsewhere.

    MATLAB's rule for bilinear / bicubic: output i (1-based) sits at input coordinate
    u = i / s + (1 - 1 / s) / 2, s = n_out / n_in, weight k(u - t) for input t, with the kernel
    stretched to s k(s t) when s < 1; taps beyond the border are mirrored (t -> 1 - t,
    t -> 2 n_in + 1 - t; one reflection suffices for n_out >= 2); rows normalised. Area: the
    overlap of [j, j + 1) with the footprint [i r, (i + 1) r), r = n_in / n_out, divided by r.
    """
    i = jnp.arange(out_len, dtype=jnp.float32)[:, None]
    j = jnp.arange(in_len, dtype=jnp.float32)[None, :]
    n_out = jnp.asarray(n_out, jnp.float32)
    n_in = jnp.asarray(n_in, jnp.float32)
    ratio = n_in / n_out
    overlap = jnp.minimum(j + 1.0, (i + 1.0) * ratio) - jnp.maximum(j, i * ratio)
    area = jnp.maximum(overlap, 0.0) / ratio

    s = n_out / n_in
    stretch = jnp.minimum(s, 1.0)
    u = (i + 1.0) / s + 0.5 * (1.0 - 1.0 / s)
    taps = (j + 1.0, -j, 2.0 * n_in - j)  # t, and the taps that mirror onto t.

    def interp(kernel):
        return sum(stretch * kernel(stretch * (u - t)) for t in taps)

    if isinstance(method, str):
        weights = {"area": lambda: area, "bilinear": lambda: interp(_triangle)}.get(
            method, lambda: interp(_cubic)
        )()
    else:
        weights = jnp.where(
            method == 0, area, jnp.where(method == 1, interp(_triangle), interp(_cubic))
        )
    weights = jnp.where((i < n_out) & (j < n_in), weights, 0.0)
    total = jnp.sum(weights, axis=1, keepdims=True)
    return weights / jnp.where(total == 0, 1.0, total)


def resize(
    x: jax.Array,
    in_hw: tuple[Any, Any],
    out_hw: tuple[Any, Any],
    out_shape: tuple[int, int] | None = None,
    method: str | jax.Array = "bicubic",
) -> jax.Array:
    """Resize the top-left in_hw corner of an (H, W, C) buffer to out_hw, in an out_shape buffer.

    Sizes may be traced; out_shape (static, >= out_hw) defaults to out_hw, which must then be
    static. method: a name in RESIZE_METHODS, or a traced index into it. Values outside the
    output corner are zero. out = A_h x A_w^T with `_resize_matrix` weights.
    """
    if isinstance(method, str) and method not in RESIZE_METHODS:
        raise ValueError(f"Unknown resize method {method!r}; valid methods: {list(RESIZE_METHODS)}")
    if out_shape is None:
        out_shape = (int(out_hw[0]), int(out_hw[1]))
    rows = _resize_matrix(out_shape[0], x.shape[0], out_hw[0], in_hw[0], method)
    cols = _resize_matrix(out_shape[1], x.shape[1], out_hw[1], in_hw[1], method)
    return jnp.einsum("oh,hwc,pw->opc", rows, x, cols, precision=_HIGHEST)


# ------------------------------------------------------------------------------------------- #
# Filtering
# ------------------------------------------------------------------------------------------- #


def _reflect(i: jax.Array, n) -> jax.Array:
    # Mirror without repeating the edge sample (OpenCV's BORDER_REFLECT_101), any distance.
    period = 2 * (n - 1)
    r = jnp.mod(i, period)
    return jnp.where(r < n, r, period - r)


def _take2d(x: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
    return jnp.take(jnp.take(x, rows, axis=0), cols, axis=1)


def _edge_extend(x: jax.Array, hw: tuple[Any, Any]) -> jax.Array:
    rows = jnp.minimum(jnp.arange(x.shape[0]), hw[0] - 1)
    cols = jnp.minimum(jnp.arange(x.shape[1]), hw[1] - 1)
    return _take2d(x, rows, cols)


def filter2d(x: jax.Array, kernel: jax.Array, hw: tuple[Any, Any] | None = None) -> jax.Array:
    """Each channel of an (H, W, C) buffer correlated with a (K, K) kernel, same size.

    The image is the top-left hw corner (default: all of x), read across its border by
    reflection (edge not repeated).
    """
    k = kernel.shape[0]
    hw = x.shape[:2] if hw is None else hw
    r = k // 2
    rows = _reflect(jnp.arange(-r, x.shape[0] + r), hw[0])
    cols = _reflect(jnp.arange(-r, x.shape[1] + r), hw[1])
    padded = _take2d(x, rows, cols)
    c = x.shape[-1]
    rhs = jnp.broadcast_to(kernel.astype(x.dtype)[:, :, None, None], (k, k, 1, c))
    out = jax.lax.conv_general_dilated(
        padded[None],
        rhs,
        (1, 1),
        "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
        precision=_HIGHEST,
    )
    return out[0]


# ------------------------------------------------------------------------------------------- #
# The pipeline
# ------------------------------------------------------------------------------------------- #


class _Uniforms:
    """Consecutive entries of one vector of uniform [0, 1) variates, one per scalar draw.

    One threefry call per image instead of one per draw: the jitted program (and its compile
    time) shrinks several-fold.
    """

    def __init__(self, key: jax.Array, n: int):
        self._u = jax.random.uniform(key, (n,))
        self._next = 0

    def take(self, n: int) -> jax.Array:
        if self._next + n > self._u.shape[0]:
            raise RuntimeError("_Uniforms exhausted: raise _DRAWS")  # A bug, not bad input.
        self._next += n
        return self._u[self._next - n : self._next]

    def __call__(self, r: tuple[float, float] = (0.0, 1.0)) -> jax.Array:
        return r[0] + (r[1] - r[0]) * self.take(1)[0]

    def index(self, n: int) -> jax.Array:
        """A uniform integer in [0, n)."""
        return jnp.minimum(jnp.floor(self() * n).astype(jnp.int32), n - 1)

    def category(self, probs: tuple[float, ...]) -> jax.Array:
        """Index i with probability probs[i] (inverse CDF)."""
        return category_from_uniform(self(), probs)


# Scalar draws per image: per stage blur (KERNEL_DRAWS + apply), resize (kind, factor,
# method), noise (apply, type, grey, sigma, scale); stage 1 JPEG (apply, quality); final
# (JPEG apply, quality, order, sinc apply, size, cutoff, resize method).
_STAGE_DRAWS = KERNEL_DRAWS + 1 + 3 + 5
_DRAWS = 2 * _STAGE_DRAWS + 2 + 7


def _delta(size: int) -> jax.Array:
    return jnp.zeros((size, size), jnp.float32).at[size // 2, size // 2].set(1.0)


def _draw_size(u: _Uniforms, stage: StageConfig, ref: tuple[int, int]):
    """(traced h, w) = floor(ref * s) for the drawn s, and the static buffer that holds them."""
    kind = u.category(stage.resize_probs)  # 0 up, 1 down, 2 keep.
    low, high = stage.resize_range
    t = u()
    s = jnp.select([kind == 0, kind == 1], [1.0 + (high - 1.0) * t, low + (1.0 - low) * t], 1.0)
    largest = [max(_MIN_SIDE, math.floor(n * high)) for n in ref]
    hw = tuple(
        jnp.clip(jnp.floor(n * s).astype(jnp.int32), _MIN_SIDE, big)
        for n, big in zip(ref, largest, strict=True)
    )
    return hw, tuple(-(-n // 16) * 16 for n in largest)


def _noise(key: jax.Array, u: _Uniforms, x: jax.Array, stage: StageConfig, hw) -> jax.Array:
    gauss_key, shot_key = jax.random.split(key)
    apply, use_gauss, grey = u() < stage.noise_prob, u() < stage.gaussian_noise_prob, u()
    grey = grey < stage.grey_noise_prob
    gauss = gaussian_noise(gauss_key, x.shape, u(stage.noise_sigma_range), grey)
    shot = poisson_noise(shot_key, x, u(stage.poisson_scale_range), grey, hw)
    noisy = jnp.clip(x + jnp.where(use_gauss, gauss, shot), 0.0, 1.0)
    return jnp.where(apply, noisy, x)


def _degrade_one(key: jax.Array, hr: jax.Array, cfg: DegradationConfig, scale: int) -> jax.Array:
    draw_key, noise1_key, noise2_key = jax.random.split(key, 3)
    u = _Uniforms(draw_key, _DRAWS)
    methods = jnp.asarray([RESIZE_METHODS.index(m) for m in cfg.resize_methods])

    def method() -> jax.Array:
        return methods[u.index(len(cfg.resize_methods))]

    def blur(x: jax.Array, stage: StageConfig, hw) -> jax.Array:
        kernel = kernel_from_uniforms(u.take(KERNEL_DRAWS), stage.blur)
        kernel = jnp.where(u() < stage.blur_prob, kernel, _delta(kernel.shape[0]))
        return filter2d(x, kernel, hw)

    hr_hw = hr.shape[:2]
    lr_hw = (hr_hw[0] // scale, hr_hw[1] // scale)
    s1, s2 = cfg.stage1, cfg.stage2

    x = blur(hr, s1, hr_hw)
    hw1, buffer1 = _draw_size(u, s1, hr_hw)
    x = resize(x, hr_hw, hw1, buffer1, method())
    x = _noise(noise1_key, u, x, s1, hw1)
    apply, quality = u() < s1.jpeg_prob, u(s1.jpeg_range)
    x = jnp.where(apply, jpeg_compress(_edge_extend(x, hw1), quality), x)

    x = blur(x, s2, hw1)
    hw2, buffer2 = _draw_size(u, s2, lr_hw)
    x = resize(x, hw1, hw2, buffer2, method())
    x = _noise(noise2_key, u, x, s2, hw2)

    apply_jpeg, quality, jpeg_first = u() < s2.jpeg_prob, u(s2.jpeg_range), u()
    jpeg_first = apply_jpeg & (jpeg_first < cfg.jpeg_first_prob)
    apply_sinc = u() < cfg.final_sinc_prob
    size = jnp.asarray(cfg.final_sinc_sizes)[u.index(len(cfg.final_sinc_sizes))]
    sinc = sinc_kernel(FINAL_SINC_GRID, u(cfg.final_sinc_omega), size)
    sinc = jnp.where(apply_sinc, sinc, _delta(FINAL_SINC_GRID))
    final_method = method()

    def resize_sinc(z: jax.Array) -> jax.Array:
        return filter2d(resize(z, hw2, lr_hw, lr_hw, final_method), sinc)

    # Both orders with one JPEG (the costliest step): its input is either the stage 2 image
    # (JPEG first) or the resized and filtered LR image placed in the same buffer (JPEG last).
    early = jnp.clip(resize_sinc(x), 0.0, 1.0)
    pad = [(0, buffer2[0] - lr_hw[0]), (0, buffer2[1] - lr_hw[1]), (0, 0)]
    y = jnp.where(jpeg_first, x, jnp.pad(early, pad))
    y_hw = tuple(jnp.where(jpeg_first, a, b) for a, b in zip(hw2, lr_hw, strict=True))
    y = jnp.where(apply_jpeg, jpeg_compress(_edge_extend(y, y_hw), quality), y)
    x = jnp.where(jpeg_first, resize_sinc(y), y[: lr_hw[0], : lr_hw[1]])
    return jnp.clip(jnp.round(x * 255.0), 0.0, 255.0) / 255.0


@functools.partial(jax.jit, static_argnames=("cfg", "scale"))
def _degrade(key: jax.Array, hr: jax.Array, cfg: DegradationConfig, scale: int) -> jax.Array:
    keys = jax.random.split(key, hr.shape[0])
    return jax.vmap(_degrade_one, in_axes=(0, 0, None, None))(keys, hr, cfg, scale)


def degrade(
    key: jax.Array, hr_batch: jax.Array, cfg: DegradationConfig | None = None, scale: int = 4
) -> jax.Array:
    """(N, H, W, 3) HR images in [0, 1] -> (N, H/scale, W/scale, 3) LR on 8-bit levels.

    Real-ESRGAN's degradation (module docstring) with an independent draw per image from
    `key` (same key, same output). cfg (default: the published x4 recipe) and scale are static;
    H and W must be multiples of scale and at least 4 * scale. Jitted; may be called inside
    another jitted function (hr_batch may be a tracer).
    """
    cfg = DegradationConfig() if cfg is None else cfg
    if not isinstance(cfg, DegradationConfig):
        raise ValueError(f"cfg must be a DegradationConfig, got {type(cfg).__name__}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    shape = jnp.shape(hr_batch)
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"Expected HR images of shape (N, H, W, 3), got shape {shape}")
    if shape[1] % scale or shape[2] % scale or min(shape[1], shape[2]) < _MIN_SIDE * scale:
        raise ValueError(
            f"HR sides must be multiples of scale={scale} and at least {_MIN_SIDE * scale}, "
            f"got {shape[1]}x{shape[2]}"
        )
    return _degrade(key, jnp.asarray(hr_batch, jnp.float32), cfg, scale)
