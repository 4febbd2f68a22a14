"""VDSR (20 3x3 conv layers, global residual over the bicubic upsampling) x2, offline photos.

python train.py --config configs/vdsr_x2.py --workdir runs/vdsr_x2
"""

import ml_collections

from genres_jax.train import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.sr_config("vdsr", scale=2)
    config.total_steps = 40_000
    config.log_every = 200
    config.eval_every = 2_000
    config.checkpoint_every = 2_000
    config.dataset.lr_patch_size = 41  # VDSR trains on 41x41 patches (here in LR pixels).
    config.optimizer.grad_clip_norm = 0.4
    return config
