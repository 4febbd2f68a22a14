"""Super-resolution predictors: a workdir's model, whole-image or tiled, with the geometric
self-ensemble, and the classical MATLAB-style interpolations.

`load_upscaler` and `classical` give an `Upscaler`, the object the ``upscale`` command and the
Python API (``genres_jax.inference``) both run: ``up(image)`` takes an (H, W) or (H, W, C)
numpy or JAX array (uint8, uint16 or float in [0, 1]; grey, RGB, grey + alpha or RGBA) and
returns the upscaled image of the same kind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from genres_jax import UserError, tasks
from genres_jax.cli import memory
from genres_jax.inference import image_files
from genres_jax.ops import imresize, tiling
from genres_jax.train import workdirs

ImageFn = Callable[[np.ndarray], np.ndarray]  # (h, w, C) float in [0, 1] -> (h*s, w*s, C)
Predict = Callable[[jax.Array], jax.Array]  # (N, h, w, C) float -> (N, h*s, w*s, C) float

# LR pixels a classical kernel reaches when upscaling (Lanczos-3: 3), with a margin.
CLASSICAL_OVERLAP = 4


def load_sr_workdir(workdir: str, scale: float | None = None):
    """(config, model, inference params, their step, where from) of a super-resolution workdir;
    the model in its inference form (`tasks.sr.inference_form`).

    Raises `workdirs.WorkdirError` for a workdir that is not super-resolution or whose scale
    differs from ``scale`` (when given).
    """
    from genres_jax.tasks import sr  # Deferred: the task pulls in the model zoo.

    config = workdirs.load_config(workdir)
    if not tasks.supports(config.get("task"), "upscale"):
        raise workdirs.WorkdirError(
            f"{workdir!r} is a {config.get('task')!r} workdir, not super-resolution"
        )
    if scale is not None and scale != config.scale:
        raise workdirs.WorkdirError(f"{workdir!r} upscales x{config.scale}, not x{scale:g}")
    params, step, origin = workdirs.load_inference_params(workdir)
    model, params = sr.inference_form(sr.build_model(config), params)
    return config, model, params, step, origin


def workdir_predictor(workdir: str, scale: float | None = None):
    """(predict on (N, h, w, 3) batches, scale, receptive radius, description) of a workdir.

    Raises `workdirs.WorkdirError` for a workdir that is not super-resolution or whose scale
    differs from ``scale`` (when given).
    """
    from genres_jax.tasks import sr

    config, model, params, _, origin = load_sr_workdir(workdir, scale)
    params = jax.device_put(params)
    # Weights as an argument, not constants folded into the compiled program.
    apply = jax.jit(lambda p, x: sr.predict(p, x, model=model))
    info = {"model": config.model.name, "workdir": workdir, "weights": origin}
    return (lambda x: apply(params, x)), int(config.scale), int(model.receptive_radius), info


def _dihedral(x: jax.Array, k: int) -> jax.Array:
    """The k-th (0..7) symmetry of (N, H, W, C) images: k % 4 quarter turns, then a flip if k >= 4
    (the training augmentation, `data.sr_pairs.dihedral`)."""
    x = jnp.rot90(x, k % 4, axes=(1, 2))
    return x[:, :, ::-1] if k >= 4 else x


def _undo_dihedral(x: jax.Array, k: int) -> jax.Array:
    if k >= 4:
        x = x[:, :, ::-1]
    return jnp.rot90(x, -(k % 4), axes=(1, 2))


def geometric_self_ensemble(predict: Predict) -> Predict:
    """Geometric self-ensemble x8 (EDSR's "+" models): ``predict`` on the 8 rotations and flips of
    its input, each output mapped back, averaged. Eight times the compute; the receptive radius is
    unchanged, so tiling stays exact."""

    def ensembled(x: jax.Array) -> jax.Array:
        total = sum(_undo_dihedral(predict(_dihedral(x, k)), k) for k in range(8))
        return total / 8.0

    return ensembled


def model_upscaler(
    predict: Callable[[jax.Array], jax.Array],
    *,
    scale: int,
    tile: int = 0,
    overlap: int = 0,
    batch_size: int = 1,
) -> ImageFn:
    """Wraps a jitted ``predict`` ((N, h, w, C) -> (N, h*s, w*s, C)) for single images.

    ``tile`` = 0 runs the whole image at once (one compilation per image size); otherwise fixed
    windows of ``tile + 2 * overlap`` pixels (one compilation for all sizes).
    """

    def upscale(image: np.ndarray) -> np.ndarray:
        if tile <= 0:
            return np.asarray(predict(jnp.asarray(image[None], jnp.float32)))[0]
        return tiling.tiled_apply(
            lambda x: predict(jnp.asarray(x, jnp.float32)),
            image,
            scale=scale,
            tile=tile,
            overlap=overlap,
            batch_size=batch_size,
        )

    return upscale


def check_method(method: str) -> None:
    """UserError listing the valid names for an unknown interpolation ``method``."""
    if method not in imresize.RESIZE_KERNELS:
        valid = ", ".join(sorted(imresize.RESIZE_KERNELS))
        raise UserError(f"unknown method {method!r}; valid: {valid}")


def classical_predict(method: str, scale: float) -> Predict:
    """MATLAB-style ``imresize`` of (N, h, w, C) batches by ``scale`` with ``method``, jitted."""
    check_method(method)
    if not scale > 0:
        raise UserError(f"the scale must be > 0, got {scale}")
    return jax.jit(lambda x: imresize.imresize(x, scale=scale, method=method))


@dataclasses.dataclass(frozen=True)
class Upscaler:
    """An image upscaler: a trained SR model (`load_upscaler`) or an interpolation (`classical`).

    ``up(image)`` returns the upscaled image of the same kind (see the module docstring). Images
    larger than ``tile`` LR pixels run in tiles with ``overlap`` pixels of context (-1 = the
    receptive radius, with which tiled equals whole-image); ``tile=0`` runs whole images.
    Change the settings with ``dataclasses.replace(up, tile=512)``.
    """

    predict: Predict
    scale: float
    receptive_radius: int
    rgb: bool  # The network takes RGB: grey images go in as R = G = B and come back averaged.
    info: dict[str, Any]
    tile: int = 256
    overlap: int = -1
    batch_size: int = 1

    def upscale_pixels(
        self,
        pixels: np.ndarray,
        *,
        outscale: float | None = None,
        progress: Callable[[int], Any] | None = None,
    ) -> np.ndarray:
        """Float (H, W, C) pixels in [0, 1] -> float32 upscaled pixels (not yet clipped).

        C is 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA); alpha is upscaled by bicubic.
        ``outscale`` resizes the result to that factor of the input size (bicubic), as
        Real-ESRGAN's ``--outscale``; ``progress(n)`` is told of every n tiles done.
        """
        return self.upscale_pixels_many([pixels], outscale=outscale, progress=progress)[0]

    def upscale_pixels_many(
        self,
        images: list[np.ndarray],
        *,
        outscale: float | None = None,
        progress: Callable[[int], Any] | None = None,
    ) -> list[np.ndarray]:
        """`upscale_pixels` of images of one shape: their tiles (or, when small, the whole
        images) share the model calls, ``batch_size`` at a time."""
        images = [np.asarray(p, np.float32) for p in images]
        if len({p.shape for p in images}) != 1:
            raise ValueError("upscale_pixels_many needs images of one shape")
        shape = images[0].shape
        # K images cost what one K times as tall does.
        self.check_memory((shape[0] * len(images), *shape[1:]), outscale=outscale)
        has_alpha = shape[-1] in (2, 4)
        grey = shape[-1] - has_alpha == 1 and self.rgb
        colour = np.stack([p[..., :-1] if has_alpha else p for p in images])
        if grey:
            colour = np.repeat(colour, 3, axis=-1)
        outs = self._run(colour, progress)
        results = []
        for pixels, out in zip(images, outs, strict=True):
            if grey:
                out = out.mean(axis=-1, keepdims=True)
            if outscale is not None:
                size = tuple(max(1, int(outscale * n)) for n in shape[:2])
                if size != out.shape[:2]:
                    out = np.asarray(imresize.imresize(jnp.asarray(out), output_shape=size))
            if has_alpha:
                alpha = jnp.asarray(pixels[..., -1:])
                alpha_up = imresize.imresize(alpha, output_shape=out.shape[:2])
                out = np.concatenate([out, np.asarray(alpha_up)], axis=-1)
            results.append(out)
        return results

    def output_size(self, height: int, width: int, outscale: float | None = None) -> tuple:
        """(H, W) of the result for an input of that size."""
        factor = self.scale if outscale is None else outscale
        return tuple(max(1, int(factor * n)) for n in (height, width))

    def check_memory(self, shape: tuple, *, outscale: float | None = None) -> None:
        """`MemoryBudgetError` before any work if the result cannot fit in host memory.

        Counted: the model's output and the resized one (float32), and as much again for the
        stitching, resizing and quantising temporaries.
        """
        h, w = shape[:2]
        channels = max(3, shape[-1]) if len(shape) == 3 else 3
        model_h, model_w = self.output_size(h, w)
        out_h, out_w = self.output_size(h, w, outscale)
        nbytes = 2 * 4 * channels * (model_h * model_w + (out_h * out_w if outscale else 0))
        memory.check_fits(
            nbytes,
            f"upscaling {w}x{h} pixels to {out_w}x{out_h}",
            "ask for a smaller scale or a smaller image",
        )

    def _run(self, images: np.ndarray, progress) -> np.ndarray:
        """(K, h, w, C) -> (K, h*s, w*s, C'): whole images when small enough, else tiles."""
        h, w = images.shape[1:3]
        tile = self.tile
        if tile <= 0 or not float(self.scale).is_integer() or (h <= tile and w <= tile):
            step = max(1, self.batch_size) if tile > 0 else 1
            outs = [
                np.asarray(self.predict(jnp.asarray(images[i : i + step])))
                for i in range(0, len(images), step)
            ]
            return np.concatenate(outs)
        overlap = self.receptive_radius if self.overlap < 0 else self.overlap
        return tiling.tiled_apply_stack(
            lambda x: self.predict(jnp.asarray(x)),
            images,
            scale=int(self.scale),
            tile=tile,
            overlap=overlap,
            batch_size=self.batch_size,
            progress=progress,
        )

    def __call__(self, image: np.ndarray | jax.Array, *, outscale: float | None = None):
        """The upscaled ``image``: same array type, dtype and channel layout as the input.

        uint8 / uint16 images are rounded back to their dtype as a saved file would be (so the
        ``upscale`` command writes exactly these values); float images come back clipped to
        [0, 1].
        """
        is_jax = isinstance(image, jax.Array)
        array = np.asarray(image)
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 2, 3, 4)):
            raise UserError(f"expected an (H, W) or (H, W, C) image, C <= 4; got {array.shape}")
        if array.shape[0] == 0 or array.shape[1] == 0:
            raise UserError(f"image has zero size ({array.shape})")
        pixels = array[..., None] if array.ndim == 2 else array
        depth = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(array.dtype)
        if depth is not None:
            pixels = pixels.astype(np.float32) / (255.0 if depth == 8 else 65535.0)
        elif not np.issubdtype(array.dtype, np.floating):
            raise UserError(f"expected uint8, uint16 or float pixels, got {array.dtype}")
        out = self.upscale_pixels(pixels, outscale=outscale)
        if depth is not None:
            out = image_files.quantize(out, depth)
        else:
            out = np.clip(out, 0.0, 1.0).astype(array.dtype)
        if array.ndim == 2:
            out = out[..., 0]
        return jnp.asarray(out) if is_jax else out


