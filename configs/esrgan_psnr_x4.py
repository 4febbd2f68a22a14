"""ESRGAN stage 1: the RRDBNet generator (23 RRDBs, 64 features) trained x4 for PSNR (L1).

The PSNR-oriented model ESRGAN fine-tunes with its GAN losses (configs/esrgan_x4.py) and its
Real-ESRGAN counterpart starts from: L1 loss, Adam 2e-4 (beta2 0.99) halved every 200k steps,
batch 16 of 32x32 LR patches (128x128 HR), EMA weights; the best EMA weights by validation
Y-PSNR are kept in <workdir>/best, which the GAN stage loads with ``init_from``.

    python train.py --config configs/esrgan_psnr_x4.py --workdir runs/esrgan_psnr_x4

The published schedule (1M steps) is days of GPU time; shorten it with
``--config.total_steps=N``. A much smaller generator for a CPU:
``--config.model.overrides="{'num_blocks': 2, 'features': 32}"`` (the GAN stage must then use
the same overrides). SRGAN's pre-trained SRResNet: ``--config.model.name=srresnet``.
"""

import ml_collections

from genres_jax.train import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.sr_config("rrdbnet", scale=4)
    config.total_steps = 1_000_000
    config.log_every = 1_000
    config.eval_every = 10_000
    config.checkpoint_every = 10_000
    config.dataset.lr_patch_size = 32
    config.optimizer.learning_rate = 2e-4
    config.optimizer.b2 = 0.99
    config.optimizer.schedule = "step"
    config.optimizer.decay_steps = (200_000, 400_000, 600_000, 800_000)
    config.optimizer.decay_factor = 0.5
    return config
