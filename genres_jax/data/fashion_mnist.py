"""Fashion-MNIST from local idx files, as a TFDS dataset of the project's own.

The Debian package ``dataset-fashion-mnist`` installs the four original idx files under
``/usr/share/datasets/fashion-mnist``. `FashionMnistLocal` turns them into an array_record TFDS
dataset with the same features as the catalog's ``fashion_mnist`` (``image``: 28x28x1 uint8,
``label``: 10 classes), so everything downstream reads it through ``tfds.data_source`` exactly
like a catalog dataset. Preparing it needs no TensorFlow: images are PNG-encoded with Pillow.
"""

from __future__ import annotations

import gzip
import io
import os
import struct

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from genres_jax import UserError
from genres_jax.data import offline_dirs

DEFAULT_SOURCE_DIR = offline_dirs.FASHION_MNIST_DIR

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

_IMAGE_MAGIC = 2051
_LABEL_MAGIC = 2049


class DatasetSourceError(UserError):
    """The raw files a local dataset is built from are missing or malformed."""


def missing_source_message(source_dir: str) -> str:
    return (
        f"Fashion-MNIST idx files not found in {source_dir!r}. Either install them with "
        "`apt-get install dataset-fashion-mnist` (or point --config.dataset.source_dir at a folder "
        "holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz), or use the TFDS catalog "
        "dataset on a machine with internet: --config.dataset.name=fashion_mnist."
    )


def check_source_dir(source_dir: str) -> None:
    """Raises `DatasetSourceError` naming the path and the ways to get the data."""
    missing = [
        name
        for pair in _FILES.values()
        for name in pair
        if not os.path.isfile(os.path.join(source_dir, name))
    ]
    if missing:
        raise DatasetSourceError(missing_source_message(source_dir))


def read_idx(path: str, magic: int) -> np.ndarray:
    """Reads a (gzipped) idx file: big-endian magic, dimension sizes, then uint8 data."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DatasetSourceError(f"cannot read idx file {path!r}: {e}") from e
    ndim = magic & 0xFF
    if len(data) < 4 + 4 * ndim or struct.unpack(">I", data[:4])[0] != magic:
        raise DatasetSourceError(f"{path!r} is not an idx file with magic number {magic}")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DatasetSourceError(
            f"{path!r} holds {body.size} bytes of data, expected {int(np.prod(shape))} for {shape}"
        )
    return body.reshape(shape)


def load_split(source_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns (images uint8 (N, 28, 28, 1), labels int64 (N,)) of one split."""
    image_file, label_file = _FILES[split]
    images = read_idx(os.path.join(source_dir, image_file), _IMAGE_MAGIC)
    labels = read_idx(os.path.join(source_dir, label_file), _LABEL_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DatasetSourceError(
            f"{split}: {images.shape[0]} images but {labels.shape[0]} labels in {source_dir!r}"
        )
    return images[..., None], labels.astype(np.int64)


def _png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image[..., 0], mode="L").save(buf, format="png")
    return buf.getvalue()


class FashionMnistLocal(tfds.core.GeneratorBasedBuilder):
    """Fashion-MNIST built from the idx files in `source_dir` (no download)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Built from the original idx files."}

    def __init__(self, *, source_dir: str = DEFAULT_SOURCE_DIR, **kwargs):
        self._source_dir = source_dir
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(28, 28, 1)),
                    "label": tfds.features.ClassLabel(names=CLASS_NAMES),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing is downloaded.
        check_source_dir(self._source_dir)
        return {split: self._generate_examples(split) for split in _FILES}

    def _generate_examples(self, split: str):
        images, labels = load_split(self._source_dir, split)
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            yield i, {"image": _png_bytes(image), "label": int(label)}
