"""Generative metrics against closed forms and independent float64 numpy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as scipy_stats

from genres_jax.evaluation import generative_metrics as gm
from genres_jax.evaluation import precision_recall as pr

# ---------------------------------------------------------------------------------------------
# Streaming feature statistics
# ---------------------------------------------------------------------------------------------

UNEVEN_BATCHES = (1, 7, 500, 1000, 3, 2489, 1000)  # Sums to 5000.


def _offset_features(rng, n=5000, dim=16, offset=1000.0):
    """Correlated features with spread ~1 around a large common offset."""
    mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    return offset + rng.normal(size=(n, dim)) @ mixing


def _stream(x, batches, dtype=jnp.float32):
    stats, start = gm.empty_stats(x.shape[1], dtype), 0
    for size in batches:
        stats = gm.update_stats(stats, x[start : start + size])
        start += size
    assert start == len(x)
    return stats


def test_streaming_stats_float32_survive_large_offset():
    x = _offset_features(np.random.default_rng(0))
    x32 = x.astype(np.float32)
    ref_mean = x32.astype(np.float64).mean(axis=0)
    ref_cov = np.cov(x32.astype(np.float64), rowvar=False)

    mean, cov = gm.mean_and_cov(_stream(x32, UNEVEN_BATCHES))
    np.testing.assert_allclose(np.asarray(mean), ref_mean, rtol=1e-7, atol=1e-3)
    cov_error = np.abs(np.asarray(cov, np.float64) - ref_cov).max()
    assert cov_error < 2e-5

    # The naive float32 E[x x^T] - mu mu^T loses the covariance entirely at this offset.
    n = np.float32(len(x32))
    naive_mean = x32.mean(axis=0, dtype=np.float32)
    naive = (x32.T @ x32 / n - np.outer(naive_mean, naive_mean)) * n / (n - 1)
    assert np.abs(naive - ref_cov).max() > 1000 * cov_error


def test_streaming_stats_float64_match_numpy_tightly():
    x = _offset_features(np.random.default_rng(1))
    with jax.enable_x64(True):
        mean, cov = gm.mean_and_cov(_stream(x, UNEVEN_BATCHES, jnp.float64))
        mean, cov = np.asarray(mean), np.asarray(cov)
    assert cov.dtype == np.float64
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-11)


def test_merging_two_halves_equals_streaming_everything():
    x = _offset_features(np.random.default_rng(2)).astype(np.float32)
    first = _stream(x[:1234], (1000, 234))
    second = _stream(x[1234:], (3000, 766))
    merged = gm.merge_stats(first, second)
    assert int(merged.count) == len(x)
    mean, cov = gm.mean_and_cov(merged)
    ref = x.astype(np.float64)
    np.testing.assert_allclose(np.asarray(mean), ref.mean(axis=0), rtol=1e-7)
    np.testing.assert_allclose(np.asarray(cov), np.cov(ref, rowvar=False), atol=2e-5)
    # Empty statistics are the identity of the merge, on either side.
    empty = gm.empty_stats(16)
    for stats in (gm.merge_stats(empty, first), gm.merge_stats(first, empty)):
        jax.tree.map(np.testing.assert_array_equal, stats, first)


def test_update_stats_rejects_wrong_feature_size():
    with pytest.raises(ValueError, match="Expected features"):
        gm.update_stats(gm.empty_stats(4), np.zeros((3, 5), np.float32))


# ---------------------------------------------------------------------------------------------
# Frechet distance
# ---------------------------------------------------------------------------------------------


def _psd_sqrt(c):
    vals, vecs = np.linalg.eigh(c)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def _fid_eigen_reference(mu1, cov1, mu2, cov2):
    # Tr (C1 C2)^(1/2) = Tr (C1^(1/2) C2 C1^(1/2))^(1/2): a symmetric eigenproblem, no sqrtm.
    root1 = _psd_sqrt(cov1)
    vals = np.linalg.eigvalsh(root1 @ cov2 @ root1)
    trace_root = np.sum(np.sqrt(np.clip(vals, 0, None)))
    return np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * trace_root


def test_fid_diagonal_covariances_closed_form():
    rng = np.random.default_rng(3)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    a, b = rng.uniform(0.1, 3.0, size=8), rng.uniform(0.1, 3.0, size=8)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert gm.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, 1e-10)


def test_fid_commuting_covariances_closed_form():
    rng = np.random.default_rng(4)
    basis, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    a, b = rng.uniform(0.05, 4.0, size=12), rng.uniform(0.05, 4.0, size=12)
    cov1, cov2 = (basis * a) @ basis.T, (basis * b) @ basis.T
    mu = rng.normal(size=12)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + 4.0 * 12
    fid = gm.frechet_distance(mu, cov1, mu + 2.0, cov2)
    assert fid == pytest.approx(expected, rel=1e-9)


def test_fid_general_covariances_match_symmetric_eigen_reference():
    rng = np.random.default_rng(5)
    f1, f2 = rng.normal(size=(20, 20)), rng.normal(size=(20, 20))
    cov1, cov2 = f1 @ f1.T / 20, f2 @ f2.T / 20 + 0.1 * np.eye(20)
    mu1, mu2 = rng.normal(size=20), rng.normal(size=20)
    expected = _fid_eigen_reference(mu1, cov1, mu2, cov2)
    assert gm.frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-9)


def test_fid_of_identical_sample_statistics_is_zero():
    x = _offset_features(np.random.default_rng(6), n=2000, dim=64, offset=3.0)
    mean, cov = gm.mean_and_cov(_stream(x.astype(np.float32), (2000,)))
    fid = gm.frechet_distance(mean, cov, mean, cov)
    assert abs(fid) < 1e-6 * np.trace(np.asarray(cov, np.float64))


def test_fid_singular_covariances_stay_finite_and_close():
    # Fewer samples than dimensions: rank-deficient covariances, a singular product.
    rng = np.random.default_rng(7)
    cov1 = np.cov(rng.normal(size=(10, 32)), rowvar=False)
    cov2 = np.cov(rng.normal(size=(10, 32)) + 0.5, rowvar=False)
    mu1, mu2 = np.zeros(32), np.full(32, 0.5)
    expected = _fid_eigen_reference(mu1, cov1, mu2, cov2)
    assert gm.frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-6)
    # max_residual=0 forces the eps-regularised retry: still finite and close.
    fid = gm.frechet_distance(mu1, cov1, mu2, cov2, eps=1e-6, max_residual=0.0)
    assert np.isfinite(fid) and fid == pytest.approx(expected, rel=1e-3)
    assert fid != gm.frechet_distance(mu1, cov1, mu2, cov2)  # The retry really happened.


def test_fid_from_large_samples_approaches_closed_form():
    rng = np.random.default_rng(8)
    n, dim = 200_000, 4
    a, b = np.array([1.0, 2.0, 0.5, 1.5]), np.array([2.0, 1.0, 1.0, 0.25])
    mu2 = np.array([1.0, 0.0, -1.0, 0.5])
    x = rng.normal(size=(n, dim)) * np.sqrt(a)
    y = mu2 + rng.normal(size=(n, dim)) * np.sqrt(b)
    stats_x = _stream(x.astype(np.float32), (n // 2, n - n // 2))
    stats_y = _stream(y.astype(np.float32), (n // 3, n - n // 3))
    fid = gm.frechet_distance(*gm.mean_and_cov(stats_x), *gm.mean_and_cov(stats_y))
    expected = np.sum(mu2**2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert fid == pytest.approx(expected, rel=0.01)


def test_fid_rejects_non_covariance_inputs():
    with pytest.raises(ValueError, match="imaginary"):
        gm.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), -np.eye(3))
    with pytest.raises(ValueError, match="Shape mismatch"):
        gm.frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


# ---------------------------------------------------------------------------------------------
# Kernel Inception distance
# ---------------------------------------------------------------------------------------------


def _mmd2_double_loop(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m, n, d = len(x), len(y), x.shape[1]

    def k(u, v):
        return (np.dot(u, v) / d + 1.0) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd2_matches_float64_double_loop():
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(7, 5)), rng.normal(loc=0.3, size=(9, 5))
    expected = _mmd2_double_loop(x, y)
    assert float(gm.polynomial_mmd2(x, y)) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    # One subset holding every sample is a permutation of the sets: the same value, std 0.
    kid = gm.kernel_inception_distance(x[:7], y[:7], num_subsets=3, subset_size=50, key=1)
    assert kid.kid_mean == pytest.approx(_mmd2_double_loop(x, y[:7]), rel=1e-5, abs=1e-6)
    assert kid.kid_std < 1e-6


def test_mmd2_float32_keeps_a_small_kid_accurate():
    # Inception-like non-negative features: kernel values ~2, MMD^2 ~1e-3. A float32 difference
    # of the three raw kernel means would be off by ~5e-7 here.
    rng = np.random.default_rng(0)
    x, y = np.abs(rng.normal(size=(2, 500, 256))).astype(np.float32)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    k_xx, k_yy, k_xy = ((a @ b.T / 256 + 1) ** 3 for a, b in ((x64, x64), (y64, y64), (x64, y64)))
    off_diagonal = 500 * 499
    expected = (
        (k_xx.sum() - np.trace(k_xx)) / off_diagonal
        + (k_yy.sum() - np.trace(k_yy)) / off_diagonal
        - 2 * k_xy.mean()
    )
    assert abs(float(gm.polynomial_mmd2(x, y)) - expected) < 5e-8


def test_kid_same_distribution_is_unbiased():
    rng = np.random.default_rng(10)
    draws, m, d = 400, 40, 6
    x = jnp.asarray(rng.normal(size=(draws, m, d)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(draws, m, d)), jnp.float32)
    values = np.asarray(jax.vmap(gm.polynomial_mmd2)(x, y), np.float64)
    standard_error = values.std(ddof=1) / np.sqrt(draws)
    assert abs(values.mean()) < 4 * standard_error

    # The biased (V-statistic) estimate keeps the diagonals and is clearly positive: the check
    # above can tell the two apart.
    def biased(a, b):
        k = gm.polynomial_kernel
        return jnp.mean(k(a, a)) + jnp.mean(k(b, b)) - 2 * jnp.mean(k(a, b))

    biased_values = np.asarray(jax.vmap(biased)(x, y), np.float64)
    assert biased_values.mean() > 10 * biased_values.std(ddof=1) / np.sqrt(draws)


def test_kid_same_distribution_near_zero_different_clearly_positive():
    rng = np.random.default_rng(11)
    real = rng.normal(size=(600, 16))
    same = rng.normal(size=(500, 16))
    shifted = rng.normal(size=(500, 16)) * 1.3 + 0.4
    kid_same = gm.kernel_inception_distance(real, same, num_subsets=20, subset_size=200, key=0)
    kid_diff = gm.kernel_inception_distance(real, shifted, num_subsets=20, subset_size=200, key=0)
    assert abs(kid_same.kid_mean) < 3 * kid_same.kid_std
    assert kid_diff.kid_mean > 5 * kid_diff.kid_std
    assert kid_diff.kid_mean > 20 * abs(kid_same.kid_mean)
    # Same key, same subsets; another key, other subsets.
    again = gm.kernel_inception_distance(real, same, num_subsets=20, subset_size=200, key=0)
    other = gm.kernel_inception_distance(real, same, num_subsets=20, subset_size=200, key=1)
    assert again == kid_same and other != kid_same


# ---------------------------------------------------------------------------------------------
# Improved precision and recall
# ---------------------------------------------------------------------------------------------


def _pr_reference(real, fake, k):
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)

    def sq_dists(a, b):
        return np.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)

    def radii(x):  # Sorted row includes the zero self-distance first.
        return np.sort(sq_dists(x, x), axis=1)[:, k]

    precision = np.mean(np.any(sq_dists(fake, real) <= radii(real)[None, :], axis=1))
    recall = np.mean(np.any(sq_dists(real, fake) <= radii(fake)[None, :], axis=1))
    return precision, recall, np.sqrt(radii(real))


@pytest.mark.parametrize("batch_size", [7, 64, 1024])
def test_blocked_precision_recall_equals_float64_reference(batch_size):
    rng = np.random.default_rng(12)
    real = rng.normal(size=(150, 10)) + 5.0
    fake = rng.normal(size=(130, 10)) * 1.2 + 5.3
    precision, recall, radii = _pr_reference(real, fake, k=3)
    assert 0.05 < precision < 0.95 and 0.05 < recall < 0.95  # A case with something to get wrong.
    assert pr.precision_recall(real, fake, k=3, batch_size=batch_size) == (precision, recall)
    np.testing.assert_allclose(pr.knn_radii(real, 3, batch_size), radii, rtol=1e-5)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_kth_smallest_counts_ties_like_a_sort(k):
    rng = np.random.default_rng(21)
    # Few distinct values: most rows hold their minimum several times.
    d = rng.integers(0, 4, size=(40, 30)).astype(np.float64)
    d[0] = np.inf
    d[0, 3] = 2.0  # A row with one finite value: its 2nd smallest and later are inf.
    want = np.sort(d, axis=1)[:, k - 1]
    np.testing.assert_array_equal(np.asarray(pr._kth_smallest(jnp.asarray(d), k)), want)


def test_precision_recall_constructed_clouds():
    rng = np.random.default_rng(13)
    real = rng.normal(size=(200, 8))
    assert pr.precision_recall(real, real.copy()) == (1.0, 1.0)
    assert pr.precision_recall(real, rng.normal(size=(200, 8)) + 1000.0) == (0.0, 0.0)

    # Two well-separated real clusters; the fakes cover only the first one.
    centres = np.zeros((2, 2))
    centres[1, 0] = 100.0
    real = np.concatenate([c + rng.normal(size=(300, 2)) for c in centres])
    fake = centres[0] + rng.normal(size=(300, 2))
    precision, recall = pr.precision_recall(real, fake, k=3, batch_size=128)
    assert precision > 0.95
    assert 0.45 < recall <= 0.5


def test_precision_recall_rejects_too_few_samples():
    with pytest.raises(ValueError, match="k=3"):
        pr.precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))


# ---------------------------------------------------------------------------------------------
# VAE likelihood
# ---------------------------------------------------------------------------------------------


def test_gaussian_log_densities_match_scipy():
    rng = np.random.default_rng(14)
    z, mean, logvar = rng.normal(size=(3, 4, 5))
    expected = scipy_stats.norm.logpdf(z, mean, np.exp(0.5 * logvar)).sum(-1)
    np.testing.assert_allclose(gm.log_normal_diag(z, mean, logvar), expected, rtol=1e-5)
    expected = scipy_stats.norm.logpdf(z).sum(-1)
    np.testing.assert_allclose(gm.log_standard_normal(z), expected, rtol=1e-5)


def _linear_gaussian_terms(key, x, num_samples, noise_std, q_scale, q_std):
    """p(z) = N(0, 1), p(x|z) = N(z, s^2), q(z|x) = N(q_scale x, q_std^2): (K, B) log terms."""
    z = q_scale * x + q_std * jax.random.normal(key, (num_samples, x.shape[0]))
    zz = z[..., None]
    log_px_z = gm.log_normal_diag(x[None, :, None], zz, jnp.full_like(zz, 2 * np.log(noise_std)))
    log_q = gm.log_normal_diag(zz, q_scale * x[None, :, None], jnp.full_like(zz, 2 * np.log(q_std)))
    return log_px_z, gm.log_standard_normal(zz), log_q


def test_iwae_bound_orders_and_converges_on_linear_gaussian():
    s = 0.5
    x = jnp.linspace(-2.0, 2.0, 9)
    log_px = scipy_stats.norm.logpdf(np.asarray(x), 0.0, np.sqrt(1 + s**2))
    # True posterior N(x / (1 + s^2), s^2 / (1 + s^2)); q is deliberately biased and too wide.
    terms = _linear_gaussian_terms(jax.random.key(0), x, 20_000, s, q_scale=0.6, q_std=0.6)

    bound = gm.importance_weighted_bound(*terms)
    log_w = terms[0] + terms[1] - terms[2]
    elbo = jnp.mean(log_w, axis=0)
    assert bound.shape == (9,)
    assert np.all(np.asarray(bound) >= np.asarray(elbo))
    np.testing.assert_allclose(gm.importance_weighted_bound(*(t[:1] for t in terms)), log_w[0])
    np.testing.assert_allclose(bound, log_px, atol=0.02)

    # Mean bound over disjoint groups of K samples: the gap to log p(x) shrinks as K grows.
    gaps = []
    for k in (1, 5, 50):
        grouped = [t.reshape(k, -1, 9).transpose(1, 0, 2) for t in terms]
        mean_bound = jax.vmap(gm.importance_weighted_bound)(*grouped).mean(axis=0)
        gaps.append(float(np.mean(log_px - np.asarray(mean_bound))))
    assert gaps[0] > 0.2 and all(a > b for a, b in zip(gaps, gaps[1:], strict=False))
    assert gaps[-1] < 0.05 * gaps[0]


def test_iwae_with_true_posterior_is_exact_for_any_k():
    s = 0.7
    x = jnp.linspace(-1.5, 1.5, 5)
    post_var = s**2 / (1 + s**2)
    terms = _linear_gaussian_terms(
        jax.random.key(1), x, 3, s, q_scale=1 / (1 + s**2), q_std=np.sqrt(post_var)
    )
    log_px = scipy_stats.norm.logpdf(np.asarray(x), 0.0, np.sqrt(1 + s**2))
    np.testing.assert_allclose(gm.importance_weighted_bound(*terms), log_px, atol=1e-5)


def test_bits_per_dim():
    nats = 784 * np.log(2.0) * 1.5
    assert float(gm.bits_per_dim(nats, 784)) == pytest.approx(1.5, rel=1e-6)
    np.testing.assert_allclose(gm.bits_per_dim(jnp.array([0.0, 2 * np.log(2)]), 2), [0.0, 1.0])
