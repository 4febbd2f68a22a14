"""Config blocks shared by the experiment files in ``configs/``.

Every key a task reads exists in its config file, so ``--config.key=value`` overrides are
checked against it: a misspelt key is an error, not a silent no-op.
"""

from __future__ import annotations

import ml_collections

from genres_jax.data.fashion_mnist import DEFAULT_SOURCE_DIR


def base_config() -> ml_collections.ConfigDict:
    """Keys every run has."""
    config = ml_collections.ConfigDict()
    config.task = ""
    config.seed = 0
    config.batch_size = 128
    config.eval_batch_size = 500
    config.total_steps = 10_000
    config.log_every = 100
    config.eval_every = 1_000
    config.checkpoint_every = 1_000
    config.keep_checkpoints = 3
    config.num_samples = 64
    config.compute_dtype = "float32"
    config.progress_bar = True
    config.eval_max_records = 0  # 0 = the whole eval split.
    return config


def fashion_mnist_dataset() -> ml_collections.ConfigDict:
    """Offline Fashion-MNIST (Debian package ``dataset-fashion-mnist``) through TFDS + grain.

    ``name``: ``fashion_mnist_local`` (the project's builder over the local idx files) or any TFDS
    catalog name (``fashion_mnist``, ``mnist``, ``cifar10``, ``celeb_a``, ...).
    """
    return ml_collections.ConfigDict(
        {
            "name": "fashion_mnist_local",
            "data_dir": "",  # TFDS data folder; "" = TFDS's default (~/tensorflow_datasets).
            "source_dir": DEFAULT_SOURCE_DIR,  # Raw idx files of fashion_mnist_local.
            "train_split": "train",
            "eval_split": "test",
            "image_size": 0,  # 0 = as stored; else resized to image_size x image_size.
            "center_crop": False,  # Crop to a centred square first (e.g. celeb_a).
            "cache": True,  # Keep decoded records in memory (small datasets).
            "worker_count": 0,  # grain worker processes; 0 = in the training process.
            "read_threads": 0,
        }
    )


def adam(learning_rate: float, b1: float = 0.9, b2: float = 0.999) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "name": "adam",
            "learning_rate": learning_rate,
            "b1": b1,
            "b2": b2,
            "eps": 1e-8,
            "weight_decay": 0.0,
            "grad_clip_norm": 0.0,
            "schedule": "constant",
            "warmup_steps": 0,
            "decay_steps": (),
            "decay_factor": 0.5,
        }
    )
