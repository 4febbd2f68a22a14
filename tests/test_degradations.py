"""Degradation operators against independent references, and the full pipeline's contract.

References: resizing against a float64 box integral written here, scikit-image's block mean,
Pillow's float ("F") resampler (same pixel-centre convention, Keys a = -0.5 bicubic and
antialiasing as MATLAB; it truncates kernels at the border where MATLAB mirrors them, so it is
compared on interior pixels) and the project's MATLAB `imresize` (full image, borders
included); filtering against scipy.ndimage.correlate (mode "mirror" = edge not repeated);
noise against scipy.stats.

Tolerances: resampling weights are built in float32 from traced sizes (coordinates up to ~50
carry ~3e-6 of rounding), hence 1e-5 against the float64 references (measured max 2.1e-6).
Statistical checks allow 4 standard errors of the estimate (fixed keys, so they are
deterministic; a correct sampler fails one with probability ~6e-5 per check on a new key).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import skimage.data
from PIL import Image
from scipy import ndimage, stats
from skimage.transform import downscale_local_mean

from genres_jax.ops import degradations as deg
from genres_jax.ops.imresize import imresize_numpy

# ------------------------------------------------------------------------------------------- #
# Resizing
# ------------------------------------------------------------------------------------------- #

_resize = jax.jit(deg.resize, static_argnames=("in_hw", "out_hw", "out_shape", "method"))


def _area_1d(x: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Mean of the piecewise-constant signal over each of n_out equal footprints (integral)."""
    x = np.moveaxis(x, axis, 0)
    n_in = x.shape[0]
    cum = np.concatenate([np.zeros_like(x[:1]), np.cumsum(x, axis=0)])

    def integral(t: float) -> np.ndarray:  # int_0^t of the signal
        k = min(int(math.floor(t)), n_in - 1)
        return cum[k] + (t - k) * x[k]

    r = n_in / n_out
    out = np.stack([(integral((i + 1) * r) - integral(i * r)) / r for i in range(n_out)])
    return np.moveaxis(out, 0, axis)


def _pillow_resize(x: np.ndarray, out_hw: tuple[int, int], method: str) -> np.ndarray:
    flag = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}[method]
    channels = [
        np.asarray(
            Image.fromarray(x[..., c].astype(np.float32), mode="F").resize(out_hw[::-1], flag)
        )
        for c in range(x.shape[-1])
    ]
    return np.stack(channels, axis=-1).astype(np.float64)


def _interior(n_in: int, n_out: int, half_width: float) -> np.ndarray:
    """Outputs whose (antialiased) kernel support lies inside [0, n_in - 1]."""
    s = n_out / n_in
    reach = half_width / min(s, 1.0)
    centre = (np.arange(n_out) + 0.5) / s - 0.5
    return (centre - reach > -1) & (centre + reach < n_in)


@pytest.fixture(scope="module")
def small_image() -> np.ndarray:
    return np.random.default_rng(0).random((30, 40, 2))


@pytest.mark.parametrize("out_hw", [(7, 11), (30, 10), (45, 52)])
def test_area_is_the_box_integral(small_image, out_hw):
    got = np.asarray(_resize(jnp.asarray(small_image, jnp.float32), (30, 40), out_hw, None, "area"))
    want = _area_1d(_area_1d(small_image, out_hw[0], 0), out_hw[1], 1)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_area_integer_factor_is_block_mean(small_image):
    got = np.asarray(
        _resize(jnp.asarray(small_image, jnp.float32), (30, 40), (10, 8), None, "area")
    )
    np.testing.assert_allclose(got, downscale_local_mean(small_image, (3, 5, 1)), atol=1e-5)


@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
@pytest.mark.parametrize("out_hw", [(11, 15), (45, 52), (19, 40)])
def test_interpolation_matches_pillow_inside_and_matlab_everywhere(small_image, method, out_hw):
    got = np.asarray(_resize(jnp.asarray(small_image, jnp.float32), (30, 40), out_hw, None, method))
    half = {"bilinear": 1.0, "bicubic": 2.0}[method]
    rows, cols = _interior(30, out_hw[0], half), _interior(40, out_hw[1], half)
    assert rows.sum() >= 3 and cols.sum() >= 3
    pil = _pillow_resize(small_image, out_hw, method)
    np.testing.assert_allclose(got[rows][:, cols], pil[rows][:, cols], atol=1e-5)
    if method == "bilinear" and min(out_hw[0] / 30, out_hw[1] / 40) >= 1:
        np.testing.assert_allclose(got, pil, atol=1e-5)  # Upscaling: borders agree too.
    matlab = imresize_numpy(small_image, output_shape=out_hw, method=method)
    np.testing.assert_allclose(got, matlab, atol=1e-5)


