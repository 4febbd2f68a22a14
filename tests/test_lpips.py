"""LPIPS distance against a float64 NumPy implementation of the published definition.

The reference below works in PyTorch's layout (NCHW images, (out, in, kh, kw) weights read
straight from an ``lpips.LPIPS``-style state dict), with its own im2col convolution and max
pool, and describes the backbones as torchvision's ``features`` layer lists cut at the lpips
slice boundaries. Weights are random: tiny channel widths for the numerical comparisons, the
published widths for the file round trips.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from genres_jax.evaluation.lpips import (
    MIN_IMAGE_SIZE,
    load_lpips,
    lpips_distance,
    params_from_state_dict,
)

SHIFT = np.array([-0.030, -0.088, -0.188])
SCALE = np.array([0.458, 0.448, 0.450])

# torchvision's AlexNet `features`; ("conv", kernel, stride, padding) is followed by a ReLU.
ALEX = [("conv", 11, 4, 2), ("pool", 3, 2), ("conv", 5, 1, 2), ("pool", 3, 2)]
ALEX += [("conv", 3, 1, 1)] * 3 + [("pool", 3, 2)]
# torchvision's VGG16 (configuration "D").
VGG16 = []
for _count in (2, 2, 3, 3, 3):
    VGG16 += [("conv", 3, 1, 1)] * _count + [("pool", 2, 2)]


def features(layers):
    """The `features` Sequential: conv entries expand to (conv, relu), as torchvision builds it."""
    out = []
    for layer in layers:
        out += [layer, ("relu",)] if layer[0] == "conv" else [layer]
    return out


NETS = {
    # features list, and the end (exclusive) of each lpips slice in it
    "alex": (features(ALEX), (2, 5, 8, 10, 12)),
    "vgg": (features(VGG16), (4, 9, 16, 23, 30)),
}
FULL_WIDTHS = {
    "alex": (64, 192, 384, 256, 256),
    "vgg": (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512),
}
TINY_WIDTHS = {"alex": (8, 16, 12, 12, 8), "vgg": (4, 4, 8, 8, 8, 8, 8, 12, 12, 12, 8, 8, 8)}


def make_state(net, widths, seed=0):
    """A random state dict with the key names of lpips.LPIPS(net=...) (dropout in `lin`)."""
    rng = np.random.default_rng(seed)
    layers, ends = NETS[net]
    state = {
        "scaling_layer.shift": SHIFT.reshape(1, 3, 1, 1).astype(np.float32),
        "scaling_layer.scale": SCALE.reshape(1, 3, 1, 1).astype(np.float32),
    }
    cin, next_width = 3, iter(widths)
    for index, layer in enumerate(layers[: ends[-1]]):
        tap = sum(index >= end for end in ends) + 1
        if layer[0] == "conv":
            cout, k = next(next_width), layer[1]
            std = np.sqrt(2.0 / (cin * k * k))
            state[f"net.slice{tap}.{index}.weight"] = (
                rng.standard_normal((cout, cin, k, k)) * std
            ).astype(np.float32)
            state[f"net.slice{tap}.{index}.bias"] = (rng.standard_normal(cout) * 0.1).astype(
                np.float32
            )
            cin = cout
        if index + 1 in ends:
            lin = rng.uniform(0.0, 1.0, (1, cin, 1, 1)).astype(np.float32)
            state[f"lin{ends.index(index + 1)}.model.1.weight"] = lin
    return state


def conv_nchw(x, weight, bias, stride, pad):
    """PyTorch Conv2d (cross-correlation) by im2col, float64."""
    k = weight.shape[-1]
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    if min(x.shape[2:]) < k:  # too small an input: an empty output, as in PyTorch's size rule
        return np.zeros(x.shape[:1] + weight.shape[:1] + (0, 0))
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]  # (N, C, Ho, Wo, k, k)
    out = np.tensordot(windows, weight.astype(np.float64), axes=([1, 4, 5], [1, 2, 3]))
    return out.transpose(0, 3, 1, 2) + bias.astype(np.float64)[None, :, None, None]


def max_pool_nchw(x, k, stride):
    """PyTorch MaxPool2d(k, stride), no padding, floor mode."""
    if min(x.shape[2:]) < k:
        return np.zeros(x.shape[:2] + (0, 0))
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))
    return windows[:, :, ::stride, ::stride].max(axis=(-2, -1))


def reference_taps(state, net, images):
    """The five lpips slice outputs for NHWC images in [0, 1], NCHW float64."""
    layers, ends = NETS[net]
    h = 2.0 * np.asarray(images, np.float64).transpose(0, 3, 1, 2) - 1.0 - SHIFT[:, None, None]
    h = h / SCALE[:, None, None]
    taps = []
    for index, layer in enumerate(layers[: ends[-1]]):
        tap = sum(index >= end for end in ends) + 1
        if layer[0] == "conv":
            w, b = state[f"net.slice{tap}.{index}.weight"], state[f"net.slice{tap}.{index}.bias"]
            h = conv_nchw(h, w, b, layer[2], layer[3])
        elif layer[0] == "relu":
            h = np.maximum(h, 0.0)
        else:
            h = max_pool_nchw(h, layer[1], layer[2])
        if index + 1 in ends:
            taps.append(h)
    return taps


def reference_lpips(state, net, x, y):
    """sum_l mean_hw sum_c w_lc (f^_l(x) - f^_l(y))^2 with f^ = f / (||f||_c + 1e-10)."""
    total = 0.0
    for tap, (fx, fy) in enumerate(
        zip(reference_taps(state, net, x), reference_taps(state, net, y), strict=True)
    ):
        fx = fx / (np.sqrt((fx**2).sum(axis=1, keepdims=True)) + 1e-10)
        fy = fy / (np.sqrt((fy**2).sum(axis=1, keepdims=True)) + 1e-10)
        w = state[f"lin{tap}.model.1.weight"].astype(np.float64).reshape(-1)
        total = total + np.einsum("nchw,c->nhw", (fx - fy) ** 2, w).mean(axis=(1, 2))
    return total


distance = jax.jit(lpips_distance, static_argnames=("net", "compute_dtype"))
# Odd sizes, each above the net's minimum.
SIZES = {"alex": (67, 71), "vgg": (21, 19)}


def images(net, seed, batch=2, size=None):
    h, w = size or SIZES[net]
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (batch, h, w, 3)).astype(np.float32)


@functools.cache
def tiny(net):
    state = make_state(net, TINY_WIDTHS[net])
    found, params = params_from_state_dict(state, widths=TINY_WIDTHS[net])
    assert found == net
    return state, params


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_matches_float64_reference(net):
    state, params = tiny(net)
    x, y = images(net, 1), images(net, 2)
    got = distance(params, x, y, net=net)
    want = reference_lpips(state, net, x, y)
    assert got.shape == (2,) and got.dtype == jnp.float32
    assert np.all(want > 1e-3)  # a meaningful comparison, not two zeros
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_zero_for_identical_symmetric_non_negative(net):
    _, params = tiny(net)
    x, y = images(net, 3), images(net, 4)
    # XLA may fuse the normalisation of the two sides differently: rounding noise at most.
    assert np.all(np.abs(np.asarray(distance(params, x, x, net=net))) < 1e-12)
    d_xy, d_yx = distance(params, x, y, net=net), distance(params, y, x, net=net)
    np.testing.assert_allclose(np.asarray(d_xy), np.asarray(d_yx), rtol=1e-6)
    assert np.all(np.asarray(d_xy) > 0)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_bfloat16_compute_close_to_float32(net):
    _, params = tiny(net)
    x, y = images(net, 5), images(net, 6)
    f32 = distance(params, x, y, net=net)
    bf16 = distance(params, x, y, net=net, compute_dtype=jnp.bfloat16)
    assert bf16.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(bf16), np.asarray(f32), rtol=5e-2)


def test_lin_key_without_dropout():
    state, params = tiny("vgg")
    renamed = {k.replace(".model.1.", ".model.0."): v for k, v in state.items()}
    _, got = params_from_state_dict(renamed, widths=TINY_WIDTHS["vgg"])
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_min_image_size(net):
    state, _ = tiny(net)
    size = MIN_IMAGE_SIZE[net]
    assert min(t.shape[2] for t in reference_taps(state, net, images(net, 0, 1, (size, size)))) == 1
    smaller = images(net, 0, 1, (size - 1, size - 1))
    assert min(t.shape[2] for t in reference_taps(state, net, smaller)) == 0
    with pytest.raises(ValueError, match=f"at least {size}x{size}"):
        lpips_distance(tiny(net)[1], smaller, smaller, net=net)


# ---------------------------------------------------------------------------------------------
# Weight files with the published widths
# ---------------------------------------------------------------------------------------------


@functools.cache
def full_state(net):
    return make_state(net, FULL_WIDTHS[net], seed=10)


def write(state, path):
    if str(path).endswith(".safetensors"):
        save_file(state, str(path))
    else:
        np.savez(path, **state)
    return path


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_file_round_trip(net, suffix, tmp_path):
    state = full_state(net)
    found, params = load_lpips(write(state, tmp_path / f"lpips_{net}{suffix}"))
    assert found == net
    layers, ends = NETS[net]
    conv_keys = [k for k in state if k.startswith("net.") and k.endswith(".weight")]
    conv_keys.sort(key=lambda k: int(k.split(".")[2]))
    kernels = [conv["kernel"] for stage in params["convs"] for conv in stage]
    assert len(kernels) == len(conv_keys) == len(FULL_WIDTHS[net])
    for key, kernel in zip(conv_keys, kernels, strict=True):
        np.testing.assert_array_equal(np.asarray(kernel), state[key].transpose(2, 3, 1, 0))
    for tap, lin in enumerate(params["lins"]):
        np.testing.assert_array_equal(np.asarray(lin), state[f"lin{tap}.model.1.weight"].ravel())
    size = MIN_IMAGE_SIZE[net] + 2
    x, y = images(net, 11, 1, (size, size + 1)), images(net, 12, 1, (size, size + 1))
    out = jax.eval_shape(functools.partial(lpips_distance, net=net), params, x, y)
    assert out.shape == (1,) and out.dtype == jnp.float32
    if net == "alex":  # a numerical check at full width; the VGG one would cost seconds
        want = reference_lpips(state, net, x, y)
        np.testing.assert_allclose(np.asarray(distance(params, x, y, net=net)), want, rtol=1e-5)


def edited(**changes):
    state = dict(full_state("alex"))
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            del state[key]
        else:
            state[key] = value
    return state


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (edited(net__slice3__6__bias=None), r"lacks 'net\.slice3\.6\.bias'"),
        (
            edited(lin2__model__1__weight=np.ones((1, 100, 1, 1), np.float32)),
            r"'lin2\.model\.1\.weight' has shape \(1, 100, 1, 1\), expected \(1, 384, 1, 1\)",
        ),
        (
            edited(net__slice2__3__weight=np.ones((192, 64, 3, 3), np.float32)),
            r"'net\.slice2\.3\.weight' has shape",
        ),
        (edited(lin0__model__1__weight=-np.ones((1, 64, 1, 1), np.float32)), "negative"),
        ({"features.0.weight": np.ones((64, 3, 3, 3), np.float32)}, "not an LPIPS state dict"),
        (edited(lin5__model__1__weight=np.ones((1, 512, 1, 1), np.float32)), "SqueezeNet"),
    ],
    ids=["missing-key", "lin-shape", "conv-shape", "negative-lin", "not-lpips", "squeeze"],
)
def test_bad_state_dicts(state, message, tmp_path):
    with pytest.raises(ValueError, match=message) as err:
        load_lpips(write(state, tmp_path / "bad.npz"))
    assert "lpips.LPIPS(net=n, version='0.1'" in str(err.value)  # says how to make the file


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("w.safetensors", b"not weights at all", "cannot read"),
        ("w.npz", b"not weights at all", "cannot read"),
        ("w.npz", b"PK\x03\x04truncated", "cannot read"),
        ("w.pth", b"\x80\x02", r"must end in \.safetensors or \.npz"),
        ("absent.safetensors", None, "not found"),
    ],
)
def test_unreadable_files(name, content, message, tmp_path):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as err:
        load_lpips(path)
    assert "lpips.LPIPS" in str(err.value)


def test_bad_arguments():
    _, params = tiny("alex")
    x = images("alex", 0)
    with pytest.raises(ValueError, match="valid nets: alex, vgg"):
        lpips_distance(params, x, x, net="squeeze")
    with pytest.raises(ValueError, match="one shape"):
        lpips_distance(params, x, x[:, :-1], net="alex")
    with pytest.raises(ValueError, match="RGB NHWC"):
        lpips_distance(params, x[..., :1], x[..., :1], net="alex")
    with pytest.raises(ValueError, match="net 'vgg'"):  # AlexNet weights called as VGG
        lpips_distance(params, x, x, net="vgg")
    with pytest.raises(ValueError, match="compute_dtype"):
        lpips_distance(params, x, x, net="alex", compute_dtype=jnp.int32)
