"""LPIPS perceptual distance (Zhang et al. 2018), version 0.1 of its linear weights.

For RGB images x, y in [0, 1] (NHWC, our convention):

    z        = (2 x - 1 - shift) / scale      per channel, shift = (-.030, -.088, -.188),
                                               scale = (.458, .448, .450)
    f_l      = tap l of the backbone applied to z, l = 1..5
    f^_l     = f_l / (sqrt(sum_c f_l^2) + 1e-10)      unit norm over channels at every pixel
    d(x, y)  = sum_l mean_{h, w} sum_c w_{l, c} (f^_l(x) - f^_l(y))^2

with w_l >= 0 the learned ``lin`` weights (a 1x1 conv without bias). One distance per image.
The backbones are torchvision's ``features`` trunks with PyTorch's padding, strides and floor
mode max pools: ``"alex"`` (AlexNet; taps after relu1..relu5, conv1 11x11 stride 4 padding 2,
3x3 stride 2 pools) and ``"vgg"`` (VGG16; taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3,
3x3 padding 1 convs, 2x2 stride 2 pools). This is the reference ``lpips`` package's
``LPIPS(net=..., version='0.1')`` called on inputs in [-1, 1] (or on [0, 1] with
``normalize=True``).

Which variant to report: the LPIPS paper's default is AlexNet; super-resolution tables made in
the BasicSR style report the VGG variant (BasicSR feeds it images mapped to [-1, 1], which is
what the ``2 x - 1`` above does). Say which one a number comes from.

Weights cannot be downloaded here: write the LPIPS module's state dict once, on a machine with
torch and the ``lpips`` package::

    python -c "import lpips, safetensors.torch as st; \
[st.save_file({k: v.contiguous() for k, v in lpips.LPIPS(net=n, version='0.1', \
verbose=False).state_dict().items()}, f'lpips_{n}.safetensors') for n in ('alex', 'vgg')]"

then ``net, params = load_lpips("lpips_vgg.safetensors")`` and
``lpips_distance(params, x, y, net=net)``. A ``.npz`` holding the same keys works too; torch
is not needed at run time. The parameters are a plain pytree (``{"convs": [[{"kernel",
"bias"}, ...] per tap], "lins": [w_l per tap]}``, kernels in (kh, kw, in, out) layout), so the
channel widths come from the weights.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from genres_jax.models.vgg import _read_state_dict

NETS: tuple[str, ...] = ("alex", "vgg")

SHIFT: tuple[float, float, float] = (-0.030, -0.088, -0.188)
SCALE: tuple[float, float, float] = (0.458, 0.448, 0.450)
EPS = 1e-10

# Per tap: the max pool that opens it, (window, stride) or None, then its convs as (index in
# torchvision's `features`, kernel, stride, padding); every conv is followed by a ReLU.
_Stage = tuple[tuple[int, int] | None, tuple[tuple[int, int, int, int], ...]]
_STAGES: dict[str, tuple[_Stage, ...]] = {
    "alex": (
        (None, ((0, 11, 4, 2),)),
        ((3, 2), ((3, 5, 1, 2),)),
        ((3, 2), ((6, 3, 1, 1),)),
        (None, ((8, 3, 1, 1),)),
        (None, ((10, 3, 1, 1),)),
    ),
    "vgg": (
        (None, ((0, 3, 1, 1), (2, 3, 1, 1))),
        ((2, 2), ((5, 3, 1, 1), (7, 3, 1, 1))),
        ((2, 2), ((10, 3, 1, 1), (12, 3, 1, 1), (14, 3, 1, 1))),
        ((2, 2), ((17, 3, 1, 1), (19, 3, 1, 1), (21, 3, 1, 1))),
        ((2, 2), ((24, 3, 1, 1), (26, 3, 1, 1), (28, 3, 1, 1))),
    ),
}

# Output channels of every conv in network order, as in the published weights.
LPIPS_WIDTHS: dict[str, tuple[int, ...]] = {
    "alex": (64, 192, 384, 256, 256),
    "vgg": (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512),
}

CONVERSION_COMMAND = (
    'python -c "import lpips, safetensors.torch as st; '
    "[st.save_file({k: v.contiguous() for k, v in lpips.LPIPS(net=n, version='0.1', "
    "verbose=False).state_dict().items()}, f'lpips_{n}.safetensors') for n in ('alex', 'vgg')]\""
)

_HIGHEST = jax.lax.Precision.HIGHEST


def _check_net(net: str) -> None:
    if net not in NETS:
        raise ValueError(f"unknown LPIPS net {net!r}; valid nets: {', '.join(NETS)}")


def _tap_sizes(net: str, size: int) -> list[int]:
    """Spatial size of each tap for an input side of ``size`` (PyTorch's floor arithmetic)."""
    sizes = []
    for pool, convs in _STAGES[net]:
        if pool is not None:
            size = (size - pool[0]) // pool[1] + 1 if size >= pool[0] else 0
        for _, kernel, stride, pad in convs:
            size = (size + 2 * pad - kernel) // stride + 1 if size + 2 * pad >= kernel else 0
        sizes.append(size)
    return sizes


# Smallest image side for which every tap is non-empty.
MIN_IMAGE_SIZE: dict[str, int] = {
    net: next(s for s in range(1, 256) if min(_tap_sizes(net, s)) >= 1) for net in NETS
}


# ---------------------------------------------------------------------------------------------
# Distance
# ---------------------------------------------------------------------------------------------


def _check_params(params: Mapping[str, Any], net: str) -> None:
    """A ValueError when ``params`` do not have the layer structure of ``net``."""
    stages = _STAGES[net]
    hint = "load them with load_lpips, which also returns the matching net name"
    if not isinstance(params, Mapping) or set(params) != {"convs", "lins"}:
        raise ValueError(f"LPIPS params must be a dict with keys 'convs' and 'lins'; {hint}")
    convs, lins = params["convs"], params["lins"]
    if len(convs) != len(stages) or len(lins) != len(stages):
        raise ValueError(f"LPIPS params do not have the {len(stages)} taps of net {net!r}; {hint}")
    for tap, ((_, specs), stage, lin) in enumerate(zip(stages, convs, lins, strict=True), 1):
        if len(stage) != len(specs):
            raise ValueError(
                f"tap {tap} of net {net!r} has {len(specs)} convs, params have {len(stage)}; {hint}"
            )
        for (_, kernel, _, _), conv in zip(specs, stage, strict=True):
            shape = np.shape(conv["kernel"])
            if len(shape) != 4 or shape[:2] != (kernel, kernel):
                raise ValueError(
                    f"tap {tap} of net {net!r} needs {kernel}x{kernel} kernels, params have "
                    f"shape {shape}; {hint}"
                )
        if np.shape(lin) != (np.shape(stage[-1]["kernel"])[-1],):
            raise ValueError(
                f"lin weight of tap {tap} has shape {np.shape(lin)}, expected "
                f"({np.shape(stage[-1]['kernel'])[-1]},); {hint}"
            )


def _check_images(x: jax.Array, y: jax.Array, net: str) -> None:
    if x.shape != y.shape or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(
            f"LPIPS needs two RGB NHWC image batches of one shape, got {x.shape} and {y.shape}"
        )
    if min(x.shape[1:3]) < MIN_IMAGE_SIZE[net]:
        raise ValueError(
            f"LPIPS net {net!r} needs images of at least {MIN_IMAGE_SIZE[net]}x"
            f"{MIN_IMAGE_SIZE[net]} pixels for its five taps, got {x.shape[1]}x{x.shape[2]}"
        )


def _conv_relu(
    h: jax.Array,
    conv: Mapping[str, jax.Array],
    stride: int,
    pad: int,
    precision: jax.lax.Precision | None,
) -> jax.Array:
    out = jax.lax.conv_general_dilated(
        h,
        jnp.asarray(conv["kernel"], h.dtype),
        (stride, stride),
        ((pad, pad), (pad, pad)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=precision,
    )
    return jax.nn.relu(out + jnp.asarray(conv["bias"], h.dtype))


def _max_pool(h: jax.Array, window: int, stride: int) -> jax.Array:
    # VALID padding floors the output size, like PyTorch's MaxPool2d(ceil_mode=False). A Python
    # scalar -inf lets JAX recognise the max monoid, which it needs to differentiate the pool.
    return jax.lax.reduce_window(
        h, -jnp.inf, jax.lax.max, (1, window, window, 1), (1, stride, stride, 1), "VALID"
    )


def _taps(
    params: Mapping[str, Any], z: jax.Array, net: str, precision: jax.lax.Precision | None
) -> list[jax.Array]:
    """The backbone's five tap outputs for the scaled input ``z`` (NHWC)."""
    taps, h = [], z
    for (pool, specs), stage in zip(_STAGES[net], params["convs"], strict=True):
        if pool is not None:
            h = _max_pool(h, *pool)
        for (_, _, stride, pad), conv in zip(specs, stage, strict=True):
            h = _conv_relu(h, conv, stride, pad, precision)
        taps.append(h)
    return taps


def _unit_normalize(f: jax.Array) -> jax.Array:
    """f / (||f||_2 over channels + EPS)."""
    return f / (jnp.sqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True)) + EPS)


