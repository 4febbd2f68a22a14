"""Evaluate a trained workdir (super-resolution, GAN or VAE) or a classical method; prints JSON.

    python -m genres_jax.evaluate --workdir weights/edsr_x2            # its validation split
    python -m genres_jax.evaluate --workdir DIR --hr-dir photos/ --output result.json
    python -m genres_jax.evaluate --method bicubic --scale 4 [--hr-dir photos/]
    python -m genres_jax.evaluate --workdir GAN_OR_VAE_DIR [--feature-extractor DIR|FILE.npz]
        [--num-samples N] [--iw-samples K] [--upscaler SR_DIR | --upscale-method M --scale S]

GAN and VAE workdirs get the generative metrics of `genres_jax.evaluation.sample_quality`: FID, KID
(with its standard error) and precision/recall of generated images against the real data,
every key naming the feature extractor (``fid/classifier_fashion_mnist``), and for VAEs the
importance-weighted bound and ELBO on the test split (`genres_jax.evaluation.vae_bounds`).
``--upscaler`` / ``--upscale-method`` evaluate the cascade: samples upscaled by an SR workdir or a
classical method, compared with real images at the upscaled size.

Super-resolution: HR images are cropped to a multiple of the scale, LR images made by
MATLAB-style bicubic downscaling (rounded to uint8), the result compared with HR by PSNR and
SSIM on RGB and on Y (BT.601), ``--crop-border`` pixels (default: the scale) removed from every
edge. Keys say what they are: ``mean.psnr_y``, ``per_image.<name>.ssim_rgb``, ...
``--lpips-weights FILE`` adds ``lpips`` (`genres_jax.evaluation.lpips`; whole image, after the
same uint8 quantisation). ``--degraded`` measures blind SR: each LR image is the HR image degraded
as Real-ESRGAN trains (the workdir's degradation settings if it trained with them, the published
x4 recipe otherwise), with a key from ``--seed`` (default 0) and the image's index, so every
model and ``--method`` evaluated with the same seed sees the same LR images.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Iterator

import jax
import numpy as np
from absl import logging

from genres_jax import UserError, cli, tasks
from genres_jax.cli import outputs
from genres_jax.data import sources, sr_pairs, sr_photos
from genres_jax.evaluation import features, sample_quality, sr_protocol, vae_bounds
from genres_jax.inference import generators, upscalers
from genres_jax.ops import imresize
from genres_jax.train import defaults, sharding, workdirs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = cli.ArgumentParser(
        prog="python -m genres_jax.evaluate", description=__doc__.split("\n\n")[0]
    )
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--workdir", type=cli.path, help="a trained super-resolution workdir")
    how.add_argument("--method", help=f"classical: {', '.join(sorted(imresize.RESIZE_KERNELS))}")
    p.add_argument(
        "--scale", type=cli.positive_int, help="required with --method; a workdir's own otherwise"
    )
    p.add_argument(
        "--hr-dir", type=cli.path, help="a folder of HR images (default: the dataset's split)"
    )
    p.add_argument(
        "--dataset", help="dataset name (default: the workdir's, or lomiri_photos_local)"
    )
    p.add_argument("--split", help="split (default: the workdir's eval split, or validation)")
    p.add_argument("--data-dir", default="", help="TFDS data folder")
    p.add_argument("--crop-border", type=cli.int_at_least(-1), default=-1, help="-1 = the scale")
    p.add_argument(
        "--tile", type=cli.nonnegative_int, default=192, help="LR tile size for models; 0 = whole"
    )
    p.add_argument("--max-images", type=cli.nonnegative_int, default=0, help="0 = all")
    p.add_argument(
        "--lpips-weights", type=cli.path, help="also report LPIPS with this weights file"
    )
    p.add_argument(
        "--self-ensemble",
        action="store_true",
        help="average the model over the 8 rotations and flips of each LR image (EDSR's '+')",
    )
    p.add_argument(
        "--degraded",
        action="store_true",
        help="LR by the Real-ESRGAN degradation (the workdir's own, or the published x4 "
        "recipe), keyed by --seed and the image index, instead of bicubic",
    )
    gen = p.add_argument_group("GAN and VAE workdirs")
    gen.add_argument("--feature-extractor", default="", help="classifier workdir or Inception .npz")
    gen.add_argument(
        "--num-samples", type=cli.positive_int, help="generated images (default: the config's)"
    )
    gen.add_argument(
        "--iw-samples", type=cli.positive_int, help="VAE: importance samples per test image"
    )
    gen.add_argument(
        "--upscaler", type=cli.path, help="an SR workdir that upscales the samples (cascade)"
    )
    gen.add_argument("--upscale-method", help="upscale the samples classically (with --scale)")
    gen.add_argument(
        "--seed",
        type=cli.nonnegative_int,
        help="sampling seed (default: the config's); with --degraded, the degradation's (0)",
    )
    p.add_argument("--output", type=cli.path, help="also write the JSON to this file")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    return p.parse_args(argv)


def folder_pairs(folder: str, scale: int) -> Iterator[dict]:
    """{"name", "hr", "lr"} for every image of ``folder`` (modcrop, MATLAB bicubic LR)."""
    for path in sr_photos.list_images(folder):
        hr = sr_pairs.modcrop(sr_photos.read_rgb(path), scale)
        if min(hr.shape[:2]) < scale:
            raise UserError(f"{path}: smaller than one LR pixel at x{scale}")
        yield {"name": os.path.basename(path), "hr": hr, "lr": sr_pairs.bicubic_lr(hr, scale)}


def dataset_pairs(name: str, split: str, data_dir: str, scale: int, config=None) -> Iterator:
    cfg = config.dataset if config is not None else defaults.sr_photos_dataset()
    cfg = cfg.copy_and_resolve_references()
    cfg.name = name
    if data_dir:
        cfg.data_dir = data_dir
    source = sr_pairs.PairSource(sources.load(cfg, split), scale, cache=False)
    for i in range(len(source)):
        yield source[i]


def evaluate_generative(args: argparse.Namespace, config) -> dict:
    """Sample quality (and the VAE's likelihood bounds) of a GAN/VAE workdir, maybe upscaled."""
    if args.hr_dir or args.method:
        raise UserError("--hr-dir and --method are for super-resolution, not GAN/VAE workdirs")
    cfg = sample_quality.settings_of(config)
    for key, value in (
        ("num_samples", args.num_samples),
        ("iw_samples", args.iw_samples),
        ("seed", args.seed),
    ):
        if value is not None:
            if value < (0 if key == "seed" else 1):
                raise UserError(f"--{key.replace('_', '-')} must be >= 1, got {value}")
            cfg[key] = value
    if args.feature_extractor:
        cfg.feature_extractor = args.feature_extractor
    cfg.iw_max_records = args.max_images  # The CLI's bound covers the whole split by default.
    mesh = sharding.make_mesh()
    upscale, params, scale, up_info = generators.cascade_upscaler(
        args.upscaler, args.upscale_method, args.scale
    )
    generator = generators.load_generator(
        args.workdir,
        batch_size=sharding.padded_batch_size(cfg.batch_size),
        data_dir=args.data_dir,
        mesh=mesh,
    )
    extractor = features.resolve(cfg.feature_extractor, config.dataset.name)
    h, w, c = generator.image_shape
    metrics, what = sample_quality.sample_quality(
        generators.make_sampler(generator, upscale, params, mesh),
        (h * scale, w * scale, c),
        extractor,
        generator.config.dataset,
        cfg,
        os.path.join(args.workdir, "reference_stats"),
        mesh,
    )
    if tasks.supports(config.task, "likelihood") and scale == 1:
        metrics.update(
            vae_bounds.vae_likelihood(
                generator.config,
                generator.state.params,
                generator.image_shape,
                iw_samples=cfg.iw_samples,
                max_records=cfg.iw_max_records,
                batch_size=cfg.batch_size,
                key=jax.random.key(cfg.seed + 1),
                mesh=mesh,
            )
        )
    return {
        "generator": generator.info,
        "upscaling": {**up_info, "scale": scale},
        "feature_extractor": extractor.describe(),
        "image_shape": [h * scale, w * scale, c],
        **what,
        **metrics,
    }


def evaluate(args: argparse.Namespace) -> dict:
    if args.output is not None:
        outputs.check_file(args.output, overwrite=args.overwrite, flag="--output")
    if args.seed is not None and args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    lpips = None
    if args.lpips_weights:
        try:
            lpips = sr_protocol.lpips_scorer(args.lpips_weights)
        except ValueError as e:
            raise UserError(str(e)) from None
    config = None
    if args.workdir:
        config = workdirs.load_config(args.workdir)
        if tasks.supports(config.get("task"), "generate"):
            if args.lpips_weights or args.degraded or args.self_ensemble:
                raise UserError(
                    "--lpips-weights, --degraded and --self-ensemble are for super-resolution"
                )
            return evaluate_generative(args, config)
        if args.upscaler or args.upscale_method or args.feature_extractor:
            raise UserError(
                "--upscaler, --upscale-method and --feature-extractor are for GAN/VAE workdirs"
            )
        up = upscalers.load_upscaler(
            args.workdir, scale=args.scale, self_ensemble=args.self_ensemble
        )
        up = dataclasses.replace(up, tile=args.tile, overlap=up.receptive_radius)
        what = dict(up.info)
        scale = int(up.scale)
    else:
        if args.scale is None or args.scale < 1:
            raise UserError("--scale (an integer >= 1) is required with --method")
        if args.self_ensemble:
            raise UserError("--self-ensemble needs --workdir (a trained model)")
        scale = args.scale
        up = dataclasses.replace(upscalers.classical(args.method, scale), tile=0)
        what = {"model": args.method}
    if args.hr_dir:
        pairs = folder_pairs(args.hr_dir, scale)
        what["data"] = os.path.abspath(args.hr_dir)
    else:
        name = args.dataset or (config.dataset.name if config else "lomiri_photos_local")
        split = args.split or (config.dataset.eval_split if config else "validation")
        pairs = dataset_pairs(name, split, args.data_dir, scale, config)
        what["data"] = f"{name}:{split}"
    if args.max_images:
        pairs = (p for i, p in zip(range(args.max_images), pairs, strict=False))
    if args.degraded:
        pairs = degraded_pairs(pairs, config, scale, args.seed or 0)
        what["lr"] = f"degraded (seed {args.seed or 0})"
    crop = args.crop_border if args.crop_border >= 0 else scale
    result = sr_protocol.evaluate_pairs(up.upscale_pixels, pairs, crop_border=crop, lpips=lpips)
    return {**what, "scale": scale, "crop_border": crop, **result}


def degraded_pairs(pairs, config, scale: int, seed: int) -> Iterator[dict]:
    """``pairs`` with LR made by the Real-ESRGAN degradation of their HR (module docstring)."""
    from genres_jax.ops import degradations
    from genres_jax.tasks import gan_sr, gan_sr_parts

    cfg = None
    if config is not None and config.get("degradation"):
        cfg = gan_sr_parts.degradation(config)
    cfg = cfg or degradations.DegradationConfig()
    for index, pair in enumerate(pairs):
        hr = pair["hr"]
        if min(hr.shape[:2]) < 4 * scale:
            raise UserError(
                f"{pair['name']}: smaller than {4 * scale} pixels, too small to degrade"
            )
        lr = gan_sr.degraded_lr(hr, index, degradation=cfg, scale=scale, seed=seed)
        yield {**pair, "lr": lr}


def main(argv: list[str] | None = None) -> int:
    def body() -> None:
        args = parse_args(argv)
        logging.set_verbosity(logging.ERROR)  # Orbax and TFDS report every file they touch.
        # stdout carries the JSON only; libraries that print (TFDS preparing a dataset on
        # first use) go to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            result = evaluate(args)
        text = json.dumps(result, indent=2, default=lambda x: float(np.asarray(x)))
        if args.output:
            outputs.write_text(args.output, text + "\n", overwrite=args.overwrite)
        print(text)

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
