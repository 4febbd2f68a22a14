"""Shapes, parameter counts, padding and BatchNorm behaviour of the GAN models."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genres_jax.models.gan import (
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
)

KEY = jax.random.key(0)


def _count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _normal(shape, seed=1):
    return jax.random.normal(jax.random.key(seed), shape)


def test_mlp_generator_shape_range_and_params():
    model = MLPGenerator()
    z = 5.0 * _normal((4, 100))  # large inputs push tanh towards its limits
    params = model.init(KEY, z)
    images = model.apply(params, z)
    assert images.shape == (4, 28, 28, 1) and images.dtype == jnp.float32
    assert jnp.all(jnp.abs(images) <= 1.0)
    assert _count(params) == (100 * 128 + 128) + (128 * 256 + 256) + (256 * 784 + 784)


def test_mlp_discriminator_logits_and_params():
    model = MLPDiscriminator()
    x = _normal((3, 28, 28, 1))
    params = model.init(KEY, x)
    logits = model.apply(params, x)
    assert logits.shape == (3,) and logits.dtype == jnp.float32
    assert _count(params) == (784 * 256 + 256) + (256 * 128 + 128) + (128 + 1)
    # Each logit depends on its own sample only.
    np.testing.assert_allclose(model.apply(params, x[1:2]), logits[1:2], rtol=1e-5, atol=1e-6)


def _abstract(model, *args, **kwargs):
    """Variables and outputs as shapes/dtypes only: tracing, no compilation."""
    variables = jax.eval_shape(functools.partial(model.init, train=False), KEY, *args)
    out = jax.eval_shape(functools.partial(model.apply, **kwargs), variables, *args)
    return variables, out


@pytest.fixture(scope="module")
def generators():
    """Small DCGAN generators (features=4) with real weights, initialised once for the module."""
    z = _normal((4, 100))
    out = {}
    for size, channels in [(28, 1), (32, 3)]:
        model = DCGANGenerator(image_size=size, channels=channels, features=4)
        out[size] = (model, model.init(KEY, z, train=False), z)
    return out


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (64, 3)])
@pytest.mark.parametrize("train", [True, False])
def test_dcgan_generator_shapes(size, channels, train):
    model = DCGANGenerator(image_size=size, channels=channels, features=8)
    kwargs = {"train": train, "mutable": ["batch_stats"]} if train else {"train": False}
    variables, out = _abstract(model, jnp.zeros((2, 100)), **kwargs)
    images = out[0] if train else out
    assert images.shape == (2, size, size, channels) and images.dtype == jnp.float32
    if train:
        assert jax.tree.structure(out[1]["batch_stats"]) == jax.tree.structure(
            variables["batch_stats"]
        )


@pytest.mark.parametrize("size", [28, 32])
def test_dcgan_generator_output_range(generators, size):
    model, variables, z = generators[size]
    # Scaling the output layer drives the pre-tanh activations far from zero.
    last = "ConvTranspose_2" if size == 28 else "ConvTranspose_3"
    params = dict(variables["params"])
    params[last] = {"kernel": 1e3 * params[last]["kernel"]}
    images, _ = model.apply({**variables, "params": params}, z, train=True, mutable=["batch_stats"])
    assert jnp.all(jnp.abs(images) <= 1.0) and jnp.all(jnp.isfinite(images))
    assert float(jnp.max(images)) > 0.99 and float(jnp.min(images)) < -0.99


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
def test_dcgan_discriminator_shapes(size, norm):
    model = DCGANDiscriminator(features=8, norm=norm)
    variables, logits = _abstract(model, jnp.zeros((2, size, size, 3)), train=False)
    assert logits.shape == (2,) and logits.dtype == jnp.float32
    assert ("batch_stats" in variables) == (norm == "batch")


def test_invalid_configurations_raise():
    with pytest.raises(ValueError, match="batch"):
        DCGANDiscriminator(norm="spectral").init(KEY, jnp.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="28"):
        DCGANGenerator(image_size=48, channels=3).init(KEY, jnp.zeros((1, 100)))
    with pytest.raises(ValueError, match="64"):
        DCGANDiscriminator().init(KEY, jnp.zeros((1, 48, 48, 3)))


def test_dcgan64_parameter_counts_match_classic_layer_list():
    f, nz, nc = 64, 100, 3
    conv = lambda cin, cout: 4 * 4 * cin * cout  # no biases anywhere in the classic model
    bn = lambda c: 2 * c  # scale + bias
    expected_g = (
        conv(nz, 8 * f) + bn(8 * f)
        + conv(8 * f, 4 * f) + bn(4 * f)
        + conv(4 * f, 2 * f) + bn(2 * f)
        + conv(2 * f, f) + bn(f)
        + conv(f, nc)
    )  # fmt: skip
    expected_d = (
        conv(nc, f)
        + conv(f, 2 * f) + bn(2 * f)
        + conv(2 * f, 4 * f) + bn(4 * f)
        + conv(4 * f, 8 * f) + bn(8 * f)
        + conv(8 * f, 1)
    )  # fmt: skip
    assert (expected_g, expected_d) == (3_576_704, 2_765_568)

    gen = DCGANGenerator(image_size=64, channels=nc, features=f, latent_dim=nz)
    g_vars = jax.eval_shape(gen.init, KEY, jnp.zeros((1, nz)))
    disc = DCGANDiscriminator(features=f)
    d_vars = jax.eval_shape(disc.init, KEY, jnp.zeros((1, 64, 64, nc)))
    assert _count(g_vars["params"]) == expected_g
    assert _count(d_vars["params"]) == expected_d
    # Running mean and variance per BatchNorm channel.
    assert _count(g_vars["batch_stats"]) == 2 * (8 + 4 + 2 + 1) * f
    assert _count(d_vars["batch_stats"]) == 2 * (2 + 4 + 8) * f
    for leaf in jax.tree.leaves(g_vars["params"]) + jax.tree.leaves(d_vars["params"]):
        assert leaf.dtype == jnp.float32


@pytest.mark.parametrize("size,first", [(28, 7), (32, 4), (64, 4)])
def test_each_transposed_conv_doubles_and_each_conv_halves(size, first):
    capture = {"capture_intermediates": True, "mutable": ["intermediates"]}
    gen = DCGANGenerator(image_size=size, channels=1, features=4)
    _, (_, state) = _abstract(gen, jnp.zeros((2, 100)), train=False, **capture)
    inter = state["intermediates"]
    sizes = [
        inter[name]["__call__"][0].shape[1] for name in sorted(inter) if "ConvTranspose" in name
    ]
    n_up = {28: 2, 32: 3, 64: 4}[size]
    assert sizes == [first * 2**i for i in range(n_up + 1)]

    disc = DCGANDiscriminator(features=4)
    _, (_, state) = _abstract(disc, jnp.zeros((2, size, size, 1)), train=False, **capture)
    inter = state["intermediates"]
    sizes = [inter[name]["__call__"][0].shape[1] for name in sorted(inter) if "Conv_" in name]
    assert sizes == [size // 2**i for i in range(1, n_up + 1)] + [1]


def test_transposed_conv_is_adjoint_of_torch_style_padded_conv(generators):
    """<convT(x), v> == <x, conv(v)> for conv = 4x4, stride 2, padding 1 with the same kernel.

    This is what PyTorch's ConvTranspose2d(4, stride=2, padding=1) computes.
    """
    gen, variables, z = generators[32]
    captured = {}

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.module.name == "ConvTranspose_1":
            captured["x"], captured["y"] = args[0], out
        return out

    with nn.intercept_methods(record):
        gen.apply(variables, z, train=False)
    x, y = captured["x"], captured["y"]
    assert y.shape[1:3] == (2 * x.shape[1], 2 * x.shape[2])
    kernel = variables["params"]["ConvTranspose_1"]["kernel"]  # (4, 4, out, in)
    v = _normal(y.shape, seed=7)
    conv_v = jax.lax.conv_general_dilated(
        v,
        kernel,
        window_strides=(2, 2),
        padding=((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision="highest",
    )
    lhs = float(jnp.vdot(y, v))
    rhs = float(jnp.vdot(x, conv_v))
    assert abs(lhs - rhs) <= 1e-4 * max(1.0, abs(lhs))


def test_batchnorm_running_stats_update_in_train_mode(generators):
    gen, variables, z = generators[28]
    bn0 = variables["batch_stats"]["BatchNorm_0"]
    np.testing.assert_array_equal(bn0["mean"], 0.0)
    np.testing.assert_array_equal(bn0["var"], 1.0)

    _, state = gen.apply(
        variables,
        z,
        train=True,
        capture_intermediates=True,
        mutable=["batch_stats", "intermediates"],
    )
    h = np.asarray(state["intermediates"]["ConvTranspose_0"]["__call__"][0], np.float64)
    new = state["batch_stats"]["BatchNorm_0"]
    # running = 0.9 * running + 0.1 * batch statistic (PyTorch momentum 0.1).
    np.testing.assert_allclose(new["mean"], 0.1 * h.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(new["var"], 0.9 + 0.1 * h.var(axis=(0, 1, 2)), rtol=1e-4)


def test_batchnorm_uses_running_stats_in_eval_mode(generators):
    gen, variables, z = generators[32]

    # Eval: no batch statistics, so one sample's output does not depend on the rest of the batch.
    full = gen.apply(variables, z, train=False)
    np.testing.assert_allclose(gen.apply(variables, z[:1], train=False), full[:1], atol=1e-6)
    _, updates = gen.apply(variables, z, train=False, mutable=["batch_stats"])
    jax.tree.map(np.testing.assert_array_equal, updates["batch_stats"], variables["batch_stats"])

    # ... but it does depend on the stored running statistics.
    shifted = jax.tree.map(lambda s: s + 0.5, variables["batch_stats"])
    moved = gen.apply({**variables, "batch_stats": shifted}, z, train=False)
    assert not np.allclose(moved, full, rtol=0.1, atol=0.0)

    # Train: batch statistics, so the batch composition matters.
    train_full, _ = gen.apply(variables, z, train=True, mutable=["batch_stats"])
    train_part, _ = gen.apply(variables, z[:2], train=True, mutable=["batch_stats"])
    assert float(jnp.max(jnp.abs(train_full[:1] - train_part[:1]))) > 1e-4


@pytest.mark.parametrize(
    "model,input_shape",
    [
        (MLPGenerator(dtype=jnp.bfloat16), (2, 100)),
        (MLPDiscriminator(dtype=jnp.bfloat16), (2, 28, 28, 1)),
        (DCGANGenerator(64, 3, features=4, dtype=jnp.bfloat16), (2, 100)),
        (DCGANDiscriminator(features=4, dtype=jnp.bfloat16), (2, 64, 64, 3)),
    ],
    ids=["mlp_g", "mlp_d", "dcgan_g", "dcgan_d"],
)
def test_bfloat16_computation_keeps_float32_params_and_outputs(model, input_shape):
    variables, out = _abstract(model, jnp.zeros(input_shape), train=False)
    assert out.dtype == jnp.float32
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))


def test_bfloat16_generator_runs_finite():
    model = DCGANGenerator(28, 1, features=4, dtype=jnp.bfloat16)
    z = _normal((4, 100))
    images, _ = model.apply(model.init(KEY, z), z, mutable=["batch_stats"])
    assert images.dtype == jnp.float32 and jnp.all(jnp.isfinite(images))
    assert jnp.all(jnp.abs(images) <= 1.0) and float(jnp.std(images)) > 0.0
