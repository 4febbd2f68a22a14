"""EDSR-M (baseline: 64 features, 16 residual blocks) x2 on the Lomiri wallpaper photos, offline.

L1 loss, Adam 2e-4 with warm-up and cosine decay, batch 16 of 64x64 LR patches with flips
and rotations, EMA weights; validation Y-PSNR/SSIM every eval_every steps; the best EMA weights
are kept in <workdir>/best (what evaluate and upscale load).

    python train.py --config configs/edsr_x2.py --workdir runs/edsr_x2

The full run wants a GPU; weights/edsr_x2 is a 1,000-step CPU fine-tune of earlier weights
with this config (README, "Results", has the command). On a 2-core CPU, a smaller model:
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
