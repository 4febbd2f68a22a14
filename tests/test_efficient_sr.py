"""ESPCN, FSRCNN, SRVGGNetCompact and SPAN: published sizes, float64 NumPy forwards of the papers'
definitions, and SPAN's re-parameterisation (folded network = trained network)."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genres_jax.models import span as span_lib
from genres_jax.models.efficient import ESPCN, FSRCNN, SRVGGNetCompact, StridedDeconv
from genres_jax.models.sr_registry import get_sr_model
from genres_jax.tasks import sr


def n_params(tree, only: str | None = None) -> int:
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return sum(int(np.prod(p.shape)) for k, p in leaves if only is None or only in str(k))


def abstract_params(model, channels: int = 3):
    x = jax.ShapeDtypeStruct((1, 8, 8, channels), jnp.float32)
    return jax.eval_shape(model.init, jax.random.key(0), x)["params"]


def conv(k: int, cin: int, cout: int) -> int:
    return k * k * cin * cout + cout


def random_params(model, shape, seed=0, scale=1.0):
    abstract = abstract_params(model, shape[-1])
    rng = np.random.default_rng(seed)

    def fill(leaf):
        fan_in = np.prod(leaf.shape[:-1]) if leaf.ndim > 1 else 1
        std = scale / np.sqrt(fan_in) if leaf.ndim > 1 else 0.1
        return jnp.asarray(rng.standard_normal(leaf.shape) * std, jnp.float32)

    return jax.tree.map(fill, abstract)


def np64(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


# ---- float64 NumPy references (NHWC, HWIO kernels) ------------------------------------------


def np_conv(x, p, pad="same"):
    """Cross-correlation of one (H, W, Ci) image with an HWIO kernel, zero padding."""
    k = p["kernel"]
    kh, kw = k.shape[:2]
    if pad == "same":
        x = np.pad(x, ((kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    h, w = x.shape[0] - kh + 1, x.shape[1] - kw + 1
    out = np.zeros((h, w, k.shape[3]))
    for dy in range(kh):
        for dx in range(kw):
            out += x[dy : dy + h, dx : dx + w] @ k[dy, dx]
    return out + p["bias"]


def np_shuffle(x, r):
    """PyTorch PixelShuffle on HWC: channel c*r*r + i*r + j -> pixel (i, j) of channel c."""
    h, w, crr = x.shape
    c = crr // (r * r)
    return x.reshape(h, w, c, r, r).transpose(0, 3, 1, 4, 2).reshape(h * r, w * r, c)


def np_prelu(x, alpha):
    return np.where(x >= 0, x, alpha * x)


def np_torch_conv_transpose(x, weight, bias, stride, padding, output_padding):
    """PyTorch ConvTranspose2d on HWC with a torch (Ci, Co, kh, kw) weight, by scattering."""
    h, w, _ = x.shape
    k = weight.shape[2]
    full_h, full_w = (h - 1) * stride + k, (w - 1) * stride + k
    full = np.zeros((full_h + output_padding, full_w + output_padding, weight.shape[1]))
    for i in range(h):
        for j in range(w):
            patch = np.einsum("c,cokl->klo", x[i, j], weight)
            full[i * stride : i * stride + k, j * stride : j * stride + k] += patch
    oh = (h - 1) * stride - 2 * padding + k + output_padding
    ow = (w - 1) * stride - 2 * padding + k + output_padding
    return full[padding : padding + oh, padding : padding + ow] + bias


# ---- sizes ------------------------------------------------------------------------------------


def test_fsrcnn_has_the_papers_12464_weights():
    # FSRCNN(56, 12, 4) on the Y channel: 56*25 + 12*56 + 4*9*144 + 56*12 + 56*81 weights.
    params = abstract_params(FSRCNN(scale=3, channels=1), channels=1)
    assert n_params(params, only="kernel") == 12_464
    biases = 56 + 12 + 4 * 12 + 56 + 1
    slopes = 56 + 12 + 4 * 12 + 56  # one PReLU slope per channel
    assert n_params(params) == 12_464 + biases + slopes


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_espcn_size(scale):
    expected = conv(5, 3, 64) + conv(3, 64, 32) + conv(3, 32, 3 * scale * scale)
    assert n_params(abstract_params(ESPCN(scale=scale))) == expected


@pytest.mark.parametrize(("name", "num_conv"), [("srvgg", 16), ("srvgg_32", 32)])
def test_srvgg_sizes_match_the_published_files(name, num_conv):
    # realesr-animevideov3 (16 convs) and realesr-general-x4v3 (32 convs) at x4, 64 features.
    expected = conv(3, 3, 64) + 64 + num_conv * (conv(3, 64, 64) + 64) + conv(3, 64, 48)
    assert n_params(abstract_params(get_sr_model(name, 4))) == expected
    assert expected == {16: 621_424, 32: 1_213_296}[num_conv]


@pytest.mark.parametrize(("name", "published"), [("span", 0.426e6), ("span_28", 0.151e6)])
def test_span_inference_size_is_the_published_one(name, published):
    model = get_sr_model(name, 4)
    f = model.features
    expected = conv(3, 3, f) + 19 * conv(3, f, f) + conv(1, 4 * f, f) + conv(3, f, 48)
    folded = n_params(abstract_params(model.deployed()))
    assert folded == expected
    assert abs(folded - published) / published < 0.005
    # Training form: each Conv3XC holds 1x1 (x2), 3x3, 1x1 and a 1x1 skip.
    trained = n_params(abstract_params(model))
    assert trained > 3 * folded
    abstract_folded = jax.eval_shape(span_lib.reparameterize, abstract_params(model))
    shapes = jax.tree.map(lambda a: a.shape, abstract_folded)
    assert shapes == jax.tree.map(lambda a: a.shape, abstract_params(model.deployed()))


# ---- forwards against float64 NumPy --------------------------------------------------------


def _image(seed=1, h=7, w=9, c=3):
    return np.random.default_rng(seed).random((h, w, c))


def test_espcn_matches_numpy():
    model = ESPCN(scale=3, features=(6, 5))
    x = _image()
    params = random_params(model, (1, *x.shape))
    y = np.asarray(model.apply({"params": params}, jnp.asarray(x[None], jnp.float32)))[0]
    p = np64(params)
    h = np.tanh(np_conv(x, p["conv_0"]))
    h = np.tanh(np_conv(h, p["conv_1"]))
    ref = np_shuffle(np_conv(h, p["conv_2"]), 3)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fsrcnn_matches_numpy_with_torch_deconvolution(scale):
    model = FSRCNN(scale=scale, d=6, s=4, m=2)
    x = _image(h=6, w=5)
    params = random_params(model, (1, *x.shape))
    y = np.asarray(model.apply({"params": params}, jnp.asarray(x[None], jnp.float32)))[0]
    p = np64(params)
    h = np_prelu(np_conv(x, p["extract"]), p["prelu_extract"]["alpha"])
    h = np_prelu(np_conv(h, p["shrink"]), p["prelu_shrink"]["alpha"])
    for i in range(2):
        h = np_prelu(np_conv(h, p[f"map_{i}"]), p[f"prelu_map_{i}"]["alpha"])
    h = np_prelu(np_conv(h, p["expand"]), p["prelu_expand"]["alpha"])
    # PyTorch's ConvTranspose2d(k=9, stride=r, padding=4, output_padding=r-1) with this
    # kernel flipped: the alignment of the published implementations.
    torch_weight = p["deconv"]["kernel"][::-1, ::-1].transpose(2, 3, 0, 1)
    ref = np_torch_conv_transpose(h, torch_weight, p["deconv"]["bias"], scale, 4, scale - 1)
    assert y.shape == ref.shape == (6 * scale, 5 * scale, 3)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5)


def test_srvgg_matches_numpy():
    model = SRVGGNetCompact(scale=4, num_feat=5, num_conv=2)
    x = _image()
    params = random_params(model, (1, *x.shape))
    y = np.asarray(model.apply({"params": params}, jnp.asarray(x[None], jnp.float32)))[0]
    p = np64(params)
    h = x
    for i in range(3):
        h = np_prelu(np_conv(h, p[f"conv_{i}"]), p[f"prelu_{i}"]["alpha"])
    base = np.repeat(np.repeat(x, 4, axis=0), 4, axis=1)
    ref = np_shuffle(np_conv(h, p["conv_last"]), 4) + base
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5)


def np_conv3xc(x, p):
    """The reference's training branch: pad, 1x1, 3x3 valid, 1x1, plus a 1x1 skip."""
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    h = np_conv(padded, p["expand"], pad="valid")
    h = np_conv(h, p["conv"], pad="valid")
    h = np_conv(h, p["reduce"], pad="valid")
    return h + np_conv(x, p["sk"], pad="valid")


