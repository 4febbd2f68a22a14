"""Blur kernels of the Real-ESRGAN degradation model, as pure JAX functions.

Every kernel is a (K, K) float32 array normalised to sum 1, evaluated on the integer grid
x, y in {-(K-1)/2, ..., (K-1)/2}, with x the column offset (horizontal) and y the row offset
(vertical). The anisotropic families use the covariance

    Sigma = R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T,   R = [[cos, -sin], [sin, cos]],

and the quadratic form q = [x, y] Sigma^-1 [x, y]^T. The families are

    Gaussian              exp(-q / 2)
    generalized Gaussian  exp(-q^beta / 2)
    plateau               1 / (1 + q^beta)
    circular sinc (jinc)  omega J1(omega r) / (2 pi r), r = sqrt(x^2 + y^2); omega^2 / (4 pi) at 0

Shapes must be static under jit while Real-ESRGAN draws odd kernel sizes 7..21, so every kernel
is evaluated on a fixed grid (`kernel_size`, 21 by default) and set to zero outside a centred
`support` x `support` window (`support` may be traced) before normalising: exactly the drawn-size
kernel zero-padded to the fixed size.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

# Order of `KernelConfig.type_probs`.
KERNEL_TYPES = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
)


def bessel_j1(x: jax.Array) -> jax.Array:
    """Bessel function of the first kind of order 1, J1(x), elementwise.

    Polynomial approximations of Abramowitz & Stegun 9.4.4 (|x| <= 3: J1(x) / x as a polynomial
    in (x/3)^2, error < 1.3e-8) and 9.4.6 (|x| > 3: J1(x) = f1 cos(theta1) / sqrt(x) with f1 and
    theta1 polynomials in 3/x, error < 1e-7); J1 is odd. In float32 the error grows slowly with
    |x| through cos(theta1), whose phase is ~x (about 3e-7 at |x| = 50).
    """
    x = jnp.asarray(x)
    x = x.astype(jnp.result_type(x.dtype, jnp.float32))
    ax = jnp.abs(x)
    t = (ax / 3.0) ** 2
    small = ax * (
        0.5
        + t
        * (
            -0.56249985
            + t
            * (
                0.21093573
                + t * (-0.03954289 + t * (0.00443319 + t * (-0.00031761 + t * 0.00001109)))
            )
        )
    )
    big = jnp.maximum(ax, 3.0)  # Keeps the unused branch finite (no 3 / 0).
    y = 3.0 / big
    f1 = 0.79788456 + y * (
        0.00000156
        + y
        * (0.01659667 + y * (0.00017105 + y * (-0.00249511 + y * (0.00113653 + y * -0.00020033))))
    )
    theta1 = (
        big
        - 2.35619449
        + y
        * (
            0.12499612
            + y
            * (
                0.00005650
                + y * (-0.00637879 + y * (0.00074348 + y * (0.00079824 + y * -0.00029166)))
            )
        )
    )
    large = f1 * jnp.cos(theta1) / jnp.sqrt(big)
    return jnp.sign(x) * jnp.where(ax <= 3.0, small, large)


def _grid(kernel_size: int) -> tuple[jax.Array, jax.Array]:
    if kernel_size < 1 or kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    half = (kernel_size - 1) // 2
    ax = jnp.arange(-half, half + 1, dtype=jnp.float32)
    return ax[None, :], ax[:, None]  # x varies along columns, y along rows.


def _finish(kernel: jax.Array, support: int | jax.Array | None) -> jax.Array:
    """Zero outside the centred support x support window, then normalise to sum 1."""
    if support is not None:
        x, y = _grid(kernel.shape[0])
        radius = (jnp.asarray(support, jnp.float32) - 1.0) / 2.0
        inside = (jnp.abs(x) <= radius) & (jnp.abs(y) <= radius)
        kernel = jnp.where(inside, kernel, 0.0)
    return kernel / jnp.sum(kernel)


def _quadratic_form(kernel_size: int, sigma_x, sigma_y, theta) -> jax.Array:
    # Sigma^-1 = R diag(1/sx^2, 1/sy^2) R^T, so q = (R^T v)_1^2 / sx^2 + (R^T v)_2^2 / sy^2.
    x, y = _grid(kernel_size)
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    u = cos * x + sin * y
    v = -sin * x + cos * y
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def anisotropic_gaussian_kernel(
    kernel_size: int,
    sigma_x: float | jax.Array,
    sigma_y: float | jax.Array,
    theta: float | jax.Array,
    support: int | jax.Array | None = None,
) -> jax.Array:
    """exp(-q / 2), q = v^T Sigma^-1 v, Sigma = R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T."""
    q = _quadratic_form(kernel_size, sigma_x, sigma_y, theta)
    return _finish(jnp.exp(-0.5 * q), support)


def isotropic_gaussian_kernel(
    kernel_size: int, sigma: float | jax.Array, support: int | jax.Array | None = None
) -> jax.Array:
    """exp(-(x^2 + y^2) / (2 sigma^2)), normalised."""
    return anisotropic_gaussian_kernel(kernel_size, sigma, sigma, 0.0, support)


def generalized_gaussian_kernel(
    kernel_size: int,
    sigma_x: float | jax.Array,
    sigma_y: float | jax.Array,
    theta: float | jax.Array,
    beta: float | jax.Array,
    support: int | jax.Array | None = None,
) -> jax.Array:
    """exp(-q^beta / 2) (beta = 1: Gaussian; < 1 heavier tails; > 1 flatter top)."""
    q = _quadratic_form(kernel_size, sigma_x, sigma_y, theta)
    return _finish(jnp.exp(-0.5 * q**beta), support)


def plateau_kernel(
    kernel_size: int,
    sigma_x: float | jax.Array,
    sigma_y: float | jax.Array,
    theta: float | jax.Array,
    beta: float | jax.Array,
    support: int | jax.Array | None = None,
) -> jax.Array:
    """1 / (1 + q^beta): a flat top with polynomially decaying tails."""
    q = _quadratic_form(kernel_size, sigma_x, sigma_y, theta)
    return _finish(1.0 / (1.0 + q**beta), support)


def sinc_kernel(
    kernel_size: int, omega: float | jax.Array, support: int | jax.Array | None = None
) -> jax.Array:
    """Ideal circular low-pass filter with cutoff `omega` (radians/pixel), sampled on the grid.

    k(r) = omega J1(omega r) / (2 pi r), its limit omega^2 / (4 pi) at r = 0; it has negative
    lobes (ringing), which is what it is used for.
    """
    x, y = _grid(kernel_size)
    r = jnp.sqrt(x**2 + y**2)
    safe_r = jnp.where(r == 0, 1.0, r)
    kernel = jnp.where(
        r == 0,
        omega**2 / (4.0 * math.pi),
        omega * bessel_j1(omega * safe_r) / (2.0 * math.pi * safe_r),
    )
    return _finish(kernel, support)


def _check_range(name: str, value: tuple[float, float]) -> None:
    if len(value) != 2 or not value[0] <= value[1]:
        raise ValueError(f"{name} must be a (low, high) pair with low <= high, got {value}")


@dataclasses.dataclass(frozen=True)
class KernelConfig:
    """How `random_kernel` draws a blur kernel; defaults are Real-ESRGAN's first-stage blur.

    sizes: odd supports, drawn uniformly; max_size: the fixed grid (>= every size).
    type_probs: probabilities of `KERNEL_TYPES`; sigma_range: sigma_x and sigma_y (isotropic
    types use sigma_x for both); rotation_range: theta of the anisotropic types.
    betag_range / betap_range: shape beta of the generalized Gaussian / plateau kernels, drawn
    from [low, 1] or [1, high] with probability 1/2 each (so for the plateau default (1, 2) half
    the draws are exactly 1).
    sinc_prob: probability of a circular sinc kernel instead, with cutoff omega uniform in
    sinc_omega_small for sizes below sinc_large_from and in sinc_omega_large otherwise.
    """

    sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    max_size: int = 21
    type_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sigma_range: tuple[float, float] = (0.2, 3.0)
    rotation_range: tuple[float, float] = (-math.pi, math.pi)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.1
    sinc_omega_small: tuple[float, float] = (math.pi / 3, math.pi)
    sinc_omega_large: tuple[float, float] = (math.pi / 5, math.pi)
    sinc_large_from: int = 13

    def __post_init__(self) -> None:
        if self.max_size < 1 or self.max_size % 2 != 1:
            raise ValueError(f"max_size must be a positive odd integer, got {self.max_size}")
        if not self.sizes or any(s < 1 or s % 2 != 1 or s > self.max_size for s in self.sizes):
            raise ValueError(
                f"sizes must be odd integers in [1, max_size={self.max_size}], got {self.sizes}"
            )
        if len(self.type_probs) != len(KERNEL_TYPES) or min(self.type_probs) < 0:
            raise ValueError(
                f"type_probs needs {len(KERNEL_TYPES)} non-negative entries for {KERNEL_TYPES}, "
                f"got {self.type_probs}"
            )
        if not math.isclose(sum(self.type_probs), 1.0, abs_tol=1e-6):
            raise ValueError(f"type_probs must sum to 1, got {sum(self.type_probs)}")
        if not 0.0 <= self.sinc_prob <= 1.0:
            raise ValueError(f"sinc_prob must be in [0, 1], got {self.sinc_prob}")
        for name in ("sigma_range", "betag_range", "betap_range"):
            _check_range(name, getattr(self, name))
            if getattr(self, name)[0] <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("rotation_range", "sinc_omega_small", "sinc_omega_large"):
            _check_range(name, getattr(self, name))


# Uniform variates one kernel consumes (`kernel_from_uniforms`).
KERNEL_DRAWS = 9


def _between(u: jax.Array, r: tuple[float, float]) -> jax.Array:
    return r[0] + (r[1] - r[0]) * u


def category_from_uniform(u: jax.Array, probs: tuple[float, ...]) -> jax.Array:
    """Index i drawn with probability probs[i] (static) from a uniform [0, 1) variate u."""
    # Inverse CDF: the number of cumulative probabilities (last excluded) that u reaches. The
    # edges are summed in float64 and normalised, so an edge that should be 1 rounds to 1 in
    # float32 and a trailing category of probability 0 is never drawn (u < 1).
    edges = np.cumsum(np.asarray(probs, np.float64) / math.fsum(probs))[:-1]
    return jnp.sum(u >= jnp.asarray(edges, jnp.float32))


def kernel_from_uniforms(u: jax.Array, cfg: KernelConfig) -> jax.Array:
    """`random_kernel` driven by KERNEL_DRAWS uniform [0, 1) variates u (one draw per image).

    Drawing all scalars of a pipeline as one uniform vector keeps the jitted program small.
    """
    size = jnp.asarray(cfg.sizes, jnp.float32)[
        jnp.minimum(jnp.floor(u[0] * len(cfg.sizes)).astype(jnp.int32), len(cfg.sizes) - 1)
    ]
    kind = category_from_uniform(u[1], cfg.type_probs)
    isotropic = kind % 2 == 0  # KERNEL_TYPES alternates iso / aniso.
    sigma_x = _between(u[2], cfg.sigma_range)
    sigma_y = jnp.where(isotropic, sigma_x, _between(u[3], cfg.sigma_range))
    theta = jnp.where(isotropic, 0.0, _between(u[4], cfg.rotation_range))
    family = kind // 2  # 0 Gaussian, 1 generalized Gaussian, 2 plateau.
    # beta in [low, 1] or [1, high], each with probability 1/2 (u[5] picks the side).
    betas = []
    for low, high in (cfg.betag_range, cfg.betap_range):
        one = min(max(1.0, low), high)
        betas.append(jnp.where(u[5] < 0.5, _between(u[6], (low, one)), _between(u[6], (one, high))))
    beta = jnp.where(family == 1, betas[0], jnp.where(family == 2, betas[1], 1.0))
    q_beta = _quadratic_form(cfg.max_size, sigma_x, sigma_y, theta) ** beta
    mixed = _finish(jnp.where(family == 2, 1.0 / (1.0 + q_beta), jnp.exp(-0.5 * q_beta)), size)

    omega = jnp.where(
        size < cfg.sinc_large_from,
        _between(u[7], cfg.sinc_omega_small),
        _between(u[7], cfg.sinc_omega_large),
    )
    use_sinc = u[8] < cfg.sinc_prob
    return jnp.where(use_sinc, sinc_kernel(cfg.max_size, omega, size), mixed)


def random_kernel(key: jax.Array, cfg: KernelConfig) -> jax.Array:
    """A random (cfg.max_size, cfg.max_size) blur kernel drawn as Real-ESRGAN draws them.

    Support uniform over cfg.sizes; with probability cfg.sinc_prob a circular sinc kernel
    (cutoff uniform in the range for its size), otherwise a type from cfg.type_probs with its
    parameters uniform in their ranges (isotropic types: sigma_y = sigma_x, theta = 0).
    Jit- and vmap-able; cfg is static.
    """
    return kernel_from_uniforms(jax.random.uniform(key, (KERNEL_DRAWS,)), cfg)
