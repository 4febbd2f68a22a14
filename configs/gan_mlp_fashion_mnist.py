"""The MLP GAN (z 100 -> 128 -> 256 -> 784; 784 -> 256 -> 128 -> 1) on Fashion-MNIST, offline.

Non-saturating generator loss, minimax discriminator loss on logits, Adam(2e-4, b1=0.5), EMA of
the generator for samples.

    python train.py --config configs/gan_mlp_fashion_mnist.py --workdir runs/gan_mlp_fashion_mnist

Writes sample grids to runs/gan_mlp_fashion_mnist/samples/ and metrics to metrics.jsonl.
"""

import ml_collections

from genres_jax.train import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.gan_config("mlp")
    config.total_steps = 20_000
    return config
