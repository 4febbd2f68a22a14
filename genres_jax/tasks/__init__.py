"""Training regimes by ``config.task``: each module has ``validate(config)`` and
``make(config, image_shape) -> Task``."""

from __future__ import annotations

import ml_collections

from genres_jax.tasks import base, classifier, gan, gan_sr, sr, vae

TASKS = {"classifier": classifier, "gan": gan, "gan_sr": gan_sr, "sr": sr, "vae": vae}


def get(name: str):
    """The task module called ``name``; ValueError listing the valid names otherwise."""
    return base.lookup(TASKS, name, "task")


def validate(config: ml_collections.ConfigDict) -> None:
    get(config.task).validate(config)


def make(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int]) -> base.Task:
    return get(config.task).make(config, image_shape)
