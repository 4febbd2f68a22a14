"""Upscale an image with a trained super-resolution workdir or a classical interpolation.

    python -m genres_jax.upscale INPUT OUTPUT --scale S --method bicubic
    python -m genres_jax.upscale INPUT OUTPUT --workdir weights/edsr_x2 [--tile 256]

PNG or JPEG in and out; grey, RGB and RGBA (alpha upscaled with bicubic); 16-bit PNGs stay
16-bit. Large images are processed in tiles of ``--tile`` LR pixels with ``--tile-overlap``
pixels of context (default: the model's receptive radius, which makes the tiled result equal to
the whole-image one), so device memory stays bounded whatever the image size. A JPEG's EXIF
orientation is applied on reading, so the output is upright. An existing OUTPUT is never
replaced without ``--overwrite``, also not by a second command racing for the same OUTPUT.

``--self-ensemble`` (with ``--workdir``) averages the model over the 8 rotations and flips of
the input, EDSR's "+" inference: 8x the compute for a small PSNR gain.

``--outscale F`` (with ``--workdir``) gives an output of int(F * size) pixels per side from a
model of another scale, as Real-ESRGAN's inference script does: the model's output is resized
by MATLAB-style bicubic (antialiased when reducing), e.g. x3.5 from an x4 model.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from absl import logging
from tqdm import tqdm

from genres_jax import UserError, cli
from genres_jax.inference import image_files, upscalers
from genres_jax.ops import imresize, tiling


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = cli.ArgumentParser(
        prog="python -m genres_jax.upscale", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("input", type=cli.path, help="PNG or JPEG image to upscale")
    p.add_argument("output", type=cli.path, help="where to write the result (.png, .jpg or .jpeg)")
    p.add_argument(
        "--scale", type=cli.positive_float, help="upscaling factor (a workdir's own by default)"
    )
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--method", help=f"classical: {', '.join(sorted(imresize.RESIZE_KERNELS))}")
    how.add_argument(
        "--workdir", type=cli.path, help="a trained super-resolution workdir, e.g. weights/edsr_x2"
    )
    p.add_argument(
        "--outscale",
        type=cli.positive_float,
        help="with --workdir: resize the model's output to this factor of the input (bicubic)",
    )
    p.add_argument(
        "--self-ensemble",
        action="store_true",
        help="with --workdir: average the model over the 8 rotations and flips (8x the compute)",
    )
    p.add_argument(
        "--tile",
        type=cli.nonnegative_int,
        default=256,
        help="LR tile size; 0 = whole image at once",
    )
    p.add_argument(
        "--tile-overlap",
        type=cli.int_at_least(-1),
        default=-1,
        help="-1 = the model's receptive radius",
    )
    p.add_argument("--batch-size", type=cli.positive_int, default=1, help="tiles per device call")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    return p.parse_args(argv)


def upscale(args: argparse.Namespace) -> str:
    if args.outscale is not None and not args.workdir:
        raise UserError("--outscale needs --workdir (with --method use --scale)")
    if args.self_ensemble and not args.workdir:
        raise UserError("--self-ensemble needs --workdir (a trained model)")
    if args.method:
        upscalers.check_method(args.method)
    if args.method and args.scale is None:
        raise UserError("--scale is required with --method")
    image_files.check_output_path(args.output, overwrite=args.overwrite, inputs=(args.input,))
    image = image_files.read_image(args.input)
    image_files.check_output_path(
        args.output, overwrite=args.overwrite, has_alpha=image.has_alpha, inputs=(args.input,)
    )
    if args.workdir:
        up = upscalers.load_upscaler(
            args.workdir, scale=args.scale, self_ensemble=args.self_ensemble
        )
    else:
        up = upscalers.classical(args.method, args.scale)
    up = dataclasses.replace(
        up, tile=args.tile, overlap=args.tile_overlap, batch_size=args.batch_size
    )
    h, w = image.pixels.shape[:2]
    up.check_memory(image.pixels.shape, outscale=args.outscale)
    windows = tiling.num_windows(h, w, args.tile, up.receptive_radius) if args.tile else 0
    with tqdm(total=windows, unit="tile", disable=None if windows > 1 else True) as bar:
        out = up.upscale_pixels(image.pixels, outscale=args.outscale, progress=bar.update)
    image_files.write_image(args.output, out, bit_depth=image.bit_depth, overwrite=args.overwrite)
    depth = image_files.written_bit_depth(args.output, image.bit_depth)
    note = "" if depth == image.bit_depth else f" from a {image.bit_depth}-bit input; JPEG is 8-bit"
    size = f"{out.shape[1]}x{out.shape[0]}"
    return f"{args.input} ({w}x{h}) -> {args.output} ({size}, {depth}-bit{note})"


def main(argv: list[str] | None = None) -> int:
    def body() -> None:
        args = parse_args(argv)
        logging.set_verbosity(logging.ERROR)  # Orbax and TFDS report every file they touch.
        print(upscale(args), file=sys.stderr)

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
