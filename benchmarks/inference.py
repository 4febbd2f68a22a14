"""Super-resolution inference speed: megapixels per second on a 1920x1080 input, tiled and whole.

    python benchmarks/inference.py [--config configs/edsr_x2.py --config configs/edsr_x4.py] \
        [--height 1080] [--width 1920] [--tile 256] [--batch-size 4] [--repeats 3] \
        [--precision auto|float32|bfloat16] [--output FILE]

The models are randomly initialised (speed does not depend on the weights); the output says so.
Each config's network is run the way ``genres_jax.upscale`` runs it
(`genres_jax.inference.upscalers.model_upscaler`): on the whole image at once, and by tiles of
``--tile`` LR pixels with the model's receptive radius as overlap (exact tiling), ``--batch-size``
tiles per call. Times are per image from host array to host array, transfers included, after one
untimed image that compiles; the median of ``--repeats`` images is reported, as input and
output megapixels/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import harness
import jax
import numpy as np

from genres_jax.inference import upscalers
from genres_jax.ops import tiling
from genres_jax.tasks import sr
from genres_jax.train import precision

DEFAULT_CONFIGS = ("configs/edsr_x2.py", "configs/edsr_x4.py")


def _time_images(upscale, image: np.ndarray, repeats: int) -> list[float]:
    upscale(image)  # Compiles.
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = upscale(image)
        times.append(time.perf_counter() - start)
    assert np.isfinite(out).all()
    return times


def measure(
    config, *, height: int, width: int, tile: int, batch_size: int, repeats: int, whole: bool
) -> dict[str, Any]:
    """Per-image timings of ``config``'s network (random weights) whole and by tiles."""
    if config.get("task") != "sr":
        raise ValueError(f"inference benchmarks super-resolution configs, not {config.task!r}")
    model = sr.build_model(config)
    channels = int(dict(config.model.get("overrides", {})).get("channels", 3))
    image = np.random.default_rng(0).random((height, width, channels), dtype=np.float32)
    params = jax.jit(model.init)(jax.random.key(config.seed), image[None, :8, :8])["params"]
    apply = jax.jit(lambda p, x: sr.predict(p, x, model=model))
    scale, radius = int(config.scale), int(model.receptive_radius)
    modes = {"whole": 0, "tiled": tile} if whole else {"tiled": tile}
    out: dict[str, Any] = {
        "model": config.model.name,
        "scale": scale,
        "weights": "random initialisation (speed only; outputs are meaningless)",
        "parameters": int(sum(np.size(p) for p in jax.tree.leaves(params))),
        "precision": config.precision,
        "compute_dtype": precision.compute_dtype(config).name,
        "input_hw": [height, width],
        "receptive_radius": radius,
    }
    for mode, size in modes.items():
        upscale = upscalers.model_upscaler(
            lambda x: apply(params, x),
            scale=scale,
            tile=size,
            overlap=radius,
            batch_size=batch_size if size else 1,
        )
        seconds = harness.median(_time_images(upscale, image, repeats))
        entry = {
            "seconds_per_image": seconds,
            "input_megapixels_per_s": height * width / seconds / 1e6,
            "output_megapixels_per_s": height * width * scale * scale / seconds / 1e6,
        }
        if size:
            entry.update(
                tile=size,
                overlap=radius,
                batch_size=batch_size,
                windows=tiling.num_windows(height, width, size, radius),
            )
        out[mode] = entry
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", action="append", help="SR config(s); default: EDSR-M x2 and x4")
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--tile", type=int, default=256, help="LR core tile size")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per call")
    p.add_argument("--repeats", type=int, default=3, help="timed images per mode")
    p.add_argument("--tiled-only", action="store_true", help="skip the whole-image run")
    p.add_argument("--precision", choices=precision.PRECISIONS, help="default: the config's")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override")
    p.add_argument("--output", help="write the JSON here too")
    args = p.parse_args(argv)
    if min(args.height, args.width, args.tile, args.batch_size, args.repeats) < 1:
        p.error("--height, --width, --tile, --batch-size and --repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    overrides = list(args.set)
    if args.precision is not None:
        overrides.append(f"precision={args.precision}")
    results = []
    try:
        for path in args.config or DEFAULT_CONFIGS:
            config = harness.load_config(path, overrides)
            precision.check(config.precision)
            result = measure(
                config,
                height=args.height,
                width=args.width,
                tile=args.tile,
                batch_size=args.batch_size,
                repeats=args.repeats,
                whole=not args.tiled_only,
            )
            results.append({"config": path, **result})
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    out = {"benchmark": "inference", "results": results, **harness.device_facts()}
    harness.emit(out, args.output)
    return out


if __name__ == "__main__":
    main()