def test_traced_sizes_in_buffers(small_image):
    image = small_image[:13, :17]
    buffer = np.full((20, 24, 2), 1e3)  # Garbage outside the image must not leak in.
    buffer[:13, :17] = image

    @jax.jit
    def traced(x, in_hw, out_hw, method):
        return deg.resize(x, in_hw, out_hw, (16, 16), method)

    for index, name in enumerate(deg.RESIZE_METHODS):
        sizes = (jnp.asarray(13), jnp.asarray(17)), (jnp.asarray(9), jnp.asarray(11))
        got = np.asarray(traced(jnp.asarray(buffer, jnp.float32), *sizes, jnp.asarray(index)))
        want = np.asarray(_resize(jnp.asarray(image, jnp.float32), (13, 17), (9, 11), None, name))
        np.testing.assert_allclose(got[:9, :11], want, atol=1e-5)
        np.testing.assert_array_equal(got[9:], 0.0)
        np.testing.assert_array_equal(got[:, 11:], 0.0)
    with pytest.raises(ValueError, match="valid methods"):
        deg.resize(jnp.zeros((4, 4, 1)), (4, 4), (2, 2), method="nearest")


# ------------------------------------------------------------------------------------------- #
# Filtering
# ------------------------------------------------------------------------------------------- #


@pytest.mark.parametrize("size", [5, 21])  # 21 > the image: repeated reflections.
def test_filter2d_is_mirror_correlation(small_image, size):
    image = small_image[:9, :14]
    kernel = np.random.default_rng(size).random((size, size))  # Asymmetric: catches flips.
    got = np.asarray(jax.jit(deg.filter2d)(jnp.asarray(image, jnp.float32), jnp.asarray(kernel)))
    want = np.stack(
        [ndimage.correlate(image[..., c], kernel, mode="mirror") for c in range(2)], axis=-1
    )
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # The same image in the corner of a bigger buffer, read with hw: the corner is unchanged.
    buffer = np.zeros((16, 16, 2))
    buffer[:9, :14] = image
    hw = (jnp.asarray(9), jnp.asarray(14))
    corner = jax.jit(deg.filter2d)(jnp.asarray(buffer, jnp.float32), jnp.asarray(kernel), hw)
    np.testing.assert_allclose(np.asarray(corner)[:9, :14], want, rtol=1e-5)


# ------------------------------------------------------------------------------------------- #
# Noise
# ------------------------------------------------------------------------------------------- #


def test_gaussian_noise_statistics():
    noise = jax.jit(deg.gaussian_noise, static_argnums=1)
    sigma = 20.0
    colour = np.asarray(noise(jax.random.key(0), (64, 64, 3), sigma, False), np.float64)
    grey = np.asarray(noise(jax.random.key(1), (64, 64, 3), sigma, True), np.float64)
    n = colour.size
    assert abs(colour.mean()) < 4 * sigma / 255 / math.sqrt(n)
    assert abs(colour.std() / (sigma / 255) - 1) < 4 / math.sqrt(2 * n)
    assert stats.kstest(colour.ravel(), stats.norm(scale=sigma / 255).cdf).pvalue > 1e-3
    corr = np.corrcoef(colour.reshape(-1, 3).T)
    assert np.abs(corr[np.triu_indices(3, 1)]).max() < 4 / math.sqrt(64 * 64)
    # Grey noise: one draw, identical in the three channels, with the same distribution.
    np.testing.assert_array_equal(grey[..., 0], grey[..., 1])
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
    assert abs(grey.std() / (sigma / 255) - 1) < 4 / math.sqrt(2 * 64 * 64)


@pytest.mark.parametrize("lam", [0.0, 0.7, 4.0, 9.5, 10.0, 37.0, 200.0])
def test_poisson_sampler_matches_scipy(lam):
    n = 20000
    draws = np.asarray(jax.jit(deg.poisson)(jax.random.key(3), jnp.full((n,), lam)))
    np.testing.assert_array_equal(draws, np.round(draws))
    ref = stats.poisson(lam)
    assert abs(draws.mean() - ref.mean()) <= 4 * math.sqrt(ref.var() / n) + 1e-9
    # Var of the sample variance ~ (2 lam^2 + lam) / n for a Poisson.
    assert abs(draws.var() - ref.var()) <= 4 * math.sqrt((2 * lam**2 + lam) / n) + 1e-9
    if lam > 0:
        ks = np.arange(int(ref.ppf(1e-4)), int(ref.ppf(1 - 1e-4)) + 1)
        observed = np.array([np.sum(draws == k) for k in ks])
        expected = ref.pmf(ks) * n
        keep = expected > 5
        expected = expected[keep] * observed[keep].sum() / expected[keep].sum()
        assert stats.chisquare(observed[keep], expected).pvalue > 1e-3


