"""EDSR (L: 256 features, 32 blocks, residual scaling 0.1) x2 on the Lomiri wallpaper photographs.

    python train.py --config configs/edsr_l_x2.py --workdir runs/edsr_l_x2

A GPU model (40.7M parameters), bfloat16 compute on GPU (``precision="auto"``);
``--config.mesh.model=8`` shards its parameters and optimizer state over 8 devices.
"""

import ml_collections

from genres_jax.train import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.sr_config("edsr_l", scale=2)
    config.total_steps = 100_000
    config.log_every = 200
    config.eval_every = 5_000
    config.checkpoint_every = 5_000
    config.optimizer.decay_steps = (60_000, 80_000)
    config.optimizer.schedule = "step"
    return config
