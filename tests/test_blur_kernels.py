"""Blur kernels against float64 closed forms written here, scipy's Bessel J1 and its Gaussian pdf.

The reference builds the covariance Sigma = R(theta) diag(sx^2, sy^2) R(theta)^T explicitly and
inverts it with numpy (the library rotates the grid instead), on a grid with x along columns
and y along rows.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from genres_jax.ops import blur_kernels as bk

# Jitted once per kernel size: one compiled program instead of op-by-op dispatch.
_aniso = jax.jit(bk.anisotropic_gaussian_kernel, static_argnums=0)
_iso = jax.jit(bk.isotropic_gaussian_kernel, static_argnums=0)
_generalized = jax.jit(bk.generalized_gaussian_kernel, static_argnums=0)
_plateau = jax.jit(bk.plateau_kernel, static_argnums=0)
_sinc = jax.jit(bk.sinc_kernel, static_argnums=0)

ANISO_CASES = [(5, 2.0, 2.0, 0.0), (9, 3.0, 0.7, 0.4), (11, 0.8, 2.5, -2.1), (21, 2.9, 1.3, 3.0)]
BETAS = [0.5, 1.0, 1.7, 4.0]


def _ref_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    half = (size - 1) // 2
    x, y = np.meshgrid(np.arange(-half, half + 1.0), np.arange(-half, half + 1.0))
    return x, y


def _ref_q(size: int, sx: float, sy: float, theta: float) -> np.ndarray:
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    sigma = rot @ np.diag([sx**2, sy**2]) @ rot.T
    inv = np.linalg.inv(sigma)
    x, y = _ref_grid(size)
    v = np.stack([x, y], axis=-1)
    return np.einsum("...i,ij,...j->...", v, inv, v)


def _normalised(k: np.ndarray) -> np.ndarray:
    return k / k.sum()


def _ref_sinc(size: int, omega: float) -> np.ndarray:
    x, y = _ref_grid(size)
    r = np.hypot(x, y)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = omega * special.j1(omega * r) / (2 * np.pi * r)
    k[r == 0] = omega**2 / (4 * np.pi)
    return _normalised(k)


def _embed(k: np.ndarray, size: int) -> np.ndarray:
    pad = (size - k.shape[0]) // 2
    return np.pad(k, pad)


@pytest.mark.parametrize(("size", "sx", "sy", "theta"), ANISO_CASES)
def test_anisotropic_gaussian_matches_closed_form(size, sx, sy, theta):
    got = np.asarray(_aniso(size, sx, sy, theta), np.float64)
    np.testing.assert_allclose(got.sum(), 1.0, atol=1e-6)
    np.testing.assert_allclose(
        got, _normalised(np.exp(-0.5 * _ref_q(size, sx, sy, theta))), atol=1e-7
    )
    # The same kernel as scipy's bivariate normal density with that covariance, renormalised.
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    x, y = _ref_grid(size)
    pdf = stats.multivariate_normal(cov=rot @ np.diag([sx**2, sy**2]) @ rot.T).pdf
    np.testing.assert_allclose(got, _normalised(pdf(np.stack([x, y], -1))), atol=1e-7)


def test_isotropic_gaussian_and_orientation():
    got = np.asarray(_iso(7, 1.3), np.float64)
    x, y = _ref_grid(7)
    np.testing.assert_allclose(got, _normalised(np.exp(-(x**2 + y**2) / (2 * 1.3**2))), atol=1e-7)
    # theta = 0 with sigma_x > sigma_y spreads along x (columns); a quarter turn along rows.
    wide = np.asarray(_aniso(9, 3.0, 0.6, 0.0))
    assert wide[4, 6] > 10 * wide[6, 4]
    tall = np.asarray(_aniso(9, 3.0, 0.6, math.pi / 2))
    np.testing.assert_allclose(tall, wide.T, atol=1e-7)


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize(("size", "sx", "sy", "theta"), ANISO_CASES[1:3])
def test_generalized_and_plateau_match_closed_forms(size, sx, sy, theta, beta):
    q = _ref_q(size, sx, sy, theta)
    gen = np.asarray(_generalized(size, sx, sy, theta, beta), np.float64)
    np.testing.assert_allclose(gen.sum(), 1.0, atol=1e-6)
    np.testing.assert_allclose(gen, _normalised(np.exp(-0.5 * q**beta)), atol=1e-6)
    plateau = np.asarray(_plateau(size, sx, sy, theta, beta), np.float64)
    np.testing.assert_allclose(plateau.sum(), 1.0, atol=1e-6)
    np.testing.assert_allclose(plateau, _normalised(1.0 / (1.0 + q**beta)), atol=1e-6)


def test_bessel_j1_matches_scipy():
    x = np.linspace(-40.0, 40.0, 4001)
    got = np.asarray(bk.bessel_j1(jnp.asarray(x, jnp.float32)), np.float64)
    np.testing.assert_allclose(got, special.j1(x), atol=1e-6)


@pytest.mark.parametrize(("size", "omega"), [(7, math.pi / 3), (13, math.pi / 5), (21, math.pi)])
def test_sinc_matches_closed_form(size, omega):
    got = np.asarray(_sinc(size, omega), np.float64)
    np.testing.assert_allclose(got.sum(), 1.0, atol=1e-6)
    want = _ref_sinc(size, omega)
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert want.min() < -1e-3  # Ringing lobes: the reason this filter is used at all.


def test_traced_support_is_the_small_kernel_zero_padded():
    @jax.jit
    def kernels(support, omega):
        return (
            bk.anisotropic_gaussian_kernel(21, 2.5, 1.0, 0.7, support),
            bk.plateau_kernel(21, 2.5, 1.0, 0.7, 1.5, support),
            bk.sinc_kernel(21, omega, support),
        )

    for support in (7, 13):
        gauss, plateau, sinc = (np.asarray(k, np.float64) for k in kernels(support, 1.3))
        q = _ref_q(support, 2.5, 1.0, 0.7)
        np.testing.assert_allclose(gauss, _embed(_normalised(np.exp(-0.5 * q)), 21), atol=1e-7)
        np.testing.assert_allclose(plateau, _embed(_normalised(1 / (1 + q**1.5)), 21), atol=1e-7)
        np.testing.assert_allclose(sinc, _embed(_ref_sinc(support, 1.3), 21), atol=2e-6)


def test_even_or_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="odd"):
        bk.isotropic_gaussian_kernel(8, 1.0)
    with pytest.raises(ValueError, match="sizes"):
        bk.KernelConfig(sizes=(7, 8))
    with pytest.raises(ValueError, match="type_probs"):
        bk.KernelConfig(type_probs=(0.5, 0.5, 0.5, 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="sigma_range"):
        bk.KernelConfig(sigma_range=(0.0, 1.0))


def _random_kernels(cfg: bk.KernelConfig, n: int, seed: int = 0) -> np.ndarray:
    keys = jax.random.split(jax.random.key(seed), n)
    return np.asarray(jax.jit(jax.vmap(lambda k: bk.random_kernel(k, cfg)))(keys), np.float64)


def _support(k: np.ndarray) -> int:
    rows = np.flatnonzero(np.abs(k).sum(axis=1) > 0)
    return int(rows[-1] - rows[0] + 1)


def test_random_kernels_sum_to_one_and_have_drawn_supports():
    # sigma 3 keeps every weight inside the support above float32 underflow, so the non-zero
    # extent is the drawn support.
    cfg = bk.KernelConfig(sigma_range=(3.0, 3.0), sinc_prob=0.5)
    kernels = _random_kernels(cfg, 256)
    assert kernels.shape == (256, 21, 21)
    np.testing.assert_allclose(kernels.sum(axis=(1, 2)), 1.0, atol=1e-5)
    supports = [_support(k) for k in kernels]
    assert set(supports) == set(cfg.sizes)
    # Every family is point-symmetric about the centre: k(x, y) = k(-x, -y).
    np.testing.assert_allclose(kernels, kernels[:, ::-1, ::-1], atol=1e-7)
    # Only sinc kernels have negative lobes (each has some for omega >= pi / 5 at these sizes).
    sinc_fraction = np.mean(kernels.min(axis=(1, 2)) < 0)
    assert abs(sinc_fraction - 0.5) < 0.1  # 4 standard errors of a 256-draw proportion.


def _expected_from_uniforms(u: np.ndarray, cfg: bk.KernelConfig) -> np.ndarray:
    """The recipe's draw written out: every parameter uniform in its range, beta's side 50/50."""
    size = cfg.sizes[min(int(u[0] * len(cfg.sizes)), len(cfg.sizes) - 1)]
    kind = bk.KERNEL_TYPES[int(np.searchsorted(np.cumsum(cfg.type_probs), u[1], side="right"))]

    def between(v, r):
        return r[0] + (r[1] - r[0]) * v

    if u[8] < cfg.sinc_prob:
        omega_range = cfg.sinc_omega_small if size < cfg.sinc_large_from else cfg.sinc_omega_large
        return _embed(_ref_sinc(size, between(u[7], omega_range)), cfg.max_size)
    sx = between(u[2], cfg.sigma_range)
    iso = kind.endswith("iso") and not kind.endswith("aniso")
    sy = sx if iso else between(u[3], cfg.sigma_range)
    theta = 0.0 if iso else between(u[4], cfg.rotation_range)
    q = _ref_q(size, sx, sy, theta)
    beta_range = cfg.betap_range if kind.startswith("plateau") else cfg.betag_range
    beta = between(u[6], (beta_range[0], 1.0) if u[5] < 0.5 else (1.0, beta_range[1]))
    if kind.startswith("plateau"):
        k = 1.0 / (1.0 + q**beta)
    elif kind.startswith("generalized"):
        k = np.exp(-0.5 * q**beta)
    else:
        k = np.exp(-0.5 * q)
    return _embed(_normalised(k), cfg.max_size)


def test_kernel_parameters_follow_the_uniform_draws():
    cfg = bk.KernelConfig()
    # One row per family (u[1] inside each type's probability interval) and two sinc rows.
    edges = np.concatenate([[0.0], np.cumsum(cfg.type_probs)])
    rows = []
    for i in range(len(bk.KERNEL_TYPES)):
        mid = (edges[i] + edges[i + 1]) / 2
        rows.append([(i + 0.3) / 8, mid, 0.7, 0.15, 0.8, 0.3 if i % 2 else 0.6, 0.4, 0.5, 0.9])
    rows.append([0.1, 0.2, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25, 0.05])  # size 7, small-omega range
    rows.append([0.9, 0.2, 0.5, 0.5, 0.5, 0.5, 0.5, 0.75, 0.05])  # size 21, large-omega range
    u = np.asarray(rows, np.float32)
    got = jax.jit(jax.vmap(lambda v: bk.kernel_from_uniforms(v, cfg)))(jnp.asarray(u))
    for row, kernel in zip(u.astype(np.float64), np.asarray(got, np.float64), strict=True):
        np.testing.assert_allclose(kernel, _expected_from_uniforms(row, cfg), atol=2e-6)


def test_category_never_draws_zero_probability():
    probs = (0.1,) * 10 + (0.0,)  # The float32 cumsum of ten 0.1s is below 1.
    u = jnp.asarray([0.0, 0.0999, 0.1001, 0.95, 1.0 - 2.0**-24])
    got = [int(bk.category_from_uniform(v, probs)) for v in u]
    assert got == [0, 0, 1, 9, 9]
