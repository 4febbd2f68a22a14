"""A small EDSR (32 features, 4 residual blocks) x2 on Fashion-MNIST: 14x14 -> 28x28.

The second stage of the cascade experiment (README, "Generative evaluation and the cascade"):
HR images are the 28x28 garments of ``fashion_mnist_sr_local``, LR images their MATLAB-bicubic
14x14 versions; training batches are whole images (no flips or rotations, the garments are
upright), validation Y-PSNR on 500 test images. Grey images travel as RGB with R = G = B.

    python train.py --config configs/sr_fashion_mnist_x2.py --workdir runs/sr_fashion_mnist_x2

Then upscale a low-resolution generator's samples with it:
``python -m genres_jax.sample --workdir runs/gan_mlp_fashion_mnist_14
--upscaler runs/sr_fashion_mnist_x2 --num 64 --out cascade.png``.
"""

import ml_collections

from genres_jax.data.offline_dirs import FASHION_MNIST_DIR
from genres_jax.train import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.sr_config("edsr_m", scale=2)
    config.model.overrides = {"features": 32, "num_blocks": 4}
    config.batch_size = 32
    config.total_steps = 3_000
    config.log_every = 100
    config.eval_every = 1_000
    config.checkpoint_every = 1_000
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_steps = 100
    config.dataset.name = "fashion_mnist_sr_local"
    config.dataset.source_dir = FASHION_MNIST_DIR
    config.dataset.eval_split = "test"
    config.dataset.lr_patch_size = 14  # The whole LR image.
    config.dataset.augment = False
    config.sr_eval.tile = 0  # 14x14 images: whole, one compilation.
    config.sr_eval.max_images = 500
    config.sr_eval.panel_size = 28
    return config
