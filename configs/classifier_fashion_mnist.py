"""The Fashion-MNIST classifier whose embedding is the feature space of FID/KID here.

Inception weights cannot be downloaded on the project's machines, so the generative metrics
of Fashion-MNIST models use this network instead (`genres_jax.features`); its trained weights
ship in weights/classifier_fashion_mnist/ so every user's FID is computed with the same network.
Three conv/ReLU/max-pool stages (32, 64, 64), a 128-d embedding, dropout 0.3, Adam with cosine
decay, about 6 epochs.

    python train.py --config configs/classifier_fashion_mnist.py \
        --workdir runs/classifier_fashion_mnist

Test accuracy in metrics.jsonl (``kind: eval``, key ``accuracy``).
"""

import ml_collections

from genres_jax.train import defaults


def get_config() -> ml_collections.ConfigDict:
    config = defaults.base_config()
    config.task = "classifier"
    config.batch_size = 128
    config.total_steps = 3_000
    config.log_every = 100
    config.eval_every = 1_000
    config.checkpoint_every = 1_000
    config.dataset = defaults.fashion_mnist_dataset()
    config.model = ml_collections.ConfigDict(
        {
            "name": "conv",
            "num_classes": 10,
            "features": (32, 64, 64),
            "embed_dim": 128,
            "dropout": 0.3,
        }
    )
    config.optimizer = defaults.adam(1e-3)
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_steps = 100
    return config
