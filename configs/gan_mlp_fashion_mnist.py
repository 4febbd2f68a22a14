"""The MLP GAN (z 100 -> 128 -> 256 -> 784; 784 -> 256 -> 128 -> 1) on Fashion-MNIST, offline.

Non-saturating generator loss, minimax discriminator loss on logits, Adam(2e-4, b1=0.5), EMA of
the generator for samples.

    python train.py --config configs/gan_mlp_fashion_mnist.py --workdir runs/gan_mlp_fashion_mnist

Writes sample grids to runs/gan_mlp_fashion_mnist/samples/ and metrics to metrics.jsonl.
"""

import ml_collections

from genres_jax.evaluation import sample_quality
from genres_jax.train import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.base_config()
    config.task = "gan"
    config.batch_size = 128
    config.total_steps = 20_000
    config.dataset = defaults.fashion_mnist_dataset()
    config.model = ml_collections.ConfigDict(
        {
            "name": "mlp",
            "latent_dim": 100,
            "g_hidden": (128, 256),
            "d_hidden": (256, 128),
            "features": 64,  # DCGAN only.
            "d_norm": "batch",  # DCGAN only.
        }
    )
    config.gan = defaults.gan_settings()
    config.g_optimizer = defaults.adam(2e-4, b1=0.5)
    config.d_optimizer = defaults.adam(2e-4, b1=0.5)
    # FID, KID and precision/recall (shipped Fashion-MNIST classifier) at every evaluation.
    config.generative_eval = sample_quality.config_block()
    return config
