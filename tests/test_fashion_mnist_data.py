"""The offline Fashion-MNIST TFDS builder and the grain pipelines."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from genres_jax.data import fashion_mnist, pipeline, sources
from genres_jax.train import defaults


def _write_idx(path, array: np.ndarray, magic: int) -> None:
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / "x.gz", images, 2051)
    np.testing.assert_array_equal(fashion_mnist.read_idx(str(tmp_path / "x.gz"), 2051), images)


def test_read_idx_rejects_wrong_magic_and_truncation(tmp_path):
    images = np.zeros((5, 28, 28), np.uint8)
    _write_idx(tmp_path / "x.gz", images, 2051)
    with pytest.raises(fashion_mnist.DatasetSourceError, match="magic"):
        fashion_mnist.read_idx(str(tmp_path / "x.gz"), 2049)
    header = struct.pack(">IIII", 2051, 5, 28, 28)
    with gzip.open(tmp_path / "short.gz", "wb") as f:
        f.write(header + b"\0" * 100)
    with pytest.raises(fashion_mnist.DatasetSourceError, match="expected"):
        fashion_mnist.read_idx(str(tmp_path / "short.gz"), 2051)


def test_builder_matches_catalog_features_and_raw_files(fmnist_data_dir):
    cfg = defaults.fashion_mnist_dataset()
    cfg.data_dir = fmnist_data_dir
    train, test = sources.load(cfg, "train"), sources.load(cfg, "test")
    assert (len(train), len(test)) == (60_000, 10_000)
    builder = fashion_mnist.FashionMnistLocal(data_dir=fmnist_data_dir)
    features = builder.info.features
    assert features["image"].shape == (28, 28, 1)
    assert np.dtype(features["image"].np_dtype) == np.uint8
    assert features["label"].num_classes == 10
    # Records hold the raw idx pixels: each test record equals the file's image with its key.
    raw_images, raw_labels = fashion_mnist.load_split(cfg.source_dir, "test")
    raw = {img.tobytes(): int(lab) for img, lab in zip(raw_images, raw_labels, strict=True)}
    for i in (0, 17, 9_999):
        record = test[i]
        assert record["image"].shape == (28, 28, 1) and record["image"].dtype == np.uint8
        assert raw[record["image"].tobytes()] == int(record["label"])


def test_missing_source_dir_names_path_and_remedies(tmp_path):
    cfg = defaults.fashion_mnist_dataset()
    cfg.data_dir = str(tmp_path / "tfds")
    cfg.source_dir = str(tmp_path / "no_such_dir")
    with pytest.raises(sources.DatasetError) as err:
        sources.check_available(cfg)
    message = str(err.value)
    assert str(tmp_path / "no_such_dir") in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "--config.dataset.name=fashion_mnist" in message


def test_unknown_dataset_name_is_a_clear_error(tmp_path):
    cfg = defaults.fashion_mnist_dataset()
    cfg.name = "no_such_dataset_xyz"
    cfg.data_dir = str(tmp_path)
    with pytest.raises(sources.DatasetError, match="no_such_dataset_xyz"):
        sources.load(cfg, "train")


class _Indexed:
    """A source whose record i carries i, to see exactly which records a loader yields."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"image": np.full((2, 2, 1), i % 256, np.uint8), "label": np.int64(i)}


def _labels(loader, batches: int) -> np.ndarray:
    it = iter(loader)
    return np.concatenate([next(it)["label"] for _ in range(batches)])


def _loader(source, seed=0, process_index=0, process_count=1, batch_size=10):
    return pipeline.train_loader(
        source,
        batch_size=batch_size,
        seed=seed,
        operations=[pipeline.ImageRecord()],
        process_index=process_index,
        process_count=process_count,
        min_epoch_records=0,
    )


def test_train_loader_is_deterministic_for_a_seed():
    source = _Indexed(200)
    a, b = _labels(_loader(source, seed=3), 5), _labels(_loader(source, seed=3), 5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, _labels(_loader(source, seed=4), 5))
    assert not np.array_equal(a, np.arange(50))  # Shuffled.


def test_two_processes_cover_an_epoch_without_overlap():
    source = _Indexed(200)
    # One epoch per process: 100 records each = 10 batches of 10.
    shards = [_labels(_loader(source, process_index=p, process_count=2), 10) for p in (0, 1)]
    assert len(set(shards[0])) == 100 and len(set(shards[1])) == 100
    assert not set(shards[0]) & set(shards[1])
    assert set(shards[0]) | set(shards[1]) == set(range(200))


