"""DCGAN at 64x64 RGB, the classic layout (ngf = ndf = 64, z 100, batch 128), on CelebA faces.

The PyTorch reference's DCGAN case (batch 128, BCE non-saturating losses, Adam 2e-4 with
beta1 0.5, BatchNorm in both networks) with the same layer shapes; the throughput benchmark
times it on synthetic batches, so it needs no data:

    python benchmarks/throughput.py --config configs/dcgan_64.py

Training needs CelebA prepared once by TFDS (internet on first use):

    python train.py --config configs/dcgan_64.py --workdir runs/dcgan_64
"""

import ml_collections

from genres_jax.train import defaults


def get_config() -> ml_collections.ConfigDict:
    # CelebA has no shipped feature extractor: no FID during training.
    config = defaults.gan_config("dcgan", features=64, batch_size=128, sample_quality=False)
    config.total_steps = 20_000
    config.log_every = 100
    config.eval_every = 2_000
    config.checkpoint_every = 2_000
    config.eval_max_records = 2_000
    config.dataset.name = "celeb_a"
    config.dataset.train_split = "train"
    config.dataset.eval_split = "validation"
    config.dataset.image_size = 64
    config.dataset.center_crop = True
    config.dataset.cache = False  # 162k photos: decode on the fly.
    return config