def _blocks_image() -> tuple[np.ndarray, list[float]]:
    """Four flat blocks plus a ramp of grey levels: a known count of distinct 8-bit levels."""
    image = np.zeros((64, 64, 3))
    image[:, :32] = (np.arange(64 * 32).reshape(64, 32, 1) % 90 + 10) / 255  # 90 levels
    levels = [0.05, 0.2, 0.5, 0.9]
    for i, v in enumerate(levels):
        image[16 * i : 16 * (i + 1), 32:] = round(v * 255) / 255
    return image, [round(v * 255) / 255 for v in levels]


def test_poisson_noise_variance_is_proportional_to_the_signal():
    image, levels = _blocks_image()
    big = 2 ** math.ceil(math.log2(len(np.unique(np.round(image * 255)))))
    scale = 1.5
    noise = np.asarray(
        jax.jit(deg.poisson_noise)(
            jax.random.key(4), jnp.asarray(image, jnp.float32), scale, False
        ),
        np.float64,
    )
    # Each value is scale * (count / L - v) with an integer Poisson count.
    counts = (noise / scale + image) * big
    np.testing.assert_allclose(counts, np.round(counts), atol=2e-3)
    for i, v in enumerate(levels):
        block = noise[16 * i : 16 * (i + 1), 32:]
        n = block.size
        want_var = scale**2 * v / big
        assert abs(block.mean()) < 4 * math.sqrt(want_var / n)
        assert abs(block.var() / want_var - 1) < 4 * math.sqrt(2 / n + 1 / (n * v * big))


def test_grey_poisson_noise_follows_luma_and_counts_inside_hw():
    image, _ = _blocks_image()
    image[..., 0] *= 0.5  # Colour: the grey noise follows the BT.601 luma, not a channel.
    f = jax.jit(deg.poisson_noise)
    noise = np.asarray(f(jax.random.key(5), jnp.asarray(image, jnp.float32), 1.0, True), np.float64)
    np.testing.assert_array_equal(noise[..., 0], noise[..., 1])
    luma = np.round((image @ np.array([0.299, 0.587, 0.114])) * 255) / 255
    big = 2 ** math.ceil(math.log2(len(np.unique(np.round(luma * 255)))))
    counts = (noise[..., 0] + luma) * big
    np.testing.assert_allclose(counts, np.round(counts), atol=2e-3)
    # Only the hw corner's levels count: 1 level there gives L = 1 whatever lies outside.
    buffer = np.random.default_rng(0).random((16, 16, 3))
    buffer[:5, :6] = 0.4
    corner = f(jax.random.key(6), jnp.asarray(buffer, jnp.float32), 1.0, False, (5, 6))
    counts = np.asarray(corner, np.float64)[:5, :6] + round(0.4 * 255) / 255
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-4)


# ------------------------------------------------------------------------------------------- #
# The pipeline
# ------------------------------------------------------------------------------------------- #

OFF = {"blur_prob": 0.0, "resize_probs": (0.0, 0.0, 1.0), "noise_prob": 0.0, "jpeg_prob": 0.0}


@pytest.fixture(scope="module")
def hr() -> np.ndarray:
    photos = [skimage.data.astronaut()[80:128, 160:224], skimage.data.coffee()[100:148, 200:264]]
    return np.stack(photos).astype(np.float32) / 255.0  # (2, 48, 64, 3): H != W on purpose


@pytest.fixture(scope="module")
def default_outputs(hr):
    return [np.asarray(deg.degrade(jax.random.key(k), hr)) for k in (0, 0, 1)]


def test_pipeline_output_contract(hr, default_outputs):
    out = default_outputs[0]
    assert out.shape == (2, 12, 16, 3) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_allclose(out * 255, np.round(out * 255), atol=1e-4)  # 8-bit levels
    # Still the same pictures: mean colour kept, close to the clean x4 bicubic image.
    clean = imresize_numpy(hr, output_shape=(12, 16))
    np.testing.assert_allclose(out.mean(axis=(1, 2)), clean.mean(axis=(1, 2)), atol=0.08)
    assert np.mean((out - clean) ** 2) < 0.02


def test_pipeline_is_deterministic_per_key_and_per_image(hr, default_outputs):
    same, again, other = default_outputs
    np.testing.assert_array_equal(same, again)
    assert np.abs(same - other).mean() > 1e-3
    twins = np.asarray(deg.degrade(jax.random.key(2), np.stack([hr[0], hr[0]])))
    assert np.abs(twins[0] - twins[1]).mean() > 1e-3  # Independent draws per image.