def np_span(x, p, num_blocks, mean):
    silu = lambda v: v / (1 + np.exp(-v))  # noqa: E731
    x = (x - np.asarray(mean)) * 255.0
    feature = np_conv3xc(x, p["conv_1"])
    h, blocks = feature, []
    for i in range(num_blocks):
        b = p[f"block_{i + 1}"]
        out1 = np_conv3xc(h, b["c1"])
        out2 = np_conv3xc(silu(out1), b["c2"])
        out3 = np_conv3xc(silu(out2), b["c3"])
        h = (out3 + h) * (1 / (1 + np.exp(-out3)) - 0.5)
        blocks.append(h)
    last = np_conv3xc(h, p["conv_2"])
    fused = np_conv(np.concatenate([feature, last, blocks[0], out1], -1), p["conv_cat"])
    return np_shuffle(np_conv(fused, p["upsampler"]), 2)


@pytest.mark.parametrize("via_folded_kernel", [False, True])
def test_span_training_form_matches_numpy(via_folded_kernel):
    model = span_lib.SPAN(scale=2, features=6, num_blocks=2, via_folded_kernel=via_folded_kernel)
    x = _image()
    params = random_params(model, (1, *x.shape), scale=0.5)
    y = np.asarray(model.apply({"params": params}, jnp.asarray(x[None], jnp.float32)))[0]
    ref = np_span(x, np64(params), 2, model.rgb_mean)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_span_gradients_through_the_folded_kernel_are_the_branch_gradients():
    branches = span_lib.SPAN(scale=2, features=6, num_blocks=2, via_folded_kernel=False)
    folded = branches.clone(via_folded_kernel=True)
    x = jax.random.uniform(jax.random.key(2), (2, 9, 8, 3))
    target = jax.random.uniform(jax.random.key(3), (2, 18, 16, 3))
    params = branches.init(jax.random.key(0), x)["params"]

    def loss(model):
        return lambda p: jnp.mean(jnp.abs(model.apply({"params": p}, x) / 255.0 - target))

    g_branches = jax.grad(loss(branches))(params)
    g_folded = jax.grad(loss(folded))(params)
    assert jax.tree.structure(g_branches) == jax.tree.structure(g_folded)
    for a, b in zip(jax.tree.leaves(g_branches), jax.tree.leaves(g_folded), strict=True):
        scale = float(jnp.max(jnp.abs(a))) + 1e-12
        assert float(jnp.max(jnp.abs(a - b))) <= 2e-4 * scale


