"""The training and evaluation inputs of a config: source, per-record operations, batches.

``dataset.kind`` picks the pipeline: ``images`` (generative models: whole images, optionally
resized) or ``sr_pairs`` (super-resolution: LR/HR pairs made from HR images, random aligned
patches with flips and rotations for training, whole images for validation).
"""

from __future__ import annotations

from typing import Any

import grain
import ml_collections

from genres_jax.data import pipeline, sources, sr_pairs

KINDS = ("images", "sr_pairs")
# How SR training picks the photo of each patch: in proportion to its area, or every photo alike
# (what a workdir recorded before the choice existed did).
PATCH_SAMPLING = ("area", "image")


def validate(config: ml_collections.ConfigDict) -> None:
    kind = config.dataset.get("kind", "images")
    if kind not in KINDS:
        raise ValueError(f"unknown dataset.kind {kind!r}; valid: {', '.join(KINDS)}")
    sampling = config.dataset.get("patch_sampling", "image")
    if kind == "sr_pairs" and sampling not in PATCH_SAMPLING:
        raise ValueError(
            f"unknown dataset.patch_sampling {sampling!r}; valid: {', '.join(PATCH_SAMPLING)}"
        )


def train_inputs(config: ml_collections.ConfigDict) -> tuple[Any, list[grain.transforms.Map]]:
    """(random-access source, grain operations before batching) for training."""
    ds = config.dataset
    source = sources.load(ds, ds.train_split)
    if ds.get("kind", "images") == "sr_pairs":
        # LR made on the device from the HR crops (degradation.kind other than "bicubic"):
        # the pipeline ships HR crops only.
        with_lr = config.get("degradation", {}).get("kind", "bicubic") == "bicubic"
        pairs = sr_pairs.PairSource(source, config.scale, cache=ds.cache, with_lr=with_lr)
        if ds.get("patch_sampling", "image") == "area":
            pairs = sr_pairs.AreaWeightedSource(pairs, pipeline.MIN_EPOCH_RECORDS)
        return pairs, [sr_pairs.RandomPatch(ds.lr_patch_size, config.scale, ds.augment)]
    if ds.cache:
        source = pipeline.CachedSource(source)
        # Reading in bulk costs about a third of reading record by record: worth it for a run
        # that reads at least half the split (the main job reads Fashion-MNIST 3 times over),
        # not for a short one.
        if config.total_steps * config.batch_size >= len(source) // 2:
            source.preload()
    return source, [pipeline.ImageRecord(image_size=ds.image_size, center_crop=ds.center_crop)]


def eval_inputs(config: ml_collections.ConfigDict) -> tuple[Any, list[grain.transforms.Map]]:
    """(source, operations) of the evaluation split; SR pairs are whole images, no operations."""
    ds = config.dataset
    source = sources.load(ds, ds.eval_split)
    if ds.get("kind", "images") == "sr_pairs":
        return sr_pairs.PairSource(source, config.scale, cache=ds.cache), []
    if ds.cache:
        source = pipeline.CachedSource(source)
    return source, [pipeline.ImageRecord(image_size=ds.image_size, center_crop=ds.center_crop)]
