"""Evaluation of GAN and VAE workdirs: FID, KID and precision/recall of their samples.

Sample-quality metrics compare ``num_samples`` generated images with real images of the
dataset (``reference_split``, at most ``reference_max_records``, resized to the generated
images' size as the training pipeline resizes) in the feature space of one extractor
(`genres_jax.features`); every key names it: ``fid/<extractor>``, ``kid/<extractor>``,
``kid_stderr/<extractor>``, ``precision/<extractor>``, ``recall/<extractor>``. Generated images
are quantised to 8 bits first, as if saved. Features are computed batch by batch on every
device (batches sharded over the ``data`` mesh axis), statistics are accumulated with the
streaming update of `genres_jax.evaluation.generative_metrics`, and the real data's features and
statistics are computed once and cached in ``<workdir>/reference_stats/`` (the file name holds
the extractor's name and fingerprint, dataset, split, image size and record count).

KID: the unbiased MMD^2 of the cubic kernel, averaged over B = N // ``kid_subset_size``
*disjoint* blocks of ``kid_subset_size`` real and generated samples (B >= 2). The blocks are
independent, so ``kid_stderr`` = std(ddof=1) / sqrt(B) is the standard error of the reported
mean (random overlapping subsets, as in the KID paper's code, would understate it).

The VAE's likelihood bounds are in `genres_jax.evaluation.vae_bounds`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genres_jax.data import pipeline, sources
from genres_jax.evaluation import features, generative_metrics, precision_recall, vae_bounds
from genres_jax.train import defaults, sharding


def settings_of(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """``config.generative_eval`` over the defaults of `defaults.generative_eval`."""
    merged = defaults.generative_eval()
    block = config.get("generative_eval")
    if block:
        merged.update(dict(block))
    return merged


def quantize(images: jax.Array) -> jax.Array:
    """Images in [0, 1] rounded to the 256 levels of an 8-bit file."""
    return jnp.round(jnp.clip(images.astype(jnp.float32), 0.0, 1.0) * 255.0) / 255.0


def _accumulate(batches: Iterator[np.ndarray], dim: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Stacks feature batches and streams them into `FeatureStats`; returns (features, stats)."""
    stats, kept = generative_metrics.empty_stats(dim), []
    for batch in batches:
        stats = generative_metrics.update_stats(stats, batch)
        kept.append(batch)
    mean, cov = generative_metrics.mean_and_cov(stats)
    return np.concatenate(kept), {"mean": np.asarray(mean), "cov": np.asarray(cov)}


# ----------------------------------------------------------------------- Real (reference) data.


@dataclasses.dataclass(frozen=True)
class Reference:
    features: np.ndarray  # (N, D)
    mean: np.ndarray
    cov: np.ndarray
    info: dict[str, Any]


def reference(
    extractor: features.FeatureExtractor,
    dataset: ml_collections.ConfigDict,
    split: str,
    image_shape: tuple[int, int, int],
    *,
    max_records: int,
    batch_size: int,
    cache_dir: str,
    mesh,
) -> Reference:
    """Features and statistics of real images at ``image_shape``, cached in ``cache_dir``."""
    h, w, c = image_shape
    count = f"{max_records}" if max_records else "all"
    key = f"{extractor.name}-{extractor.fingerprint}-{dataset.name}-{split}-{h}x{w}x{c}-{count}"
    path = os.path.join(cache_dir, f"{key}.npz")
    info = {"dataset": dataset.name, "split": split, "image_shape": [h, w, c], "cache": path}
    if os.path.isfile(path):
        with np.load(path) as data:
            ref = Reference(data["features"], data["mean"], data["cov"], info)
        return dataclasses.replace(ref, info={**info, "num": len(ref.features), "cached": True})
    source = sources.load(dataset, split)
    ops = [pipeline.ImageRecord(image_size=h, center_crop=dataset.get("center_crop", False))]
    embed = jax.jit(lambda p, x: extractor.features(p, x.astype(jnp.float32) / 255.0))

    def batches():
        for batch in sharding.global_eval_batches(
            source,
            batch_size=batch_size,
            operations=ops,
            mesh=mesh,
            max_records=max_records,
            keys=("image", "mask", "index"),
        ):
            if batch["image"].shape[1:] != (h, w, c):
                raise ValueError(
                    f"dataset {dataset.name!r} gives {batch['image'].shape[1:]} images, not "
                    f"{(h, w, c)}: the generated images' channels differ from the data's"
                )
            feats = sharding.gather_to_host(embed(extractor.params, batch["image"]))
            valid = sharding.gather_to_host(batch["mask"]) > 0
            order.append(sharding.gather_to_host(batch["index"])[valid])
            yield feats[valid]

    order: list[np.ndarray] = []
    with jax.set_mesh(mesh):
        feats, stats = _accumulate(batches(), extractor.dim)
    # Record order, whatever the process count: KID's random blocks then pick the same images.
    feats = feats[np.argsort(np.concatenate(order), kind="stable")]
    if jax.process_index() == 0:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, features=feats, **stats, info=json.dumps(info))
        os.replace(tmp, path)
    return Reference(
        feats, stats["mean"], stats["cov"], {**info, "num": len(feats), "cached": False}
    )


