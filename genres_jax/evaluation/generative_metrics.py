"""Generative-model evaluation: FID statistics, KID, precision/recall, IWAE likelihood bounds.

Inputs are feature vectors (N, D) from some network (Inception pool3 for FID/KID, typically
VGG-16 fc2 for precision/recall) or per-sample log densities; producing them is the caller's job.

Feature statistics (streaming)
    `FeatureStats` holds the count, the mean and the *centred* scatter matrix
    S = sum_i (x_i - mean)(x_i - mean)^T. Each batch is reduced to its own centred moments and
    merged with the parallel update of Chan, Golub & LeVeque (1979):
        n = n_a + n_b,  delta = mean_b - mean_a,  mean = mean_a + delta n_b / n,
        S = S_a + S_b + delta delta^T n_a n_b / n.
    This is deliberately not a running sum of x x^T: features with a large common offset make
    E[x x^T] - mu mu^T a difference of two nearly equal numbers, and in float32 over 50k samples
    that cancellation destroys the covariance that the FID square root depends on. Centred
    moments stay O(spread^2), so the accumulation runs on the device in float32 (or in float64
    when JAX x64 is enabled, since every array follows the state's dtype). Matrix products use
    `precision="highest"` because the default on GPUs/TPUs may round float32 inputs to
    TF32/bfloat16. `merge_stats` also combines partial statistics from several hosts.
    `mean_and_cov` returns the unbiased covariance S / (n - 1), as `np.cov` does in the
    reference FID code (Heusel et al. 2017).

Frechet distance (FID)
    d^2 = ||mu_1 - mu_2||^2 + Tr(C_1 + C_2 - 2 (C_1 C_2)^(1/2))   (Heusel et al. 2017).
    Evaluated on the host in float64 with `scipy.linalg.sqrtm`: this runs once per evaluation on
    a (D, D) matrix, and a float32 square root of a 2048x2048 product of covariances is not
    accurate enough. Conventions of the reference implementation: if the square root fails
    (non-finite, or its residual is large) eps is added to both diagonals and it is retried;
    imaginary parts from round-off are dropped, but a large imaginary part raises.

Kernel Inception distance (KID)
    Unbiased estimate of the squared MMD with the cubic polynomial kernel
    k(x, y) = (x.y / D + 1)^3 (Binkowski et al. 2018):
        MMD^2_u = sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (n(n-1))
                  - 2 sum_{i,j} k(x_i, y_j) / (m n),
    averaged over `num_subsets` random subsets of `subset_size` samples drawn without
    replacement from each set (defaults 100 and 1000, as in the paper's code). The returned
    spread is the standard deviation of the per-subset estimates (ddof=0, as in the paper's
    code), not the standard error of their mean. Papers often quote KID x 1e3. The kernel sums
    run in float32 with the kernel shifted by a constant, which leaves MMD^2_u unchanged but
    removes the cancellation between its three O(k) terms.

Improved precision and recall (Kynkaanniemi et al. 2019)
    In `genres_jax.evaluation.precision_recall`.

VAE likelihood
    Importance-weighted bound (Burda et al. 2016) with K samples z_k ~ q(z|x):
        log p(x) >= log (1/K) sum_k exp(log p(x|z_k) + log p(z_k) - log q(z_k|x)),
    which equals the ELBO for K = 1, never decreases with K and tends to log p(x).
    Bits per dimension: nats / (num_dims ln 2).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

_HIGHEST = jax.lax.Precision.HIGHEST

# ---------------------------------------------------------------------------------------------
# Streaming feature statistics (Chan et al. parallel update of centred moments)
# ---------------------------------------------------------------------------------------------


class FeatureStats(flax.struct.PyTreeNode):
    """Count, mean (D,) and centred scatter sum_i (x_i - mean)(x_i - mean)^T (D, D)."""

    count: jax.Array
    mean: jax.Array
    scatter: jax.Array


def empty_stats(dim: int, dtype: jnp.dtype = jnp.float32) -> FeatureStats:
    """Statistics of zero samples of dimension `dim`; the identity of `merge_stats`."""
    zeros = functools.partial(jnp.zeros, dtype=dtype)
    return FeatureStats(count=jnp.zeros((), jnp.int32), mean=zeros(dim), scatter=zeros((dim, dim)))


@jax.jit
def merge_stats(a: FeatureStats, b: FeatureStats) -> FeatureStats:
    """Statistics of the union of two disjoint sample sets (Chan et al. 1979 parallel update)."""
    n_a, n_b = a.count.astype(a.mean.dtype), b.count.astype(a.mean.dtype)
    n = jnp.maximum(n_a + n_b, 1)  # Two empty inputs give empty statistics, not NaN.
    delta = b.mean - a.mean
    mean = a.mean + delta * (n_b / n)
    cross = jnp.outer(delta, delta) * ((n_a / n) * n_b)
    return FeatureStats(count=a.count + b.count, mean=mean, scatter=a.scatter + b.scatter + cross)


@jax.jit
def update_stats(stats: FeatureStats, features: jax.Array) -> FeatureStats:
    """Adds a batch of features (N, D) to `stats` (centred batch moments, then `merge_stats`).

    Sharded features work as they are: under jit the reductions become cross-device sums.
    """
    x = jnp.asarray(features).astype(stats.mean.dtype)
    if x.ndim != 2 or x.shape[1] != stats.mean.shape[0]:
        raise ValueError(f"Expected features (N, {stats.mean.shape[0]}), got {x.shape}")
    if x.shape[0] == 0:
        return stats
    # Shifting by one sample first keeps the batch mean's summands O(spread), not O(offset).
    shifted = x - x[0]
    shifted_mean = jnp.mean(shifted, axis=0)
    centred = shifted - shifted_mean
    batch = FeatureStats(
        count=jnp.asarray(x.shape[0], stats.count.dtype),
        mean=x[0] + shifted_mean,
        scatter=jnp.matmul(centred.T, centred, precision=_HIGHEST),
    )
    return merge_stats(stats, batch)


@jax.jit
def mean_and_cov(stats: FeatureStats) -> tuple[jax.Array, jax.Array]:
    """Mean (D,) and unbiased covariance S / (n - 1) (D, D), symmetrised, like `np.cov`."""
    scatter = 0.5 * (stats.scatter + stats.scatter.T)
    return stats.mean, scatter / (stats.count - 1).astype(scatter.dtype)


# ---------------------------------------------------------------------------------------------
# Frechet distance (host, float64)
# ---------------------------------------------------------------------------------------------


def _sqrtm_with_residual(a: np.ndarray) -> tuple[np.ndarray, float]:
    root = scipy.linalg.sqrtm(a)
    if not np.all(np.isfinite(root)):
        return root, math.inf
    residual = np.linalg.norm(root @ root - a) / max(np.linalg.norm(a), np.finfo(np.float64).tiny)
    return root, float(residual)


def frechet_distance(
    mu1: np.ndarray,
    cov1: np.ndarray,
    mu2: np.ndarray,
    cov2: np.ndarray,
    eps: float = 1e-6,
    max_residual: float = 1e-5,
    imag_atol: float = 1e-3,
) -> float:
    """||mu1 - mu2||^2 + Tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2)), in float64 (Heusel et al. 2017).

    If the square root of cov1 cov2 is non-finite or its relative residual exceeds
    `max_residual` (a singular product), it is recomputed with `eps` added to both diagonals.
    Imaginary parts are round-off when the diagonal's are below `imag_atol` and are dropped;
    larger ones (inputs that are not covariances) raise `ValueError`.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    dim = mu1.shape[0] if mu1.ndim == 1 else -1
    if mu1.shape != mu2.shape or cov1.shape != (dim, dim) or cov2.shape != (dim, dim):
        raise ValueError(f"Shape mismatch: {mu1.shape}, {cov1.shape}, {mu2.shape}, {cov2.shape}")
    root, residual = _sqrtm_with_residual(cov1 @ cov2)
    if residual > max_residual:
        offset = eps * np.eye(cov1.shape[0])
        root, residual = _sqrtm_with_residual((cov1 + offset) @ (cov2 + offset))
        if not np.isfinite(residual):
            raise ValueError("Matrix square root of cov1 @ cov2 is not finite, even with eps.")
    if np.iscomplexobj(root):
        imag = np.max(np.abs(np.diagonal(root).imag))
        if imag > imag_atol:
            raise ValueError(f"Matrix square root has a large imaginary part ({imag:.3g}).")
        root = root.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(root))


