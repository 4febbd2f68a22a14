"""VGG19 convolutional feature extractor (Simonyan & Zisserman 2015) for perceptual losses.

Only the convolutional part ("features" in torchvision): 16 3x3 convs with ReLU in five stages
of 2, 2, 4, 4, 4 convs (64, 128, 256, 512, 512 channels), each stage ended by a 2x2 max pool.
Every intermediate is reachable by its usual name: ``convS_K`` (the conv output, before its
ReLU), ``reluS_K`` and ``poolS``. The input is an ImageNet-normalised NHWC image (see
``genres_jax.losses.perceptual``); nothing past the deepest requested layer is computed.

ImageNet weights cannot be downloaded here: convert torchvision's once, on a machine with torch::

    python -c "import torchvision, safetensors.torch as st; \
m = torchvision.models.vgg19(weights='IMAGENET1K_V1'); \
st.save_file({k: v for k, v in m.state_dict().items() if k.startswith('features.')}, \
'vgg19_features.safetensors')"

then ``params = load_vgg19_params("vgg19_features.safetensors")`` (a ``.npz`` holding the same
keys works too). Torch is not needed at run time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any

# Output channels of each stage's convs; torchvision's configuration "E".
VGG19_STAGES: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256, 256),
    (512, 512, 512, 512),
    (512, 512, 512, 512),
)

CONVERSION_COMMAND = (
    'python -c "import torchvision, safetensors.torch as st; '
    "m = torchvision.models.vgg19(weights='IMAGENET1K_V1'); "
    "st.save_file({k: v for k, v in m.state_dict().items() if k.startswith('features.')}, "
    "'vgg19_features.safetensors')\""
)


def _layer_table() -> tuple[tuple[str, ...], dict[str, tuple[int, int, int]]]:
    """Layer names in network order, and conv name -> (torchvision index, in, out channels)."""
    names, convs = [], {}
    index, channels = 0, 3
    for s, widths in enumerate(VGG19_STAGES, start=1):
        for k, width in enumerate(widths, start=1):
            convs[f"conv{s}_{k}"] = (index, channels, width)
            names += [f"conv{s}_{k}", f"relu{s}_{k}"]
            index += 2  # the conv, then its ReLU
            channels = width
        names.append(f"pool{s}")
        index += 1
    return tuple(names), convs


# Every extractable layer name in order, and the conv layers with their torchvision index.
VGG19_LAYERS, VGG19_CONVS = _layer_table()


def check_layer_names(layers: Iterable[str]) -> None:
    """Raises a ValueError naming the valid layer names when one of ``layers`` is unknown."""
    unknown = [name for name in layers if name not in VGG19_LAYERS]
    if unknown:
        raise ValueError(
            f"unknown VGG19 layer(s) {unknown}; valid names: {', '.join(VGG19_LAYERS)}"
        )


class VGG19Features(nn.Module):
    """VGG19 convolutional trunk: returns ``{name: feature map}`` for each requested layer.

    Convs use padding 1 and pools are 2x2 with stride 2 (odd sizes floor), as in torchvision.
    Parameters are named by conv (``conv1_1`` ... ``conv5_4``), each with ``kernel`` (3, 3,
    in, out) and ``bias``.
    """

    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, layers: Sequence[str] = ("conv5_4",)) -> dict[str, jax.Array]:
        wanted = tuple(layers)
        if not wanted:
            raise ValueError("request at least one VGG19 layer")
        check_layer_names(wanted)
        last = max(VGG19_LAYERS.index(name) for name in wanted)
        out = {}
        h = x.astype(self.dtype)
        for name in VGG19_LAYERS[: last + 1]:
            if name.startswith("conv"):
                h = nn.Conv(
                    VGG19_CONVS[name][2],
                    (3, 3),
                    padding=((1, 1), (1, 1)),
                    dtype=self.dtype,
                    param_dtype=self.param_dtype,
                    name=name,
                )(h)
            elif name.startswith("relu"):
                h = nn.relu(h)
            else:
                h = nn.max_pool(h, (2, 2), strides=(2, 2), padding="VALID")
            if name in wanted:
                out[name] = h
        return out


def load_vgg19_params(path: str | os.PathLike) -> dict[str, dict[str, jax.Array]]:
    """VGG19Features parameters from torchvision's ``features.*`` state dict in a file.

    ``path`` is a ``.safetensors`` or ``.npz`` file with keys ``features.{i}.weight`` (out, in,
    3, 3) and ``features.{i}.bias`` (out,) for the 16 convs; kernels are transposed to Flax's
    (3, 3, in, out) layout (both frameworks cross-correlate, so no flip). Returns float32
    ``{"conv1_1": {"kernel", "bias"}, ...}``. A missing file, a missing key or a wrong shape is
    a FileNotFoundError / ValueError naming the file and the conversion to run.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"VGG19 weight file {path!r} not found; create it once on a machine with torch "
            f"and torchvision: {CONVERSION_COMMAND}"
        )
    state = _read_state_dict(path)
    params = {}
    for name, (index, cin, cout) in VGG19_CONVS.items():
        expected = {
            f"features.{index}.weight": (cout, cin, 3, 3),
            f"features.{index}.bias": (cout,),
        }
        for key, shape in expected.items():
            if key not in state:
                raise ValueError(
                    f"{path!r} lacks {key!r} (VGG19 layer {name}); it must hold torchvision's "
                    f"vgg19 'features.*' state dict, as written by: {CONVERSION_COMMAND}"
                )
            if tuple(state[key].shape) != shape:
                raise ValueError(
                    f"{path!r}: {key!r} (VGG19 layer {name}) has shape {state[key].shape}, "
                    f"expected {shape}; is it a VGG19 (not VGG16) 'features' state dict?"
                )
        weight = np.asarray(state[f"features.{index}.weight"], np.float32)
        params[name] = {
            "kernel": jnp.asarray(weight.transpose(2, 3, 1, 0)),
            "bias": jnp.asarray(np.asarray(state[f"features.{index}.bias"], np.float32)),
        }
    return params


def _read_state_dict(path: str) -> dict[str, np.ndarray]:
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        try:
            return load_file(path)
        except Exception as err:  # The library raises several types for corrupt files.
            raise ValueError(f"cannot read {path!r} as safetensors: {err}") from err
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read {path!r} as .npz: {err}") from err
    raise ValueError(f"VGG19 weight file {path!r} must end in .safetensors or .npz")
