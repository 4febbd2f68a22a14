"""Soft versions of the unseen test photos: where an SR model that sharpens too much loses to
bicubic.

    python benchmarks/soft_photos.py OUT_DIR
    python -m genres_jax.evaluate --workdir weights/edsr_x2 --hr-dir OUT_DIR
    python -m genres_jax.evaluate --method bicubic --scale 2 --hr-dir OUT_DIR

Writes, for each photo of the ``test`` split (grace_hopper, china, flower), three PNGs: Gaussian
blur of radius 1 and 2 (Pillow's ``GaussianBlur``, out of focus) and a 9-pixel horizontal box
blur (camera motion; the 9 columns at each side, which wrap around, are cut off). Refuses to
write into a folder that already holds files.
"""

from __future__ import annotations

import argparse
import os
import sys

import harness  # noqa: F401  (puts the repository on the path)
import numpy as np
from PIL import Image, ImageFilter

from genres_jax.data import sr_photos

MOTION = 9


def soft_versions(image: np.ndarray) -> dict[str, np.ndarray]:
    """{suffix: uint8 image} for a uint8 RGB image."""
    pil = Image.fromarray(image)
    out = {f"blur{r}": np.asarray(pil.filter(ImageFilter.GaussianBlur(r))) for r in (1, 2)}
    rgb = image.astype(np.float64)
    motion = sum(np.roll(rgb, i - MOTION // 2, axis=1) for i in range(MOTION)) / MOTION
    out[f"motion{MOTION}"] = np.clip(np.round(motion), 0, 255).astype(np.uint8)[:, MOTION:-MOTION]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir")
    args = p.parse_args(argv)
    if os.path.isdir(args.out_dir) and os.listdir(args.out_dir):
        print(f"error: {args.out_dir!r} is not empty; give a new folder", file=sys.stderr)
        return 2
    os.makedirs(args.out_dir, exist_ok=True)
    for path in sr_photos.unseen_photo_paths():
        stem = os.path.splitext(os.path.basename(path))[0]
        for suffix, image in soft_versions(sr_photos.read_rgb(path)).items():
            Image.fromarray(image).save(os.path.join(args.out_dir, f"{stem}_{suffix}.png"))
    print(f"wrote {len(os.listdir(args.out_dir))} images to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
