"""VGG19 weight loading, the Flax VGG19 trunk and the perceptual/style losses.

The weights are a synthetic torchvision-layout ``features.*`` state dict of random numbers,
written with safetensors' NumPy API and as ``.npz``; references are float64 NumPy passes that
use the PyTorch (out, in, kh, kw) weights directly.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from genres_jax.losses import perceptual
from genres_jax.models.vgg import VGG19_CONVS, VGG19_LAYERS, VGG19Features, load_vgg19_params

# torchvision's VGG19 ("E") layer list: numbers are 3x3 convs (each followed by a ReLU).
CFG_E = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"] + [512] * 4 + ["M"] + [512] * 4
CFG_E += ["M"]


def torchvision_conv_shapes():
    """{features index: (out, in)} of every conv, laid out as torchvision's make_layers does."""
    shapes, index, cin = {}, 0, 3
    for item in CFG_E:
        if item == "M":
            index += 1
        else:
            shapes[index] = (item, cin)
            index, cin = index + 2, item
    return shapes


@pytest.fixture(scope="module")
def state_dict():
    rng = np.random.default_rng(0)
    state = {}
    for index, (cout, cin) in torchvision_conv_shapes().items():
        std = np.float32(np.sqrt(2.0 / (9 * cin)))
        state[f"features.{index}.weight"] = rng.standard_normal((cout, cin, 3, 3), np.float32) * std
        state[f"features.{index}.bias"] = rng.standard_normal((cout,), np.float32) * 0.1
    return state


@pytest.fixture(scope="module")
def weight_files(state_dict, tmp_path_factory):
    folder = tmp_path_factory.mktemp("vgg")
    st_path, npz_path = folder / "vgg19.safetensors", folder / "vgg19.npz"
    save_file(state_dict, str(st_path))
    np.savez(npz_path, **state_dict)
    return st_path, npz_path


@pytest.fixture(scope="module")
def params(weight_files):
    return load_vgg19_params(weight_files[0])


def np_conv_torch(x, weight, bias):
    """3x3 conv, padding 1, from PyTorch's definition: out[o] = b[o] + sum W[o, c, i, j] x[c]."""
    n, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((n, h, w, weight.shape[0])) + bias
    for i in range(3):
        for j in range(3):
            out += xp[:, i : i + h, j : j + w, :] @ weight[:, :, i, j].T.astype(np.float64)
    return out


def np_maxpool2(x):
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def vgg_features(params, x, layers):
    return VGG19Features().apply({"params": params}, jnp.asarray(x, jnp.float32), layers)


