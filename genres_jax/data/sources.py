"""Datasets by name: the project's own offline TFDS builders, else the TFDS catalog.

Every dataset is read through a TFDS array_record data source (random access, no TensorFlow).
Local builders are prepared on first use into ``dataset.data_dir`` (TFDS's default folder when
empty); catalog names such as ``mnist``, ``fashion_mnist``, ``cifar10`` or ``celeb_a`` are passed
to ``tfds.data_source`` unchanged and need the internet the first time they are prepared.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import ml_collections
import tensorflow_datasets as tfds

from genres_jax import UserError
from genres_jax.data import fashion_mnist, fashion_mnist_sr, sr_photos

# Preparing a small local dataset takes seconds; its progress bars would bury the training bar.
tfds.display_progress_bar(False)


class DatasetError(UserError):
    """A dataset cannot be found, prepared or read; the message says what to do."""


def _fashion_mnist_local(cfg: ml_collections.ConfigDict, data_dir: str | None):
    return fashion_mnist.FashionMnistLocal(source_dir=cfg.source_dir, data_dir=data_dir)


def _fashion_mnist_sr_local(cfg: ml_collections.ConfigDict, data_dir: str | None):
    source_dir = cfg.get("source_dir") or fashion_mnist.DEFAULT_SOURCE_DIR
    return fashion_mnist_sr.FashionMnistSrLocal(source_dir=source_dir, data_dir=data_dir)


def _sr_photos_local(cfg: ml_collections.ConfigDict, data_dir: str | None):
    return sr_photos.SrPhotosLocal(source_dir=cfg.get("source_dir", ""), data_dir=data_dir)


def _lomiri_photos_local(cfg: ml_collections.ConfigDict, data_dir: str | None):
    return sr_photos.LomiriPhotosLocal(source_dir=cfg.get("source_dir", ""), data_dir=data_dir)


def _hr_image_folder(cfg: ml_collections.ConfigDict, data_dir: str | None):
    if not cfg.get("train_dir"):
        raise DatasetError("dataset hr_image_folder needs dataset.train_dir (a folder of images)")
    train_dir = os.path.expanduser(cfg.train_dir)
    validation_dir = os.path.expanduser(cfg.get("validation_dir", ""))
    return sr_photos.HrImageFolder(
        train_dir=train_dir,
        validation_dir=validation_dir,
        data_dir=sr_photos.folder_data_dir(
            data_dir or tfds.core.constants.DATA_DIR, train_dir, validation_dir
        ),
    )


# Builders of the project's own, by the name used in ``config.dataset.name``.
LOCAL_BUILDERS: dict[
    str, Callable[[ml_collections.ConfigDict, str | None], tfds.core.DatasetBuilder]
] = {
    "fashion_mnist_local": _fashion_mnist_local,
    "fashion_mnist_sr_local": _fashion_mnist_sr_local,
    "sr_photos_local": _sr_photos_local,
    "lomiri_photos_local": _lomiri_photos_local,
    "hr_image_folder": _hr_image_folder,
}


def _data_dir(cfg: ml_collections.ConfigDict) -> str | None:
    return os.path.expanduser(cfg.data_dir) if cfg.get("data_dir") else None


def check_available(cfg: ml_collections.ConfigDict) -> None:
    """Cheap checks run before anything is compiled: raises `DatasetError` with a remedy."""
    if cfg.name in LOCAL_BUILDERS:
        builder = LOCAL_BUILDERS[cfg.name](cfg, _data_dir(cfg))
        if builder.is_prepared():
            return
        try:
            if cfg.name in ("fashion_mnist_local", "fashion_mnist_sr_local"):
                fashion_mnist.check_source_dir(
                    cfg.get("source_dir") or fashion_mnist.DEFAULT_SOURCE_DIR
                )
            elif cfg.name == "lomiri_photos_local":
                sr_photos.check_lomiri_dir(cfg.get("source_dir") or sr_photos.LOMIRI_DIR)
            elif cfg.name == "hr_image_folder":
                sr_photos.list_images(os.path.expanduser(cfg.train_dir))
                if cfg.get("validation_dir"):
                    sr_photos.list_images(os.path.expanduser(cfg.validation_dir))
        except (fashion_mnist.DatasetSourceError, sr_photos.ImageFileError) as e:
            raise DatasetError(str(e)) from None


def load(cfg: ml_collections.ConfigDict, split: str):
    """Returns the random-access data source of ``split``, preparing local datasets if needed."""
    data_dir = _data_dir(cfg)
    if cfg.name in LOCAL_BUILDERS:
        builder = LOCAL_BUILDERS[cfg.name](cfg, data_dir)
        try:
            builder.download_and_prepare()
        except (fashion_mnist.DatasetSourceError, sr_photos.ImageFileError) as e:
            raise DatasetError(str(e)) from None
        if split not in builder.info.splits:
            raise DatasetError(
                f"dataset {cfg.name!r} has no split {split!r}; it has {sorted(builder.info.splits)}"
            )
        return builder.as_data_source(split=split)
    try:
        return tfds.data_source(cfg.name, split=split, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DatasetError(
            f"unknown dataset {cfg.name!r}: neither one of the project's own "
            f"({', '.join(sorted(LOCAL_BUILDERS))}) nor a TFDS catalog name"
        ) from None
    except Exception as e:  # TFDS reports preparation failures (no network, ...) many ways.
        raise DatasetError(
            f"could not load TFDS dataset {cfg.name!r} split {split!r} "
            f"(data_dir={data_dir or 'TFDS default'}): {type(e).__name__}: {e}. Catalog datasets "
            "must be prepared once on a machine with internet, or use an offline dataset such "
            "as fashion_mnist_local."
        ) from None
