"""USM sharpening against a float64 reference written here from the published definition.

The reference blurs with the full 2-D kernel (outer product of OpenCV's sigma-0 Gaussian taps)
through `scipy.ndimage.convolve(mode="mirror")`, which is reflect-101 and repeats the
reflection for sides shorter than the kernel's half-width, the border rule the library states.
The library blurs in two separable float32 passes over `jnp.pad(mode="reflect")`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage
from skimage import data

from genres_jax.ops.sharpen import unsharp_mask, usm_kernel, usm_kernel_size

# OpenCV's getGaussianKernel(k, 0) output for k <= 7 (its fixed table, not the sampled formula).
OPENCV_SMALL = {
    1: [1.0],
    3: [0.25, 0.5, 0.25],
    5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
    7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125],
}


def _ref_taps(radius: int) -> np.ndarray:
    k = radius if radius % 2 else radius + 1
    if k <= 7:
        return np.asarray(OPENCV_SMALL[k])
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
    x = np.arange(k) - (k - 1) / 2
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def _ref_blur(img: np.ndarray, taps: np.ndarray) -> np.ndarray:
    kernel = np.outer(taps, taps)
    return np.stack(
        [ndimage.convolve(img[..., c], kernel, mode="mirror") for c in range(img.shape[-1])], -1
    )


def _ref_usm(img, weight=0.5, radius=50, threshold=10.0):
    """float64 (H, W, C) -> (output, slack).

    The hard threshold is discontinuous: where |R| * 255 lies within float32 rounding of it
    (closer than 1e-3 here), float32 and float64 may disagree on the mask. Flipping those mask
    entries moves S by at most G * [ambiguous] and the output, I + S (K - I), by at most that
    times |K - I|: `slack` is that bound, zero away from such pixels.
    """
    img = np.asarray(img, np.float64)
    taps = _ref_taps(radius)
    residual = img - _ref_blur(img, taps)
    margin = np.abs(residual) * 255 - threshold
    soft = _ref_blur((margin > 0).astype(np.float64), taps)
    sharp = np.clip(img + weight * residual, 0, 1)
    ambiguous = (np.abs(margin) < 1e-3).astype(np.float64)
    assert ambiguous.mean() < 1e-3
    slack = _ref_blur(ambiguous, taps) * np.abs(sharp - img)
    return soft * sharp + (1 - soft) * img, slack


def _astronaut(h: int, w: int, top: int = 20, left: int = 160) -> np.ndarray:
    return data.astronaut()[top : top + h, left : left + w].astype(np.float32) / 255.0


def _textured(h: int, w: int, seed: int) -> np.ndarray:
    """Steps plus faint noise: residuals on both sides of the default threshold."""
    rng = np.random.default_rng(seed)
    cols = np.arange(w)[None, :, None]
    rows = np.arange(h)[:, None, None]
    img = 0.25 + 0.4 * (cols > w // 3) + 0.2 * (rows > h // 2) + 0.02 * rng.normal(size=(h, w, 3))
    return np.clip(img, 0, 1).astype(np.float32)


def _assert_matches(got, want, slack, atol=2e-6):
    np.testing.assert_array_less(np.abs(np.asarray(got, np.float64) - want), atol + slack)


def _check_against_reference(img, **kw):
    got = np.asarray(unsharp_mask(jnp.asarray(img), **kw))
    assert got.dtype == np.float32 and got.shape == img.shape
    _assert_matches(got, *_ref_usm(img, **kw))
    return got


@pytest.mark.parametrize("radius", [1, 2, 3, 4, 5, 6, 7, 8, 9, 21, 50, 51, 100])
def test_kernel_is_opencv_sigma0_gaussian(radius):
    taps = usm_kernel(radius)
    k = radius if radius % 2 else radius + 1
    assert usm_kernel_size(radius) == k == taps.shape[0]
    np.testing.assert_allclose(taps.sum(), 1.0, atol=1e-12)
    np.testing.assert_allclose(taps, _ref_taps(radius), rtol=1e-12, atol=0)


def test_default_kernel_has_51_taps_and_sigma_8():
    taps = usm_kernel()
    assert taps.shape == (51,)
    # Neighbouring taps of a Gaussian with sigma 8: w[c + 1] / w[c] = exp(-1 / (2 * 64)).
    np.testing.assert_allclose(taps[26] / taps[25], math.exp(-1 / 128), rtol=1e-12)
    np.testing.assert_allclose(taps[35] / taps[25], math.exp(-100 / 128), rtol=1e-12)


@pytest.mark.parametrize(
    ("image", "kw"),
    [
        (_astronaut(48, 64), {}),
        (_astronaut(47, 57, top=150, left=200), {}),
        (_textured(33, 48, 0), {}),
        (_textured(41, 27, 1), {"radius": 9, "weight": 1.0, "threshold": 5.0}),
        (_astronaut(45, 60), {"radius": 4, "weight": 0.8}),
        (_astronaut(30, 31, top=300, left=250), {"radius": 7, "threshold": 20.0}),
        (_textured(36, 36, 2), {"radius": 21, "weight": 2.0}),
    ],
    ids=["astro-even", "astro-odd", "tex-r50", "tex-r9", "astro-r4", "astro-r7", "tex-r21"],
)
def test_matches_float64_reference(image, kw):
    got = _check_against_reference(image, **kw)
    # Not vacuous: the sharpening moved pixels, and the mask matters (the result is not plain
    # unsharp masking clip(I + weight R) everywhere).
    assert np.abs(got - image).max() > 0.01
    x = image.astype(np.float64)
    radius = kw.get("radius", 50)
    plain = np.clip(x + kw.get("weight", 0.5) * (x - _ref_blur(x, _ref_taps(radius))), 0, 1)
    assert np.abs(got - plain).max() > 1e-3


def test_mask_is_per_channel():
    # Channel 0 has a strong edge, channel 1 a faint one (|R| * 255 < 10 everywhere): only
    # channel 0 may change. A mask shared across channels (sum, mean or any) would sharpen
    # channel 1 near the edge, where its residual is non-zero.
    h, w = 40, 40
    edge = (np.arange(w) >= w // 2).astype(np.float32)[None, :].repeat(h, 0)
    img = np.stack([0.2 + 0.6 * edge, 0.5 + 0.02 * edge, np.full((h, w), 0.4)], -1)
    img = img.astype(np.float32)
    residual = img - _ref_blur(img.astype(np.float64), _ref_taps(50))
    assert (np.abs(residual[..., 1]) * 255 < 10).all() and (
        np.abs(residual[..., 0]) * 255 > 10
    ).any()
    assert np.abs(residual[..., 1]).max() > 1e-3
    got = _check_against_reference(img)
    np.testing.assert_array_equal(got[..., 1:], img[..., 1:])
    assert np.abs(got[..., 0] - img[..., 0]).max() > 0.05


@pytest.mark.parametrize("threshold", [10.0, 0.0])
def test_constant_image_unchanged(threshold):
    img = np.ones((20, 31, 3), np.float32) * np.array([0.37, 0.0, 1.0], np.float32)
    got = np.asarray(unsharp_mask(img, threshold=threshold))
    np.testing.assert_allclose(got, img, atol=1e-6, rtol=0)


def test_threshold_above_every_residual_is_identity():
    # |R| <= 1, so |R| * 255 never exceeds 255: the mask is empty and the output is the input.
    img = _astronaut(50, 64)
    np.testing.assert_array_equal(np.asarray(unsharp_mask(img, threshold=255.0)), img)
    np.testing.assert_array_equal(np.asarray(unsharp_mask(img, weight=0.0)), img)


def test_batch_matches_single_images():
    images = np.stack([_astronaut(40, 44), _textured(40, 44, 3), _astronaut(40, 44, top=200)])
    batch = np.asarray(unsharp_mask(images, radius=21))
    assert batch.shape == images.shape
    for i in range(len(images)):
        single = np.asarray(unsharp_mask(images[i], radius=21))
        np.testing.assert_allclose(batch[i], single, atol=1e-6, rtol=0)
        _assert_matches(batch[i], *_ref_usm(images[i], radius=21))


def test_jit_with_traced_weight_and_threshold():
    img = _textured(32, 40, 4)
    fn = jax.jit(unsharp_mask, static_argnames="radius")
    for weight, threshold in [(0.5, 10.0), (1.5, 4.0)]:
        got = np.asarray(fn(jnp.asarray(img), weight=weight, threshold=threshold, radius=15))
        _assert_matches(got, *_ref_usm(img, weight, 15, threshold))
    # Inside a larger jitted program, the weight traced.
    outer = jax.jit(lambda x, w: unsharp_mask(x, weight=w, radius=15).mean())
    np.testing.assert_allclose(
        float(outer(img, 1.5)), _ref_usm(img, 1.5, 15, 10.0)[0].mean(), atol=1e-6
    )


def test_output_stays_in_unit_interval():
    rng = np.random.default_rng(5)
    binary = (rng.random((2, 24, 30, 3)) > 0.5).astype(np.float32)
    for images, kw in [
        (binary, {"weight": 3.0, "threshold": 0.0, "radius": 5}),
        (_astronaut(48, 48)[None], {"weight": 10.0}),
        (rng.random((1, 17, 19, 1)).astype(np.float32), {"weight": 2.0, "radius": 3}),
    ]:
        got = np.asarray(unsharp_mask(images, **kw))
        assert got.min() >= 0.0 and got.max() <= 1.0
        # Not vacuous: unclipped, I + weight * R leaves [0, 1] on these images.
        taps = _ref_taps(kw.get("radius", 50))
        unclipped = [x + kw["weight"] * (x - _ref_blur(x.astype(np.float64), taps)) for x in images]
        assert min(u.min() for u in unclipped) < 0.0 or max(u.max() for u in unclipped) > 1.0


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (3, 2), (6, 30), (25, 26), (40, 2)])
def test_images_smaller_than_kernel(shape):
    # Default 51-tap kernel, half-width 25 >= every short side here: repeated reflection.
    rng = np.random.default_rng(sum(shape))
    img = rng.random((*shape, 3)).astype(np.float32)
    got = np.asarray(unsharp_mask(img[None]))[0]
    assert np.isfinite(got).all()
    _assert_matches(got, *_ref_usm(img))
    if shape == (1, 1):
        np.testing.assert_array_equal(got, img)  # Blur of one pixel is itself: no residual.


@pytest.mark.parametrize(
    ("shape", "radius"),
    [((3, 700, 3), 50), ((2, 768, 3), 21), ((1, 520, 2), 50), ((1, 600, 1), 261)],
)
def test_long_sides_blurred_in_blocks(shape, radius):
    # Sides over 512 pixels are blurred in blocks of 256 samples, each reading the next block
    # (k = 51, 21) or the next two (k = 261): a partial last block, and whole blocks only.
    rng = np.random.default_rng(6)
    noise = rng.random((*shape[:2], 3)).astype(np.float32)
    img = (_textured(*shape[:2], 7) * 0.5 + 0.5 * noise)[..., : shape[2]]
    got = np.asarray(unsharp_mask(img, radius=radius))
    _assert_matches(got, *_ref_usm(img, radius=radius))
    assert np.abs(got - img).max() > 0.01


@pytest.mark.parametrize(
    ("args", "kw", "message"),
    [
        ((np.zeros((8, 8, 3)),), {"radius": 0}, "radius"),
        ((np.zeros((8, 8, 3)),), {"radius": -4}, "radius"),
        ((np.zeros((8, 8, 3)),), {"radius": 2.5}, "radius"),
        ((np.zeros((8, 8, 3)),), {"radius": True}, "radius"),
        ((np.zeros((8, 8, 3)),), {"weight": -0.1}, "weight"),
        ((np.zeros((8, 8, 3)),), {"weight": "strong"}, "weight"),
        ((np.zeros((8, 8, 3)),), {"threshold": float("nan")}, "threshold"),
        ((np.zeros((8, 8)),), {}, "shape"),
        ((np.zeros((1, 1, 8, 8, 3)),), {}, "shape"),
        ((np.zeros((8, 8, 3), np.uint8),), {}, "floating"),
        ((np.zeros((2, 0, 8, 3)),), {}, "H, W"),
    ],
)
def test_bad_arguments_raise_value_error(args, kw, message):
    with pytest.raises(ValueError, match=message):
        unsharp_mask(*args, **kw)
    if "radius" in kw:
        with pytest.raises(ValueError, match="radius"):
            usm_kernel(kw["radius"])
