"""imresize / gaussian_blur against an independent float64 reference of MATLAB's definition.

The reference below is written straight from the definition of MATLAB's `imresize` (one output
pixel at a time, a dense resampling matrix, mirroring by repeated folding), deliberately unlike
the library's vectorised gather, so that a shared mistake is unlikely.
"""

from __future__ import annotations

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from genres_jax.ops.imresize import RESIZE_KERNELS, gaussian_blur, imresize

METHODS = ["bicubic", "bilinear", "nearest", "lanczos2", "lanczos3", "gaussian"]


def _ref_kernel(method: str, t: float) -> float:
    at = abs(t)
    if method == "bicubic":  # Keys, a = -0.5
        a = -0.5
        if at <= 1:
            return (a + 2) * at**3 - (a + 3) * at**2 + 1
        if at <= 2:
            return a * at**3 - 5 * a * at**2 + 8 * a * at - 4 * a
        return 0.0
    if method == "bilinear":
        return max(0.0, 1.0 - at)
    if method == "nearest":
        return 1.0 if -0.5 <= t < 0.5 else 0.0
    if method in ("lanczos2", "lanczos3"):
        a = int(method[-1])
        return float(np.sinc(t) * np.sinc(t / a)) if at < a else 0.0
    if method == "gaussian":
        return math.exp(-(t**2) / (2 * 0.5**2)) if at <= 1.5 else 0.0
    raise AssertionError(method)


REF_WIDTH = {"bicubic": 4, "bilinear": 2, "nearest": 1, "lanczos2": 4, "lanczos3": 6, "gaussian": 3}


def _fold(j: int, n: int) -> int:
    """1-based index mirrored into 1..n, the border pixel repeated (symmetric padding)."""
    while j < 1 or j > n:
        j = 1 - j if j < 1 else 2 * n + 1 - j
    return j


def _ref_matrix(n_in: int, n_out: int, scale: float, method: str, aa: bool) -> np.ndarray:
    width = REF_WIDTH[method]
    stretch = scale < 1 and aa
    if stretch:
        width = width / scale
    mat = np.zeros((n_out, n_in))
    for x in range(1, n_out + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = [left + p for p in range(math.ceil(width) + 2)]
        if stretch:
            w = [scale * _ref_kernel(method, scale * (u - j)) for j in taps]
        else:
            w = [_ref_kernel(method, u - j) for j in taps]
        total = sum(w)
        for j, wj in zip(taps, w, strict=True):
            mat[x - 1, _fold(j, n_in) - 1] += wj / total
    return mat


def _ref_imresize(img, scale=None, output_shape=None, method="bicubic", aa=True) -> np.ndarray:
    img = np.asarray(img, np.float64)
    h, w = img.shape[-3], img.shape[-2]
    if scale is not None:
        exact = Fraction(scale).limit_denominator(1000)
        out_h, out_w = math.ceil(exact * h), math.ceil(exact * w)
        sh = sw = scale
    else:
        out_h, out_w = output_shape
        sh, sw = out_h / h, out_w / w
    mh = _ref_matrix(h, out_h, sh, method, aa)
    mw = _ref_matrix(w, out_w, sw, method, aa)
    return np.einsum("oh,...hwc,pw->...opc", mh, img, mw)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).random((2, 17, 13, 3)).astype(np.float32)


CASES = [(m, s, True) for m in METHODS for s in (1 / 3, 0.37, 0.5, 2, 3, 4)]
CASES += [(m, s, False) for m in ("bicubic", "nearest", "lanczos3") for s in (1 / 3, 0.37, 0.5)]


@pytest.mark.parametrize("method,scale,aa", CASES)
def test_matches_reference_scale(image, method, scale, aa):
    got = np.asarray(imresize(jnp.asarray(image), scale, method=method, antialiasing=aa))
    want = _ref_imresize(image, scale, method=method, aa=aa)
    assert got.shape == want.shape
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(9, 20), (40, 5)])
def test_matches_reference_output_shape(image, method, shape):
    # Different scales per axis, one up and one down: exercises the pass order too.
    got = np.asarray(
        imresize(jnp.asarray(image[0]), output_shape=shape, method=method, antialiasing=True)
    )
    want = _ref_imresize(image[0], output_shape=shape, method=method, aa=True)
    assert got.shape == (*shape, 3)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "size,scale,expected",
    [(100, 0.37, 37), (100, 1 / 3, 34), (99, 1 / 3, 33), (17, 0.5, 9), (13, 3, 39), (10, 0.25, 3)],
)
def test_output_size_is_matlab_ceil(size, scale, expected):
    out = imresize(jnp.zeros((size, size, 1)), scale, method="bilinear")
    assert out.shape == (expected, expected, 1)


@pytest.mark.parametrize("method", METHODS)
def test_constant_image_stays_constant(method):
    x = jnp.full((11, 7, 2), 0.3, jnp.float32)
    for scale in (0.37, 2.5):
        np.testing.assert_allclose(np.asarray(imresize(x, scale, method=method)), 0.3, atol=1e-6)


