"""How much of a JPEG's 8x8 block grid is left in HR made from it, by downscale factor.

    python benchmarks/jpeg_hr.py [--factors 1 2 4] [--split validation|train|all] [--source-dir DIR]

For each photograph of ``lomiri_photos_local`` (the Lomiri wallpaper JPEGs), and each factor f,
HR is the decoded photo made f times smaller by `genres_jax.data.sr_photos.downscaled_hr` (f = 1:
the decoded photo itself). The block edges of the JPEG grid then fall every 8/f HR pixels. The
figure printed is the blockiness: the mean absolute luma step across those grid lines divided by
the mean step between all other neighbouring pixels, over rows and columns (1.0 = no trace of the
grid; compression that a model would learn as detail shows as > 1). Only factors that divide 8
keep the grid on whole pixels.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import harness  # noqa: F401  (puts the repository on the path)
import numpy as np

from genres_jax.data import sr_photos


def luma(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of a uint8 RGB image, in [0, 255] float64."""
    rgb = image.astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def blockiness(y: np.ndarray, period: int) -> float:
    """Mean |step| across lines every ``period`` pixels (after pixel period-1, 2*period-1, ...)
    over the mean |step| elsewhere, both directions pooled."""
    on, off = [], []
    for steps in (np.abs(np.diff(y, axis=1)), np.abs(np.diff(y, axis=0)).T):
        grid = (np.arange(steps.shape[1]) + 1) % period == 0
        on.append(steps[:, grid].ravel())
        off.append(steps[:, ~grid].ravel())
    return float(np.concatenate(on).mean() / np.concatenate(off).mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--factors", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--split", choices=("validation", "train", "all"), default="validation")
    p.add_argument("--source-dir", default=sr_photos.LOMIRI_DIR)
    args = p.parse_args(argv)
    for f in args.factors:
        if f < 1 or 8 % f:
            print(f"error: --factors: {f} does not divide 8 (the JPEG block size)", file=sys.stderr)
            return 2
    try:
        sr_photos.check_lomiri_dir(args.source_dir)
    except sr_photos.ImageFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    names = {
        "validation": sr_photos.LOMIRI_VALIDATION,
        "train": sr_photos.LOMIRI_TRAIN,
        "all": (*sr_photos.LOMIRI_TRAIN, *sr_photos.LOMIRI_VALIDATION),
    }[args.split]
    rows = {}
    for name in names:
        image = sr_photos.read_rgb(os.path.join(args.source_dir, name))
        hr = {f: sr_photos.downscaled_hr(image, f) if f > 1 else image for f in args.factors}
        rows[name] = {f"x1/{f}": blockiness(luma(hr[f]), 8 // f) for f in args.factors}
        print(name, " ".join(f"{k}={v:.3f}" for k, v in rows[name].items()), flush=True)
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in next(iter(rows.values()))}
    print("mean", " ".join(f"{k}={v:.3f}" for k, v in mean.items()))
    print(json.dumps({"split": args.split, "per_image": rows, "mean": mean}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
