"""Transposed convolutions of the generators, written as matrix products where that is faster.

``nn.ConvTranspose`` lowers a stride-2 transposed convolution to a convolution of the
stride-dilated input, three quarters of it zeros; on XLA:CPU its kernel gradient takes a slow
path (a 4x4/2 layer from 7x7x64 to 14x14x32 at batch 64: 37 ms forward and backward, against
9 ms for the form below, on a 2-core CPU). The same function as sub-pixel convolution:

* ``conv_transpose_2x``: PyTorch's ``ConvTranspose2d(kernel_size=4, stride=2, padding=1)``,
  i.e. ``lax.conv_transpose`` with padding ((2, 2), (2, 2)). Output pixel ``2m + r`` (r in
  {0, 1}) sums inputs ``m + r - 1 + a`` (a in {0, 1}) of the input padded by one, so one 2x2
  window of the padded input, as a patch matrix times a (4 * in, 4 * out) kernel, gives all
  four phases at once; each phase is then cut at its offset and the phases interleaved
  (depth to space). Tap ``a`` of phase ``r`` is kernel row ``r + 2a`` (``3 - r - 2a`` when the
  kernel is transposed, which flips it).
* ``project``: a VALID transposed convolution of a 1x1 map is a dense layer onto the kernel's
  spatial grid.

``ConvTranspose2x`` and ``Project`` hold the same ``kernel`` (and ``bias``) parameters, with the
same shapes and initialisers, as the ``nn.ConvTranspose`` they replace, so checkpoints written
before carry over. ``form="xla"`` keeps ``lax.conv_transpose`` (the default on GPU and TPU, where
cuDNN and the TPU compiler handle it well); ``"auto"`` picks ``"matmul"`` on the CPU.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

FORMS = ("auto", "matmul", "xla")
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")
# The padding of the stride-dilated input that makes a 4x4/2 transposed conv double H and W.
PADDING_2X = ((2, 2), (2, 2))


def check_form(form: str) -> None:
    if form not in FORMS:
        raise ValueError(f"unknown model.conv_form {form!r}; valid: {', '.join(FORMS)}")


def resolve_form(form: str) -> str:
    """``"matmul"`` or ``"xla"``; ``"auto"`` is ``"matmul"`` on the CPU only."""
    check_form(form)
    if form == "auto":
        return "matmul" if jax.default_backend() == "cpu" else "xla"
    return form


def _tap_rows(transpose_kernel: bool) -> np.ndarray:
    """(a, r) -> the kernel row that tap ``a`` of output phase ``r`` multiplies."""
    rows = np.array([[r + 2 * a for r in range(2)] for a in range(2)])
    return 3 - rows if transpose_kernel else rows


def conv_transpose_2x(x: jax.Array, kernel: jax.Array, *, transpose_kernel: bool) -> jax.Array:
    """``lax.conv_transpose(x, kernel, (2, 2), PADDING_2X, transpose_kernel=...)`` (NHWC).

    ``kernel`` is (4, 4, out, in) when ``transpose_kernel`` (``nn.ConvTranspose``'s layout for
    it, PyTorch's ``ConvTranspose2d`` weight transposed) and (4, 4, in, out) otherwise.
    Returns (B, 2H, 2W, out).
    """
    if kernel.shape[:2] != (4, 4):
        raise ValueError(f"conv_transpose_2x needs a 4x4 kernel, got {kernel.shape}")
    if transpose_kernel:
        kernel = jnp.swapaxes(kernel, 2, 3)
    n, h, w, c_in = x.shape
    c_out = kernel.shape[3]
    rows = _tap_rows(transpose_kernel)
    # (a, b, r, s, in, out) -> (a, b, in) x (r, s, out): rows of the patch matrix are the taps.
    k = kernel[rows[:, None, :, None], rows[None, :, None, :]]
    k = k.transpose(0, 1, 4, 2, 3, 5).reshape(4 * c_in, 4 * c_out)
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.concatenate(
        [padded[:, a : a + h + 1, b : b + w + 1, :] for a in range(2) for b in range(2)], axis=-1
    )
    y = jnp.dot(patches, k.astype(patches.dtype)).reshape(n, h + 1, w + 1, 2, 2, c_out)
    # Phase (r, s) of output pixel (m, n) is window (m + r, n + s).
    phases = jnp.stack(
        [
            jnp.stack([y[:, r : r + h, s : s + w, r, s, :] for s in range(2)], axis=3)
            for r in range(2)
        ],
        axis=3,
    )  # (B, H, W, r, s, out)
    return phases.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, c_out)


def project(z: jax.Array, kernel: jax.Array, *, transpose_kernel: bool) -> jax.Array:
    """A VALID transposed conv of the 1x1 map ``z`` (B, in) with ``kernel``: (B, kh, kw, out)."""
    spec = "bi,yxoi->byxo" if transpose_kernel else "bi,yxio->byxo"
    if transpose_kernel:  # lax flips the kernel, the conv of the padded 1x1 map flips it back.
        return jnp.einsum(spec, z, kernel.astype(z.dtype))
    return jnp.einsum(spec, z, kernel[::-1, ::-1].astype(z.dtype))


class _TransposedConv(nn.Module):
    features: int
    use_bias: bool = True
    transpose_kernel: bool = False
    kernel_init: Any = nn.linear.default_kernel_init
    bias_init: Any = nn.initializers.zeros_init()
    dtype: Any = None
    param_dtype: Any = jnp.float32
    form: str = "auto"

    def _params(self, c_in: int, size: tuple[int, int]):
        shape = (
            (*size, self.features, c_in) if self.transpose_kernel else (*size, c_in, self.features)
        )
        kernel = self.param("kernel", self.kernel_init, shape, self.param_dtype)
        bias = None
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        return kernel, bias

    def _finish(self, y: jax.Array, bias) -> jax.Array:
        return y if bias is None else y + bias.astype(y.dtype)


class ConvTranspose2x(_TransposedConv):
    """``nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)))``."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel, bias = self._params(x.shape[-1], (4, 4))
        dtype = self.dtype or x.dtype
        x, kernel = x.astype(dtype), kernel.astype(dtype)
        if resolve_form(self.form) == "matmul":
            y = conv_transpose_2x(x, kernel, transpose_kernel=self.transpose_kernel)
        else:
            y = lax.conv_transpose(
                x,
                kernel,
                (2, 2),
                PADDING_2X,
                dimension_numbers=_DIMENSIONS,
                transpose_kernel=self.transpose_kernel,
            )
        return self._finish(y, bias)


class Project(_TransposedConv):
    """``nn.ConvTranspose(features, (size, size), padding="VALID")`` applied to a 1x1 map."""

    size: int = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape[1:3] != (1, 1):
            raise ValueError(f"Project expects a 1x1 map, got {x.shape}")
        kernel, bias = self._params(x.shape[-1], (self.size, self.size))
        dtype = self.dtype or x.dtype
        x, kernel = x.astype(dtype), kernel.astype(dtype)
        if resolve_form(self.form) == "matmul":
            y = project(x[:, 0, 0, :], kernel, transpose_kernel=self.transpose_kernel)
        else:
            y = lax.conv_transpose(
                x,
                kernel,
                (1, 1),
                "VALID",
                dimension_numbers=_DIMENSIONS,
                transpose_kernel=self.transpose_kernel,
            )
        return self._finish(y, bias)
