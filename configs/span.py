"""SPAN (NTIRE 2024 efficient-SR winner, 28 channels as in its challenge entry) on the Lomiri
wallpaper photos, offline. Trained in its multi-branch form; evaluate, upscale and export run the
folded single-convolution form. The argument picks the scale:

    python train.py --config configs/span.py:x2 --workdir runs/span_x2

0.14-0.15M inference parameters; ``--config.model.name=span`` is the paper's 48-channel model.
Inputs are centred but not multiplied by 255 (``img_range`` 1; the reference's 255 is kept for
imported weights): the same network up to a rescaled first convolution, and on a CPU budget it
converges far faster, since its [0, 1] outputs no longer start hundreds of units off. It also
learns the detail over bicubic (``residual``), as the espcn and fsrcnn configs do.
"""

import ml_collections

from genres_jax.train import defaults


def get_config(arg: str = "x2") -> ml_collections.ConfigDict:
    scale = defaults.scale_argument(arg, (2, 3, 4))
    config = defaults.efficient_sr_config("span_28", scale)
    config.model.overrides = {"img_range": 1.0, "residual": "bicubic"}
    return config
