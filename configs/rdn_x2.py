"""RDN (16 residual dense blocks of 8 layers, growth 64) x2 on the Lomiri wallpaper photographs.

    python train.py --config configs/rdn_x2.py --workdir runs/rdn_x2

A GPU model (about 22M parameters); RDN trains on 32x32 LR patches.
"""

import ml_collections

from genres_jax.train import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.sr_config("rdn", scale=2)
    config.total_steps = 100_000
    config.log_every = 200
    config.eval_every = 5_000
    config.checkpoint_every = 5_000
    config.dataset.lr_patch_size = 32
    config.optimizer.decay_steps = (60_000, 80_000)
    config.optimizer.schedule = "step"
    return config
