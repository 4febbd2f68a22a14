"""LR/HR pairs for super-resolution, made in the input pipeline from HR images.

The protocol of the SR literature (and of DIV2K's own LR images): crop HR to a multiple of the
scale ("modcrop"), make LR with MATLAB's bicubic ``imresize`` and round it to uint8. Training
batches are random aligned crops (LR ``patch`` x ``patch``, HR ``patch * scale``) with random
flips and 90-degree rotations, the eight symmetries of the square.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import grain
import numpy as np

from genres_jax.data.sources import DatasetError
from genres_jax.ops.imresize import imresize_numpy


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Drops the bottom/right rows and columns that do not fill a whole LR pixel."""
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def bicubic_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """uint8 LR image from a uint8 HR image whose sides are multiples of ``scale``."""
    lr = imresize_numpy(hr.astype(np.float64) / 255.0, scale=1.0 / scale, method="bicubic")
    return np.clip(np.round(lr * 255.0), 0, 255).astype(np.uint8)


class SmallImageError(DatasetError):
    """An image smaller than the training crop; the message names it."""


class PairSource:
    """Random-access source of {"hr", "lr", "name"} pairs from a source of HR records.

    A record's own ``lr`` (e.g. DIV2K's) is used when its size matches; otherwise LR is made by
    `bicubic_lr`. With ``with_lr=False`` records hold only {"hr", "name"} (modcropped HR): for
    training whose LR is made on the device from the HR crops, where bicubic LR would be
    computed and shipped for nothing. With ``cache`` each pair is made once and kept (small
    datasets).
    """

    def __init__(
        self,
        source: Any,
        scale: int,
        *,
        cache: bool = True,
        hr_key: str = "hr",
        with_lr: bool = True,
    ):
        self._source, self._scale, self._hr_key = source, scale, hr_key
        self._with_lr = with_lr
        self._cache: dict[int, dict[str, Any]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self._source)

    def _make(self, index: int) -> dict[str, Any]:
        record = self._source[index]
        hr = modcrop(np.asarray(record[self._hr_key], np.uint8), self._scale)
        if hr.ndim == 2:
            hr = hr[..., None]
        if hr.shape[-1] == 1:
            hr = np.repeat(hr, 3, axis=-1)
        name = record.get("name", str(index))
        name = name.decode() if isinstance(name, bytes) else str(name)
        if min(hr.shape[:2]) < 1:
            raise SmallImageError(f"{name}: smaller than one LR pixel at x{self._scale}")
        if not self._with_lr:
            return {"hr": hr, "name": name}
        lr = record.get("lr")
        shape = (hr.shape[0] // self._scale, hr.shape[1] // self._scale)
        if lr is None or np.shape(lr)[:2] != shape:
            lr = bicubic_lr(hr, self._scale)
        return {"hr": hr, "lr": np.asarray(lr, np.uint8), "name": name}

    def hr_size(self, index: int) -> tuple[int, int]:
        """(height, width) of a record's HR after modcrop, without making its LR."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]["hr"].shape[:2]
        h, w = np.shape(self._source[index][self._hr_key])[:2]
        return h - h % self._scale, w - w % self._scale

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self._cache is None:
            return self._make(index)
        if index not in self._cache:
            self._cache[index] = self._make(index)
        return self._cache[index]

    def __repr__(self) -> str:
        return f"PairSource({self._source!r}, scale={self._scale})"


class AreaWeightedSource:
    """A source of HR records in which each record appears in proportion to its HR area.

    Training draws one patch per record read, so a 10-megapixel photo gives as many patches as
    ten 1-megapixel ones: every HR pixel is equally likely to be trained on. Each record is
    decoded once here for its size (`PairSource.hr_size`: no LR is made). ``records`` is the
    length of the weighted index (at least; each image at least once), large enough that an epoch's
    shuffle is cheap.
    """

    def __init__(self, source: PairSource, records: int):
        self._source = source
        areas = np.array([np.prod(source.hr_size(i)) for i in range(len(source))], float)
        self.counts = np.ceil(areas / areas.sum() * records).astype(np.int64)
        self._index = np.repeat(np.arange(len(source)), self.counts)

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._source[int(self._index[index])]

    def __repr__(self) -> str:
        return f"AreaWeightedSource({self._source!r}, records={len(self)})"


def dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """The k-th (0..7) symmetry of the square: k % 4 quarter turns, then a flip if k >= 4."""
    out = np.rot90(image, k % 4, axes=(0, 1))
    return out[:, ::-1] if k >= 4 else out


@dataclasses.dataclass(frozen=True)
class RandomPatch(grain.transforms.RandomMap):
    """An aligned random crop (LR ``patch``, HR ``patch * scale``) of a pair, maybe augmented.

    Records without ``lr`` (HR only) give HR crops at offsets on the scale's grid, as a pair's
    would be.
    """

    patch: int
    scale: int
    augment: bool = True

    def random_map(self, record: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        lr, hr = record.get("lr"), record["hr"]
        s = self.scale
        h, w = (hr.shape[0] // s, hr.shape[1] // s) if lr is None else lr.shape[:2]
        if h < self.patch or w < self.patch:
            raise SmallImageError(
                f"image {record.get('name', '?')!r} is {h}x{w} at LR, smaller than the "
                f"{self.patch}x{self.patch} training patch"
            )
        y = int(rng.integers(0, h - self.patch + 1))
        x = int(rng.integers(0, w - self.patch + 1))
        hr = hr[y * s : (y + self.patch) * s, x * s : (x + self.patch) * s]
        k = int(rng.integers(0, 8)) if self.augment else 0
        out = {"hr": np.ascontiguousarray(dihedral(hr, k))}
        if lr is not None:
            lr = lr[y : y + self.patch, x : x + self.patch]
            out["lr"] = np.ascontiguousarray(dihedral(lr, k))
        return out
