"""Registry of the CNN super-resolution models, looked up by the name in a config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn

from genres_jax.models.edsr import EDSRBaseline, EDSRLarge
from genres_jax.models.efficient import ESPCN, FSRCNN, SRVGGNetCompact16, SRVGGNetCompact32
from genres_jax.models.rdn import RDN
from genres_jax.models.rrdbnet import RRDBNet
from genres_jax.models.span import SPAN28, SPAN48
from genres_jax.models.srcnn import SRCNN, VDSR
from genres_jax.models.srresnet import SRResNet

SR_MODELS: dict[str, Callable[..., nn.Module]] = {
    "srcnn": SRCNN,
    "vdsr": VDSR,
    "edsr_baseline": EDSRBaseline,
    "edsr_m": EDSRBaseline,
    "edsr_l": EDSRLarge,
    "rdn": RDN,
    "srresnet": SRResNet,
    "rrdbnet": RRDBNet,
    "esrgan": RRDBNet,
    # Efficient models (README, "Efficient super-resolution").
    "espcn": ESPCN,
    "fsrcnn": FSRCNN,
    "srvgg": SRVGGNetCompact16,  # realesr-animevideov3
    "srvgg_32": SRVGGNetCompact32,  # realesr-general-x4v3
    "span": SPAN48,
    "span_28": SPAN28,
}


def get_sr_model(name: str, scale: int, **overrides: Any) -> nn.Module:
    """Builds the SR model registered as ``name`` for ``scale``; ``overrides`` set its fields.

    Raises ValueError listing the valid names for an unknown ``name``, and the model's own
    ValueError for a scale it cannot build.
    """
    try:
        constructor = SR_MODELS[name]
    except KeyError:
        valid = ", ".join(sorted(SR_MODELS))
        raise ValueError(f"unknown SR model {name!r}; valid names: {valid}") from None
    return constructor(scale=scale, **overrides)
