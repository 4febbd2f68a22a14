"""Feature extractors: image preparation, the FID InceptionV3 and its weight conversion."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from genres_jax import features as features_cli
from genres_jax.evaluation import features
from genres_jax.models import inception
from genres_jax.ops.imresize import imresize_numpy


def test_grey_and_rgb_conversions_follow_bt601_luma():
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0, 1, (2, 5, 5, 3)).astype(np.float32)
    grey = np.asarray(features.prepare_images(rgb, (5, 5, 1), "bicubic"))
    ref = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    np.testing.assert_allclose(grey[..., 0], ref, atol=1e-6)
    back = np.asarray(features.prepare_images(grey, (5, 5, 3), "bilinear"))
    np.testing.assert_array_equal(back, np.repeat(grey, 3, axis=-1))
    with pytest.raises(ValueError, match="2-channel"):
        features.prepare_images(rgb[..., :2], (5, 5, 3), "bilinear")


def test_resizing_matches_matlab_bicubic_and_pil_bilinear():
    rng = np.random.default_rng(1)
    small = rng.uniform(0.2, 0.8, (1, 14, 14, 1)).astype(np.float32)
    up = np.asarray(features.prepare_images(small, (28, 28, 1), "bicubic"))
    ref = np.clip(imresize_numpy(small.astype(np.float64), output_shape=(28, 28)), 0, 1)
    np.testing.assert_allclose(up, ref, atol=1e-5)
    # Upsampling bilinear with half-pixel centres: Pillow's float images are the reference.
    up = np.asarray(features.prepare_images(small, (31, 31, 1), "bilinear"))
    pil = Image.fromarray(small[0, ..., 0], mode="F").resize((31, 31), Image.Resampling.BILINEAR)
    np.testing.assert_allclose(up[0, ..., 0], np.asarray(pil), atol=1e-5)


def test_inception_shapes_and_parameter_count():
    model = inception.InceptionV3FID()
    x = jnp.zeros((2, 299, 299, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert jax.eval_shape(model.apply, variables, x).shape == (2, 2048)
    # torchvision documents 27,161,264 parameters for inception_v3; without its classifier
    # (2048 * 1000 + 1000) and auxiliary head (1x1 conv 768->128 + BN, 5x5 conv 128->768 + BN,
    # fc 768 -> 1000) the feature network has the rest.
    aux = 768 * 128 + 2 * 128 + 128 * 768 * 25 + 2 * 768 + 768 * 1000 + 1000
    expected = 27_161_264 - (2048 * 1000 + 1000) - aux
    count = sum(math.prod(v.shape) for v in jax.tree.leaves(variables["params"]))
    assert count == expected == 21_785_568


def _conv_bn_relu_reference(x, weight, gamma, beta, mean, var, padding):
    """PyTorch Conv2d (cross-correlation, OIHW weights) + eval BatchNorm(eps 1e-3) + ReLU."""
    ph, pw = padding
    xp = np.pad(x.astype(np.float64), ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    n, h, w, _ = xp.shape
    o, _, kh, kw = weight.shape
    out = np.zeros((n, h - kh + 1, w - kw + 1, o))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i : i + out.shape[1], j : j + out.shape[2], :]
            out += np.einsum("nhwc,oc->nhwo", patch, weight[:, :, i, j])
    out = (out - mean) / np.sqrt(var + 1e-3) * gamma + beta
    return np.maximum(out, 0.0)


def test_converted_torch_weights_compute_the_torch_layer():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 9, 11, 3)).astype(np.float32)
    torch_state = {
        "blk.conv.weight": rng.normal(size=(4, 3, 1, 7)).astype(np.float32),  # OIHW, 1x7.
        "blk.bn.weight": rng.uniform(0.5, 1.5, 4).astype(np.float32),
        "blk.bn.bias": rng.normal(size=4).astype(np.float32),
        "blk.bn.running_mean": rng.normal(size=4).astype(np.float32),
        "blk.bn.running_var": rng.uniform(0.5, 2.0, 4).astype(np.float32),
        "blk.bn.num_batches_tracked": np.array(7),
        "fc.weight": np.zeros((1008, 2048), np.float32),
    }
    flat = features.convert_torch_inception(torch_state)
    assert sorted(flat) == [
        "batch_stats/blk/bn/mean",
        "batch_stats/blk/bn/var",
        "params/blk/bn/bias",
        "params/blk/bn/scale",
        "params/blk/conv/kernel",
    ]
    tree = features._unflatten(flat)
    variables = {"params": tree["params"]["blk"], "batch_stats": tree["batch_stats"]["blk"]}
    layer = inception.BasicConv2d(4, (1, 7), padding=(0, 3))
    out = np.asarray(layer.apply(variables, jnp.asarray(x)))
    ref = _conv_bn_relu_reference(
        x,
        torch_state["blk.conv.weight"],
        torch_state["blk.bn.weight"],
        torch_state["blk.bn.bias"],
        torch_state["blk.bn.running_mean"],
        torch_state["blk.bn.running_var"],
        (0, 3),
    )
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(features.ExtractorError, match="unexpected entry"):
        features.convert_torch_inception({"blk.conv.bias": np.zeros(4)})


def test_average_pool_branches_ignore_padding():
    x = np.random.default_rng(3).uniform(size=(1, 4, 5, 2)).astype(np.float32)
    out = np.asarray(inception._avg_pool_same(jnp.asarray(x)))
    ref = np.zeros_like(x, dtype=np.float64)
    for i in range(4):
        for j in range(5):
            window = x[0, max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2]
            ref[0, i, j] = window.reshape(-1, 2).mean(axis=0)
    np.testing.assert_allclose(out, ref, atol=1e-6)


def _torch_names(variables) -> dict[str, np.ndarray]:
    """A PyTorch-style state dict with the FID Inception's names and shapes (the inverse map)."""
    rng = np.random.default_rng(4)
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(variables):
        keys = [p.key for p in path]
        collection, *module, name = keys
        prefix = ".".join(module)
        if name == "kernel":
            kh, kw, i, o = leaf.shape
            out[f"{prefix}.weight"] = rng.normal(size=(o, i, kh, kw)).astype(np.float16)
        else:
            torch_name = {"scale": "weight", "bias": "bias", "mean": "running_mean"}.get(
                name, "running_var"
            )
            out[f"{prefix}.{torch_name}"] = np.ones(leaf.shape, np.float16)
    out["fc.weight"] = np.zeros((3, 3), np.float16)
    return out


