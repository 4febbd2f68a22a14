"""Mixed-precision policy: which dtype the models compute in, chosen by ``config.precision``.

``precision`` is ``auto`` (bfloat16 on GPUs and TPUs, float32 on CPUs), ``float32`` or
``bfloat16``. Whatever it is, parameters, optimizer states, EMA weights and BatchNorm statistics
stay float32; only the layers' arithmetic (convolutions, matmuls, activations) runs in the
compute dtype. Models cast their outputs to float32, and losses and metrics are computed in
float32, as in PyTorch's autocast.

Tasks build their models with `compute_dtype(config)`. A config recorded before this key
existed carries ``compute_dtype`` instead; that value is used when ``precision`` is absent, so
old workdirs keep loading as they were trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

PRECISIONS = ("auto", "float32", "bfloat16")

# Backends on which ``auto`` picks bfloat16: their matrix units run it at several times the
# float32 rate. CPUs gain little from it and lose accuracy, so ``auto`` keeps float32 there.
_BF16_BACKENDS = ("gpu", "cuda", "rocm", "tpu")


def check(precision: Any) -> str:
    """``precision`` if it is one of `PRECISIONS`; a ValueError naming the valid ones otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    return precision


def resolve(precision: str, backend: str | None = None) -> jnp.dtype:
    """The compute dtype of ``precision`` on ``backend`` (default: JAX's default backend)."""
    check(precision)
    if precision == "auto":
        backend = (backend or jax.default_backend()).lower()
        precision = "bfloat16" if backend in _BF16_BACKENDS else "float32"
    return jnp.dtype(precision)


def config_precision(config: Mapping[str, Any]) -> str:
    """``config.precision``, or for configs recorded before it existed, their ``compute_dtype``."""
    if "precision" in config:
        return config["precision"]
    return config.get("compute_dtype", "float32")


def compute_dtype(config: Mapping[str, Any], backend: str | None = None) -> jnp.dtype:
    """The dtype models of ``config`` compute in on ``backend`` (default: the current one)."""
    return resolve(config_precision(config), backend)
