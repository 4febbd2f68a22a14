"""Restoring a GAN/VAE workdir for sampling, and the generation -> super-resolution cascade:
sampling and upscaling (an SR workdir, a classical method or none) as one jitted function.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from genres_jax import UserError
from genres_jax.inference import upscalers
from genres_jax.train import sharding, workdirs


@dataclasses.dataclass(frozen=True)
class Generator:
    """A restored GAN/VAE: ``sample(state, rng)`` -> (batch_size, H, W, C) images in [0, 1].

    ``gen(rng, num)`` draws ``num`` images on the host, batch i from ``fold_in(rng, i)``,
    exactly as ``python -m genres_jax.sample`` does.
    """

    config: Any
    state: Any
    sample: Callable[[Any, jax.Array], jax.Array]
    image_shape: tuple[int, int, int]
    info: dict[str, Any]
    mesh: Any = None

    @functools.cached_property
    def _sampler(self) -> Callable[[jax.Array], jax.Array]:
        return make_sampler(self, mesh=self.mesh)

    def __call__(self, rng: jax.Array, num: int) -> np.ndarray:
        """``num`` samples as float32 (num, H, W, C) in [0, 1] (EMA generator / VAE prior)."""
        if num < 1:
            raise UserError(f"the number of samples must be >= 1, got {num}")
        return draw(self._sampler, num, rng)


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
    return workdirs.read_checkpoint(os.path.join(workdir, "checkpoints"), "state", workdir, target)


def load_generator(
    workdir: str, *, batch_size: int = 256, data_dir: str = "", mesh=None
) -> Generator:
    """The latest checkpoint of a GAN/VAE workdir, sampling ``batch_size`` images per call.

    ``batch_size`` is rounded up to a multiple of the device count (the batch is split over
    every device). ``data_dir`` is the TFDS folder of the workdir's dataset, read once for the
    image shape. `WorkdirError` for a workdir that is not a generative model.
    """
    from genres_jax import tasks  # Deferred: the registry imports every model family.

    config = workdirs.load_config(workdir)
    if not tasks.supports(config.get("task"), "generate"):
        raise workdirs.WorkdirError(
            f"{workdir!r} is a {config.get('task')!r} workdir, not a generative model "
            f"({', '.join(tasks.names_supporting('generate'))})"
        )
    config = config.copy_and_resolve_references()
    batch_size = sharding.padded_batch_size(batch_size)
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
        mesh=mesh,
    )


Upscale = Callable[[Any, jax.Array], jax.Array]  # (params, images in [0, 1]) -> larger images


def _identity(params: Any, images: jax.Array) -> jax.Array:
    del params
    return images


def cascade_upscaler(
    upscaler: str | None = None, method: str | None = None, scale: int | None = None
) -> tuple[Upscale, Any, int, dict[str, Any]]:
    """(fn(params, images), params, scale, description) for an SR workdir, a method, or none:
    the second stage of the cascade, jitted together with sampling by `make_sampler`.

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
        upscalers.check_method(method)
        if scale is None or scale < 1:
            raise UserError("--scale (an integer >= 1) is required with --method")
        resize = upscalers.classical_predict(method, scale)

        def apply_classical(p, images):
            del p
            return jnp.clip(resize(images), 0.0, 1.0)

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
