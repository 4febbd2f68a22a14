"""grain input pipelines: seeded, sharded by process, checkpointable.

Training batches come from a grain ``DataLoader`` over a random-access source: a seeded global
shuffle, endless epochs, this process's shard of every epoch, per-record transforms, batching
(workers optional). Its iterator state is saved with the model, so a resumed run reads the same
batches as an uninterrupted one. Evaluation walks a split once, in order, split between
processes, with the last batch padded and marked by ``mask``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import numpy as np
from PIL import Image


@dataclasses.dataclass(frozen=True)
class ImageRecord(grain.transforms.Map):
    """Keeps ``image`` (uint8 HWC) and ``label`` (when present); optional square resize.

    ``image_size`` > 0 resizes with Pillow's antialiased bicubic filter (after a centre crop to
    a square when ``center_crop``), for generative models whose size differs from the data's.
    """

    image_size: int = 0
    center_crop: bool = False

    def map(self, record: dict[str, Any]) -> dict[str, Any]:
        image = np.asarray(record["image"], dtype=np.uint8)
        if image.ndim == 2:
            image = image[..., None]
        if self.center_crop:
            h, w = image.shape[:2]
            s = min(h, w)
            top, left = (h - s) // 2, (w - s) // 2
            image = image[top : top + s, left : left + s]
        if self.image_size and image.shape[:2] != (self.image_size, self.image_size):
            pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
            pil = pil.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
            image = np.asarray(pil).reshape(self.image_size, self.image_size, image.shape[-1])
        out = {"image": image}
        if "label" in record:
            out["label"] = np.asarray(record["label"], dtype=np.int32)
        return out


class CachedSource:
    """Keeps each decoded record after its first read: for datasets that fit in memory.

    Decoding a PNG costs far more than a small model's step on a CPU, and a dataset such as
    Fashion-MNIST (47 MB decoded) is read many times over. Each worker process keeps its own copy.
    `preload` reads every record at once in bulk reads (Fashion-MNIST's 60,000 training images:
    96 us each, against 273 us one by one on the training thread during the first epoch).
    """

    def __init__(self, source: Any):
        self._source = source
        self._cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> Any:
        record = self._cache.get(index)
        if record is None:
            record = self._cache[index] = self._source[index]
        return record

    def preload(self, chunk: int = 2048) -> None:
        """Reads all records not read yet, ``chunk`` at a time (``__getitems__`` when the source
        has it)."""
        bulk = getattr(self._source, "__getitems__", None)
        missing = [i for i in range(len(self._source)) if i not in self._cache]
        for start in range(0, len(missing), chunk):
            indices = missing[start : start + chunk]
            records = bulk(indices) if bulk else [self._source[i] for i in indices]
            self._cache.update(zip(indices, records, strict=True))

    def __repr__(self) -> str:
        return f"CachedSource({self._source!r})"


class RepeatedSource:
    """``source`` seen ``repeats`` times over as one longer source (index i -> i mod len).

    BasicSR calls this the dataset enlarge ratio. A training set of a few photos needs it: grain
    shuffles an epoch by permuting indices, which costs about 2 ms per index for a handful of
    records (and microseconds for thousands), enough to starve a GPU.
    """

    def __init__(self, source: Any, repeats: int):
        self._source, self.repeats = source, repeats

    def __len__(self) -> int:
        return len(self._source) * self.repeats

    def __getitem__(self, index: int) -> Any:
        return self._source[index % len(self._source)]

    def __repr__(self) -> str:
        return f"RepeatedSource({self._source!r}, repeats={self.repeats})"


# Sources smaller than this are repeated up to at least this many records for training.
MIN_EPOCH_RECORDS = 10_000


def train_loader(
    source: Any,
    *,
    batch_size: int,
    seed: int,
    operations: Sequence[grain.transforms.Transformation],
    process_index: int,
    process_count: int,
    worker_count: int = 0,
    read_threads: int = 0,
    min_epoch_records: int = MIN_EPOCH_RECORDS,
) -> grain.DataLoader:
    """Endless shuffled batches of ``batch_size`` records from this process's shard.

    ``read_threads`` > 0 reads records on that many threads: worth it for slow storage, a loss on
    a small CPU machine where the threads only contend for the interpreter lock.
    """
    if len(source) < min_epoch_records:
        source = RepeatedSource(source, -(-min_epoch_records // len(source)))
    sampler = grain.samplers.IndexSampler(
        num_records=len(source),
        shard_options=grain.sharding.ShardOptions(
            shard_index=process_index, shard_count=process_count, drop_remainder=True
        ),
        shuffle=True,
        num_epochs=None,
        seed=seed,
    )
    return grain.DataLoader(
        data_source=source,
        sampler=sampler,
        operations=[*operations, grain.transforms.Batch(batch_size, drop_remainder=True)],
        worker_count=worker_count,
        read_options=grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=256),
    )


def eval_batches(
    source: Any,
    *,
    batch_size: int,
    operations: Sequence[grain.transforms.Map],
    process_index: int,
    process_count: int,
    max_records: int = 0,
    rows: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    """One ordered pass over ``source``: records ``i`` with ``i % process_count == process_index``.

    Each batch holds ``batch_size`` records and ``rows`` rows (``batch_size`` when 0), so that
    it splits over the devices whatever their number. Every process yields the same number of
    batches (multi-host steps need that); padding rows repeat a real record and carry
    ``mask == 0`` so they count for nothing. ``index`` holds each row's record number (-1 for
    padding), so gathered results can be put back in record order.
    """
    rows = max(rows, batch_size)
    n = min(len(source), max_records) if max_records else len(source)
    indices = np.arange(process_index, n, process_count)
    num_batches = math.ceil(math.ceil(n / process_count) / batch_size)
    dataset = grain.MapDataset.source(source)
    for op in operations:
        dataset = dataset.map(op)
    for b in range(num_batches):
        chunk = indices[b * batch_size : (b + 1) * batch_size]
        records = [dataset[int(i)] for i in chunk]
        valid = len(records)
        if valid == 0:
            records = [dataset[0]]
        records += [records[0]] * (rows - len(records))
        batch = {k: np.stack([r[k] for r in records]) for k in records[0]}
        batch["mask"] = (np.arange(rows) < valid).astype(np.float32)
        batch["index"] = np.full(rows, -1, np.int32)
        batch["index"][:valid] = chunk
        yield batch


def example_batch(source: Any, operations: Sequence[grain.transforms.Map], batch_size: int):
    """A zero batch with the shapes and dtypes the training pipeline yields (for init)."""
    record = source[0]
    for op in operations:
        if isinstance(op, grain.transforms.RandomMap):
            record = op.random_map(record, np.random.default_rng(0))
        else:
            record = op.map(record)
    return {k: np.zeros((batch_size, *np.shape(v)), np.asarray(v).dtype) for k, v in record.items()}
