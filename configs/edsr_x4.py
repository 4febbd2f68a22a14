"""EDSR-M x4 on the Lomiri wallpaper photos, offline; initialised from the x2 model as in EDSR.

Same recipe as edsr_x2 (L1, Adam 2e-4 cosine, EMA) on 48x48 LR patches. As the EDSR paper does,
the network starts from trained x2 weights (every array whose shape matches; the second x2
upsampling stage is new): ``init_from`` names a workdir whose best weights are loaded ("" = from
scratch).

    python train.py --config configs/edsr_x4.py --workdir runs/edsr_x4 \\
        --config.init_from=weights/edsr_x2
"""

import ml_collections

from genres_jax.train import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.sr_config("edsr_m", scale=4)
    config.total_steps = 15_000
    config.log_every = 500
    config.eval_every = 3_000
    config.checkpoint_every = 3_000
    config.dataset.lr_patch_size = 48
    config.optimizer.learning_rate = 2e-4
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_steps = 500
    config.init_from = "weights/edsr_x2"
    return config
