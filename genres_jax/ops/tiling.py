"""Tiled inference: run an image-to-image function on fixed-size windows of a large image.

The image is cut into core tiles of ``tile`` x ``tile`` pixels. Each core is processed inside a
window that extends it by ``overlap`` pixels on every side, shifted inward at the image borders
so that every window lies inside the image and all windows have one shape (one compilation).
Only the core of each window's output is kept. A window edge that is not an image edge is then
at least ``overlap`` pixels from every kept pixel, and a window edge that is an image edge is
padded by the function exactly as the whole image would be. So with ``overlap`` >= the
function's receptive radius the tiled result equals the whole-image result (up to float
rounding), while device memory is bounded by one batch of windows.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator

import numpy as np


@dataclasses.dataclass(frozen=True)
class Span:
    """One tile along an axis: the window [w0, w0 + size) and its kept core [c0, c1)."""

    w0: int
    c0: int
    c1: int


def spans(length: int, tile: int, overlap: int) -> tuple[int, list[Span]]:
    """Window size and the spans that cover [0, length) with cores of at most ``tile``."""
    if tile <= 0 or overlap < 0:
        raise ValueError(f"tile must be > 0 and overlap >= 0, got tile={tile}, overlap={overlap}")
    window = min(tile + 2 * overlap, length)
    out = []
    for c0 in range(0, length, tile):
        c1 = min(c0 + tile, length)
        w0 = min(max(c0 - overlap, 0), length - window)
        out.append(Span(w0, c0, c1))
    return window, out


def _windows(image: np.ndarray, tile: int, overlap: int) -> tuple[tuple[int, int], list]:
    h, w = image.shape[:2]
    wh, rows = spans(h, tile, overlap)
    ww, cols = spans(w, tile, overlap)
    return (wh, ww), list(itertools.product(rows, cols))


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def tiled_apply(
    fn: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    *,
    scale: int,
    tile: int,
    overlap: int,
    batch_size: int = 1,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Applies ``fn`` ((N, h, w, C) -> (N, h*scale, w*scale, C')) to ``image`` (H, W, C) by tiles.

    ``fn`` always receives ``batch_size`` windows of one shape (the last batch is padded with
    copies), so a jitted ``fn`` compiles once. Returns float32 (H*scale, W*scale, C').
    ``progress`` is called with the number of windows done after each batch.
    """
    return tiled_apply_stack(
        fn,
        image[None],
        scale=scale,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        progress=progress,
    )[0]


def tiled_apply_stack(
    fn: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    *,
    scale: int,
    tile: int,
    overlap: int,
    batch_size: int = 1,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """`tiled_apply` of K same-size images (K, H, W, C) at once: the windows of all of them
    share the ``batch_size`` calls, so small images fill a batch together. Returns float32
    (K, H*scale, W*scale, C')."""
    (wh, ww), windows = _windows(images[0], tile, overlap)
    windows = [(k, r, c) for k in range(images.shape[0]) for r, c in windows]
    h, w = images.shape[1:3]
    out = None
    for group in _batches(windows, batch_size):
        crops = [images[k, r.w0 : r.w0 + wh, c.w0 : c.w0 + ww] for k, r, c in group]
        crops += [crops[0]] * (batch_size - len(crops))
        result = np.asarray(fn(np.stack(crops)), dtype=np.float32)
        if out is None:
            shape = (images.shape[0], h * scale, w * scale, result.shape[-1])
            out = np.empty(shape, np.float32)
        for (k, r, c), res in zip(group, result, strict=False):
            out[k, r.c0 * scale : r.c1 * scale, c.c0 * scale : c.c1 * scale] = res[
                (r.c0 - r.w0) * scale : (r.c1 - r.w0) * scale,
                (c.c0 - c.w0) * scale : (c.c1 - c.w0) * scale,
            ]
        if progress is not None:
            progress(len(group))
    return out


def num_windows(height: int, width: int, tile: int, overlap: int) -> int:
    return len(spans(height, tile, overlap)[1]) * len(spans(width, tile, overlap)[1])
