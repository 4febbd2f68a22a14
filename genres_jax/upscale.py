"""Upscale an image with a trained super-resolution workdir or a classical interpolation.

    python -m genres_jax.upscale INPUT OUTPUT --scale S --method bicubic
    python -m genres_jax.upscale INPUT OUTPUT --workdir weights/edsr_x2 [--tile 256]
    python -m genres_jax.upscale photos/ more.jpg OUT_FOLDER --workdir weights/span_x2
    python -m genres_jax.upscale INPUT OUTPUT --exported span_x2.jaxexport

Several inputs, or a folder (its PNG and JPEG files), write the same names into the output
folder (created if needed): the model is loaded and compiled once, one progress bar counts the
images, and a file that cannot be read is reported and skipped while the rest are written (exit
code 1 then). All outputs are checked before any work: existing ones need ``--overwrite``.

PNG or JPEG in and out; grey, RGB and RGBA (alpha upscaled with bicubic); 16-bit PNGs stay
16-bit. Large images are processed in tiles of ``--tile`` LR pixels with ``--tile-overlap``
pixels of context (default: the model's receptive radius, which makes the tiled result equal to
the whole-image one), so device memory stays bounded whatever the image size. A JPEG's EXIF
orientation is applied on reading, so the output is upright. An existing OUTPUT is never
replaced without ``--overwrite``, also not by a second command racing for the same OUTPUT.

``--self-ensemble`` (with ``--workdir`` or ``--exported``) averages the model over the 8
rotations and flips of the input, EDSR's "+" inference: 8x the compute for a small PSNR gain.

``--outscale F`` (with ``--workdir`` or ``--exported``) gives an output of int(F * size) pixels
per side from a model of another scale, as Real-ESRGAN's inference script does: the output is
resized by MATLAB-style bicubic (antialiased when reducing), e.g. x3.5 from an x4 model.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from absl import logging
from tqdm import tqdm

from genres_jax import UserError, cli
from genres_jax.cli import outputs
from genres_jax.inference import exported, image_files, upscalers
from genres_jax.ops import imresize, tiling


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = cli.ArgumentParser(
        prog="python -m genres_jax.upscale",
        usage="%(prog)s INPUT [INPUT ...] OUTPUT (--method M --scale S | --workdir DIR | "
        "--exported FILE) [options]",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "paths",
        nargs="+",
        type=cli.path,
        metavar="PATH",
        help="a PNG or JPEG and the file to write (.png, .jpg, .jpeg); or images and/or folders "
        "of them and an output folder",
    )
    p.add_argument(
        "--scale", type=cli.positive_float, help="upscaling factor (a workdir's own by default)"
    )
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--method", help=f"classical: {', '.join(sorted(imresize.RESIZE_KERNELS))}")
    how.add_argument(
        "--workdir", type=cli.path, help="a trained super-resolution workdir, e.g. weights/edsr_x2"
    )
    how.add_argument(
        "--exported",
        type=cli.path,
        help="a file written by python -m genres_jax.export (no model code needed)",
    )
    p.add_argument(
        "--outscale",
        type=cli.positive_float,
        help="with a model: resize its output to this factor of the input (bicubic)",
    )
    p.add_argument(
        "--self-ensemble",
        action="store_true",
        help="with a model: average it over the 8 rotations and flips (8x the compute)",
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
    p.add_argument(
        "--batch-size",
        type=cli.positive_int,
        default=1,
        help="tiles per device call; with a folder, tiles of same-size images share the calls",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    args = p.parse_args(argv)
    if len(args.paths) < 2:
        raise UserError(f"give INPUT and OUTPUT (see {p.prog} --help)")
    args.inputs, args.output = args.paths[:-1], args.paths[-1]
    # Several inputs, or a folder, go into the output folder; one file gives one file.
    args.batch = len(args.inputs) > 1 or os.path.isdir(args.inputs[0])
    args.input = args.inputs[0]
    return args


def _check_flags(args: argparse.Namespace) -> None:
    model = args.workdir or args.exported
    if args.outscale is not None and not model:
        raise UserError("--outscale needs --workdir or --exported (with --method use --scale)")
    if args.self_ensemble and not model:
        raise UserError("--self-ensemble needs --workdir or --exported (a trained model)")
    if args.method:
        upscalers.check_method(args.method)
    if args.method and args.scale is None:
        raise UserError("--scale is required with --method")


def _upscaler(args: argparse.Namespace) -> upscalers.Upscaler:
    if args.workdir:
        up = upscalers.load_upscaler(
            args.workdir, scale=args.scale, self_ensemble=args.self_ensemble
        )
    elif args.exported:
        up = exported.load_exported(args.exported)
        if args.scale is not None and args.scale != up.scale:
            raise UserError(f"{args.exported} upscales x{up.scale}, not x{args.scale:g}")
        if args.self_ensemble:
            ensembled = upscalers.geometric_self_ensemble(up.predict)
            up = dataclasses.replace(up, predict=ensembled)
    else:
        up = upscalers.classical(args.method, args.scale)
    return dataclasses.replace(
        up, tile=args.tile, overlap=args.tile_overlap, batch_size=args.batch_size
    )


def _upscale_one(up, image, source: str, output: str, *, outscale, overwrite, bar=None) -> str:
    h, w = image.pixels.shape[:2]
    up.check_memory(image.pixels.shape, outscale=outscale)
    out = up.upscale_pixels(image.pixels, outscale=outscale, progress=bar and bar.update)
    image_files.write_image(output, out, bit_depth=image.bit_depth, overwrite=overwrite)
    depth = image_files.written_bit_depth(output, image.bit_depth)
    note = "" if depth == image.bit_depth else f" from a {image.bit_depth}-bit input; JPEG is 8-bit"
    size = f"{out.shape[1]}x{out.shape[0]}"
    return f"{source} ({w}x{h}) -> {output} ({size}, {depth}-bit{note})"


def upscale(args: argparse.Namespace) -> str:
    """One image: INPUT -> OUTPUT; returns the line that says what was written."""
    _check_flags(args)
    image_files.check_output_path(args.output, overwrite=args.overwrite, inputs=(args.input,))
    image = image_files.read_image(args.input)
    image_files.check_output_path(
        args.output, overwrite=args.overwrite, has_alpha=image.has_alpha, inputs=(args.input,)
    )
    up = _upscaler(args)
    h, w = image.pixels.shape[:2]
    up.check_memory(image.pixels.shape, outscale=args.outscale)
    windows = tiling.num_windows(h, w, args.tile, up.receptive_radius) if args.tile else 0
    with tqdm(total=windows, unit="tile", disable=None if windows > 1 else True) as bar:
        return _upscale_one(
            up,
            image,
            args.input,
            args.output,
            outscale=args.outscale,
            overwrite=args.overwrite,
            bar=bar,
        )


def upscale_folder(args: argparse.Namespace) -> int:
    """Several images (files and/or folders of them) into the folder OUTPUT; returns the exit
    code: 0, or 1 when some inputs could not be read or written (each is reported, the rest
    are written)."""
    _check_flags(args)
    jobs = batch_jobs(args.inputs, args.output)
    outputs.check_folder(args.output, flag="OUTPUT")
    existing = [out for _, out in jobs if os.path.lexists(out)]
    if existing and not args.overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise UserError(f"{existing[0]}{more} exist; pass --overwrite to replace them")
    up = _upscaler(args)  # Loaded and compiled once for all images.
    os.makedirs(args.output, exist_ok=True)
    failed = 0
    group: list = []  # Consecutive images of one shape, upscaled together.

    def flush() -> None:
        nonlocal failed
        if not group:
            return
        images = [image for _, _, image in group]
        try:
            outs = up.upscale_pixels_many([im.pixels for im in images], outscale=args.outscale)
        except UserError as e:  # Too large for memory together: say so for each.
            outs = [e] * len(group)
        for (source, output, image), out in zip(group, outs, strict=True):
            try:
                if isinstance(out, UserError):
                    raise out
                bits = image.bit_depth
                image_files.write_image(output, out, bit_depth=bits, overwrite=args.overwrite)
            except UserError as e:
                failed += 1
                tqdm.write(f"error: skipped {source}: {cli.one_line(e)}", file=sys.stderr)
            bar.update(1)
        group.clear()

    with tqdm(total=len(jobs), unit="image", disable=None) as bar:
        for source, output in jobs:
            try:
                image = image_files.read_image(source)
                image_files.check_output_path(
                    output, overwrite=args.overwrite, has_alpha=image.has_alpha, inputs=(source,)
                )
            except UserError as e:
                failed += 1
                tqdm.write(f"error: skipped {source}: {cli.one_line(e)}", file=sys.stderr)
                bar.update(1)
                continue
            if group and group[0][2].pixels.shape != image.pixels.shape:
                flush()
            group.append((source, output, image))
            if len(group) >= args.batch_size:
                flush()
        flush()
    done = len(jobs) - failed
    print(f"{done} of {len(jobs)} images upscaled into {args.output}", file=sys.stderr)
    return 1 if failed else 0


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def batch_jobs(inputs: list[str], output_folder: str) -> list[tuple[str, str]]:
    """(source, output) pairs: named files as they are, the PNG/JPEG files of named folders
    (sorted, not recursive); each output is the source's name in ``output_folder``."""
    if output_folder.lower().endswith(IMAGE_EXTENSIONS) and not os.path.isdir(output_folder):
        folder = next((p for p in inputs if os.path.isdir(p)), inputs[0])
        what = "is a folder, not an image" if os.path.isdir(folder) else "is one of several inputs"
        raise UserError(
            f"{folder} {what}: name an output folder for the results, not {output_folder}"
        )
    sources = []
    for path in inputs:
        if os.path.isdir(path):
            names = sorted(
                n
                for n in os.listdir(path)
                if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")
            )
            sources += [
                os.path.join(path, n) for n in names if os.path.isfile(os.path.join(path, n))
            ]
        elif os.path.lexists(path):
            sources.append(path)
        else:
            raise UserError(f"{path}: no such file or folder")
    if not sources:
        raise UserError(f"no PNG or JPEG images in {', '.join(inputs)}")
    jobs, seen = [], {}
    for source in sources:
        name = os.path.basename(source)
        key = name.casefold()  # a.png and A.png are one file on macOS and Windows
        if key in seen:
            raise UserError(
                f"{source} and {seen[key]} would both be written as {name} in {output_folder}"
            )
        seen[key] = source
        output = os.path.join(output_folder, name)
        if os.path.exists(output) and os.path.samefile(output, source):
            raise UserError(f"OUTPUT {output_folder} holds the inputs; write to another folder")
        jobs.append((source, output))
    return jobs


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        args = parse_args(argv)
        logging.set_verbosity(logging.ERROR)  # Orbax and TFDS report every file they touch.
        if args.batch:
            return upscale_folder(args)
        print(upscale(args), file=sys.stderr)
        return 0

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
