"""Sample a trained GAN or VAE, optionally upscaled: the generation -> super-resolution cascade.

    python -m genres_jax.sample --workdir GEN_DIR --num 64 --out samples.png
    python -m genres_jax.sample --workdir GEN_DIR --upscaler SR_DIR --num 64 --out cascade.png
    python -m genres_jax.sample --workdir GEN_DIR --method bicubic --scale 2 --num 64 \\
        --out bicubic.png --out-dir images/

GANs sample their EMA generator (BatchNorm in inference mode), VAEs decode prior samples (the
mean of p(x|z)), exactly as the training grids do: the latest checkpoint is restored into the
task's own state and its ``sample_images`` is called. Generation and upscaling (an SR workdir's
EMA weights, or a classical ``imresize`` method) run as one jitted function per batch. Grey
samples meet an RGB SR model as R = G = B and its output is averaged back to grey. Writes a
PNG grid (``--out``) and, with ``--out-dir``, one PNG per image; prints JSON saying what ran.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Any

import jax
import numpy as np
from absl import logging

from genres_jax import UserError, cli
from genres_jax.cli import memory, outputs
from genres_jax.inference.generators import cascade_upscaler, draw, load_generator, make_sampler
from genres_jax.ops import imresize
from genres_jax.train import summaries


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = cli.ArgumentParser(prog="python -m genres_jax.sample", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=cli.path, required=True, help="a trained GAN or VAE workdir")
    p.add_argument("--upscaler", type=cli.path, help="a trained super-resolution workdir")
    p.add_argument(
        "--method", help=f"classical upscaling: {', '.join(sorted(imresize.RESIZE_KERNELS))}"
    )
    p.add_argument("--scale", type=cli.positive_int, help="with --method: the upscaling factor")
    p.add_argument("--num", type=cli.positive_int, default=64, help="how many images")
    p.add_argument("--out", type=cli.path, required=True, help="PNG grid of the samples")
    p.add_argument(
        "--out-dir", type=cli.path, help="also write each image as DIR/sample_00000.png, ..."
    )
    p.add_argument(
        "--columns", type=cli.nonnegative_int, default=0, help="grid columns; 0 = square"
    )
    p.add_argument("--seed", type=cli.nonnegative_int, default=0)
    p.add_argument(
        "--batch-size", type=cli.positive_int, default=256, help="images per device call"
    )
    p.add_argument("--data-dir", default="", help="TFDS data folder of the generator's dataset")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return p.parse_args(argv)


def sample(args: argparse.Namespace) -> dict[str, Any]:
    if args.num < 1 or args.batch_size < 1:
        raise UserError("--num and --batch-size must be >= 1")
    if not args.out.lower().endswith(".png"):
        raise UserError(f"--out must be a .png file, got {args.out!r}")
    outputs.check_file(args.out, overwrite=args.overwrite, flag="--out")
    if args.out_dir:
        outputs.check_folder(args.out_dir, flag="--out-dir")
    upscale, params, scale, up_info = cascade_upscaler(args.upscaler, args.method, args.scale)
    batch = min(args.batch_size, args.num)
    generator = load_generator(args.workdir, batch_size=batch, data_dir=args.data_dir)
    height, width, channels = generator.image_shape
    # The samples and their grid (float32) and the grid as uint8 are held on the host.
    per_image = height * width * channels * scale * scale * (4 + 4 + 1)
    memory.check_fits(
        float(args.num) * per_image, f"{args.num} samples", "lower --num, or sample in several runs"
    )
    names = []
    if args.out_dir:
        names = [os.path.join(args.out_dir, f"sample_{i:05d}.png") for i in range(args.num)]
        outputs.check_new_files(names, overwrite=args.overwrite, flag="--out-dir")
    images = draw(make_sampler(generator, upscale, params), args.num, jax.random.key(args.seed))
    grid = summaries.image_grid(images, columns=args.columns or None)
    outputs.write_file(
        args.out, lambda tmp: summaries.save_png(tmp, grid), overwrite=args.overwrite
    )
    written = []
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        for path, image in zip(names, images, strict=True):
            pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
            outputs.write_file(
                path,
                lambda tmp, pixels=pixels: summaries.save_png(tmp, pixels),
                overwrite=args.overwrite,
            )
            written.append(path)
    return {
        "generator": generator.info,
        **up_info,
        "scale": scale,
        "num": int(images.shape[0]),
        "image_shape": list(images.shape[1:]),
        "seed": args.seed,
        "grid": args.out,
        "images": len(written),
    }


def main(argv: list[str] | None = None) -> int:
    def body() -> None:
        args = parse_args(argv)
        logging.set_verbosity(logging.ERROR)  # Orbax and TFDS report every file they touch.
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries the JSON only.
            result = sample(args)
        print(json.dumps(result, indent=2))

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