# ---------------------------------------------------------------------------------------------
# Kernel Inception distance
# ---------------------------------------------------------------------------------------------


class KidResult(NamedTuple):
    """KID: mean of the per-subset MMD^2 estimates and their standard deviation (ddof=0)."""

    kid_mean: float
    kid_std: float


def polynomial_kernel(x: jax.Array, y: jax.Array) -> jax.Array:
    """Cubic polynomial kernel matrix k(x, y) = (x.y / D + 1)^3 (Binkowski et al. 2018)."""
    dots = jnp.matmul(x, y.T, precision=_HIGHEST)
    return (dots / x.shape[-1] + 1.0) ** 3


@jax.jit
def polynomial_mmd2(x: jax.Array, y: jax.Array) -> jax.Array:
    """Unbiased MMD^2 between samples x (m, D) and y (n, D) with the cubic polynomial kernel.

    Within-set sums exclude the diagonal (i != j); the cross term keeps every pair.
    """
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    m, n = x.shape[0], y.shape[0]
    k_xy = polynomial_kernel(x, y)
    # The estimate is unchanged by k -> k - c for any constant c (the three weights sum to 0).
    # With c ~ the typical kernel value the three terms are O(MMD^2) rather than O(k), so
    # float32 does not lose a small KID to cancellation between them.
    c = jnp.mean(k_xy)
    k_xx, k_yy = polynomial_kernel(x, x) - c, polynomial_kernel(y, y) - c
    within_x = (jnp.sum(k_xx) - jnp.trace(k_xx)) / (m * (m - 1))
    within_y = (jnp.sum(k_yy) - jnp.trace(k_yy)) / (n * (n - 1))
    cross = jnp.sum(k_xy - c) / (m * n)
    return within_x + within_y - 2.0 * cross