def lpips_distance(
    params: Mapping[str, Any],
    x: jax.Array,
    y: jax.Array,
    *,
    net: str,
    compute_dtype: jnp.dtype = jnp.float32,
) -> jax.Array:
    """LPIPS d(x, y) per image (see the module docstring): float32 of shape (N,).

    ``x`` and ``y`` are (N, H, W, 3) images in [0, 1]; ``net`` ("alex" or "vgg") must match
    ``params``; under ``jax.jit`` make ``net`` and ``compute_dtype`` static
    (``static_argnames``) or bind them with ``functools.partial``. The backbone runs in
    ``compute_dtype`` (float32 or bfloat16; float32 convs use full precision on accelerators);
    normalisation, the ``lin`` weights and the means stay float32. No gradient reaches
    ``params``.
    """
    _check_net(net)
    x, y = jnp.asarray(x), jnp.asarray(y)
    _check_images(x, y, net)
    _check_params(params, net)
    if not jnp.issubdtype(compute_dtype, jnp.floating):
        raise ValueError(f"compute_dtype must be float32 or bfloat16, got {compute_dtype!r}")
    params = jax.lax.stop_gradient(params)
    precision = _HIGHEST if jnp.dtype(compute_dtype) == jnp.float32 else None
    shift, scale = jnp.asarray(SHIFT), jnp.asarray(SCALE)
    # One backbone pass per batch rather than one over both stacked: XLA's convolutions may
    # round a batch's elements differently, and identical images should give identical
    # features (d = 0 exactly op by op; under jit, fusion can leave ~1e-15).
    feats = [
        _taps(
            params,
            ((2.0 * v.astype(jnp.float32) - 1.0 - shift) / scale).astype(compute_dtype),
            net,
            precision,
        )
        for v in (x, y)
    ]
    total = jnp.zeros((x.shape[0],), jnp.float32)
    for fx, fy, lin in zip(*feats, params["lins"], strict=True):
        diff = jnp.square(
            _unit_normalize(fx.astype(jnp.float32)) - _unit_normalize(fy.astype(jnp.float32))
        )
        weighted = jnp.einsum(
            "nhwc,c->nhw", diff, jnp.asarray(lin, jnp.float32), precision=_HIGHEST
        )
        total = total + jnp.mean(weighted, axis=(1, 2))
    return total


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------