def test_steps_off_is_classical_bicubic_and_noise_range_is_the_configs():
    # Everything off but stage 2's grey Gaussian noise (sigma 12 levels), applied to each image
    # with probability 1/2: the clean images must be MATLAB's bicubic x2 downscale rounded to
    # 8 bits, the noisy ones that plus noise of the configured sigma. One compile covers both.
    stage2 = {**OFF, "noise_prob": 0.5, "gaussian_noise_prob": 1.0, "grey_noise_prob": 1.0}
    stage2["noise_sigma_range"] = (12.0, 12.0)
    cfg = deg.DegradationConfig.from_dict(
        {"stage1": OFF, "stage2": stage2, "final_sinc_prob": 0.0, "resize_methods": ["bicubic"]}
    )
    photo = skimage.data.chelsea()[172:300, 195:451].astype(np.float32) / 255.0  # mid-tones
    hr = photo.reshape(4, 32, 8, 32, 3).transpose(0, 2, 1, 3, 4).reshape(32, 32, 32, 3)
    out = jax.jit(lambda key, x: deg.degrade(key, x, cfg, 2))(jax.random.key(0), jnp.asarray(hr))
    assert out.shape == (32, 16, 16, 3)
    bicubic = imresize_numpy(hr, 0.5) * 255
    residual = np.asarray(out, np.float64) * 255 - bicubic
    clean = np.abs(residual).max(axis=(1, 2, 3)) < 2
    assert 4 <= clean.sum() <= 28  # Binomial(32, 1/2): outside with probability < 1e-4.

    want = np.clip(np.round(bicubic[clean]), 0, 255)
    diff = np.abs(np.asarray(out, np.float64)[clean] * 255 - want)
    assert diff.max() <= 1 + 1e-3  # float32 vs float64 at .5 rounding boundaries only
    assert np.mean(diff > 1e-3) < 0.01

    noisy = residual[~clean]
    unclipped = np.all((bicubic[~clean] > 60) & (bicubic[~clean] < 195), axis=-1)
    noisy = noisy[unclipped]  # (pixels, 3) 5 sigma away from 0 and 255: never clipped
    # Grey noise: one draw in all channels, rounded separately (each within 1/2 a level).
    assert np.abs(noisy - noisy.mean(axis=-1, keepdims=True)).max() <= 1.0 + 1e-3
    # Rounding adds a variance of 1/12 level^2 to the sigma^2 = 144 of the configuration.
    n = noisy.shape[0]
    assert n > 2000
    assert abs(noisy.mean()) < 4 * 12 / math.sqrt(n)
    assert abs(noisy[:, 1].std() / math.sqrt(144 + 1 / 12) - 1) < 4 / math.sqrt(2 * n)


def test_config_from_dict_and_errors():
    cd = ml_collections.ConfigDict({"stage2": {"blur": {"sigma_range": [0.3, 1.0]}}})
    cfg = deg.DegradationConfig.from_dict(cd)
    assert cfg.stage2.blur.sigma_range == (0.3, 1.0)
    assert cfg.stage2.blur_prob == 0.8 and cfg.stage1 == deg.StageConfig()  # defaults kept
    hash(cfg)  # a static jit argument
    with pytest.raises(ValueError, match="valid keys"):
        deg.DegradationConfig.from_dict({"stage1": {"blur_probability": 0.5}})
    with pytest.raises(ValueError, match="valid methods"):
        deg.DegradationConfig.from_dict({"resize_methods": ["nearest"]})
    with pytest.raises(ValueError, match="probability"):
        deg.DegradationConfig.from_dict({"stage1": {"noise_prob": 1.5}})
    with pytest.raises(ValueError, match="number"):
        deg.DegradationConfig.from_dict({"final_sinc_prob": "high"})
    with pytest.raises(ValueError, match="mapping"):
        deg.DegradationConfig.from_dict({"stage1": [0.5]})
    with pytest.raises(ValueError, match="resize_range"):
        deg.StageConfig(resize_range=(1.2, 2.0))
    with pytest.raises(ValueError, match="multiples"):
        deg.degrade(jax.random.key(0), np.zeros((1, 30, 32, 3)), scale=4)
    with pytest.raises(ValueError, match="shape"):
        deg.degrade(jax.random.key(0), np.zeros((32, 32, 3)))
    with pytest.raises(ValueError, match="DegradationConfig"):
        deg.degrade(jax.random.key(0), np.zeros((1, 32, 32, 3)), cfg={"stage1": {}})