def load_upscaler(
    workdir: str, *, scale: float | None = None, self_ensemble: bool = False
) -> Upscaler:
    """The super-resolution model of a workdir (``best/`` weights, else the latest EMA weights).

    ``scale``, when given, must be the workdir's; ``self_ensemble`` averages the model over the
    8 rotations and flips (EDSR's "+", 8x the compute). `WorkdirError` for a workdir that is
    not super-resolution.
    """
    predict, model_scale, radius, info = workdir_predictor(workdir, scale)
    if self_ensemble:
        predict = geometric_self_ensemble(predict)
        info = {**info, "self_ensemble": True}
    return Upscaler(predict, model_scale, radius, rgb=True, info=info)


def classical(method: str = "bicubic", scale: float = 2) -> Upscaler:
    """MATLAB-style interpolation by ``scale`` (bicubic, bilinear, nearest, lanczos3, ...)."""
    predict = classical_predict(method, scale)
    info = {"method": method, "scale": scale}
    return Upscaler(predict, scale, CLASSICAL_OVERLAP, rgb=False, info=info)


def classical_upscaler(method: str, scale: int) -> ImageFn:
    """MATLAB-style ``imresize`` of single float images (the SR protocol's bicubic baseline)."""
    predict = classical_predict(method, scale)
    return lambda image: np.asarray(predict(jnp.asarray(image[None], jnp.float32)))[0]
