"""Restoring a GAN/VAE workdir for sampling, and the generation -> super-resolution cascade:
sampling and upscaling (an SR workdir, a classical method or none) as one jitted function.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from genres_jax import UserError
from genres_jax.inference import upscalers
from genres_jax.ops import imresize
from genres_jax.train import sharding, workdirs

GENERATIVE_TASKS = ("gan", "vae")


@dataclasses.dataclass(frozen=True)
class Generator:
    """A restored GAN/VAE: ``sample(state, rng)`` -> (batch_size, H, W, C) images in [0, 1]."""

    config: Any
    state: Any
    sample: Callable[[Any, jax.Array], jax.Array]
    image_shape: tuple[int, int, int]
    info: dict[str, Any]


def image_shape_of(config) -> tuple[int, int, int]:
    """(H, W, C) of the images a generative config trains on (one record through its pipeline)."""
    from genres_jax.data import inputs, pipeline  # Deferred: prepares the dataset if needed.

    source, operations = inputs.train_inputs(config)
    return tuple(int(d) for d in pipeline.example_batch(source, operations, 1)["image"].shape[1:])


def _restore_state(workdir: str, abstract_state: Any, mesh) -> tuple[Any, int]:
    repl = sharding.replicated(mesh)
    target = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), abstract_state
    )
    ckpt_dir = os.path.abspath(os.path.join(workdir, "checkpoints"))
    if not os.path.isdir(ckpt_dir):
        raise workdirs.WorkdirError(f"{workdir!r} holds no checkpoints/")
    options = ocp.CheckpointManagerOptions(read_only=True)
    with ocp.CheckpointManager(ckpt_dir, options=options) as manager:
        step = manager.latest_step()
        if step is None:
            raise workdirs.WorkdirError(f"{workdir!r} holds no complete checkpoint")
        args = ocp.args.Composite(state=ocp.args.StandardRestore(target))
        return workdirs.restore(manager, step, args, workdir)["state"], int(step)


def load_generator(workdir: str, *, batch_size: int, data_dir: str = "", mesh=None) -> Generator:
    """The latest checkpoint of a GAN/VAE workdir, sampling ``batch_size`` images per call."""
    from genres_jax import tasks  # Deferred: the registry imports every model family.

    config = workdirs.load_config(workdir)
    if config.get("task") not in GENERATIVE_TASKS:
        raise workdirs.WorkdirError(
            f"{workdir!r} is a {config.get('task')!r} workdir, not a generative model "
            f"({', '.join(GENERATIVE_TASKS)})"
        )
    config = config.copy_and_resolve_references()
    config.num_samples = batch_size
    if data_dir:
        config.dataset.data_dir = data_dir
    image_shape = image_shape_of(config)
    task = tasks.make(config, image_shape)
    mesh = mesh or sharding.make_mesh()
    example = {"image": np.zeros((batch_size, *image_shape), np.uint8)}
    abstract = jax.eval_shape(task.init, jax.random.key(0), example)
    state, step = _restore_state(workdir, abstract, mesh)
    info = {"workdir": workdir, "task": config.task, "model": config.model.name, "step": step}
    info["image_shape"] = list(image_shape)
    return Generator(
        config=config,
        state=state,
        sample=lambda s, rng: task.sample_images(s, rng)["samples"],
        image_shape=image_shape,
        info=info,
    )


Upscale = Callable[[Any, jax.Array], jax.Array]  # (params, images in [0, 1]) -> larger images


def _identity(params: Any, images: jax.Array) -> jax.Array:
    del params
    return images


def load_upscaler(
    upscaler: str | None = None, method: str | None = None, scale: int | None = None
) -> tuple[Upscale, Any, int, dict[str, Any]]:
    """(fn(params, images), params, scale, description) for an SR workdir, a method, or none.

    Outputs are clipped to [0, 1], as a saved image would be.
    """
    if upscaler and method:
        raise UserError("give either an SR workdir (--upscaler) or a classical --method")
    if upscaler:
        from genres_jax.tasks import sr  # Deferred: the SR model zoo.

        config, model, params, step, origin = upscalers.load_sr_workdir(upscaler, scale)

        def apply_sr(p, images):
            grey = images.shape[-1] == 1
            x = jnp.repeat(images, 3, axis=-1) if grey else images
            y = sr.predict(p, x, model=model)
            y = jnp.mean(y, axis=-1, keepdims=True) if grey else y
            return jnp.clip(y, 0.0, 1.0)

        info = {"upscaler": upscaler, "model": config.model.name, "weights": origin, "step": step}
        return apply_sr, jax.tree.map(jnp.asarray, params), int(config.scale), info
    if method:
        if method not in imresize.RESIZE_KERNELS:
            valid = ", ".join(sorted(imresize.RESIZE_KERNELS))
            raise UserError(f"unknown method {method!r}; valid: {valid}")
        if scale is None or scale < 1:
            raise UserError("--scale (an integer >= 1) is required with --method")

        def apply_classical(p, images):
            del p
            return jnp.clip(imresize.imresize(images, scale=scale, method=method), 0.0, 1.0)

        return apply_classical, None, int(scale), {"upscaler": method, "scale": int(scale)}
    if scale not in (None, 1):
        raise UserError("--scale needs --method (or an --upscaler workdir)")
    return _identity, None, 1, {"upscaler": None}


def make_sampler(
    generator: Generator, upscale: Upscale = _identity, upscale_params: Any = None, mesh=None
) -> Callable[[jax.Array], jax.Array]:
    """rng -> one batch of (optionally upscaled) samples; sampling + upscaling in one jit."""
    mesh = mesh or sharding.make_mesh()

    @jax.jit
    def sample_and_upscale(state, params, rng):
        return upscale(params, generator.sample(state, rng))

    def run(rng: jax.Array) -> jax.Array:
        with jax.set_mesh(mesh):
            return sample_and_upscale(generator.state, upscale_params, rng)

    return run


def draw(sampler: Callable[[jax.Array], jax.Array], num: int, key: jax.Array) -> np.ndarray:
    """``num`` images from successive batches (batch i uses ``fold_in(key, i)``), on the host."""
    out, i, total = [], 0, 0
    while total < num:
        batch = np.asarray(jax.device_get(sampler(jax.random.fold_in(key, i))))
        out.append(batch)
        total += batch.shape[0]
        i += 1
    return np.concatenate(out)[:num]
