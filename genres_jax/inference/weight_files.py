"""Published PyTorch state dicts read without torch: the shared checks, and RRDBNet's layouts.

A state file is a ``.safetensors`` or ``.npz`` of a torch state dict (`read_state_file`); every
conv ``.weight`` (out, in, kh, kw) becomes a Flax kernel (kh, kw, in, out). Each converter
checks every key and shape and raises `WeightImportError` naming the first one that is wrong.
The command is ``python -m genres_jax.import_weights`` (its help lists the key mappings).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from genres_jax import UserError
from genres_jax.models import vgg

CONVERSION_COMMAND = (
    "python -c \"import sys, torch, numpy as np; s = torch.load(sys.argv[1], map_location='cpu'); "
    "s = s.get('params_ema', s.get('params', s)); "
    'np.savez(sys.argv[2], **{k: v.float().numpy() for k, v in s.items()})" IN.pth OUT.npz'
)

# Torch module names per layout: our top-level convs, and "dense" for conv j of dense block k
# of RRDB i (both 1-based in every published layout).
LAYOUTS: dict[str, dict[str, str]] = {
    "basicsr": {
        "conv_first": "conv_first",
        "dense": "body.{i}.rdb{k}.conv{j}",
        "conv_body": "conv_body",
        "conv_up_0": "conv_up1",
        "conv_up_1": "conv_up2",
        "conv_hr": "conv_hr",
        "conv_last": "conv_last",
    },
    "esrgan": {
        "conv_first": "conv_first",
        "dense": "RRDB_trunk.{i}.RDB{k}.conv{j}",
        "conv_body": "trunk_conv",
        "conv_up_0": "upconv1",
        "conv_up_1": "upconv2",
        "conv_hr": "HRconv",
        "conv_last": "conv_last",
    },
    "esrgan_legacy": {
        "conv_first": "model.0",
        "dense": "model.1.sub.{i}.RDB{k}.conv{j}.0",
        "conv_body": "model.1.sub.{num_blocks}",  # The trunk conv follows the last RRDB.
        "conv_up_0": "model.3",
        "conv_up_1": "model.6",
        "conv_hr": "model.8",
        "conv_last": "model.10",
    },
}

# conv_first's input channels -> scale: BasicSR unshuffles x2 inputs by 2, x1 inputs by 4.
SCALE_OF_INPUT_CHANNELS = {3: 4, 12: 2, 48: 1}


class WeightImportError(UserError):
    """A state file or destination that cannot be imported; the message names the problem."""


@dataclasses.dataclass(frozen=True)
class Imported:
    """Converted weights: Flax params, the model and its overrides, scale, where they came from."""

    params: dict[str, Any]
    overrides: dict[str, Any]
    scale: int
    layout: str
    wrapper: str  # "params_ema", "params" or "" (a bare state dict).
    model: str = "rrdbnet"  # The registered SR model name (genres_jax.models.sr_registry).


def unwrap_state_dict(state: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """(the generator's state dict, the wrapper it was under: params_ema, params or "").

    BasicSR checkpoints hold ``{"params_ema": sd, "params": sd}``; flattened ones hold
    ``params_ema.<key>``; multi-GPU ones prefix every key with ``module.``.
    """
    if not isinstance(state, Mapping) or not state or not all(isinstance(k, str) for k in state):
        raise WeightImportError("not a state dict: expected a non-empty mapping of name -> array")
    inner, wrapper = dict(state), ""
    for name in ("params_ema", "params"):
        if isinstance(state.get(name), Mapping):
            inner, wrapper = dict(state[name]), name
            break
        flat = {k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")}
        if flat:
            inner, wrapper = flat, name
            break
    if not inner or not all(isinstance(k, str) for k in inner):
        raise WeightImportError(f"not a state dict: {wrapper or 'it'} holds no name -> array map")
    if all(k.startswith("module.") for k in inner):
        inner = {k[len("module.") :]: v for k, v in inner.items()}
    return inner, wrapper


def _detect_layout(state: Mapping[str, Any]) -> str:
    for layout, names in LAYOUTS.items():
        first_dense = names["dense"].format(i=0, k=1, j=1)
        if f"{names['conv_first']}.weight" in state and f"{first_dense}.weight" in state:
            return layout
    examples = "; ".join(
        f"{layout}: {n['conv_first']}.weight, {n['dense'].format(i=0, k=1, j=1)}.weight"
        for layout, n in LAYOUTS.items()
    )
    found = ", ".join(sorted(state)[:5]) + (", ..." if len(state) > 5 else "")
    raise WeightImportError(
        f"unknown layout: not an RRDBNet state dict of a supported layout ({examples}); "
        f"its keys are {found}"
    )


def _array(state: Mapping[str, Any], key: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in state:
        raise WeightImportError(f"missing key {key!r} (expected shape {shape})")
    try:
        value = np.asarray(state[key])
    except (TypeError, ValueError) as e:
        raise WeightImportError(f"{key!r} is not an array ({e})") from None
    if value.dtype.kind != "f":
        raise WeightImportError(f"{key!r} has dtype {value.dtype}, expected floating point")
    if value.shape != shape:
        raise WeightImportError(f"{key!r} has shape {value.shape}, expected {shape}")
    if not np.all(np.isfinite(value)):
        raise WeightImportError(f"{key!r} holds NaN or infinite values")
    return value.astype(np.float32)


def _conv(
    state: Mapping[str, Any], name: str, cin: int, cout: int, k: int = 3
) -> dict[str, np.ndarray]:
    """A torch Conv2d (out, in, kh, kw) -> a Flax Conv {kernel (kh, kw, in, out), bias}."""
    weight = _array(state, f"{name}.weight", (cout, cin, k, k))
    return {
        "kernel": np.ascontiguousarray(weight.transpose(2, 3, 1, 0)),
        "bias": _array(state, f"{name}.bias", (cout,)),
    }


def convert_rrdbnet(state: Mapping[str, Any], scale: int | None = None) -> Imported:
    """`import_rrdbnet` with the layout and wrapper found; WeightImportError on bad input."""
    state, wrapper = unwrap_state_dict(state)
    layout = _detect_layout(state)
    names = LAYOUTS[layout]
    first = np.shape(state[f"{names['conv_first']}.weight"])
    dense = np.shape(state[f"{names['dense'].format(i=0, k=1, j=1)}.weight"])
    if len(first) != 4 or len(dense) != 4:
        raise WeightImportError(
            f"{names['conv_first']}.weight and {names['dense'].format(i=0, k=1, j=1)}.weight "
            f"must be 4-d conv weights, got shapes {first} and {dense}"
        )
    features, in_channels, growth = int(first[0]), int(first[1]), int(dense[0])
    inferred = SCALE_OF_INPUT_CHANNELS.get(in_channels)
    if inferred is None or (layout != "basicsr" and inferred != 4):
        valid = ", ".join(f"{c} (x{s})" for c, s in SCALE_OF_INPUT_CHANNELS.items())
        raise WeightImportError(
            f"{names['conv_first']}.weight has {in_channels} input channels; the {layout} layout "
            f"takes {valid if layout == 'basicsr' else '3 (x4)'}"
        )
    if scale is not None and scale != inferred:
        raise WeightImportError(
            f"scale mismatch: the weights upscale x{inferred} ({names['conv_first']}.weight has "
            f"{in_channels} input channels), not x{scale}"
        )
    num_blocks = 0
    while f"{names['dense'].format(i=num_blocks, k=1, j=1)}.weight" in state:
        num_blocks += 1

    def conv(part: str, cin: int, cout: int) -> dict[str, np.ndarray]:
        return _conv(state, names[part].format(num_blocks=num_blocks), cin, cout)

    params: dict[str, Any] = {"conv_first": conv("conv_first", in_channels, features)}
    for i in range(num_blocks):
        rrdb = {}
        for k in range(3):
            rdb = {}
            for j in range(5):
                name = names["dense"].format(i=i, k=k + 1, j=j + 1)
                cout = features if j == 4 else growth
                rdb[f"conv_{j}"] = _conv(state, name, features + j * growth, cout)
            rrdb[f"rdb_{k}"] = rdb
        params[f"rrdb_{i}"] = rrdb
    for part in ("conv_body", "conv_up_0", "conv_up_1", "conv_hr"):
        params[part] = conv(part, features, features)
    params["conv_last"] = conv("conv_last", features, 3)

    extra = sorted(set(state) - _expected_keys(names, num_blocks))
    if extra:
        shown = ", ".join(repr(k) for k in extra[:5]) + (", ..." if len(extra) > 5 else "")
        raise WeightImportError(
            f"unexpected keys for a {layout} RRDBNet with {num_blocks} blocks: {shown} "
            "(a gap in the block numbering, or another architecture)"
        )
    overrides = {"features": features, "growth": growth, "num_blocks": num_blocks}
    return Imported(params, overrides, inferred, layout, wrapper)


def _expected_keys(names: Mapping[str, str], num_blocks: int) -> set[str]:
    modules = [names[p].format(num_blocks=num_blocks) for p in names if p != "dense"]
    modules += [
        names["dense"].format(i=i, k=k, j=j)
        for i in range(num_blocks)
        for k in range(1, 4)
        for j in range(1, 6)
    ]
    return {f"{m}.{suffix}" for m in modules for suffix in ("weight", "bias")}


def import_rrdbnet(
    state: Mapping[str, Any], scale: int | None = None
) -> tuple[dict[str, Any], dict[str, int], int]:
    """(Flax params of `genres_jax.models.rrdbnet.RRDBNet`, its overrides, scale).

    ``state``: a torch-layout RRDBNet state dict of numpy arrays (BasicSR, ESRGAN or legacy
    ESRGAN names; see the module docstring), bare or under ``params_ema`` / ``params``. Conv
    weights (out, in, kh, kw) become kernels (kh, kw, in, out). ``scale`` (1, 2 or 4), when
    given, must agree with conv_first's input channels. Raises `WeightImportError` (a
    ValueError) naming the offending key.
    """
    imported = convert_rrdbnet(state, scale)
    return imported.params, imported.overrides, imported.scale


def read_state_file(path: str) -> dict[str, np.ndarray]:
    """The arrays of a ``.safetensors`` / ``.npz`` state file; WeightImportError naming it."""
    if not os.path.exists(path):
        raise WeightImportError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise WeightImportError(f"{path}: not a file")
    ext = os.path.splitext(path)[1].lower()
    if ext in (".pth", ".pt", ".ckpt", ".bin"):
        raise WeightImportError(
            f"{path}: torch files are not read directly; convert it once on a machine with "
            f"torch: {CONVERSION_COMMAND}"
        )
    if ext not in (".safetensors", ".npz"):
        raise WeightImportError(f"{path}: a state file must end in .safetensors or .npz")
    try:
        state = vgg._read_state_dict(path)
    except Exception as e:  # numpy and safetensors raise many types for damaged files.
        detail = " ".join(str(e).split())[:200]
        raise WeightImportError(
            f"{path}: not a state dict ({type(e).__name__}: {detail}); make one with: "
            f"{CONVERSION_COMMAND}"
        ) from None
    if not state:
        raise WeightImportError(f"{path}: not a state dict (it holds no arrays)")
    return state
