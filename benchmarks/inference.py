"""Super-resolution inference speed: megapixels per second to a 4K output, tiled and whole.

    python benchmarks/inference.py [--config configs/edsr_x2.py --config configs/span.py:x4] \
        [--height H --width W] [--tile 256] [--batch-size 4] [--repeats 3] [--split] \
        [--precision auto|float32|bfloat16] [--output FILE]

Without --height/--width the input is the one whose output is 3840x2160: 1920x1080 at x2,
960x540 at x4 (1280x720 at x3). Re-parameterisable models (SPAN) run folded, as served.
``gflops_per_output_megapixel`` is XLA's cost analysis of the whole-image program (a
multiply-add is 2 FLOPs) divided by the output megapixels. ``--split`` also times the whole
``upscale`` path on a PNG file, tiled: reading, the model (device time), host<->device
transfers, tiling (cutting and stitching windows) and writing the PNG.

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
import dataclasses
import os
import sys
import tempfile
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


def output_4k_input(scale: int) -> tuple[int, int]:
    """(height, width) of the input whose x``scale`` output is 3840x2160."""
    return 2160 // scale, 3840 // scale


def gflops_per_output_megapixel(apply, params, image: np.ndarray, scale: int) -> float | None:
    """XLA's FLOP count of the whole-image program per output megapixel (None if unknown)."""
    compiled = apply.lower(params, image[None]).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    flops = (cost or {}).get("flops")
    if not flops or flops < 0:
        return None
    return float(flops) / (image.shape[0] * image.shape[1] * scale * scale / 1e6) / 1e9


def split_upscale(up, image: np.ndarray, folder: str) -> dict[str, float]:
    """Seconds of each part of ``upscale`` for one PNG: read, transfers, model, tiling, write."""
    from genres_jax.inference import image_files

    src, dst = os.path.join(folder, "in.png"), os.path.join(folder, "out.png")
    image_files.write_image(src, image, bit_depth=8)
    parts = dict.fromkeys(("read", "to_device", "model", "to_host", "tiling", "write"), 0.0)
    predict = up.predict

    def timed_predict(x):
        t0 = time.perf_counter()
        xd = jax.block_until_ready(jax.device_put(np.asarray(x, np.float32)))
        t1 = time.perf_counter()
        yd = jax.block_until_ready(predict(xd))
        t2 = time.perf_counter()
        y = np.asarray(yd)
        t3 = time.perf_counter()
        parts["to_device"] += t1 - t0
        parts["model"] += t2 - t1
        parts["to_host"] += t3 - t2
        return y

    timed = dataclasses.replace(up, predict=timed_predict)
    timed.upscale_pixels(image_files.read_image(src).pixels)  # Compiles; not counted.
    parts.update(dict.fromkeys(parts, 0.0))
    t0 = time.perf_counter()
    loaded = image_files.read_image(src)
    t1 = time.perf_counter()
    out = timed.upscale_pixels(loaded.pixels)
    t2 = time.perf_counter()
    image_files.write_image(dst, out, bit_depth=8)
    t3 = time.perf_counter()
    inside = parts["to_device"] + parts["model"] + parts["to_host"]
    parts.update(read=t1 - t0, tiling=(t2 - t1) - inside, write=t3 - t2, total=t3 - t0)
    parts["outside_model"] = parts["total"] - parts["model"]
    return parts


def measure(
    config,
    *,
    height: int | None,
    width: int | None,
    tile: int,
    batch_size: int,
    repeats: int,
    whole: bool,
    split: bool = False,
) -> dict[str, Any]:
    """Per-image timings of ``config``'s network (random weights) whole and by tiles."""
    if config.get("task") != "sr":
        raise ValueError(f"inference benchmarks super-resolution configs, not {config.task!r}")
    if height is None or width is None:
        height, width = output_4k_input(int(config.scale))
    model = sr.build_model(config)
    channels = int(dict(config.model.get("overrides", {})).get("channels", 3))
    image = np.random.default_rng(0).random((height, width, channels), dtype=np.float32)
    params = jax.jit(model.init)(jax.random.key(config.seed), image[None, :8, :8])["params"]
    model, params = sr.inference_form(model, params)
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
        "gflops_per_output_megapixel": gflops_per_output_megapixel(apply, params, image, scale),
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
    if split:
        up = upscalers.Upscaler(
            lambda x: apply(params, x),
            scale,
            radius,
            rgb=True,
            info={},
            tile=tile,
            batch_size=batch_size,
        )
        with tempfile.TemporaryDirectory() as folder:
            out["upscale_split_seconds"] = split_upscale(up, image, folder)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", action="append", help="SR config(s); default: EDSR-M x2 and x4")
    p.add_argument("--height", type=int, help="input height (default: a 4K output)")
    p.add_argument("--width", type=int, help="input width (default: a 4K output)")
    p.add_argument("--tile", type=int, default=256, help="LR core tile size")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per call")
    p.add_argument("--repeats", type=int, default=3, help="timed images per mode")
    p.add_argument("--tiled-only", action="store_true", help="skip the whole-image run")
    p.add_argument("--split", action="store_true", help="time the parts of upscale on a PNG")
    p.add_argument("--precision", choices=precision.PRECISIONS, help="default: the config's")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override")
    p.add_argument("--output", help="write the JSON here too")
    args = p.parse_args(argv)
    sizes = [v for v in (args.height, args.width) if v is not None]
    if min(sizes + [args.tile, args.batch_size, args.repeats]) < 1:
        p.error("--height, --width, --tile, --batch-size and --repeats must be >= 1")
    if len(sizes) == 1:
        p.error("give both --height and --width, or neither (a 4K output)")
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
                split=args.split,
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