def test_bicubic_x2_hand_computed():
    # Column [0, 1] upscaled x2. Output pixel x samples u = x / 2 + 1/4 = 0.75, 1.25, 1.75, 2.25;
    # taps outside 1..2 mirror back onto the border pixels (0 -> 1, -1 -> 2, 3 -> 2, 4 -> 1).
    def keys(t):
        t = abs(t)
        if t <= 1:
            return 1.5 * t**3 - 2.5 * t**2 + 1
        return -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2 if t <= 2 else 0.0

    # u = 0.75: taps -1, 0, 1, 2 -> pixels 2, 1, 1, 2.
    first = 0 * (keys(0.75) + keys(-0.25)) + 1 * (keys(1.75) + keys(-1.25))
    # u = 1.25: taps 0, 1, 2, 3 -> pixels 1, 1, 2, 2.
    second = 0 * (keys(1.25) + keys(0.25)) + 1 * (keys(-0.75) + keys(-1.75))
    expected = np.array([first, second, 1 - second, 1 - first])
    np.testing.assert_allclose(expected, [-0.09375, 0.203125, 0.796875, 1.09375], atol=1e-12)

    col = jnp.array([0.0, 1.0]).reshape(2, 1, 1)
    out = np.asarray(imresize(col, 2))
    assert out.shape == (4, 2, 1)
    np.testing.assert_allclose(out[:, 0, 0], expected, atol=1e-6)
    np.testing.assert_allclose(out[:, 1, 0], expected, atol=1e-6)


def test_downscale_antialiasing_differs_from_plain_sampling(image):
    with_aa = np.asarray(imresize(jnp.asarray(image), 0.5, antialiasing=True))
    without = np.asarray(imresize(jnp.asarray(image), 0.5, antialiasing=False))
    assert np.abs(with_aa - without).max() > 1e-2
    assert with_aa.std() < without.std()  # the wider kernel low-passes the noise


def test_jit_and_batch_consistency(image):
    x = jnp.asarray(image)
    jitted = jax.jit(lambda v: imresize(v, output_shape=(6, 5), method="lanczos3"))(x)
    single = imresize(x[1], output_shape=(6, 5), method="lanczos3")
    np.testing.assert_allclose(np.asarray(jitted[1]), np.asarray(single), atol=1e-6)


def test_invalid_arguments():
    x = jnp.zeros((8, 8, 3))
    with pytest.raises(ValueError, match="bicubic"):
        imresize(x, 0.5, method="cubic-ish")
    with pytest.raises(ValueError):
        imresize(x, 0.5, output_shape=(4, 4))
    with pytest.raises(ValueError):
        imresize(x)
    assert set(METHODS) == set(RESIZE_KERNELS)


@pytest.mark.parametrize("padding,scipy_mode", [("reflect", "mirror"), ("symmetric", "reflect")])
def test_gaussian_blur_matches_scipy(image, padding, scipy_mode):
    sigma, size = 1.3, 7
    t = np.arange(size) - size // 2
    k = np.exp(-(t**2) / (2 * sigma**2))
    k /= k.sum()
    want = ndimage.convolve1d(image.astype(np.float64), k, axis=1, mode=scipy_mode)
    want = ndimage.convolve1d(want, k, axis=2, mode=scipy_mode)
    got = np.asarray(gaussian_blur(jnp.asarray(image), sigma, size, padding=padding))
    assert got.shape == image.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_gaussian_blur_traced_sigma_and_constant():
    x = jnp.full((9, 9, 1), 0.7)
    out = jax.jit(lambda s: gaussian_blur(x, s, 5))(jnp.float32(2.0))
    np.testing.assert_allclose(np.asarray(out), 0.7, atol=1e-6)
    with pytest.raises(ValueError):
        gaussian_blur(x, 1.0, 4)


@pytest.mark.parametrize("method,scale", [("bicubic", 0.5), ("bicubic", 1 / 3), ("lanczos3", 2)])
def test_numpy_version_matches_reference(image, method, scale):
    from genres_jax.ops.imresize import imresize_numpy

    got = imresize_numpy(image.astype(np.float64), scale, method=method)
    assert got.dtype == np.float64
    want = _ref_imresize(image.astype(np.float64), scale, method=method, aa=True)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_nearest_defaults_to_no_antialiasing_as_matlab(image):
    x = jnp.asarray(image[0])
    default = np.asarray(imresize(x, 0.5, method="nearest"))
    np.testing.assert_array_equal(
        default, np.asarray(imresize(x, 0.5, method="nearest", antialiasing=False))
    )
    np.testing.assert_allclose(
        default, _ref_imresize(image[0], 0.5, method="nearest", aa=False), atol=1e-6
    )
    assert not np.allclose(
        default, np.asarray(imresize(x, 0.5, method="nearest", antialiasing=True))
    )


@pytest.mark.parametrize("method", ["bicubic", "bilinear", "nearest", "lanczos3"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_integer_upsampling_for_any_size_equals_imresize(method, scale):
    # The polyphase form (no sizes needed up front, so it exports with symbolic shapes).
    from genres_jax.ops.imresize import upsample_integer

    for h, w in [(1, 1), (2, 3), (7, 5)]:
        x = np.random.default_rng(h * w).random((2, h, w, 3)).astype(np.float32)
        ours = upsample_integer(jnp.asarray(x), scale, method=method)
        ref = imresize(jnp.asarray(x), scale=float(scale), method=method)
        np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=0, atol=1e-6)
    if method != "bicubic":
        return
    b, h, w = jax.export.symbolic_shape("b, h, w")
    spec = jax.ShapeDtypeStruct((b, h, w, 3), jnp.float32)
    exported = jax.export.export(jax.jit(lambda x: upsample_integer(x, scale)))(spec)
    y = exported.call(np.ones((1, 4, 6, 3), np.float32))
    assert y.shape == (1, 4 * scale, 6 * scale, 3)
