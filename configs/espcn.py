"""ESPCN (5-3-3 convolutions, tanh, sub-pixel output) on the Lomiri wallpaper photos, offline.

The argument picks the scale (x3 is the paper's main setting):

    python train.py --config configs/espcn.py:x3 --workdir runs/espcn_x3

27-37k parameters (RGB, x2-x4); trains on a 2-core CPU in well under an hour.
"""

import ml_collections

from genres_jax.train import defaults


def get_config(arg: str = "x3") -> ml_collections.ConfigDict:
    scale = defaults.scale_argument(arg, (2, 3, 4))
    config = defaults.efficient_sr_config("espcn", scale)
    config.optimizer.learning_rate = 1e-3
    # Learn the detail over bicubic: from scratch on a CPU budget the papers' form stays below
    # bicubic for thousands of steps. --config.model.overrides="{}" trains the papers' form.
    config.model.overrides = {"residual": "bicubic"}
    return config
