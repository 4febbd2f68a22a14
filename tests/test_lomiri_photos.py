"""``lomiri_photos_local``: the real photographs of Debian's Lomiri wallpaper packages as the
offline SR training set (the files are read where the packages put them, never copied here)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from conftest import load_config
from mistakes import command, one_line, run_all
from PIL import Image

from genres_jax.data import inputs, pipeline, sources, sr_pairs, sr_photos
from genres_jax.ops.imresize import imresize_numpy
from genres_jax.train import config_checks, defaults

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))


def _cfg(data_dir: str):
    cfg = defaults.sr_photos_dataset()
    cfg.data_dir = data_dir
    return cfg


def _names(source) -> list[str]:
    return sorted(source[i]["name"].decode() for i in range(len(source)))


def test_splits_are_fixed_and_test_is_the_unseen_photos_unchanged(lomiri_data_dir, sr_data_dir):
    cfg = _cfg(lomiri_data_dir)
    train, validation = sources.load(cfg, "train"), sources.load(cfg, "validation")
    assert _names(train) == sorted(sr_photos.LOMIRI_TRAIN) and len(train) == 13
    assert _names(validation) == sorted(sr_photos.LOMIRI_VALIDATION) and len(validation) == 2
    assert not set(sr_photos.LOMIRI_TRAIN) & set(sr_photos.LOMIRI_VALIDATION)
    # The renders and paintings of the packages stay out.
    for name in ("umang", "Fossa", "Infinite-Sea", "Painting-Colors"):
        assert not any(n.startswith(name) for n in _names(train) + _names(validation))
    # HR is each photo made 2x smaller: about 34 of the packages' 134 megapixels.
    megapixels = 0.0
    for source in (train, validation):
        for i in range(len(source)):
            record = source[i]
            with Image.open(os.path.join(sr_photos.LOMIRI_DIR, record["name"].decode())) as im:
                width, height = im.size
            assert record["hr"].shape == (height // 2, width // 2, 3)
            megapixels += record["hr"].shape[0] * record["hr"].shape[1] / 1e6
    assert 33 < megapixels < 34
    # The test split is sr_photos_local's, pixel for pixel: results stay comparable.
    test = sources.load(cfg, "test")
    old_cfg = _cfg(sr_data_dir)
    old_cfg.name = "sr_photos_local"
    old = sources.load(old_cfg, "test")
    assert _names(test) == _names(old) == ["china.jpg", "flower.jpg", "grace_hopper.jpg"]
    by_name = {old[i]["name"]: old[i]["hr"] for i in range(len(old))}
    for i in range(len(test)):
        np.testing.assert_array_equal(test[i]["hr"], by_name[test[i]["name"]])


def test_hr_is_the_photo_downscaled_2x_with_an_antialiased_bicubic(lomiri_data_dir):
    # Independent reference: the float64 MATLAB imresize (antialiased bicubic at scale 0.5).
    name = "Picture_1A_by_freespace.jpg"
    photo = sr_photos.read_rgb(os.path.join(sr_photos.LOMIRI_DIR, name))
    validation = sources.load(_cfg(lomiri_data_dir), "validation")
    (hr,) = [validation[i]["hr"] for i in range(2) if validation[i]["name"].decode() == name]
    h, w = hr.shape[:2]
    ref = imresize_numpy(photo[: 2 * h, : 2 * w].astype(np.float64) / 255.0, scale=0.5)
    ref = np.clip(np.round(ref * 255.0), 0, 255)
    diff = np.abs(hr.astype(np.float64) - ref)[2:-2, 2:-2]  # Edges: padding rules differ.
    # Pillow rounds to 8 bits between its horizontal and vertical passes: a few levels at most
    # on the sharpest edges.
    assert diff.max() <= 6 and (diff > 2).mean() < 1e-3 and diff.mean() < 0.25, (
        diff.max(),
        (diff > 2).mean(),
        diff.mean(),
    )
    # Not the photo cropped or subsampled: every other pixel differs from the average.
    assert np.abs(photo[: 2 * h : 2, : 2 * w : 2].astype(float) - hr).mean() > 1.0


def test_the_rule_takes_the_jpeg_block_grid_out_of_hr():
    import jpeg_hr  # benchmarks/jpeg_hr.py

    # The measure: 1.0 without a grid, > 1 with steps on it.
    y = np.add.outer(np.arange(64.0), np.arange(64.0))
    assert jpeg_hr.blockiness(y, 8) == pytest.approx(1.0)
    stepped = y + np.add.outer(np.arange(64) // 8, np.arange(64) // 8) * 4.0
    assert jpeg_hr.blockiness(stepped, 8) == pytest.approx(5.0)
    # On a training photo: a visible grid when decoded, none after the 2x downscale.
    sunset = os.path.join(sr_photos.LOMIRI_DIR, "sunset_by_Aitzol_Berasategi.jpg")
    photo = sr_photos.read_rgb(sunset)
    assert jpeg_hr.blockiness(jpeg_hr.luma(photo), 8) > 1.4
    assert jpeg_hr.blockiness(jpeg_hr.luma(sr_photos.downscaled_hr(photo)), 4) < 1.05


def test_patches_are_drawn_in_proportion_to_area_and_repeat_for_a_seed(lomiri_data_dir):
    config = load_config("edsr_x2")
    # The shipped config's dataset (load_config gives tests the small scikit-image set).
    config.dataset.update(
        {"name": "lomiri_photos_local", "data_dir": lomiri_data_dir, "patch_sampling": "area"}
    )
    assert defaults.sr_photos_dataset().patch_sampling == "area"
    source, operations = inputs.train_inputs(config)
    assert isinstance(source, sr_pairs.AreaWeightedSource)
    assert len(source) >= pipeline.MIN_EPOCH_RECORDS
    photos = sources.load(config.dataset, "train")
    shapes = [photos[i]["hr"].shape for i in range(len(photos))]
    areas = np.array([(h - h % 2) * (w - w % 2) for h, w, _ in shapes], float)
    np.testing.assert_allclose(source.counts / source.counts.sum(), areas / areas.sum(), atol=1e-4)
    assert source.counts.max() / source.counts.min() > 4  # Kleiber (20 MP), Picture_0B (4.5).

    def first_batches(seed: int) -> list[np.ndarray]:
        # HR crops only (LR is a function of HR): the patch choice is what is tested.
        pairs = sr_pairs.PairSource(photos, 2, with_lr=False)
        weighted = sr_pairs.AreaWeightedSource(pairs, pipeline.MIN_EPOCH_RECORDS)
        loader = pipeline.train_loader(
            weighted,
            batch_size=8,
            seed=seed,
            operations=[sr_pairs.RandomPatch(48, 2)],
            process_index=0,
            process_count=1,
        )
        it = iter(loader)
        return [next(it)["hr"] for _ in range(2)]

    a, b, c = first_batches(0), first_batches(0), first_batches(1)
    assert a[0].shape == (8, 96, 96, 3)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_patch_sampling_is_checked_and_old_workdirs_keep_per_image_sampling():
    config = load_config("edsr_x2")
    config.dataset.patch_sampling = "pixels"
    with pytest.raises(config_checks.ConfigError, match="patch_sampling 'pixels'; valid: area"):
        config_checks.validate_config(config)
    recorded = {"dataset": {"name": "sr_photos_local"}}  # Written before the key existed.
    same = {"dataset": {"name": "sr_photos_local", "patch_sampling": "image"}}
    assert config_checks.config_differences(recorded, same) == []
    changed = {"dataset": {"name": "sr_photos_local", "patch_sampling": "area"}}
    assert config_checks.config_differences(recorded, changed) == [
        "dataset.patch_sampling: 'image' -> 'area'"
    ]


def test_missing_packages_are_one_line_naming_the_install_command(tmp_path):
    cfg = _cfg(str(tmp_path / "tfds"))
    cfg.source_dir = str(tmp_path)
    install = "apt-get install -y lomiri-wallpapers-16.04 lomiri-wallpapers-20.04"
    with pytest.raises(sources.DatasetError, match=install):
        sources.check_available(cfg)
    workdir = tmp_path / "run"
    ((code, _, err),) = run_all(
        [
            command("train", "--config", "configs/edsr_x2.py", "--workdir", workdir)
            + [f"--config.dataset.source_dir={tmp_path}"]
            + [f"--config.dataset.data_dir={tmp_path / 'tfds'}"]
        ]
    )
    line = one_line(err, code)
    assert "15 of its 15 photographs are missing" in line and line.endswith(install), line
    assert not workdir.exists() or not (workdir / "checkpoints").exists()