# ------------------------------------------------------------------------------- Comparison.


@jax.jit
def _block_mmd2(real: jax.Array, fake: jax.Array, real_idx: jax.Array, fake_idx: jax.Array):
    return jax.lax.map(
        lambda idx: generative_metrics.polynomial_mmd2(real[idx[0]], fake[idx[1]]),
        (real_idx, fake_idx),
    )


def kid_disjoint(
    real: np.ndarray, fake: np.ndarray, subset_size: int, key: jax.Array
) -> tuple[float, float]:
    """(KID, its standard error): unbiased cubic-kernel MMD^2 over disjoint blocks.

    B = max(2, min(N_real, N_fake) // subset_size) blocks of min(N_real, N_fake) // B samples,
    drawn by one random permutation of each set; KID = mean of the B estimates, standard error
    = std(ddof=1) / sqrt(B).
    """
    n = min(len(real), len(fake))
    blocks = max(2, n // subset_size)
    size = n // blocks
    if size < 2:
        raise ValueError(f"KID needs at least 4 samples per set, got {len(real)} and {len(fake)}")
    key_real, key_fake = jax.random.split(key)
    real_idx = jax.random.permutation(key_real, len(real))[: blocks * size].reshape(blocks, size)
    fake_idx = jax.random.permutation(key_fake, len(fake))[: blocks * size].reshape(blocks, size)
    values = np.asarray(_block_mmd2(real, fake, real_idx, fake_idx), np.float64)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(blocks))


def compare(
    ref: Reference,
    fake: np.ndarray,
    fake_stats: dict[str, np.ndarray],
    extractor_name: str,
    *,
    kid_subset_size: int,
    pr_k: int,
    key: jax.Array,
) -> dict[str, float]:
    """FID, KID (+ standard error) and precision/recall of ``fake`` against ``ref``."""
    fid = generative_metrics.frechet_distance(
        ref.mean, ref.cov, fake_stats["mean"], fake_stats["cov"]
    )
    kid, kid_se = kid_disjoint(ref.features, fake, kid_subset_size, key)
    precision, recall = precision_recall.precision_recall(ref.features, fake, k=pr_k)
    name = extractor_name
    return {
        f"fid/{name}": fid,
        f"kid/{name}": kid,
        f"kid_stderr/{name}": kid_se,
        f"precision/{name}": float(precision),
        f"recall/{name}": float(recall),
    }


