"""RGB <-> YCbCr conversion (ITU-R BT.601, studio swing), as MATLAB's rgb2ycbcr / ycbcr2rgb.

For floating-point images in [0, 1] MATLAB computes

    [Y, Cb, Cr] = ([16, 128, 128] + M @ [R, G, B]) / 255,   R, G, B in [0, 1],

with M the matrix below, so Y lies in [16/255, 235/255] and Cb, Cr in [16/255, 240/255]. SR papers
report PSNR/SSIM on this Y channel. The inverse uses the exact inverse of the same affine map.

Channels are combined with explicit multiply-adds rather than a matmul: accelerators may run
float32 matmuls at reduced precision by default, which would be visible in the metrics.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# Rows: Y, Cb, Cr; columns: R, G, B (on the [0, 255] x [0, 1] -> [0, 255] scale of MATLAB's table).
_RGB_TO_YCBCR = np.array(
    [
        [65.481, 128.553, 24.966],
        [-37.797, -74.203, 112.0],
        [112.0, -93.786, -18.214],
    ],
    dtype=np.float64,
)
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float64)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)


def _float(x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    return x.astype(jnp.result_type(x.dtype, jnp.float32))


def _check_rgb(x: jax.Array) -> None:
    if x.ndim < 1 or x.shape[-1] != 3:
        raise ValueError(f"Expected 3 channels on the last axis, got shape {x.shape}")


def _affine(x: jax.Array, matrix: np.ndarray, offset: np.ndarray) -> jax.Array:
    channels = [x[..., j] for j in range(3)]
    rows = []
    for i in range(3):
        row = float(offset[i]) + sum(float(matrix[i, j]) * channels[j] for j in range(3))
        rows.append(row)
    return jnp.stack(rows, axis=-1)


def rgb_to_ycbcr(x: jax.Array) -> jax.Array:
    """RGB in [0, 1] -> YCbCr in [0, 1] (BT.601), as MATLAB's rgb2ycbcr for double input.

    Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255,
    Cb = (128 - 37.797 R - 74.203 G + 112 B) / 255,
    Cr = (128 + 112 R - 93.786 G - 18.214 B) / 255. Last axis = channels; no clipping.
    """
    x = _float(x)
    _check_rgb(x)
    return _affine(x, _RGB_TO_YCBCR / 255.0, _YCBCR_OFFSET / 255.0)


def ycbcr_to_rgb(x: jax.Array) -> jax.Array:
    """YCbCr in [0, 1] -> RGB in [0, 1], the exact inverse of `rgb_to_ycbcr` (MATLAB's ycbcr2rgb).

    RGB = M^-1 (255 * YCbCr - [16, 128, 128]) with M the BT.601 matrix of `rgb_to_ycbcr`.
    Last axis = channels; no clipping.
    """
    x = _float(x)
    _check_rgb(x)
    return _affine(x, _YCBCR_TO_RGB * 255.0, -_YCBCR_TO_RGB @ _YCBCR_OFFSET)


def rgb_to_y(x: jax.Array) -> jax.Array:
    """Luma of RGB in [0, 1]: Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255, shape (..., 1).

    The channel axis is kept (size 1) so the result is still an image for metrics and resizing.
    """
    x = _float(x)
    _check_rgb(x)
    coef = _RGB_TO_YCBCR[0] / 255.0
    y = _YCBCR_OFFSET[0] / 255.0 + (
        float(coef[0]) * x[..., 0] + float(coef[1]) * x[..., 1] + float(coef[2]) * x[..., 2]
    )
    return y[..., None]