def test_iterator_state_resumes_the_same_batches():
    source = _Indexed(200)
    loader = _loader(source)
    it = iter(loader)
    for _ in range(7):
        next(it)
    state = it.get_state()
    expected = [next(it)["label"] for _ in range(5)]
    resumed = iter(_loader(source))
    resumed.set_state(state)
    for want in expected:
        np.testing.assert_array_equal(next(resumed)["label"], want)


def test_eval_batches_cover_split_once_with_mask():
    source = _Indexed(53)
    seen = []
    counts = []
    for p in (0, 1):
        batches = list(
            pipeline.eval_batches(
                source,
                batch_size=8,
                operations=[pipeline.ImageRecord()],
                process_index=p,
                process_count=2,
            )
        )
        counts.append(len(batches))
        for b in batches:
            assert b["image"].shape == (8, 2, 2, 1)
            seen.extend(b["label"][b["mask"] == 1].tolist())
            # Each row names its record (this source's label is its index); padding is -1.
            assert b["index"].tolist() == [
                lab if m else -1 for lab, m in zip(b["label"], b["mask"], strict=True)
            ]
    assert counts[0] == counts[1]  # Multi-host steps need equal batch counts.
    assert sorted(seen) == list(range(53))


def test_image_record_resizes_and_crops():
    record = {"image": np.arange(6 * 4 * 3, dtype=np.uint8).reshape(6, 4, 3), "label": 1}
    out = pipeline.ImageRecord(image_size=8, center_crop=True).map(record)
    assert out["image"].shape == (8, 8, 3) and out["image"].dtype == np.uint8
    crop = pipeline.ImageRecord(center_crop=True).map(record)["image"]
    np.testing.assert_array_equal(crop, record["image"][1:5])


def test_small_sources_are_repeated_into_longer_epochs():
    source = _Indexed(7)
    loader = pipeline.train_loader(
        source,
        batch_size=10,
        seed=0,
        operations=[pipeline.ImageRecord()],
        process_index=0,
        process_count=1,
        min_epoch_records=70,
    )
    labels = _labels(loader, 7)  # One enlarged epoch: every record exactly 10 times.
    np.testing.assert_array_equal(np.bincount(labels, minlength=7), np.full(7, 10))


def test_cached_source_returns_the_same_records():
    source = _Indexed(10)
    cached = pipeline.CachedSource(source)
    assert len(cached) == 10
    for i in (3, 3, 9):
        np.testing.assert_array_equal(cached[i]["image"], source[i]["image"])


class _Counted(_Indexed):
    """Counts single and bulk reads."""

    def __init__(self, n: int, bulk: bool):
        super().__init__(n)
        self.single = self.bulk_calls = 0
        if bulk:
            self.__getitems__ = self._getitems

    def __getitem__(self, i):
        self.single += 1
        return super().__getitem__(i)

    def _getitems(self, indices):
        self.bulk_calls += 1
        return [_Indexed.__getitem__(self, i) for i in indices]


@pytest.mark.parametrize("bulk", [True, False])
def test_preload_reads_each_record_once_in_bulk_when_it_can(bulk):
    source = _Counted(25, bulk)
    cached = pipeline.CachedSource(source)
    first = cached[7]  # Already cached: not read again.
    cached.preload(chunk=10)
    reads = source.single
    assert (source.bulk_calls, reads) == ((3, 1) if bulk else (0, 25))
    assert [int(cached[i]["label"]) for i in range(25)] == list(range(25))
    assert source.single == reads and cached[7] is first  # Everything now from memory.


def test_only_a_run_that_reads_half_the_split_preloads_it(fmnist_data_dir, monkeypatch):
    from genres_jax.data import inputs

    calls = []
    monkeypatch.setattr(pipeline.CachedSource, "preload", lambda self: calls.append(len(self)))
    config = defaults.gan_config("dcgan", batch_size=64)
    config.dataset.data_dir = fmnist_data_dir
    config.total_steps = 100  # 6,400 of 60,000 records.
    inputs.train_inputs(config)
    assert calls == []
    config.total_steps = 469  # 30,016 records.
    inputs.train_inputs(config)
    assert calls == [60_000]
