"""GAN super-resolution models: SRResNet, RRDBNet and the two SR discriminators.

Forward passes use tiny widths and depths and are checked against float64 NumPy forward passes
written here from the published layer lists; full-size models are only traced with
``jax.eval_shape`` to count their parameters against hand counts.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genres_jax.models.layers import pixel_shuffle
from genres_jax.models.rrdbnet import RRDBNet, dense_block_kernel_init, pixel_unshuffle
from genres_jax.models.sr_discriminators import (
    UNetDiscriminatorSN,
    VGGStyleDiscriminator,
    upsample_bilinear_x2,
)
from genres_jax.models.sr_registry import get_sr_model
from genres_jax.models.srresnet import SRResNet
from genres_jax.tasks import base


def np_conv(x, kernel, bias):
    """Stride-1 cross-correlation of NHWC ``x`` with an odd HWIO kernel, zero "same" padding."""
    k = kernel.shape[0]
    n, h, w, _ = x.shape
    x = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    out = np.zeros((n, h, w, kernel.shape[3])) + bias
    for i, j in itertools.product(range(k), range(k)):
        out += x[:, i : i + h, j : j + w] @ kernel[i, j]
    return out


def np_prelu(x, a):
    return np.where(x >= 0, x, a * x)


def np_lrelu(x):
    return np_prelu(x, 0.2)


def np_pixel_shuffle(x, r):
    # PyTorch: out[c, h*r + i, w*r + j] = in[c*r*r + i*r + j, h, w].
    n, h, w, cin = x.shape
    out = np.zeros((n, h * r, w * r, cin // (r * r)))
    for k, (c, i, j) in enumerate(itertools.product(range(cin // (r * r)), range(r), range(r))):
        out[:, i::r, j::r, c] = x[..., k]
    return out


def np_pixel_unshuffle(x, r):
    # PyTorch: out[c*r*r + i*r + j, h, w] = in[c, h*r + i, w*r + j].
    cij = itertools.product(range(x.shape[-1]), range(r), range(r))
    return np.stack([x[:, i::r, j::r, c] for c, i, j in cij], axis=-1)


def to_np(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def random_variables(model, x_shape, seed=0, **kwargs):
    """Variables of the model's structure filled from numpy (compiling init is slow on CPU)."""
    x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
    abstract = jax.eval_shape(functools.partial(model.init, **kwargs), jax.random.key(0), x)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel":
            value = rng.standard_normal(leaf.shape) * np.sqrt(2.0 / np.prod(leaf.shape[:-1]))
        elif name in ("var", "scale"):
            value = rng.uniform(0.5, 1.5, leaf.shape)
        elif name == "negative_slope":
            value = rng.uniform(0.1, 0.4, leaf.shape)
        else:  # biases, running means, power-iteration vectors
            value = rng.standard_normal(leaf.shape) * 0.1
        return jnp.asarray(value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, abstract)


def np_srresnet(v, x, scale, num_blocks, batch_norm):
    p, s = v["params"], v.get("batch_stats", {})

    def norm(h, *scope):
        if not batch_norm:
            return h
        q, st = (functools.reduce(dict.get, scope, tree)["bn"] for tree in (p, s))
        return (h - st["mean"]) / np.sqrt(st["var"] + 1e-5) * q["scale"] + q["bias"]

    def conv(h, q):
        return np_conv(h, q["kernel"], q["bias"])

    head = np_prelu(conv(x, p["head"]), p["head_prelu"]["negative_slope"])
    h = head
    for i in range(num_blocks):
        b = p[f"block_{i}"]
        t = np_prelu(
            norm(conv(h, b["conv_0"]), f"block_{i}", "norm_0"), b["prelu"]["negative_slope"]
        )
        h = h + norm(conv(t, b["conv_1"]), f"block_{i}", "norm_1")
    h = norm(conv(h, p["body_conv"]), "body_norm") + head
    for i, r in enumerate((2, 2) if scale == 4 else (scale,)):
        h = np_pixel_shuffle(conv(h, p[f"upsample_conv_{i}"]), r)
        h = np_prelu(h, p[f"upsample_prelu_{i}"]["negative_slope"])
    return conv(h, p["tail"])


