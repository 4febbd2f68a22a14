"""FSRCNN(56, 12, 4) (PReLU, 9x9 deconvolution upsampler) on the Lomiri wallpaper photos, offline.

The argument picks the scale:

    python train.py --config configs/fsrcnn.py:x2 --workdir runs/fsrcnn_x2

About 25k parameters (RGB; 12,464 weights on the Y channel, as in the paper); a CPU model.
"""

import ml_collections

from genres_jax.train import defaults


def get_config(arg: str = "x2") -> ml_collections.ConfigDict:
    scale = defaults.scale_argument(arg, (2, 3, 4))
    config = defaults.efficient_sr_config("fsrcnn", scale)
    config.optimizer.learning_rate = 1e-3
    # Learn the detail over bicubic: from scratch on a CPU budget the papers' form stays below
    # bicubic for thousands of steps. --config.model.overrides="{}" trains the papers' form.
    config.model.overrides = {"residual": "bicubic"}
    return config
