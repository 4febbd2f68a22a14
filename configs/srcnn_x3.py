"""SRCNN (9-1-5 on the bicubic-upsampled image) x3 on the Lomiri wallpaper photographs, offline.

    python train.py --config configs/srcnn_x3.py --workdir runs/srcnn_x3

Small enough for a CPU: the default 20k steps take about 20 minutes on 2 cores.
"""

import ml_collections

from genres_jax.train import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.sr_config("srcnn", scale=3)
    config.total_steps = 20_000
    config.log_every = 200
    config.eval_every = 2_000
    config.checkpoint_every = 2_000
    config.dataset.lr_patch_size = 17  # 51x51 HR patches, near SRCNN's 33x33 sub-images.
    config.optimizer.learning_rate = 1e-3
    return config
