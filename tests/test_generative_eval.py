"""Generative evaluation of workdirs: KID blocks, FID wiring, the VAE's IW bound, the CLI."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from conftest import load_config, tiny

from genres_jax import evaluate
from genres_jax.data import fashion_mnist, sources
from genres_jax.evaluation import features, sample_quality, vae_bounds
from genres_jax.models.vae import MLPVAE
from genres_jax.train import defaults, sharding, trainer

EXTRACTOR = "classifier_fashion_mnist"


def _mmd2_u(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b / D + 1)^3, float64 (Binkowski et al. 2018)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    d = x.shape[1]
    kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    m, n = len(x), len(y)
    return (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.mean()
    )


def test_kid_over_disjoint_blocks_matches_a_float64_reference():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(310, 6)).astype(np.float32)
    fake = (rng.normal(size=(305, 6)) * 1.3 + 0.4).astype(np.float32)
    key = jax.random.key(5)
    kid, se = sample_quality.kid_disjoint(real, fake, 100, key)
    # The blocks: one permutation of each set; 305 // 100 = 3 blocks of 305 // 3 = 101 samples.
    kr, kf = jax.random.split(key)
    ri = np.asarray(jax.random.permutation(kr, 310))[:303].reshape(3, 101)
    fi = np.asarray(jax.random.permutation(kf, 305))[:303].reshape(3, 101)
    assert len(set(ri.ravel())) == 303  # Disjoint.
    values = np.array([_mmd2_u(real[r], fake[f]) for r, f in zip(ri, fi, strict=True)])
    np.testing.assert_allclose(kid, values.mean(), rtol=1e-4)
    np.testing.assert_allclose(se, values.std(ddof=1) / math.sqrt(3), rtol=1e-3)


def test_kid_is_unbiased_and_its_standard_error_is_calibrated():
    rng = np.random.default_rng(1)
    kids, ses = [], []
    for i in range(60):
        real = rng.normal(size=(400, 4)).astype(np.float32)
        fake = rng.normal(size=(400, 4)).astype(np.float32)
        kid, se = sample_quality.kid_disjoint(real, fake, 100, jax.random.key(i))
        kids.append(kid)
        ses.append(se)
    kids = np.array(kids)
    # Same distribution: the estimates centre on 0, and the reported standard error matches
    # the spread of KID over independent repetitions.
    assert abs(kids.mean()) < 3 * kids.std(ddof=1) / math.sqrt(len(kids))
    assert 0.6 < np.mean(ses) / kids.std(ddof=1) < 1.4
    shifted = rng.normal(size=(400, 4)).astype(np.float32) + 1.0
    kid, se = sample_quality.kid_disjoint(real, shifted, 100, jax.random.key(99))
    assert kid > 5 * se


def test_compare_gives_the_frechet_distance_and_precision_recall_of_the_sets():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(300, 5)).astype(np.float32)
    fake = (rng.normal(size=(200, 5)) @ np.diag([1, 2, 1, 1, 0.5]) + 0.3).astype(np.float32)
    ref = sample_quality.Reference(real, real.mean(0), np.cov(real, rowvar=False), {})
    fake_stats = {"mean": fake.mean(0), "cov": np.cov(fake, rowvar=False)}
    out = sample_quality.compare(
        ref, fake, fake_stats, "net", kid_subset_size=50, pr_k=3, key=jax.random.key(0)
    )
    assert sorted(out) == ["fid/net", "kid/net", "kid_stderr/net", "precision/net", "recall/net"]
    r64, f64 = real.astype(np.float64), fake.astype(np.float64)
    c1, c2 = np.cov(r64, rowvar=False), np.cov(f64, rowvar=False)
    diff = r64.mean(0) - f64.mean(0)
    fid = diff @ diff + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
    np.testing.assert_allclose(out["fid/net"], fid, rtol=1e-5)

    def radii(x):
        d = ((x[:, None] - x[None]) ** 2).sum(-1)
        return np.sort(d, axis=1)[:, 3]  # Column 0 is the point itself.

    d_fr = ((f64[:, None] - r64[None]) ** 2).sum(-1)
    assert out["precision/net"] == pytest.approx(np.mean((d_fr <= radii(r64)[None]).any(1)))
    assert out["recall/net"] == pytest.approx(np.mean((radii(f64)[None] >= d_fr.T).any(1)))


# ------------------------------------------------------------------------ VAE likelihood.


def _reference_log_px(model, params, x, likelihood, log_scale):
    """log p(x) = log of the integral of p(x|z) N(z; 0, 1) dz on a fine grid (1-D latent)."""
    z = np.linspace(-9, 9, 6001)
    out = np.asarray(model.apply({"params": params}, z[:, None], method=model.decode), np.float64)
    out, xv = out.reshape(len(z), -1), np.asarray(x, np.float64).reshape(1, -1)
    if likelihood == "bernoulli":
        log_px_z = (xv * -np.logaddexp(0, -out) + (1 - xv) * -np.logaddexp(0, out)).sum(1)
    else:
        mean = 1 / (1 + np.exp(-out))
        per = -0.5 * np.log(2 * np.pi) - log_scale - 0.5 * ((xv - mean) / np.exp(log_scale)) ** 2
        log_px_z = per.sum(1)
    log_joint = log_px_z - 0.5 * (np.log(2 * np.pi) + z**2)
    top = log_joint.max()
    return top + np.log(np.exp(log_joint - top).sum() * (z[1] - z[0]))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_iw_bound_approaches_log_px_and_equals_the_elbo_for_one_sample(likelihood):
    model = MLPVAE(latent_dim=1, hidden=(8,), image_shape=(2, 2, 1))
    x = jnp.array([0.9, 0.1, 0.7, 0.2]).reshape(1, 2, 2, 1)
    params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
    log_scale = math.log(0.3)
    log_px = _reference_log_px(model, params, x, likelihood, log_scale)
    common = {"model": model, "likelihood": likelihood, "log_scale": log_scale}
    many = jnp.repeat(x, 4000, axis=0)
    iw1, elbo = vae_bounds._vae_bounds(
        params, many, jax.random.key(2), iw_samples=1, chunk=1, **common
    )
    # K = 1: log p(x|z) + log p(z) - log q(z|x) for one z, whose mean is the ELBO.
    se = np.std(iw1) / math.sqrt(len(iw1))
    assert abs(float(np.mean(iw1)) - float(np.mean(elbo))) < 4 * se
    assert float(np.mean(elbo)) < log_px
    iw, _ = vae_bounds._vae_bounds(
        params, jnp.repeat(x, 8, axis=0), jax.random.key(3), iw_samples=2048, chunk=256, **common
    )
    assert float(np.mean(iw)) > float(np.mean(elbo))
    assert abs(float(np.mean(iw)) - log_px) < 0.02


# ------------------------------------------------------------------------------ Workdirs.


def _tiny_workdir(tmp_path_factory, data_dir, name, **overrides):
    config = tiny(load_config(name), data_dir, total_steps=2, eval_every=0, checkpoint_every=2)
    config.generative_eval = defaults.generative_eval()
    config.generative_eval.update(
        {"reference_max_records": 400, "batch_size": 100, "kid_subset_size": 100, **overrides}
    )
    workdir = str(tmp_path_factory.mktemp(name))
    result = trainer.train_and_evaluate(config, workdir)
    return workdir, config, result["state"]


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory, fmnist_data_dir):
    return _tiny_workdir(tmp_path_factory, fmnist_data_dir, "gan_mlp_fashion_mnist")


def _evaluate(capsys, *args):
    assert evaluate.main([str(a) for a in args]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_evaluate_gan_workdir_names_the_extractor_and_caches_the_reference(gan_run, capsys):
    workdir, _, _ = gan_run
    first = _evaluate(capsys, "--workdir", workdir, "--num-samples", 300)
    keys = ("fid", "kid", "kid_stderr", "precision", "recall")
    assert all(f"{k}/{EXTRACTOR}" in first for k in keys)
    assert first["feature_extractor"]["name"] == EXTRACTOR
    assert first["num_samples"] == 300 and first["generator"]["step"] == 2
    assert first["reference"]["cached"] is False and first["reference"]["num"] == 400
    second = _evaluate(capsys, "--workdir", workdir, "--num-samples", 300)
    assert second["reference"]["cached"] is True
    assert second[f"fid/{EXTRACTOR}"] == pytest.approx(first[f"fid/{EXTRACTOR}"], rel=1e-6)
    # The cached reference holds the features of 400 distinct test images (the prepared split
    # is in TFDS's shuffled order, so match each cached row to its image in the raw idx file).
    with np.load(first["reference"]["cache"]) as data:
        cached = data["features"]
    images, _ = fashion_mnist.load_split(fashion_mnist.DEFAULT_SOURCE_DIR, "test")
    extractor = features.resolve("", "fashion_mnist_local")
    direct = np.asarray(extractor.features(extractor.params, images.astype(np.float32) / 255.0))
    dist = ((cached[:, None, :] - direct[None, :, :]) ** 2).sum(-1)
    match = dist.argmin(1)
    assert len(set(match.tolist())) == 400
    np.testing.assert_allclose(cached, direct[match], rtol=1e-4, atol=1e-3)


def test_real_images_against_themselves(gan_run):
    workdir, config, _ = gan_run
    # The reference is the first 400 records of the prepared test split: feed exactly those.
    source = sources.load(config.dataset, "test")
    images = np.stack([source[i]["image"] for i in range(400)])
    batches = iter(np.split(images.astype(np.float32) / 255.0, 4))
    cfg = sample_quality.settings_of(config)
    cfg.num_samples = 400
    metrics, _ = sample_quality.sample_quality(
        lambda rng: jnp.asarray(next(batches)),
        (28, 28, 1),
        features.resolve("", "fashion_mnist_local"),
        config.dataset,
        cfg,
        f"{workdir}/reference_stats",
        sharding.make_mesh(),
    )
    assert abs(metrics[f"fid/{EXTRACTOR}"]) < 1e-2
    assert metrics[f"precision/{EXTRACTOR}"] == 1.0 and metrics[f"recall/{EXTRACTOR}"] == 1.0


def test_training_evaluator_on_a_live_state(gan_run):
    workdir, config, state = gan_run
    mesh = sharding.make_mesh()
    with jax.set_mesh(mesh):
        metrics = sample_quality.TrainingEvaluator(config, workdir, (28, 28, 1), mesh)(state)
    assert metrics[f"fid/{EXTRACTOR}"] > 0 and 0 <= metrics[f"recall/{EXTRACTOR}"] <= 1


def test_evaluate_vae_reports_iw_bound_and_elbo(tmp_path_factory, fmnist_data_dir, capsys):
    workdir, _, _ = _tiny_workdir(tmp_path_factory, fmnist_data_dir, "vae_mlp_fashion_mnist")
    out = _evaluate(
        capsys, "--workdir", workdir, "--num-samples", 200, "--iw-samples", 8, "--max-images", 64
    )
    assert out["iw_samples"] == 8 and out["iw_num_images"] == 64
    assert out["iw_bound"] >= out["elbo"] - 1.0  # K = 8 >= K = 1 up to sampling noise.
    assert out["iw_nll"] == -out["iw_bound"]
    np.testing.assert_allclose(out["iw_bits_per_dim"], out["iw_nll"] / (784 * math.log(2)))
    np.testing.assert_allclose(out["elbo_bits_per_dim"], -out["elbo"] / (784 * math.log(2)))
    assert f"fid/{EXTRACTOR}" in out


def test_usage_errors(gan_run, tmp_path, capsys):
    workdir, _, _ = gan_run
    assert evaluate.main(["--workdir", workdir, "--upscaler", workdir]) == 2
    assert "not super-resolution" in capsys.readouterr().err
    assert evaluate.main(["--workdir", workdir, "--feature-extractor", workdir]) == 2
    assert "must be a trained classifier" in capsys.readouterr().err
    assert evaluate.main(["--workdir", workdir, "--num-samples", "0"]) == 2
    assert "--num-samples: must be >= 1" in capsys.readouterr().err
