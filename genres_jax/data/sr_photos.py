"""High-resolution photo datasets for super-resolution, as TFDS datasets of the project's own.

``sr_photos_local``: the RGB photographs that ship inside scikit-image, with a fixed split, the
offline default for training and validating SR models. ``hr_image_folder``: any folder of HR
images (PNG/JPEG/...), the way to bring one's own data (e.g. DIV2K's HR folders). Both store
``hr`` (uint8 HxWx3, PNG-encoded, lossless) and ``name``; LR images are made from HR in the input
pipeline, so one dataset serves every scale. Preparing needs no TensorFlow.
"""

from __future__ import annotations

import hashlib
import io
import os

import numpy as np
import skimage
import tensorflow_datasets as tfds
from PIL import Image

from genres_jax import UserError

# The RGB photographs among scikit-image's data files (colour wheels, logos, chessboards and
# grey-level images left out). The stereo pair motorcycle_left/right stays on one side of the
# split so validation never sees a near-copy of a training photo.
SKIMAGE_TRAIN = (
    "chelsea.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
    "rocket.jpg",
)
SKIMAGE_VALIDATION = ("astronaut.png", "coffee.png")


def unseen_photo_paths() -> list[str]:
    """Photos no model here trains or validates on, shipped inside other installed packages:
    matplotlib's grace_hopper.jpg and scikit-learn's china.jpg and flower.jpg (the ``test``
    split of ``sr_photos_local``)."""
    import matplotlib
    import sklearn

    return [
        os.path.join(
            os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data", "grace_hopper.jpg"
        ),
        os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images", "china.jpg"),
        os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images", "flower.jpg"),
    ]


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def skimage_data_dir() -> str:
    return os.path.join(os.path.dirname(skimage.__file__), "data")


class ImageFileError(UserError):
    """An image file that cannot be used; the message names the file."""


def read_rgb(path: str) -> np.ndarray:
    """uint8 (H, W, 3): grey and palette images are converted, alpha is dropped (documented rule).

    16-bit images are reduced to 8 bits. Unreadable or truncated files raise `ImageFileError`.
    """
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(im, dtype=np.float64) / 257.0
                im = Image.fromarray(np.round(array).clip(0, 255).astype(np.uint8))
            rgb = im.convert("RGB")
            return np.asarray(rgb, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageFileError(f"cannot read image {path!r}: {e}") from None


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="png")
    return buf.getvalue()


def _features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict(
        {"hr": tfds.features.Image(shape=(None, None, 3)), "name": tfds.features.Text()}
    )


class SrPhotosLocal(tfds.core.GeneratorBasedBuilder):
    """scikit-image's RGB photographs (7 train, 2 validation) and 3 unseen ``test`` photos."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "scikit-image RGB photographs, fixed split.",
        "1.1.0": "A test split of photos from matplotlib and scikit-learn.",
    }

    def __init__(self, *, source_dir: str = "", **kwargs):
        self._source_dir = source_dir or skimage_data_dir()
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=_features())

    def _split_generators(self, dl_manager):
        del dl_manager
        join = lambda names: [os.path.join(self._source_dir, n) for n in names]
        return {
            "train": self._generate_examples(join(SKIMAGE_TRAIN)),
            "validation": self._generate_examples(join(SKIMAGE_VALIDATION)),
            "test": self._generate_examples(unseen_photo_paths()),
        }

    def _generate_examples(self, paths):
        for path in paths:
            name = os.path.basename(path)
            yield name, {"hr": _png(read_rgb(path)), "name": name}


def list_images(folder: str) -> list[str]:
    """Image files directly inside ``folder``, sorted; errors name the folder."""
    if not os.path.isdir(folder):
        raise ImageFileError(f"image folder {folder!r} does not exist")
    names = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise ImageFileError(
            f"image folder {folder!r} holds no images (looked for {', '.join(IMAGE_EXTENSIONS)})"
        )
    return [os.path.join(folder, n) for n in names]


def folder_data_dir(base_dir: str, train_dir: str, validation_dir: str = "") -> str:
    """Where the prepared copy of a folder pair lives: one sub-folder per pair of paths."""
    key = repr(
        (os.path.abspath(train_dir), os.path.abspath(validation_dir) if validation_dir else "")
    )
    return os.path.join(base_dir, f"hr_image_folder_{hashlib.sha1(key.encode()).hexdigest()[:12]}")


class HrImageFolder(tfds.core.GeneratorBasedBuilder):
    """HR images from ``train_dir`` and ``validation_dir``.

    Prepare each folder pair into its own data_dir (`folder_data_dir`): TFDS re-creates a
    builder from its name and data_dir alone when reading, so the folders cannot be part of it.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Folders of HR images."}

    def __init__(self, *, train_dir: str = "", validation_dir: str = "", **kwargs):
        self._dirs = {"train": os.path.abspath(train_dir)} if train_dir else {}
        if validation_dir:
            self._dirs["validation"] = os.path.abspath(validation_dir)
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=_features())

    def _split_generators(self, dl_manager):
        del dl_manager
        return {split: self._generate_examples(d) for split, d in self._dirs.items()}

    def _generate_examples(self, folder):
        for path in list_images(folder):
            name = os.path.basename(path)
            yield name, {"hr": _png(read_rgb(path)), "name": name}
