"""The MLP GAN of ``gan_mlp_fashion_mnist.py`` at half resolution: Fashion-MNIST at 14x14.

The first stage of the cascade experiment (README, "Generative evaluation and the cascade"):
training images are resized 28 -> 14 (Pillow's antialiased bicubic) and the generator makes
14x14 garments (z 100 -> 128 -> 256 -> 196); ``configs/sr_fashion_mnist_x2.py`` learns to bring
them to 28x28. Widths, losses, optimisers, batch and step count are those of the 28x28 config
it is compared with.

    python train.py --config configs/gan_mlp_fashion_mnist_14.py \\
        --workdir runs/gan_mlp_fashion_mnist_14

FID at 28x28 of the cascade, and of bicubic upscaling instead of the SR model:

    python -m genres_jax.evaluate --workdir runs/gan_mlp_fashion_mnist_14 \\
        --upscaler runs/sr_fashion_mnist_x2
    python -m genres_jax.evaluate --workdir runs/gan_mlp_fashion_mnist_14 \\
        --upscale-method bicubic --scale 2
"""

import ml_collections

from genres_jax.train import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.gan_config("mlp")
    config.total_steps = 20_000
    config.eval_every = 5_000
    config.checkpoint_every = 5_000
    config.dataset.image_size = 14
    return config
