"""JPEG compression round trip (encode + decode) in JAX, per-image quality, jit- and vmap-able.

Baseline JPEG as libjpeg (and so Pillow and OpenCV) does it with 4:2:0 chroma subsampling:

1. 8-bit RGB -> YCbCr with the JFIF (full-range BT.601) matrix, rounded to integers;
2. Cb, Cr averaged over 2x2 pixels (libjpeg's rounding: (sum + 1 or 2) >> 2, alternating);
3. each plane edge-replicated to whole 8x8 blocks (whole 16x16 MCUs for the image), level
   shift by -128, orthonormal 8x8 DCT-II as matrix products C X C^T;
4. quantisation with the IJG tables scaled by quality as libjpeg's `jpeg_set_quality`:
   s = 5000 / q (integer division) for q < 50, else 200 - 2 q; table = clip((T s + 50) // 100,
   1, 255); coefficients rounded half away from zero;
5. decode: dequantise, inverse DCT, +128, round and clip each plane to [0, 255];
6. chroma upsampled by libjpeg's "fancy" triangle filter (3/4 nearer + 1/4 farther sample per
   axis, its integer rounding), back to RGB (rounded, clipped) and cropped to the input size.

The input is quantised to 8-bit levels first, as an encoder only sees 8-bit samples. Differences
from libjpeg: floating-point DCTs instead of its scaled-integer ones, which moves the odd
coefficient across a rounding boundary (measured against Pillow in tests/test_jpeg.py).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

# ITU-T T.81 Annex K tables (the IJG defaults), natural (row-major) order.
LUMA_TABLE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.int32,
)
CHROMA_TABLE = np.full((8, 8), 99, dtype=np.int32)
CHROMA_TABLE[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]


def _dct_matrix() -> np.ndarray:
    # C[k, n] = c_k cos(pi (2n + 1) k / 16), c_0 = sqrt(1/8), c_k = sqrt(2/8): orthonormal DCT-II.
    k = np.arange(8)[:, None]
    n = np.arange(8)[None, :]
    c = np.where(k == 0, math.sqrt(1.0 / 8.0), math.sqrt(2.0 / 8.0))
    return (c * np.cos(np.pi * (2 * n + 1) * k / 16.0)).astype(np.float32)


_DCT = _dct_matrix()
_HIGHEST = jax.lax.Precision.HIGHEST


def quantization_tables(quality: float | jax.Array) -> tuple[jax.Array, jax.Array]:
    """(luma, chroma) int32 tables of shape quality.shape + (8, 8), as libjpeg builds them.

    quality is rounded to an integer and clipped to [1, 100]; s = 5000 // q if q < 50 else
    200 - 2 q; table = clip((T * s + 50) // 100, 1, 255) with T the Annex K table.
    """
    q = jnp.clip(jnp.round(jnp.asarray(quality, jnp.float32)), 1, 100).astype(jnp.int32)
    s = jnp.where(q < 50, 5000 // q, 200 - 2 * q)[..., None, None]
    tables = [
        jnp.clip((jnp.asarray(t) * s + 50) // 100, 1, 255) for t in (LUMA_TABLE, CHROMA_TABLE)
    ]
    return tables[0], tables[1]


def _blockwise(plane: jax.Array, left: np.ndarray, right: np.ndarray) -> jax.Array:
    """left @ B @ right for every 8x8 block B of (..., H, W) planes (H, W multiples of 8)."""
    *batch, h, w = plane.shape
    blocks = plane.reshape(*batch, h // 8, 8, w // 8, 8)
    out = jnp.einsum("ij,...ajbk,kl->...aibl", left, blocks, right, precision=_HIGHEST)
    return out.reshape(*batch, h, w)


def _code_plane(plane: jax.Array, table: jax.Array) -> jax.Array:
    """Integer samples in [0, 255] -> quantised DCT -> decoded integer samples in [0, 255]."""
    *batch, h, w = plane.shape
    coef = _blockwise(plane - 128.0, _DCT, _DCT.T)
    step = jnp.tile(table.astype(plane.dtype), (h // 8, w // 8))
    levels = jnp.sign(coef) * jnp.floor(jnp.abs(coef) / step + 0.5)
    decoded = _blockwise(levels * step, _DCT.T, _DCT) + 128.0
    return jnp.clip(jnp.round(decoded), 0.0, 255.0)


def _downsample(c: jax.Array) -> jax.Array:
    """2x2 average of (..., 2h, 2w) planes with libjpeg's alternating rounding bias 1, 2."""
    *batch, h, w = c.shape
    sums = c.reshape(*batch, h // 2, 2, w // 2, 2).sum(axis=(-3, -1))
    bias = 1.0 + (jnp.arange(w // 2) % 2)
    return jnp.floor((sums + bias) / 4.0)


def _fancy_upsample(c: jax.Array) -> jax.Array:
    """libjpeg's h2v2 triangle upsampling of (..., h, w) planes to (..., 2h, 2w), edges replicated.

    Rows: v = 3 c[i] + c[i -+ 1]; columns: (3 v[j] + v[j - 1] + 8) >> 4 and
    (3 v[j] + v[j + 1] + 7) >> 4.
    """
    above = jnp.concatenate([c[..., :1, :], c[..., :-1, :]], axis=-2)
    below = jnp.concatenate([c[..., 1:, :], c[..., -1:, :]], axis=-2)
    rows = jnp.stack([3 * c + above, 3 * c + below], axis=-2)
    rows = rows.reshape(*c.shape[:-2], 2 * c.shape[-2], c.shape[-1])
    left = jnp.concatenate([rows[..., :1], rows[..., :-1]], axis=-1)
    right = jnp.concatenate([rows[..., 1:], rows[..., -1:]], axis=-1)
    even = jnp.floor((3 * rows + left + 8) / 16.0)
    odd = jnp.floor((3 * rows + right + 7) / 16.0)
    return jnp.stack([even, odd], axis=-1).reshape(*rows.shape[:-1], 2 * rows.shape[-1])


def jpeg_compress(x: jax.Array, quality: float | jax.Array) -> jax.Array:
    """JPEG encode + decode of (..., H, W, 3) RGB images in [0, 1] at 4:2:0 (see module doc).

    quality: a scalar or one value per image (shape x.shape[:-3]), rounded to an integer in
    [1, 100] as libjpeg takes it. Sides that are not multiples of 16 are padded by edge
    replication and cropped back. Returns float32 on 8-bit levels (k / 255) in [0, 1].
    """
    x = jnp.asarray(x, jnp.float32)
    if x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"Expected RGB images of shape (..., H, W, 3), got shape {x.shape}")
    *batch, h, w, _ = x.shape
    quality = jnp.asarray(quality, jnp.float32)
    try:
        if np.broadcast_shapes(quality.shape, tuple(batch)) != tuple(batch):
            raise ValueError
    except ValueError:
        raise ValueError(
            f"quality must be a scalar or broadcast to the batch shape {tuple(batch)}, "
            f"got shape {quality.shape}"
        ) from None
    quality = jnp.broadcast_to(quality, tuple(batch))
    luma_table, chroma_table = quantization_tables(quality)

    ph, pw = -(-h // 16) * 16, -(-w // 16) * 16
    pad = [(0, 0)] * len(batch) + [(0, ph - h), (0, pw - w), (0, 0)]
    rgb = jnp.pad(jnp.clip(jnp.round(x * 255.0), 0.0, 255.0), pad, mode="edge")
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = jnp.round(0.299 * r + 0.587 * g + 0.114 * b)
    cb = jnp.round(128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b)
    cr = jnp.round(128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b)

    # Chroma is subsampled over the image's own (even-rounded) extent and then edge-padded in
    # the subsampled plane, as libjpeg pads it; the decoder upsamples the same extent.
    ch, cw = -(-h // 2), -(-w // 2)
    chroma_pad = [(0, 0)] * len(batch) + [(0, ph // 2 - ch), (0, pw // 2 - cw)]
    y = _code_plane(y, luma_table)
    decoded = [y]
    for c in (cb, cr):
        small = jnp.pad(_downsample(c[..., : 2 * ch, : 2 * cw]), chroma_pad, mode="edge")
        small = _code_plane(small, chroma_table)[..., :ch, :cw]
        decoded.append(_fancy_upsample(small)[..., :h, :w])
    y, cb, cr = decoded[0][..., :h, :w], decoded[1] - 128.0, decoded[2] - 128.0
    out = jnp.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    return jnp.clip(jnp.round(out), 0.0, 255.0) / 255.0