def _lin_key(state: Mapping[str, np.ndarray], tap: int) -> str:
    # `lin{l}.model` is Sequential(Dropout, Conv) by default, Sequential(Conv) without dropout.
    with_dropout, without = f"lin{tap - 1}.model.1.weight", f"lin{tap - 1}.model.0.weight"
    return without if without in state and with_dropout not in state else with_dropout


def _detect_net(state: Mapping[str, np.ndarray], source: str) -> str:
    if any(key.startswith(("lin5.", "net.slice6.")) for key in state):
        raise ValueError(
            f"{source} is a SqueezeNet LPIPS state dict; valid nets: {', '.join(NETS)}. "
            f"Make one with: {CONVERSION_COMMAND}"
        )
    first = "net.slice1.0.weight"
    if first not in state:
        raise ValueError(
            f"{source} lacks {first!r}, so it is not an LPIPS state dict; write one (nets "
            f"{', '.join(NETS)}) with: {CONVERSION_COMMAND}"
        )
    kernel = tuple(np.shape(state[first])[-2:])
    for net in NETS:
        if kernel == (_STAGES[net][0][1][0][1],) * 2:
            return net
    raise ValueError(
        f"{source}: {first!r} has shape {np.shape(state[first])}, which fits neither LPIPS net "
        f"(alex: 11x11 kernels, vgg: 3x3); write the file with: {CONVERSION_COMMAND}"
    )


