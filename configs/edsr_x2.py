"""EDSR-M (baseline: 64 features, 16 residual blocks) x2 on scikit-image's RGB photos, offline.

L1 loss, Adam 2e-4 with warm-up and cosine decay, batch 16 of 64x64 LR patches with flips
and rotations, EMA weights; validation Y-PSNR/SSIM every eval_every steps; the best EMA weights
are kept in <workdir>/best (what evaluate and upscale load).

    python train.py --config configs/edsr_x2.py --workdir runs/edsr_x2

On one GPU this is the run behind weights/edsr_x2 (README, "Results"). On a 2-core CPU the
full model trains too slowly to be useful; a smaller one:
--config.model.overrides="{'num_blocks': 4}".
"""

import ml_collections

from genres_jax.train import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.sr_config("edsr_m", scale=2)
    config.total_steps = 18_000
    config.log_every = 500
    config.eval_every = 3_000
    config.checkpoint_every = 3_000
    config.dataset.lr_patch_size = 64
    config.optimizer.learning_rate = 2e-4
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_steps = 500
    return config
