"""PSNR / SSIM (BasicSR convention) against closed forms, float64 numpy and scikit-image."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import data
from skimage.metrics import structural_similarity

from genres_jax.evaluation.sr_metrics import psnr, quantize_to_255, ssim

LUMA = np.array([65.481, 128.553, 24.966]) / 255


def _ref_quantise(x: np.ndarray) -> np.ndarray:
    # BasicSR `tensor2img`: float32 clamp, * 255, round, uint8.
    x = np.clip(np.asarray(x, np.float32), 0, 1) * np.float32(255)
    return np.round(x).astype(np.uint8).astype(np.float64)


def _ref_prepare(pred, target, crop, y_only):
    out = []
    for img in (pred, target):
        img = _ref_quantise(img)
        if crop:
            img = img[crop:-crop, crop:-crop]
        if y_only:
            img = (img @ LUMA + 16)[..., None]
        out.append(img)
    return out


def _ref_psnr(pred, target, crop=0, y_only=False) -> float:
    a, b = _ref_prepare(pred, target, crop, y_only)
    return 10 * np.log10(255**2 / np.mean((a - b) ** 2))


def _ref_ssim(pred, target, crop=0, y_only=False) -> float:
    a, b = _ref_prepare(pred, target, crop, y_only)
    # skimage filters the whole image and then drops (11 - 1) / 2 pixels per edge before
    # averaging, which is exactly the 'valid' region of the 11x11 window.
    per_channel = [
        structural_similarity(
            a[..., c],
            b[..., c],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
        )
        for c in range(a.shape[-1])
    ]
    return float(np.mean(per_channel))


def _pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    photo = data.astronaut()[100:164, 180:260].astype(np.float32) / 255
    noisy = np.clip(photo + rng.normal(0, 0.03, photo.shape), 0, 1).astype(np.float32)
    blurred = (photo + np.roll(photo, 1, 0) + np.roll(photo, 1, 1)) / 3
    # Large flat regions far from mid-grey with faint noise: where float32 E[x^2] - mu^2 fails.
    flat = np.zeros_like(photo)
    flat[:, 40:] = 0.98
    flat_noisy = np.clip(flat + rng.normal(0, 0.004, flat.shape), 0, 1).astype(np.float32)
    # Out-of-range model output: must be clipped before quantisation.
    overshoot = (photo - 0.5) * 1.3 + 0.5
    return {
        "noisy": (noisy, photo),
        "blurred": (blurred.astype(np.float32), photo),
        "flat": (flat_noisy, flat),
        "overshoot": (overshoot.astype(np.float32), photo),
    }


PAIRS = _pairs()
SETTINGS = [(0, False), (0, True), (4, False), (4, True)]


@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("crop,y_only", SETTINGS)
def test_psnr_matches_float64(name, crop, y_only):
    pred, target = PAIRS[name]
    got = float(psnr(jnp.asarray(pred), jnp.asarray(target), crop_border=crop, y_only=y_only))
    assert abs(got - _ref_psnr(pred, target, crop, y_only)) < 1e-4


@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("crop,y_only", SETTINGS)
def test_ssim_matches_skimage(name, crop, y_only):
    pred, target = PAIRS[name]
    got = float(ssim(jnp.asarray(pred), jnp.asarray(target), crop_border=crop, y_only=y_only))
    assert abs(got - _ref_ssim(pred, target, crop, y_only)) < 1e-5


@pytest.mark.parametrize("k", [1, 3, 10])
def test_psnr_closed_form_grey_offset(k):
    rng = np.random.default_rng(k)
    target = rng.integers(0, 256 - k, (2, 20, 24, 3)).astype(np.float32) / 255
    pred = target + np.float32(k / 255)
    got = np.asarray(psnr(jnp.asarray(pred), jnp.asarray(target)))
    assert got.shape == (2,)
    np.testing.assert_allclose(got, 20 * np.log10(255 / k), atol=1e-4)
    # Y offset: k grey levels in R, G and B move Y by k * 219 / 255.
    got_y = np.asarray(psnr(jnp.asarray(pred), jnp.asarray(target), y_only=True))
    np.testing.assert_allclose(got_y, 20 * np.log10(255 / (k * 219 / 255)), atol=1e-4)


def test_identical_images():
    img = jnp.asarray(PAIRS["noisy"][1])
    assert float(psnr(img, img)) == np.inf
    assert float(psnr(img, img, y_only=True)) == np.inf
    assert float(ssim(img, img)) == pytest.approx(1.0, abs=1e-6)


def test_crop_border_removes_edge_errors():
    target = PAIRS["noisy"][1]
    pred = target.copy()
    pred[:4] = 1 - pred[:4]  # damage only the top four rows
    a, b = jnp.asarray(pred), jnp.asarray(target)
    assert float(psnr(a, b, crop_border=4)) == np.inf
    assert float(ssim(a, b, crop_border=4)) == pytest.approx(1.0, abs=1e-6)
    assert float(psnr(a, b)) < 30
    # SSIM's 'valid' windows start 5 pixels in, but their support still reaches the damage.
    assert float(ssim(a, b)) < 0.99


def test_quantisation_is_uint8_rounding():
    x = jnp.array([-0.2, 0.0, 0.4 / 255, 0.6 / 255, 254.4 / 255, 1.0, 1.7])
    np.testing.assert_array_equal(np.asarray(quantize_to_255(x)), [0, 0, 0, 1, 254, 255, 255])
    # Differences below half a grey level vanish after quantisation.
    target = PAIRS["noisy"][1]
    shifted = np.round(target * 255) / 255 + np.float32(0.3 / 255)
    assert float(psnr(jnp.asarray(shifted), jnp.asarray(target))) == np.inf


def test_batched_matches_per_image_and_jit():
    preds = np.stack([PAIRS["noisy"][0], PAIRS["blurred"][0], PAIRS["overshoot"][0]])
    targets = np.stack([PAIRS[n][1] for n in ("noisy", "blurred", "overshoot")])

    @jax.jit
    def both(p, t):
        return psnr(p, t, crop_border=2, y_only=True), ssim(p, t, crop_border=2, y_only=True)

    batch_psnr, batch_ssim = both(jnp.asarray(preds), jnp.asarray(targets))
    assert batch_psnr.shape == batch_ssim.shape == (3,)
    for i in range(3):
        assert float(batch_psnr[i]) == pytest.approx(_ref_psnr(preds[i], targets[i], 2, True))
        assert abs(float(batch_ssim[i]) - _ref_ssim(preds[i], targets[i], 2, True)) < 1e-5


def test_invalid_inputs():
    img = jnp.zeros((16, 16, 3))
    with pytest.raises(ValueError):
        psnr(img, jnp.zeros((16, 15, 3)))
    with pytest.raises(ValueError):
        ssim(img, img, crop_border=3)  # 10x10 left: smaller than the window
    with pytest.raises(ValueError):
        psnr(jnp.zeros((16, 16, 4)), jnp.zeros((16, 16, 4)), y_only=True)
    with pytest.raises(ValueError, match="float"):
        psnr(jnp.zeros((16, 16, 3), jnp.uint8), jnp.zeros((16, 16, 3), jnp.uint8))
