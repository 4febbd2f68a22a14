"""Tests for the shared SR building blocks in genres_jax.models.layers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genres_jax.models.layers import (
    Upsampler,
    lr_receptive_radius,
    mean_shift,
    pixel_shuffle,
    upsampler_stages,
)


def torch_pixel_shuffle_nchw(x: np.ndarray, r: int) -> np.ndarray:
    """PyTorch's nn.PixelShuffle definition on NCHW, written out with reshape/transpose."""
    n, crr, h, w = x.shape
    c = crr // (r * r)
    x = x.reshape(n, c, r, r, h, w)
    x = x.transpose(0, 1, 4, 2, 5, 3)  # (n, c, h, i, w, j)
    return x.reshape(n, c, h * r, w * r)


@pytest.mark.parametrize("r", [2, 3, 4])
@pytest.mark.parametrize("c", [1, 3])
def test_pixel_shuffle_matches_torch_definition(r, c):
    rng = np.random.default_rng(0)
    x_nchw = rng.standard_normal((2, c * r * r, 5, 4)).astype(np.float32)
    expected = torch_pixel_shuffle_nchw(x_nchw, r)
    got = pixel_shuffle(jnp.asarray(x_nchw.transpose(0, 2, 3, 1)), r)
    assert got.shape == (2, 5 * r, 4 * r, c)
    np.testing.assert_array_equal(np.asarray(got).transpose(0, 3, 1, 2), expected)


def test_pixel_shuffle_channel_index_lands_at_offset():
    r, c_out = 3, 2
    for c in range(c_out):
        for i in range(r):
            for j in range(r):
                x = np.zeros((1, 2, 2, c_out * r * r), np.float32)
                x[0, 1, 0, c * r * r + i * r + j] = 1.0
                y = np.asarray(pixel_shuffle(jnp.asarray(x), r))
                (pos,) = np.argwhere(y)
                assert tuple(pos) == (0, 1 * r + i, 0 * r + j, c)


def test_pixel_shuffle_rejects_bad_channels():
    with pytest.raises(ValueError, match="divisible"):
        pixel_shuffle(jnp.zeros((1, 2, 2, 6)), 2)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_upsampler_shape_and_params(scale):
    f = 4
    model = Upsampler(features=f, scale=scale)
    x = jnp.ones((1, 3, 5, 7))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    y = jax.eval_shape(model.apply, variables, x)
    assert y.shape == (1, 3 * scale, 5 * scale, f)
    # One 3x3 conv per stage: the first from 7 input channels, later ones from f.
    if scale == 4:
        expected = (9 * 7 * 4 * f + 4 * f) + (9 * f * 4 * f + 4 * f)
    else:
        expected = 9 * 7 * scale * scale * f + scale * scale * f
    n = sum(p.size for p in jax.tree.leaves(variables["params"]))
    assert n == expected


@pytest.mark.parametrize("scale", [1, 5, 8])
def test_upsampler_rejects_unsupported_scale(scale):
    with pytest.raises(ValueError, match="supports scales"):
        upsampler_stages(scale)
    with pytest.raises(ValueError, match="supports scales"):
        Upsampler(features=4, scale=scale).init(jax.random.key(0), jnp.ones((1, 2, 2, 3)))


def test_mean_shift_round_trip_and_errors():
    x = jnp.full((1, 2, 2, 3), 0.5)
    mean = (0.1, 0.2, 0.3)
    centred = mean_shift(x, mean, -1)
    np.testing.assert_allclose(np.asarray(centred[0, 0, 0]), [0.4, 0.3, 0.2], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(mean_shift(centred, mean, 1)), np.asarray(x), rtol=1e-6)
    with pytest.raises(ValueError, match="channels"):
        mean_shift(x, (0.1, 0.2), -1)
    with pytest.raises(ValueError, match="sign"):
        mean_shift(x, mean, 2)


def test_lr_receptive_radius_counts_fractions_exactly():
    assert lr_receptive_radius([]) == 0
    assert lr_receptive_radius([(1, 1)] * 5) == 5
    assert lr_receptive_radius([(1, 1), (1, 2)]) == 2  # 1.5 rounds up
    assert lr_receptive_radius([(1, 3)] * 3) == 1  # exactly 1, no float round-up to 2
    assert lr_receptive_radius([(1, 1), (1, 2), (1, 4)]) == 2  # 1.75
