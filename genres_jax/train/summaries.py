"""What a run writes for people: metrics.jsonl, TensorBoard events and PNG image grids."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

import numpy as np
from PIL import Image
from tensorboardX import SummaryWriter


def image_grid(images: np.ndarray, columns: int | None = None, pad: int = 2) -> np.ndarray:
    """Tiles (N, H, W, C) images in [0, 1] into one uint8 (rows*H, cols*W, C) picture."""
    images = np.asarray(images, dtype=np.float32)
    n, h, w, c = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.ones((rows * (h + pad) + pad, columns * (w + pad) + pad, c), np.float32)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y : y + h, x : x + w] = image
    return np.round(np.clip(grid, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_png(path: str, image: np.ndarray) -> None:
    """Writes a uint8 (H, W, 1|3|4) array as PNG, atomically (temp file then rename)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    tmp = f"{path}.tmp"
    Image.fromarray(image).save(tmp, format="png")
    os.replace(tmp, path)


def read_records(path: str) -> list[dict]:
    """The records of a metrics.jsonl file; a line cut short by a crash is left out."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def truncate_records(path: str, last_step: int) -> None:
    """Keeps the complete records with ``step <= last_step`` (atomic rewrite)."""
    if not os.path.exists(path):
        return
    kept = [r for r in read_records(path) if r.get("step", 0) <= last_step]
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)
    os.replace(tmp, path)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class MetricWriter:
    """Appends scalars to ``metrics.jsonl`` and TensorBoard, images to TensorBoard and PNGs."""

    def __init__(self, workdir: str, enabled: bool = True, resume_step: int = 0):
        """``resume_step``: the step a run restarts from; records written after it by an
        interrupted run are dropped (they will be written again), so no step appears twice."""
        self.enabled = enabled
        self.jsonl_path = os.path.join(workdir, "metrics.jsonl")
        self.samples_dir = os.path.join(workdir, "samples")
        self._tb = None
        if enabled:
            os.makedirs(self.samples_dir, exist_ok=True)
            truncate_records(self.jsonl_path, resume_step)
            self._tb = SummaryWriter(
                logdir=os.path.join(workdir, "tensorboard"), purge_step=resume_step + 1
            )

    def write_scalars(self, step: int, scalars: Mapping[str, float], kind: str = "train") -> None:
        """One JSON record ``{"step", "kind", <name>: value}`` and one TB scalar per value."""
        if not self.enabled:
            return
        record = {"step": int(step), "kind": kind}
        # Non-finite values are written as null: a bare NaN is not JSON.
        record.update({k: _finite_or_none(float(v)) for k, v in scalars.items()})
        with open(self.jsonl_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for name, value in scalars.items():
            self._tb.add_scalar(f"{kind}/{name}", float(value), global_step=int(step))

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> list[str]:
        """Each (N, H, W, C) batch in [0, 1] becomes a TB grid and ``samples/<name>_<step>.png``."""
        if not self.enabled:
            return []
        paths = []
        for name, batch in images.items():
            grid = image_grid(np.asarray(batch))
            path = os.path.join(self.samples_dir, f"{name}_{int(step):07d}.png")
            save_png(path, grid)
            paths.append(path)
            self._tb.add_image(name, grid, global_step=int(step), dataformats="HWC")
        return paths

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
