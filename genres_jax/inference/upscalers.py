"""Super-resolution predictors: a workdir's model, whole-image or tiled, with the geometric
self-ensemble, and the classical MATLAB-style interpolations.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genres_jax.ops import imresize, tiling
from genres_jax.train import workdirs

Upscaler = Callable[[np.ndarray], np.ndarray]  # (h, w, C) float in [0, 1] -> (h*s, w*s, C)


SR_TASKS = ("sr", "gan_sr")


def load_sr_workdir(workdir: str, scale: float | None = None):
    """(config, model, inference params, their step, where from) of a super-resolution workdir.

    Raises `workdirs.WorkdirError` for a workdir that is not super-resolution or whose scale
    differs from ``scale`` (when given).
    """
    from genres_jax.tasks import sr  # Deferred: the task pulls in the model zoo.

    config = workdirs.load_config(workdir)
    if config.get("task") not in SR_TASKS:
        raise workdirs.WorkdirError(
            f"{workdir!r} is a {config.get('task')!r} workdir, not super-resolution"
        )
    if scale is not None and scale != config.scale:
        raise workdirs.WorkdirError(f"{workdir!r} upscales x{config.scale}, not x{scale:g}")
    params, step, origin = workdirs.load_inference_params(workdir)
    return config, sr.build_model(config), params, step, origin


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


def self_ensemble(predict: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
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
) -> Upscaler:
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


def classical_upscaler(method: str, scale: int) -> Upscaler:
    """MATLAB-style ``imresize`` by ``scale`` with ``method`` (bicubic, bilinear, ...)."""
    if method not in imresize.RESIZE_KERNELS:
        valid = ", ".join(sorted(imresize.RESIZE_KERNELS))
        raise ValueError(f"unknown method {method!r}; valid: {valid}")

    def upscale(image: np.ndarray) -> np.ndarray:
        return np.asarray(
            imresize.imresize(jnp.asarray(image, jnp.float32), scale=scale, method=method)
        )

    return upscale
