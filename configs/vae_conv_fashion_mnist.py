"""Convolutional VAE (stride-2 convs 28 -> 14 -> 7, 32 latent dims) on Fashion-MNIST, offline.

    python train.py --config configs/vae_conv_fashion_mnist.py --workdir runs/vae_conv_fashion_mnist

Test ELBO in nats per image in metrics.jsonl (``kind: eval``, key ``elbo``).
"""

import math

import ml_collections

from genres_jax.train import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.base_config()
    config.task = "vae"
    config.batch_size = 128
    config.total_steps = 10_000
    config.dataset = defaults.fashion_mnist_dataset()
    config.model = ml_collections.ConfigDict(
        {
            "name": "conv",
            "latent_dim": 32,
            "features": (32, 64),
            "hidden": (400,),
            "conv_form": "auto",  # Transposed convs as matmuls on the CPU (models/upconv.py).
        }
    )
    config.vae = ml_collections.ConfigDict(
        {"likelihood": "bernoulli", "gaussian_log_scale": math.log(0.1)}
    )
    config.optimizer = defaults.adam(1e-3)
    # FID/KID/precision/recall of prior samples and the importance-weighted bound at every
    # evaluation; training uses 2,000 test images for the bound, `evaluate` the whole split.
    config.generative_eval = defaults.generative_eval()
    config.generative_eval.iw_max_records = 2_000
    return config