def params_from_state_dict(
    state: Mapping[str, np.ndarray],
    *,
    net: str | None = None,
    widths: Sequence[int] | None = None,
    source: str = "the state dict",
) -> tuple[str, dict[str, Any]]:
    """(net, params) from an ``lpips.LPIPS`` state dict of NumPy arrays.

    Keys ``net.slice{l}.{i}.weight`` (out, in, k, k) / ``.bias`` (out,) with ``i`` the index in
    torchvision's ``features``, and ``lin{l-1}.model.1.weight`` (or ``.model.0.``, without
    dropout) of shape (1, C_l, 1, 1); other keys (the scaling layer's buffers) are ignored.
    ``net`` is detected from the first kernel when None; ``widths`` (output channels of every
    conv) default to the published ``LPIPS_WIDTHS``. Kernels become (k, k, in, out) float32
    (both frameworks cross-correlate, so no flip). A missing key, a wrong shape or a negative
    ``lin`` weight is a ValueError naming the key.
    """
    if net is None:
        net = _detect_net(state, source)
    _check_net(net)
    widths = tuple(LPIPS_WIDTHS[net] if widths is None else widths)
    n_convs = sum(len(convs) for _, convs in _STAGES[net])
    if len(widths) != n_convs:
        raise ValueError(f"net {net!r} has {n_convs} convs, got {len(widths)} widths")
    remedy = f"write the file with: {CONVERSION_COMMAND}"

    def fetch(key: str, shape: tuple[int, ...]) -> np.ndarray:
        if key not in state:
            raise ValueError(f"{source} lacks {key!r} (LPIPS net {net!r}); {remedy}")
        value = np.asarray(state[key])
        if value.shape != shape:
            raise ValueError(
                f"{source}: {key!r} has shape {value.shape}, expected {shape} for LPIPS net "
                f"{net!r}; {remedy}"
            )
        return value.astype(np.float32)

    convs, lins, cin, i = [], [], 3, 0
    for tap, (_, specs) in enumerate(_STAGES[net], start=1):
        stage = []
        for index, kernel, _, _ in specs:
            weight = fetch(f"net.slice{tap}.{index}.weight", (widths[i], cin, kernel, kernel))
            bias = fetch(f"net.slice{tap}.{index}.bias", (widths[i],))
            stage.append(
                {"kernel": jnp.asarray(weight.transpose(2, 3, 1, 0)), "bias": jnp.asarray(bias)}
            )
            cin, i = widths[i], i + 1
        lin_key = _lin_key(state, tap)
        lin = fetch(lin_key, (1, cin, 1, 1)).reshape(cin)
        if np.any(lin < 0):
            raise ValueError(
                f"{source}: {lin_key!r} has negative entries; trained LPIPS lin weights are "
                f"non-negative, so this is not a trained LPIPS head; {remedy}"
            )
        convs.append(stage)
        lins.append(jnp.asarray(lin))
    return net, {"convs": convs, "lins": lins}


def load_lpips(path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """(net name, params) from a ``.safetensors`` or ``.npz`` LPIPS state dict file.

    The net ("alex" or "vgg") is detected from the keys and shapes, which must be the
    published widths (see ``params_from_state_dict``). A missing or unreadable file, a file
    that is not an LPIPS state dict, or a missing / ill-shaped key is a ValueError naming the
    file, the key and ``CONVERSION_COMMAND``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(
            f"LPIPS weight file {path!r} not found; write it once on a machine with torch and "
            f"the lpips package: {CONVERSION_COMMAND}"
        )
    if not path.endswith((".safetensors", ".npz")):
        raise ValueError(
            f"LPIPS weight file {path!r} must end in .safetensors or .npz; write it with: "
            f"{CONVERSION_COMMAND}"
        )
    try:
        state = _read_state_dict(path)
    except ValueError as err:
        raise ValueError(
            f"{err}; an LPIPS weight file is written by: {CONVERSION_COMMAND}"
        ) from err
    except Exception as err:  # Corrupt archives raise several types (e.g. BadZipFile).
        raise ValueError(
            f"cannot read {path!r} as a weight file: {err}; write it with: {CONVERSION_COMMAND}"
        ) from err
    return params_from_state_dict(state, source=repr(path))
