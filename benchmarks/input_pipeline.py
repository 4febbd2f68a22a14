"""Batches per second of the training input pipeline (grain), without any model.

    python benchmarks/input_pipeline.py [--config configs/edsr_x2.py] \
        [--config configs/dcgan_fashion_mnist.py] [--batch-size B] [--batches 200] \
        [--warmup 20] [--worker-count N] [--set dataset.data_dir=DIR] [--output FILE]

Builds the loader exactly as the trainer does (`genres_jax.data.inputs.train_inputs` then
`genres_jax.data.pipeline.train_loader`, this process's shard) and times ``--batches`` batches
after ``--warmup`` untimed ones, which also fill the caches of decoded records and LR/HR pairs.
Defaults: SR crops of the offline ``lomiri_photos_local`` photos (EDSR x2's 64x64 LR patches with
flips and rotations) and offline Fashion-MNIST images; both are prepared on first use.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import harness
import jax
import numpy as np

from genres_jax.data import inputs, pipeline, sources
from genres_jax.train import sharding

DEFAULT_CONFIGS = ("configs/edsr_x2.py", "configs/dcgan_fashion_mnist.py")


def measure(config, *, batches: int, warmup: int) -> dict[str, Any]:
    """Times ``batches`` batches of ``config``'s training loader after ``warmup`` batches."""
    sources.check_available(config.dataset)
    source, operations = inputs.train_inputs(config)
    loader = pipeline.train_loader(
        source,
        batch_size=sharding.per_process(config.batch_size),
        seed=config.seed,
        operations=operations,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        worker_count=config.dataset.worker_count,
        read_threads=config.dataset.read_threads,
    )
    iterator = iter(loader)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    nbytes = 0
    for _ in range(batches):
        batch = next(iterator)
        nbytes += sum(np.asarray(v).nbytes for v in batch.values())
    seconds = time.perf_counter() - start
    shapes = {k: list(np.shape(v)) for k, v in batch.items()}
    per_batch = sharding.per_process(config.batch_size)
    return {
        "dataset": config.dataset.name,
        "kind": config.dataset.get("kind", "images"),
        "batch_size": per_batch,
        "batch_shapes": shapes,
        "worker_count": config.dataset.worker_count,
        "warmup_batches": warmup,
        "timed_batches": batches,
        "seconds": seconds,
        "batches_per_s": batches / seconds,
        "images_per_s": batches * per_batch / seconds,
        "megabytes_per_s": nbytes / seconds / 1e6,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", action="append", help="config file(s); default: SR and FMNIST")
    p.add_argument("--batch-size", type=int, help="default: each config's")
    p.add_argument("--batches", type=int, default=200, help="timed batches")
    p.add_argument("--warmup", type=int, default=20, help="untimed batches first")
    p.add_argument("--worker-count", type=int, help="grain worker processes (default: config's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override")
    p.add_argument("--output", help="write the JSON here too")
    args = p.parse_args(argv)
    if args.batches < 1 or args.warmup < 0:
        p.error("--batches must be >= 1 and --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    overrides = list(args.set)
    if args.batch_size is not None:
        overrides.append(f"batch_size={args.batch_size}")
    if args.worker_count is not None:
        overrides.append(f"dataset.worker_count={args.worker_count}")
    results = []
    try:
        for path in args.config or DEFAULT_CONFIGS:
            config = harness.load_config(path, overrides)
            result = measure(config, batches=args.batches, warmup=args.warmup)
            results.append({"config": path, **result})
    except ValueError as e:  # DatasetError and bad overrides: one line, no traceback.
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    out = {"benchmark": "input_pipeline", "results": results, **harness.device_facts()}
    harness.emit(out, args.output)
    return out


if __name__ == "__main__":
    main()
