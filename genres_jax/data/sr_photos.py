"""High-resolution photo datasets for super-resolution, as TFDS datasets of the project's own.

``lomiri_photos_local``: 15 multi-megapixel photographs from Debian's Lomiri wallpaper packages,
the offline training set of the shipped SR weights. ``sr_photos_local``: the RGB photographs that
ship inside scikit-image, with a fixed split. Both share the ``test`` split of three photos no
model here trains or validates on. ``hr_image_folder``: any folder of HR
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


# Debian's Lomiri wallpaper packages: the photographs among their files (renders and paintings
# left out: umang, Fossa, Infinite-Sea, Painting-Colors). Kleiber comes from the 20.04 package.
LOMIRI_DIR = "/usr/share/backgrounds"
LOMIRI_PACKAGES = ("lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04")
LOMIRI_TRAIN = (
    "Bridge_by_Sander_Klootwijk.jpg",
    "Dragonfly_by_Bolly.jpg",
    "Kleiber_by_Lukas_Baubkus.jpg",
    "Picture_0B_by_freespace.jpg",
    "Wine_by_Jakkub_Mede.jpg",
    "aitzgorri_by_Aitzol_Berasategi.jpg",
    "analogpattern_by_Peter_Nerlich.jpg",
    "free_by_Peter_Nerlich.jpg",
    "greentock_by_Peter_Nerlich.jpg",
    "life_by_Aitzol_Berasategi.jpg",
    "picosdeeuropa_by_Aitzol_Berasategi.jpg",
    "seeding_by_Clements_Engelhardt.jpg",
    "sunset_by_Aitzol_Berasategi.jpg",
)
LOMIRI_VALIDATION = ("Picture_1A_by_freespace.jpg", "friends_by_Aitzol_Berasategi.jpg")
# A JPEG's HR is the decoded photo made JPEG_HR_FACTOR times smaller with an antialiased
# bicubic filter, so that the compression's 8x8 blocks and ringing shrink below what an LR
# pixel can show and are not learned as detail (README "The training photographs").
JPEG_HR_FACTOR = 2


def check_lomiri_dir(folder: str) -> None:
    """Raises `ImageFileError` naming the missing files and the command that installs them."""
    names = (*LOMIRI_TRAIN, *LOMIRI_VALIDATION)
    missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise ImageFileError(
            f"dataset lomiri_photos_local: {len(missing)} of its {len(names)} photographs are "
            f"missing from {folder!r} (first: {missing[0]}); they come with the Debian packages "
            f"{' and '.join(LOMIRI_PACKAGES)}: apt-get install -y {' '.join(LOMIRI_PACKAGES)}"
        )


def downscaled_hr(image: np.ndarray, factor: int = JPEG_HR_FACTOR) -> np.ndarray:
    """uint8 HR from a decoded JPEG: ``factor`` times smaller (sides rounded down), by Pillow's
    antialiased bicubic filter (the kernel widened by ``factor``, as MATLAB's ``imresize``)."""
    h, w = image.shape[:2]
    small = Image.fromarray(image).resize(
        (w // factor, h // factor),
        Image.Resampling.BICUBIC,
        box=(0, 0, w // factor * factor, h // factor * factor),
    )
    return np.asarray(small, dtype=np.uint8)


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


class LomiriPhotosLocal(tfds.core.GeneratorBasedBuilder):
    """Photographs of the Lomiri wallpapers (13 train, 2 validation; HR = photo made 2x smaller)
    and the 3 unseen ``test`` photos of ``sr_photos_local``, unchanged."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "15 photographs, HR downscaled 2x, fixed split."}

    def __init__(self, *, source_dir: str = "", **kwargs):
        self._source_dir = source_dir or LOMIRI_DIR
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=_features())

    def _split_generators(self, dl_manager):
        del dl_manager
        check_lomiri_dir(self._source_dir)
        join = lambda names: [os.path.join(self._source_dir, n) for n in names]
        return {
            "train": self._generate_examples(join(LOMIRI_TRAIN), downscale=True),
            "validation": self._generate_examples(join(LOMIRI_VALIDATION), downscale=True),
            "test": self._generate_examples(unseen_photo_paths(), downscale=False),
        }

    def _generate_examples(self, paths, downscale: bool):
        for path in paths:
            name = os.path.basename(path)
            image = read_rgb(path)
            yield name, {"hr": _png(downscaled_hr(image) if downscale else image), "name": name}


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
