"""Super-resolution data: photo datasets, LR/HR pair making, aligned random patches."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from genres_jax.data import sources, sr_pairs, sr_photos
from genres_jax.ops.imresize import imresize
from genres_jax.train import defaults


def test_modcrop_drops_partial_lr_pixels():
    image = np.zeros((101, 98, 3), np.uint8)
    assert sr_pairs.modcrop(image, 4).shape == (100, 96, 3)
    assert sr_pairs.modcrop(image, 2).shape == (100, 98, 3)


def test_bicubic_lr_is_matlab_bicubic_rounded_to_uint8():
    hr = np.random.default_rng(0).integers(0, 256, (48, 36, 3), dtype=np.uint8)
    lr = sr_pairs.bicubic_lr(hr, 3)
    assert lr.shape == (16, 12, 3) and lr.dtype == np.uint8
    # Against the jitted float32 imresize: equal except where a value sits on a rounding tie.
    ref = np.asarray(imresize(jnp.asarray(hr, jnp.float32) / 255.0, scale=1 / 3)) * 255.0
    ref = np.clip(np.round(ref), 0, 255)
    assert np.abs(lr.astype(int) - ref.astype(int)).max() <= 1
    assert np.mean(lr == ref) > 0.999


class _Records:
    def __init__(self, records):
        self.records = records

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]


def test_pair_source_makes_or_reuses_lr():
    hr = np.random.default_rng(1).integers(0, 256, (33, 20, 3), dtype=np.uint8)
    given_lr = np.full((16, 10, 3), 7, np.uint8)
    source = sr_pairs.PairSource(
        _Records([{"hr": hr, "name": b"a.png"}, {"hr": hr, "lr": given_lr, "name": "b"}]), 2
    )
    made, reused = source[0], source[1]
    assert made["hr"].shape == (32, 20, 3) and made["name"] == "a.png"
    np.testing.assert_array_equal(made["lr"], sr_pairs.bicubic_lr(hr[:32], 2))
    np.testing.assert_array_equal(reused["lr"], given_lr)


def _coordinate_pair(h: int, w: int, scale: int) -> dict:
    """LR pixel (i, j) holds (i, j, 9); every HR pixel of its block holds the same triple."""
    lr = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), -1)
    lr = np.concatenate([lr, np.full((h, w, 1), 9)], -1).astype(np.uint8)
    hr = lr.repeat(scale, 0).repeat(scale, 1)
    return {"lr": lr, "hr": hr, "name": "grid"}


@pytest.mark.parametrize("augment", [False, True])
def test_random_patches_are_aligned(augment):
    scale, patch = 3, 5
    pair = _coordinate_pair(40, 30, scale)
    op = sr_pairs.RandomPatch(patch, scale, augment=augment)
    rng = np.random.default_rng(0)
    seen_transforms = set()
    for _ in range(40):
        out = op.random_map(pair, rng)
        lr, hr = out["lr"], out["hr"]
        assert lr.shape == (patch, patch, 3) and hr.shape == (patch * scale,) * 2 + (3,)
        # Each LR pixel's HR block carries exactly that LR pixel's coordinates.
        blocks = hr.reshape(patch, scale, patch, scale, 3)
        for a in range(scale):
            for b in range(scale):
                np.testing.assert_array_equal(blocks[:, a, :, b], lr)
        # The patch is a contiguous window of the LR grid (possibly turned or flipped).
        rows, cols = lr[..., 0].astype(int), lr[..., 1].astype(int)
        assert rows.max() - rows.min() == patch - 1 and cols.max() - cols.min() == patch - 1
        seen_transforms.add((rows[0, 1] - rows[0, 0], cols[0, 1] - cols[0, 0]))
    assert len(seen_transforms) == (4 if augment else 1)


def test_dihedral_gives_eight_distinct_symmetries():
    image = np.arange(12).reshape(3, 4, 1)
    variants = {
        sr_pairs.dihedral(image, k).tobytes() + bytes(sr_pairs.dihedral(image, k).shape)
        for k in range(8)
    }
    assert len(variants) == 8


def test_patch_larger_than_image_names_the_image():
    pair = _coordinate_pair(10, 8, 2)
    with pytest.raises(sr_pairs.SmallImageError, match="'grid' is 10x8"):
        sr_pairs.RandomPatch(9, 2).random_map(pair, np.random.default_rng(0))


def test_sr_photos_local_splits(sr_data_dir):
    cfg = defaults.sr_photos_dataset()
    cfg.name = "sr_photos_local"
    cfg.data_dir = sr_data_dir
    sizes = {}
    for split in ("train", "validation", "test"):
        source = sources.load(cfg, split)
        names = sorted(source[i]["name"].decode() for i in range(len(source)))
        sizes[split] = names
        for i in range(len(source)):
            hr = source[i]["hr"]
            assert hr.dtype == np.uint8 and hr.ndim == 3 and hr.shape[-1] == 3
    assert sizes["train"] == sorted(sr_photos.SKIMAGE_TRAIN)
    assert sizes["validation"] == sorted(sr_photos.SKIMAGE_VALIDATION)
    assert sizes["test"] == ["china.jpg", "flower.jpg", "grace_hopper.jpg"]
    assert not set(sizes["train"]) & set(sizes["validation"])


def test_hr_image_folder_converts_grey_and_rgba(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(folder / "b.png")
    Image.fromarray(rng.integers(0, 256, (20, 24, 4), dtype=np.uint8)).save(folder / "c.png")
    (folder / "notes.txt").write_text("not an image")
    cfg = defaults.sr_photos_dataset()
    cfg.name = "sr_photos_local"
    cfg.name, cfg.train_dir, cfg.data_dir = "hr_image_folder", str(folder), str(tmp_path / "tfds")
    source = sources.load(cfg, "train")
    assert len(source) == 3
    for i in range(3):
        assert source[i]["hr"].shape == (20, 24, 3)


def test_hr_image_folder_errors_name_the_culprit(tmp_path):
    cfg = defaults.sr_photos_dataset()
    cfg.name = "sr_photos_local"
    cfg.name, cfg.data_dir = "hr_image_folder", str(tmp_path / "tfds")
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg.train_dir = str(empty)
    with pytest.raises(sources.DatasetError, match="holds no images"):
        sources.check_available(cfg)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    cfg.train_dir = str(broken)
    with pytest.raises(sources.DatasetError, match="bad.png"):
        sources.load(cfg, "train")