@functools.partial(jax.jit, static_argnames=("subsets_per_batch",))
def _subset_mmd2(real, fake, real_idx, fake_idx, subsets_per_batch):
    # lax.map with batch_size vmaps a few subsets at a time: (batch, m, m) kernels, not (S, m, m).
    return jax.lax.map(
        lambda idx: polynomial_mmd2(real[idx[0]], fake[idx[1]]),
        (real_idx, fake_idx),
        batch_size=subsets_per_batch,
    )


def kernel_inception_distance(
    features_real: jax.Array,
    features_fake: jax.Array,
    num_subsets: int = 100,
    subset_size: int = 1000,
    key: jax.Array | int = 0,
    subsets_per_batch: int = 4,
) -> KidResult:
    """KID (Binkowski et al. 2018): unbiased cubic-kernel MMD^2 averaged over random subsets.

    Each subset draws min(subset_size, N_real, N_fake) samples without replacement from each
    set. Returns `KidResult(kid_mean, kid_std)`: the mean over subsets and the standard
    deviation of the per-subset estimates (ddof=0), as the reference code reports them.
    """
    real = jnp.asarray(features_real, jnp.float32)
    fake = jnp.asarray(features_fake, jnp.float32)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"Expected features (N, D) and (M, D), got {real.shape}, {fake.shape}")
    size = min(subset_size, real.shape[0], fake.shape[0])
    if size < 2 or num_subsets < 1:
        raise ValueError(f"Need subsets of >= 2 samples and num_subsets >= 1, got {size}")
    if isinstance(key, int):
        key = jax.random.key(key)
    key_real, key_fake = jax.random.split(key)

    def draw(k, total):
        keys = jax.random.split(k, num_subsets)
        return jax.vmap(lambda kk: jax.random.choice(kk, total, (size,), replace=False))(keys)

    values = _subset_mmd2(
        real,
        fake,
        draw(key_real, real.shape[0]),
        draw(key_fake, fake.shape[0]),
        min(subsets_per_batch, num_subsets),
    )
    values = np.asarray(values, np.float64)
    return KidResult(kid_mean=float(values.mean()), kid_std=float(values.std()))


# ---------------------------------------------------------------------------------------------
# VAE likelihood: importance-weighted bound, Gaussian log densities, bits per dimension
# ---------------------------------------------------------------------------------------------

_LOG_2PI = math.log(2.0 * math.pi)


def log_normal_diag(z: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """log N(z; mean, diag(exp(logvar))), summed over the last axis."""
    z, mean, logvar = (jnp.asarray(a, jnp.float32) for a in (z, mean, logvar))
    per_dim = -0.5 * (_LOG_2PI + logvar + (z - mean) ** 2 * jnp.exp(-logvar))
    return jnp.sum(per_dim, axis=-1)


def log_standard_normal(z: jax.Array) -> jax.Array:
    """log N(z; 0, I), summed over the last axis."""
    z = jnp.asarray(z, jnp.float32)
    return jnp.sum(-0.5 * (_LOG_2PI + z**2), axis=-1)


def importance_weighted_bound(
    log_p_x_given_z: jax.Array, log_p_z: jax.Array, log_q_z_given_x: jax.Array
) -> jax.Array:
    """IWAE bound (B,) from (K, B) log densities of K samples z_k ~ q(z|x) (Burda et al. 2016).

    log (1/K) sum_k exp(log p(x|z_k) + log p(z_k) - log q(z_k|x)), via logsumexp.
    """
    log_w = (
        jnp.asarray(log_p_x_given_z, jnp.float32)
        + jnp.asarray(log_p_z, jnp.float32)
        - jnp.asarray(log_q_z_given_x, jnp.float32)
    )
    if log_w.ndim != 2:
        raise ValueError(f"Expected (K, B) log densities, got shape {log_w.shape}")
    return jax.nn.logsumexp(log_w, axis=0) - math.log(log_w.shape[0])


def bits_per_dim(nats_per_image: jax.Array, num_dims: int) -> jax.Array:
    """Negative log-likelihood per image in nats -> bits per dimension: nats / (num_dims ln 2).

    Pass -log p(x) (positive). For a density on pixels rescaled from [0, 255] to [0, 1], add
    num_dims * ln(256) nats first to report on the 8-bit scale, as the literature does.
    """
    return jnp.asarray(nats_per_image, jnp.float32) / (num_dims * math.log(2.0))