@pytest.mark.parametrize(("scale", "batch_norm"), [(2, False), (3, True), (4, False)])
def test_srresnet_matches_numpy(scale, batch_norm):
    model = SRResNet(scale=scale, features=6, num_blocks=2, batch_norm=batch_norm)
    shape = (2, 5, 7, 3)
    variables = random_variables(model, shape)
    x = np.random.default_rng(1).uniform(size=shape)
    y = model.apply(variables, jnp.asarray(x, jnp.float32))
    expected = np_srresnet(to_np(variables), x, scale, 2, batch_norm)
    assert y.shape == (2, 5 * scale, 7 * scale, 3) and y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-4, atol=1e-4)


def np_rrdbnet(p, x, scale, num_blocks):
    def conv(h, q):
        return np_conv(h, q["kernel"], q["bias"])

    n, h0, w0, _ = x.shape
    r = 4 // scale
    if r > 1:
        x = np.pad(x, ((0, 0), (0, -h0 % r), (0, -w0 % r), (0, 0)), mode="reflect")
        x = np_pixel_unshuffle(x, r)
    first = conv(x, p["conv_first"])
    h = first
    for b in range(num_blocks):
        block_in = h
        for d in range(3):
            q = p[f"rrdb_{b}"][f"rdb_{d}"]
            feats = [h]
            for k in range(4):
                feats.append(np_lrelu(conv(np.concatenate(feats, -1), q[f"conv_{k}"])))
            h = h + 0.2 * conv(np.concatenate(feats, -1), q["conv_4"])
        h = block_in + 0.2 * h
    h = first + conv(h, p["conv_body"])
    for k in range(2):
        h = h.repeat(2, axis=1).repeat(2, axis=2)
        h = np_lrelu(conv(h, p[f"conv_up_{k}"]))
    h = np_lrelu(conv(h, p["conv_hr"]))
    return conv(h, p["conv_last"])[:, : h0 * scale, : w0 * scale]


@pytest.mark.parametrize(
    ("scale", "hw"), [(4, (5, 6)), (2, (6, 10)), (2, (5, 9)), (1, (8, 12)), (1, (7, 6))]
)
def test_rrdbnet_matches_numpy(scale, hw):
    # Sizes that are not multiples of the unshuffle factor take the reflect-padding path.
    model = RRDBNet(scale=scale, features=6, num_blocks=2, growth=4)
    shape = (1, *hw, 3)
    variables = random_variables(model, shape)
    x = np.random.default_rng(2).uniform(size=shape)
    y = model.apply(variables, jnp.asarray(x, jnp.float32))
    expected = np_rrdbnet(to_np(variables)["params"], x, scale, 2)
    assert y.shape == (1, hw[0] * scale, hw[1] * scale, 3) and y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-4, atol=1e-4)


def test_pixel_unshuffle_matches_torch_definition_and_inverts_shuffle():
    x = np.random.default_rng(3).standard_normal((2, 6, 4, 3))
    got = np.asarray(pixel_unshuffle(jnp.asarray(x), 2))
    np.testing.assert_allclose(got, np_pixel_unshuffle(x, 2), atol=1e-6)
    np.testing.assert_allclose(np.asarray(pixel_shuffle(jnp.asarray(got), 2)), x, atol=1e-6)
    with pytest.raises(ValueError, match="divisible"):
        pixel_unshuffle(jnp.asarray(x), 4)


