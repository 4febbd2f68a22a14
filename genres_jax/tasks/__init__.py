"""Training regimes by ``config.task``: each module has ``validate(config)``,
``make(config, image_shape) -> Task`` and ``CAPABILITIES``, what its workdirs support beyond
training, so that no code outside this package tests a task's name:

- ``"generate"``: a generator to sample (``sample``, the cascade, `inference.load_generator`);
- ``"sample_quality"``: FID/KID/precision/recall of its samples (`evaluation.sample_quality`);
- ``"likelihood"``: the importance-weighted bound on the test NLL (`evaluation.vae_bounds`);
- ``"upscale"``: a super-resolution network (``upscale``, ``evaluate``, `inference.load_upscaler`);
- ``"embed"``: a feature extractor for the generative metrics (`evaluation.features`).

Task modules are imported when first asked for, so reading a workdir's capabilities does not
import every model family.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import ml_collections

from genres_jax.tasks import base

TASKS = {name: f"genres_jax.tasks.{name}" for name in ("classifier", "gan", "gan_sr", "sr", "vae")}


def get(name: str) -> ModuleType:
    """The task module called ``name``; ValueError listing the valid names otherwise."""
    return importlib.import_module(base.lookup(TASKS, name, "task"))


def supports(name: str, capability: str) -> bool:
    """Whether task ``name`` (a known task) declares ``capability``; False for unknown names."""
    return name in TASKS and capability in get(name).CAPABILITIES


def names_supporting(capability: str) -> tuple[str, ...]:
    """The tasks that declare ``capability``, for messages."""
    return tuple(name for name in sorted(TASKS) if supports(name, capability))


def validate(config: ml_collections.ConfigDict) -> None:
    get(config.task).validate(config)


def make(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int]) -> base.Task:
    return get(config.task).make(config, image_shape)