def test_layer_names_follow_torchvision_indices():
    assert {index: (cin, cout) for index, cin, cout in VGG19_CONVS.values()} == {
        index: (cin, cout) for index, (cout, cin) in torchvision_conv_shapes().items()
    }
    assert [n for n in VGG19_LAYERS if n.startswith("conv")] == list(VGG19_CONVS)
    assert VGG19_LAYERS[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
    assert VGG19_LAYERS[-3:] == ("conv5_4", "relu5_4", "pool5") and len(VGG19_LAYERS) == 37
    assert VGG19_CONVS["conv5_4"][0] == 34


def test_both_formats_load_to_the_flax_layout(state_dict, weight_files, params):
    from_npz = load_vgg19_params(weight_files[1])
    for name, (index, _, _) in VGG19_CONVS.items():
        weight = state_dict[f"features.{index}.weight"]
        kernel = np.asarray(params[name]["kernel"])
        assert kernel.shape == (3, 3, weight.shape[1], weight.shape[0])
        # kernel[i, j, c, o] = weight[o, c, i, j], spot-checked at one arbitrary entry.
        o, c, i, j = weight.shape[0] - 1, weight.shape[1] // 2, 2, 0
        assert kernel[i, j, c, o] == weight[o, c, i, j]
        np.testing.assert_array_equal(kernel, np.asarray(from_npz[name]["kernel"]))
        np.testing.assert_array_equal(params[name]["bias"], state_dict[f"features.{index}.bias"])


def test_conv1_1_matches_direct_convolution(state_dict, params):
    x = np.random.default_rng(1).standard_normal((2, 5, 7, 3))
    got = vgg_features(params, x, ["conv1_1", "relu1_1"])
    expected = np_conv_torch(x, state_dict["features.0.weight"], state_dict["features.0.bias"])
    np.testing.assert_allclose(np.asarray(got["conv1_1"]), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["relu1_1"], np.maximum(expected, 0), rtol=1e-5, atol=1e-5)


def test_deep_layers_match_numpy_forward(state_dict, params):
    # Odd sizes: the 2x2 pools floor, as torchvision's MaxPool2d(2, 2) does.
    x = np.random.default_rng(2).standard_normal((1, 9, 11, 3))
    got = vgg_features(params, x, ["conv2_1", "pool1", "relu2_2", "conv3_1"])

    def conv(h, index):
        return np_conv_torch(
            h, state_dict[f"features.{index}.weight"], state_dict[f"features.{index}.bias"]
        )

    h = np.maximum(conv(x, 0), 0)
    h = np_maxpool2(np.maximum(conv(h, 2), 0))
    np.testing.assert_allclose(got["pool1"], h, rtol=1e-4, atol=1e-4)
    h = conv(h, 5)
    np.testing.assert_allclose(got["conv2_1"], h, rtol=1e-4, atol=1e-4)
    h = np.maximum(conv(np.maximum(h, 0), 7), 0)
    np.testing.assert_allclose(got["relu2_2"], h, rtol=1e-4, atol=1e-4)
    h = conv(np_maxpool2(h), 10)
    assert got["conv3_1"].shape == (1, 2, 2, 256)
    np.testing.assert_allclose(got["conv3_1"], h, rtol=1e-4, atol=1e-4)


def test_missing_file_says_how_to_make_it(tmp_path):
    path = tmp_path / "absent.safetensors"
    with pytest.raises(FileNotFoundError, match="absent.safetensors.*torchvision"):
        load_vgg19_params(path)


def test_missing_or_misshapen_key_names_file_and_key(state_dict, tmp_path):
    partial = {k: v for k, v in state_dict.items() if k != "features.34.weight"}
    path = tmp_path / "partial.npz"
    np.savez(path, **partial)
    with pytest.raises(ValueError, match=r"partial\.npz.*features\.34\.weight.*conv5_4"):
        load_vgg19_params(path)
    wrong = dict(state_dict)
    wrong["features.5.bias"] = np.zeros(64, np.float32)
    path = tmp_path / "wrong.safetensors"
    save_file(wrong, str(path))
    with pytest.raises(ValueError, match=r"features\.5\.bias.*\(128,\)"):
        load_vgg19_params(path)
    other = tmp_path / "vgg19.pth"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\.safetensors or \.npz"):
        load_vgg19_params(other)


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
NP_DISTANCES = {
    "l1": lambda a, b: np.abs(a - b).mean(),
    "l2": lambda a, b: ((a - b) ** 2).mean(),
}


def np_gram(f):
    n, h, w, c = f.shape
    f = f.reshape(n, h * w, c)
    return np.einsum("bnc,bnd->bcd", f, f) / (c * h * w)


@pytest.mark.parametrize("distance", ["l1", "l2"])
def test_loss_on_shallow_layers_matches_numpy(state_dict, params, distance):
    rng = np.random.default_rng(3)
    pred, target = rng.uniform(size=(2, 6, 6, 3)), rng.uniform(size=(2, 6, 6, 3))
    weights = {"conv1_1": 0.7, "relu1_2": 0.3}

    def feats(x):
        def conv(h, index):
            w, b = state_dict[f"features.{index}.weight"], state_dict[f"features.{index}.bias"]
            return np_conv_torch(h, w, b)

        c11 = conv((x - MEAN) / STD, 0)
        return {"conv1_1": c11, "relu1_2": np.maximum(conv(np.maximum(c11, 0), 2), 0)}

    dist = NP_DISTANCES[distance]
    fp, ft = feats(pred), feats(target)
    content = sum(w * dist(fp[k], ft[k]) for k, w in weights.items())
    style = sum(w * dist(np_gram(fp[k]), np_gram(ft[k])) for k, w in weights.items())

    args = (params, jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32))
    terms = perceptual.perceptual_terms(*args, layer_weights=weights, distance=distance)
    np.testing.assert_allclose(terms["perceptual"], content, rtol=1e-4)
    np.testing.assert_allclose(terms["style"], style, rtol=1e-4)
    total = perceptual.perceptual_loss(
        *args, layer_weights=weights, distance=distance, style_weight=0.5
    )
    np.testing.assert_allclose(total, content + 0.5 * style, rtol=1e-4)


def test_default_loss_is_zero_for_identical_images_and_positive_otherwise(params):
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.uniform(size=(2, 16, 16, 3)), jnp.float32)
    y = jnp.clip(x + 0.05 * jnp.asarray(rng.standard_normal(x.shape), jnp.float32), 0, 1)
    loss = jax.jit(lambda p, a, b: perceptual.perceptual_loss(p, a, b, style_weight=1.0))
    assert float(loss(params, x, x)) == 0.0
    assert float(loss(params, x, y)) > 0.0


def test_gradient_reaches_pred_but_not_vgg_weights(params):
    rng = np.random.default_rng(5)
    x, y = (jnp.asarray(rng.uniform(size=(1, 4, 4, 3)), jnp.float32) for _ in range(2))
    layers = {"conv2_1": 1.0}
    g_params, g_pred = jax.grad(
        lambda p, a: perceptual.perceptual_loss(p, a, y, layer_weights=layers), argnums=(0, 1)
    )(params, x)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(g_params))
    assert float(jnp.max(jnp.abs(g_pred))) > 0.0


def test_bad_settings_raise(params):
    x = jnp.zeros((1, 4, 4, 3))
    with pytest.raises(ValueError, match="conv5_4"):
        perceptual.perceptual_loss(params, x, x, layer_weights={"conv5_5": 1.0})
    with pytest.raises(ValueError, match="l1, l2"):
        perceptual.perceptual_loss(params, x, x, distance="cosine")
    with pytest.raises(ValueError, match="at least one"):
        perceptual.perceptual_loss(params, x, x, layer_weights={})
    with pytest.raises(ValueError, match="one shape"):
        perceptual.perceptual_loss(params, x, jnp.zeros((1, 4, 5, 3)))