def sample_features(
    sampler: Callable[[jax.Array], jax.Array],
    extractor: features.FeatureExtractor,
    num: int,
    key: jax.Array,
    mesh,
    per_batch: int = 0,
) -> tuple[np.ndarray, dict[str, np.ndarray], tuple[int, ...]]:
    """Features and statistics of ``num`` generated images (8-bit quantised), and their shape.

    ``per_batch`` > 0 keeps the first ``per_batch`` images of each ``sampler`` call: a batch
    padded to the device count then adds nothing, and the images compared are the same for any
    number of devices (a batch's first rows do not depend on its size).
    """
    embed = jax.jit(lambda p, x: extractor.features(p, quantize(x)))
    shape: list[tuple[int, ...]] = []

    def batches():
        done, i = 0, 0
        while done < num:
            images = sampler(jax.random.fold_in(key, i))
            shape.append(tuple(images.shape[1:]))
            feats = sharding.gather_to_host(embed(extractor.params, images))
            feats = feats[: min(num - done, per_batch or len(feats))]
            done, i = done + len(feats), i + 1
            yield feats

    with jax.set_mesh(mesh):
        feats, stats = _accumulate(batches(), extractor.dim)
    return feats, stats, shape[0]


def sample_quality(
    sampler: Callable[[jax.Array], jax.Array],
    image_shape: tuple[int, int, int],
    extractor: features.FeatureExtractor,
    dataset: ml_collections.ConfigDict,
    cfg: ml_collections.ConfigDict,
    cache_dir: str,
    mesh,
) -> tuple[dict[str, float], dict[str, Any]]:
    """(metrics, what was compared) for the images ``sampler(rng)`` makes."""
    key = jax.random.key(cfg.seed)
    fake, fake_stats, _ = sample_features(
        sampler,
        extractor,
        cfg.num_samples,
        jax.random.fold_in(key, 0),
        mesh,
        per_batch=cfg.batch_size,
    )
    ref = reference(
        extractor,
        dataset,
        cfg.reference_split or dataset.eval_split,
        image_shape,
        max_records=cfg.reference_max_records,
        batch_size=cfg.batch_size,
        cache_dir=cache_dir,
        mesh=mesh,
    )
    metrics = compare(
        ref,
        fake,
        fake_stats,
        extractor.name,
        kid_subset_size=cfg.kid_subset_size,
        pr_k=cfg.pr_k,
        key=jax.random.fold_in(key, 1),
    )
    return metrics, {"reference": ref.info, "num_samples": len(fake)}


# ------------------------------------------------------------------------------ Training.


class TrainingEvaluator:
    """What the trainer calls every ``eval_every`` steps of a GAN or VAE run.

    Built once (extractor, jitted sampler, the real data's cached features); each call takes the
    live train state and returns the metrics of the module docstring for the EMA generator
    (GAN) or the VAE, plus the VAE's likelihood bounds.
    """

    def __init__(self, config: ml_collections.ConfigDict, workdir: str, image_shape, mesh):
        from genres_jax import tasks

        self.cfg = settings_of(config)
        self.config, self.image_shape, self.mesh = config, tuple(image_shape), mesh
        self.cache_dir = os.path.join(workdir, "reference_stats")
        self.extractor = features.resolve(self.cfg.feature_extractor, config.dataset.name)
        sized = config.copy_and_resolve_references()
        sized.num_samples = sharding.padded_batch_size(self.cfg.batch_size)
        task = tasks.make(sized, self.image_shape)
        self.likelihood = tasks.supports(config.task, "likelihood")
        self._sample = jax.jit(lambda state, rng: task.sample_images(state, rng)["samples"])

    def __call__(self, state: Any) -> dict[str, float]:
        """Metrics of ``state`` (a GanState or VaeState), keys naming the extractor."""
        metrics, _ = sample_quality(
            lambda rng: self._sample(state, rng),
            self.image_shape,
            self.extractor,
            self.config.dataset,
            self.cfg,
            self.cache_dir,
            self.mesh,
        )
        if self.likelihood:
            metrics.update(
                vae_bounds.vae_likelihood(
                    self.config,
                    state.params,
                    self.image_shape,
                    iw_samples=self.cfg.iw_samples,
                    max_records=self.cfg.iw_max_records,
                    batch_size=self.cfg.batch_size,
                    key=jax.random.key(self.cfg.seed + 1),
                    mesh=self.mesh,
                )
            )
        return metrics
