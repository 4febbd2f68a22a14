"""BT.601 colour conversion against MATLAB's rgb2ycbcr table written out here."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genres_jax.ops.color import rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb

# MATLAB rgb2ycbcr for double input: ycbcr = (OFFSET + T @ rgb) / 255, rgb in [0, 1].
T = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]])
OFFSET = np.array([16.0, 128.0, 128.0])


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return np.random.default_rng(1).random((4, 5, 6, 3)).astype(np.float32)


def test_known_values():
    white_black = jnp.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    ycc = np.asarray(rgb_to_ycbcr(white_black)) * 255
    np.testing.assert_allclose(ycc, [[235, 128, 128], [16, 128, 128]], atol=1e-4)
    primaries = np.asarray(rgb_to_ycbcr(jnp.eye(3))) * 255
    # Pure blue has the largest Cb and pure red the largest Cr: 240 = 128 + 112.
    np.testing.assert_allclose(primaries[2, 1], 240, atol=1e-4)
    np.testing.assert_allclose(primaries[0, 2], 240, atol=1e-4)
    np.testing.assert_allclose(np.asarray(rgb_to_y(white_black))[:, 0], [235 / 255, 16 / 255])


def test_matches_matrix(rgb):
    want = (OFFSET + rgb.astype(np.float64) @ T.T) / 255
    np.testing.assert_allclose(np.asarray(rgb_to_ycbcr(jnp.asarray(rgb))), want, atol=1e-6)
    y = np.asarray(rgb_to_y(jnp.asarray(rgb)))
    assert y.shape == (*rgb.shape[:-1], 1)
    np.testing.assert_allclose(y[..., 0], want[..., 0], atol=1e-6)


def test_inverse_matches_inverse_matrix(rgb):
    ycc = (OFFSET + rgb.astype(np.float64) @ T.T) / 255
    got = np.asarray(ycbcr_to_rgb(jnp.asarray(ycc, jnp.float32)))
    want = (ycc * 255 - OFFSET) @ np.linalg.inv(T).T
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(got, rgb, atol=1e-5)


def test_round_trip_jit(rgb):
    back = jax.jit(lambda v: ycbcr_to_rgb(rgb_to_ycbcr(v)))(jnp.asarray(rgb))
    np.testing.assert_allclose(np.asarray(back), rgb, atol=1e-5)


def test_rejects_wrong_channel_count():
    with pytest.raises(ValueError):
        rgb_to_ycbcr(jnp.zeros((4, 4, 1)))
    with pytest.raises(ValueError):
        rgb_to_y(jnp.zeros((4, 4, 4)))
