"""DCGAN (transposed-conv generator, conv discriminator, batch norm) on Fashion-MNIST 28x28.

The README's main job: a few thousand steps give recognisable garments on a 2-core CPU.

    python train.py --config configs/dcgan_fashion_mnist.py --workdir runs/dcgan_fashion_mnist

Variants: ``--config.gan.loss=hinge``; WGAN-GP with
``--config.gan.loss=wgan --config.gan.gp_weight=10 --config.gan.n_critic=5
--config.model.d_norm=layer``; 32x32 input with ``--config.dataset.image_size=32``.
"""

import ml_collections

from genres_jax.train import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.gan_config("dcgan", features=32, batch_size=64)
    config.total_steps = 3_000
    config.log_every = 50
    config.eval_every = 500
    config.checkpoint_every = 500
    config.eval_max_records = 2_000
    return config