def test_inception_file_round_trip_and_bad_files(tmp_path, capsys):
    model = inception.InceptionV3FID()
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 299, 299, 3)))
    torch_file, flax_file = tmp_path / "pt.npz", tmp_path / "fid_inception.npz"
    np.savez(torch_file, **_torch_names(variables))
    assert features_cli.main(["convert-inception", str(torch_file), str(flax_file)]) == 0
    extractor = features.resolve(str(flax_file), "cifar10")
    assert extractor.name == "inception_v3" and extractor.dim == 2048
    assert extractor.input_shape == (299, 299, 3) and extractor.resize_method == "bilinear"
    assert '"name": "inception_v3"' in capsys.readouterr().out
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, **{"params/Conv2d_1a_3x3/conv/kernel": np.zeros((3, 3, 3, 8), np.float32)})
    with pytest.raises(features.ExtractorError, match="expected layout"):
        features.load_inception(str(wrong))


def test_resolve_needs_an_extractor_beyond_fashion_mnist(tmp_path):
    with pytest.raises(features.ExtractorError, match="--feature-extractor"):
        features.resolve("", "cifar10")
    with pytest.raises(features.ExtractorError, match="neither a classifier workdir"):
        features.resolve(str(tmp_path / "nothing.txt"), "cifar10")