@pytest.mark.parametrize(
    "model",
    [
        SRResNet(scale=2, features=4, num_blocks=2),
        SRResNet(scale=3, features=4, num_blocks=2),
        SRResNet(scale=4, features=4, num_blocks=1),
        RRDBNet(scale=4, features=4, num_blocks=1, growth=2),
        RRDBNet(scale=2, features=4, num_blocks=1, growth=2),
        RRDBNet(scale=1, features=4, num_blocks=1, growth=2),
    ],
    ids=lambda m: f"{type(m).__name__}x{m.scale}",
)
def test_receptive_radius_equals_measured_reach(model):
    radius = model.receptive_radius
    assert isinstance(radius, int)
    size = 2 * radius + 16
    size += -size % 4
    shape = (1, size, size + 4, 3)
    # Positive kernels and positive activation slopes make every path's contribution to the
    # forward derivative positive, so its support is exactly the dependency cone: no
    # cancellation, and no effect lost to float rounding as a perturbed forward pass would be.
    variables = jax.tree.map(jnp.abs, random_variables(model, shape))
    x = jax.random.uniform(jax.random.key(1), shape)
    # p = 3 (mod 4): the pixel sits last in its unshuffled cell, where the reach is largest.
    p = 4 * (size // 8) + 3
    tangent = jnp.zeros(shape).at[0, p, p, :].set(1.0)
    _, dy = jax.jit(lambda x, t: jax.jvp(lambda x: model.apply(variables, x), (x,), (t,)))(
        x, tangent
    )
    changed = np.argwhere(np.any(np.asarray(dy[0]) != 0, axis=-1))
    assert len(changed), "the pixel had no effect"
    reach = int(np.max(np.abs(changed // model.scale - p)))
    assert reach == radius


def test_full_size_receptive_radii():
    # 9x9 head (4), 2 per block + body conv, upsampler convs, 9x9 tail over the scale.
    assert get_sr_model("srresnet", 4).receptive_radius == 4 + 33 + 2 + 1
    assert get_sr_model("srresnet", 2).receptive_radius == 4 + 33 + 1 + 2
    # 23 * 15 + 2 convs on the body grid, then 5 output pixels of reach; x2 and x1 run the body
    # on a 2x / 4x coarser grid, plus up to 1 / 3 pixels for the place inside a cell.
    assert get_sr_model("esrgan", 4).receptive_radius == (23 * 15 + 2) + 2
    assert get_sr_model("esrgan", 2).receptive_radius == 2 * (23 * 15 + 2) + 1 + 3
    assert get_sr_model("esrgan", 1).receptive_radius == 4 * (23 * 15 + 2) + 3 + 5


def conv(k, cin, cout, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def count(variables, collection="params"):
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(variables[collection]))


def abstract_variables(model, shape, **kwargs):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.eval_shape(functools.partial(model.init, **kwargs), jax.random.key(0), x)


def srresnet_by_hand(scale, bn=False, f=64, blocks=16):
    prelu, norm = 1, (2 * f if bn else 0)
    body = blocks * (2 * conv(3, f, f) + 2 * norm + prelu) + conv(3, f, f) + norm
    stages = (2, 2) if scale == 4 else (scale,)
    up = sum(conv(3, f, f * r * r) + prelu for r in stages)
    return conv(9, 3, f) + prelu + body + up + conv(9, f, 3)


def rrdbnet_by_hand(scale, f=64, g=32, blocks=23):
    cin = 3 * (4 // scale) ** 2
    rdb = sum(conv(3, f + k * g, g) for k in range(4)) + conv(3, f + 4 * g, f)
    return conv(3, cin, f) + blocks * 3 * rdb + 4 * conv(3, f, f) + conv(3, f, 3)


@pytest.mark.parametrize(
    ("name", "scale", "fields", "expected"),
    [
        ("srresnet", 2, {}, srresnet_by_hand(2)),
        ("srresnet", 3, {}, srresnet_by_hand(3)),
        ("srresnet", 4, {}, srresnet_by_hand(4)),
        ("srresnet", 4, {"batch_norm": True}, srresnet_by_hand(4, bn=True)),
        ("esrgan", 4, {}, rrdbnet_by_hand(4)),
        ("rrdbnet", 2, {}, rrdbnet_by_hand(2)),
        ("rrdbnet", 1, {}, rrdbnet_by_hand(1)),
    ],
)
def test_generator_parameter_counts(name, scale, fields, expected):
    variables = abstract_variables(get_sr_model(name, scale, **fields), (1, 8, 8, 3))
    assert count(variables) == expected


def test_published_sizes():
    assert rrdbnet_by_hand(4) == 16_697_987  # ESRGAN's generator: 16.7M
    assert 1.5e6 < srresnet_by_hand(4) < 1.6e6  # SRResNet without BN: about 1.5M


def test_vgg_discriminator_parameter_count():
    d = VGGStyleDiscriminator()
    v = abstract_variables(d, (2, 128, 128, 3), train=False)
    widths = [64, 64, 128, 128, 256, 256, 512, 512]
    convs = conv(3, 3, 64) + sum(
        conv(3, a, b, bias=False) + 2 * b for a, b in zip(widths, widths[1:], strict=False)
    )
    assert count(v) == convs + (8 * 8 * 512) * 1024 + 1024 + 1024 + 1
    assert count(v, "batch_stats") == 2 * sum(widths[1:])


def test_unet_discriminator_parameter_count_and_power_iteration_state():
    d = UNetDiscriminatorSN()
    v = abstract_variables(d, (1, 32, 32, 3), train=False)
    f = 64
    sn = [(4, f, 2 * f), (4, 2 * f, 4 * f), (4, 4 * f, 8 * f)]
    sn += [(3, 8 * f, 4 * f), (3, 4 * f, 2 * f), (3, 2 * f, f), (3, f, f), (3, f, f)]
    expected = conv(3, 3, f) + sum(conv(k, a, b, bias=False) for k, a, b in sn) + conv(3, f, 1)
    assert count(v) == expected
    # One u vector (1, out) and one sigma per spectrally normalised conv.
    assert count(v, "batch_stats") == sum(b + 1 for _, _, b in sn)


def test_vgg_discriminator_shapes_and_size_check():
    d = VGGStyleDiscriminator(features=4, hidden=8, input_size=32)
    x = jax.random.uniform(jax.random.key(0), (3, 32, 32, 3))
    v = random_variables(d, x.shape, train=False)
    logits, updates = jax.jit(functools.partial(d.apply, train=True, mutable=["batch_stats"]))(v, x)
    assert logits.shape == (3,) and logits.dtype == jnp.float32
    assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(v["batch_stats"])
    with pytest.raises(ValueError, match="input_size=32"):
        d.apply(v, jnp.zeros((1, 24, 24, 3)), train=False)
    pooled = VGGStyleDiscriminator(features=4, hidden=8, input_size=None)
    shape = (2, 20, 36, 3)  # any size once the head pools
    vp = random_variables(pooled, shape, train=False)
    assert jax.jit(functools.partial(pooled.apply, train=False))(vp, jnp.zeros(shape)).shape == (2,)


def test_unet_discriminator_logit_map_and_task_helpers():
    # The task helpers (init_model / apply_model) treat the power-iteration state like
    # BatchNorm statistics: returned at init, updated by train=True, untouched otherwise.
    d = UNetDiscriminatorSN(features=4)
    x = jax.random.uniform(jax.random.key(0), (2, 16, 24, 3))
    _, abstract_stats = jax.eval_shape(lambda k: base.init_model(d, k, x), jax.random.key(0))
    assert set(abstract_stats) == {f"sn_{name}" for name in SN_LAYERS}
    v = random_variables(d, x.shape, train=False)
    train = jax.jit(lambda p, s: base.apply_model(d, p, s, x, train=True))
    y, new_stats = train(v["params"], v["batch_stats"])
    assert y.shape == (2, 16, 24, 1) and y.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(y)))
    for name in SN_LAYERS:
        u = f"{name}/kernel/u"
        assert not np.allclose(new_stats[f"sn_{name}"][u], v["batch_stats"][f"sn_{name}"][u])
    with pytest.raises(ValueError, match="multiples of 8"):
        d.apply(v, jnp.zeros((1, 20, 16, 3)), train=False)


def np_bilinear_x2(x):
    # PyTorch align_corners=False: source = (i + 0.5) / 2 - 0.5, clamped to >= 0.
    def axis_weights(n):
        src = np.maximum((np.arange(2 * n) + 0.5) / 2 - 0.5, 0)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        return lo, hi, src - lo

    lo, hi, t = axis_weights(x.shape[1])
    x = x[:, lo] * (1 - t)[None, :, None, None] + x[:, hi] * t[None, :, None, None]
    lo, hi, t = axis_weights(x.shape[2])
    return x[:, :, lo] * (1 - t)[None, None, :, None] + x[:, :, hi] * t[None, None, :, None]


def test_bilinear_upsampling_matches_half_pixel_definition():
    x = np.random.default_rng(4).standard_normal((2, 3, 5, 2))
    got = np.asarray(upsample_bilinear_x2(jnp.asarray(x, jnp.float32)))
    np.testing.assert_allclose(got, np_bilinear_x2(x), atol=1e-6)


SN_LAYERS = [f"conv_{i}" for i in range(1, 9)]


def test_spectral_norm_sigma_converges_to_largest_singular_value():
    d = UNetDiscriminatorSN(features=4)
    x = jax.random.uniform(jax.random.key(0), (1, 16, 16, 3))
    v = random_variables(d, x.shape, train=False)
    # conv_1's kernel gets known singular values: (4*4*4, 8) = U diag(s) V^T.
    rng = np.random.default_rng(5)
    s = np.array([3.0, 1.5, 1.2, 1.0, 0.8, 0.5, 0.3, 0.1])
    u, _ = np.linalg.qr(rng.standard_normal((64, 8)))
    vt, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    kernel = (u * s) @ vt.T
    params = dict(v["params"], conv_1={"kernel": jnp.asarray(kernel.reshape(4, 4, 4, 8))})

    step = jax.jit(
        lambda stats: d.apply(
            {"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"]
        )[1]["batch_stats"]
    )
    stats = v["batch_stats"]
    for _ in range(200):  # one power-iteration step per call
        stats = step(stats)
    sigma = float(stats["sn_conv_1"]["conv_1/kernel/sigma"])
    np.testing.assert_allclose(sigma, 3.0, rtol=1e-4)
    for name in SN_LAYERS:
        w = np.asarray(params[name]["kernel"], np.float64)
        w = w.reshape(-1, w.shape[-1])
        sigma = float(stats[f"sn_{name}"][f"{name}/kernel/sigma"])
        # The normalised kernel W / sigma has largest singular value 1.
        top = np.linalg.svd(w / sigma, compute_uv=False)[0]
        np.testing.assert_allclose(top, 1.0, rtol=1e-3, err_msg=name)


def test_spectral_norm_makes_output_invariant_to_kernel_scale():
    d = UNetDiscriminatorSN(features=4)
    x = jax.random.uniform(jax.random.key(1), (1, 8, 16, 3))
    v = random_variables(d, x.shape, train=False)
    apply = jax.jit(lambda variables: d.apply(variables, x, train=False))
    y = apply(v)

    def scaled(name, factor):
        layer = dict(v["params"][name], kernel=v["params"][name]["kernel"] * factor)
        return {"params": dict(v["params"], **{name: layer}), "batch_stats": v["batch_stats"]}

    for name in ("conv_3", "conv_7"):  # W / sigma(W) does not see the scale
        np.testing.assert_allclose(
            np.asarray(apply(scaled(name, 7.0))), np.asarray(y), rtol=2e-4, atol=1e-5
        )
    # conv_0 and conv_9 are not normalised.
    assert float(jnp.max(jnp.abs(apply(scaled("conv_0", 7.0)) - y))) > 1e-2


def test_registry_entries():
    assert get_sr_model("esrgan", 2) == get_sr_model("rrdbnet", 2) == RRDBNet(scale=2)
    assert get_sr_model("srresnet", 3, num_blocks=4) == SRResNet(scale=3, num_blocks=4)
    assert get_sr_model("esrgan", 4).num_blocks == 23


@pytest.mark.parametrize(("name", "scale"), [("rrdbnet", 3), ("esrgan", 8), ("srresnet", 1)])
def test_unsupported_scales_raise(name, scale):
    with pytest.raises(ValueError, match="scale"):
        get_sr_model(name, scale)


@pytest.mark.parametrize("name", ["srresnet", "esrgan"])
def test_bfloat16_compute_keeps_float32_params_and_output(name):
    fields = {"features": 4, "num_blocks": 1} | ({"growth": 2} if name == "esrgan" else {})
    m32 = get_sr_model(name, 4, **fields)
    m16 = get_sr_model(name, 4, compute_dtype=jnp.bfloat16, **fields)
    x = jax.random.uniform(jax.random.key(2), (1, 6, 6, 3))
    v = random_variables(m16, x.shape)
    assert {a.dtype for a in jax.tree.leaves(v)} == {jnp.dtype(jnp.float32)}
    y16, y32 = jax.jit(m16.apply)(v, x), jax.jit(m32.apply)(v, x)
    assert y16.dtype == jnp.float32
    rel = float(jnp.linalg.norm(y16 - y32) / jnp.linalg.norm(y32))
    assert 0 < rel < 0.03


def test_dense_block_initialiser_is_scaled_he_normal():
    # ESRGAN starts its dense-block convs at He-normal x 0.1: std sqrt(2 / fan_in) * 0.1.
    kernel = jax.jit(dense_block_kernel_init, static_argnums=1)(jax.random.key(0), (3, 3, 24, 32))
    np.testing.assert_allclose(np.std(kernel), np.sqrt(2 / (9 * 24)) * 0.1, rtol=0.05)
    assert abs(float(np.mean(kernel))) < 0.1 * np.std(kernel)
