"""Fashion-MNIST as high-resolution images for super-resolution (``fashion_mnist_sr_local``).

The SR pipeline (`genres_jax.data.sr_pairs`) reads HR images from a record's ``hr`` key and
makes the LR image itself (MATLAB bicubic, rounded to uint8), so this dataset holds the 28x28
grey garments under ``hr`` (with a ``name``), built from the same local idx files as
``fashion_mnist_local``. The SR pipeline works on RGB: `sr_pairs.PairSource` repeats a grey
image over three channels, so an SR model trained here sees R = G = B, and the cascade
(`genres_jax.sample`) feeds grey samples the same way and averages the three output channels.
"""

from __future__ import annotations

import io

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from genres_jax.data import fashion_mnist


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image[..., 0], mode="L").save(buf, format="png")
    return buf.getvalue()


class FashionMnistSrLocal(fashion_mnist.FashionMnistLocal):
    """The ``train`` and ``test`` images of Fashion-MNIST as {"hr": 28x28x1, "name"} records."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Fashion-MNIST images as HR records, built from the idx files."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {"hr": tfds.features.Image(shape=(28, 28, 1)), "name": tfds.features.Text()}
            )
        )

    def _generate_examples(self, split: str):
        images, _ = fashion_mnist.load_split(self._source_dir, split)
        for i, image in enumerate(images):
            name = f"{split}_{i:05d}"
            yield name, {"hr": _png(image), "name": name}
