"""SRVGGNetCompact (Real-ESRGAN's compact net: 64 features, 16 convs, PReLU) trained for PSNR with
L1 on the Lomiri wallpaper photos, offline. The argument picks the scale:

    python train.py --config configs/srvgg.py:x4 --workdir runs/srvgg_x4

0.62M parameters at x4 (the ``realesr-animevideov3`` size; ``--config.model.name=srvgg_32`` is
``realesr-general-x4v3``); wants a GPU for a full run.
"""

import ml_collections

from genres_jax.train import defaults


def get_config(arg: str = "x4") -> ml_collections.ConfigDict:
    scale = defaults.scale_argument(arg, (2, 4))
    return defaults.efficient_sr_config("srvgg", scale)