def test_folded_conv3xc_is_the_branch_sum_in_float64():
    params = random_params(span_lib.Conv3XC(5), (1, 6, 7, 4))
    folded = np64(span_lib.fold_conv3xc(params))
    x = _image(c=4)
    ref = np_conv3xc(x, np64(params))  # borders included: the padding sees the 1x1 bias too
    np.testing.assert_allclose(np_conv(x, folded), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("scale", [2, 4])
def test_reparameterized_span_equals_the_trained_one(scale):
    model = get_sr_model("span_28", scale, num_blocks=3)
    x = jax.random.uniform(jax.random.key(3), (2, 13, 11, 3))
    params = model.init(jax.random.key(0), x)["params"]
    # Trained-looking weights: perturb the initialisation so no branch is near zero.
    params = jax.tree.map(
        lambda p: p * 1.5 + 0.02 * jax.random.normal(jax.random.key(p.size), p.shape), params
    )
    y = model.apply({"params": params}, x)
    deployed, folded = sr.inference_form(model, params)
    assert deployed.deploy and not model.deploy
    y_folded = deployed.apply({"params": folded}, x)
    assert float(jnp.max(jnp.abs(y_folded - y))) <= 1e-5 * max(1.0, float(jnp.max(jnp.abs(y))))
    # Models without a folded form are served as trained.
    edsr = get_sr_model("edsr_m", 2, features=4, num_blocks=1)
    assert sr.inference_form(edsr, {"a": 1}) == (edsr, {"a": 1})


def test_scale_and_mean_errors():
    for build in (ESPCN, FSRCNN, SRVGGNetCompact, span_lib.SPAN):
        with pytest.raises(ValueError, match="scale"):
            build(scale=0)
    with pytest.raises(ValueError, match="rgb_mean"):
        span_lib.SPAN(scale=2, channels=1)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_subpixel_deconvolution_equals_flax_conv_transpose(scale):
    # The same transposed convolution computed the textbook way: convolve the dilated input.
    x = jax.random.normal(jax.random.key(0), (2, 5, 6, 4))
    kernel = jax.random.normal(jax.random.key(1), (9, 9, 4, 3))
    bias = jax.random.normal(jax.random.key(2), (3,))
    ours = StridedDeconv(3, scale).apply({"params": {"kernel": kernel, "bias": bias}}, x)
    pad = ((4, 4 + scale - 1), (4, 4 + scale - 1))
    ref = nn.ConvTranspose(3, (9, 9), strides=(scale, scale), padding=pad).apply(
        {"params": {"kernel": kernel, "bias": bias}}, x
    )
    assert ours.shape == ref.shape == (2, 5 * scale, 6 * scale, 3)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=0, atol=1e-4)


@pytest.mark.parametrize("build", [ESPCN, FSRCNN, functools.partial(span_lib.SPAN, features=4)])
def test_bicubic_residual_is_bicubic_plus_the_network(build):
    from genres_jax.ops.imresize import imresize

    model = build(scale=3, residual="bicubic")
    plain = build(scale=3)
    x = jax.random.uniform(jax.random.key(5), (1, 9, 7, 3))
    params = plain.init(jax.random.key(0), x)["params"]
    y = model.apply({"params": params}, x)
    expected = plain.apply({"params": params}, x) + imresize(x, scale=3, method="bicubic")
    np.testing.assert_allclose(np.asarray(y), np.asarray(expected), rtol=0, atol=1e-5)
    assert model.receptive_radius >= 2 and model.receptive_radius == max(2, plain.receptive_radius)
    with pytest.raises(ValueError, match="residual"):
        build(scale=2, residual="nearest")
