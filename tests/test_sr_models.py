"""Tests for the CNN super-resolution models and their registry.

Forward passes use tiny widths/depths so they run fast on CPU; full-size models are only
initialised abstractly with ``jax.eval_shape`` to count their parameters.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genres_jax.models.edsr import EDSR
from genres_jax.models.rdn import RDN
from genres_jax.models.sr_registry import SR_MODELS, get_sr_model
from genres_jax.models.srcnn import SRCNN, VDSR
from genres_jax.ops.imresize import imresize

# Small variants of every registered model, for forward passes.
TINY = {
    "srcnn": dict(features=(8, 4)),
    "vdsr": dict(features=8, num_layers=4),
    "edsr_baseline": dict(features=8, num_blocks=2),
    "edsr_m": dict(features=8, num_blocks=2),
    "edsr_l": dict(features=8, num_blocks=2),
    "rdn": dict(features=8, num_blocks=2, num_layers=3, growth=4),
    "srresnet": dict(features=8, num_blocks=2),
    "rrdbnet": dict(features=8, num_blocks=1, growth=4),
    "esrgan": dict(features=8, num_blocks=1, growth=4),
    "espcn": dict(features=(8, 4)),
    "fsrcnn": dict(d=8, s=4, m=2),
    "srvgg": dict(num_feat=8, num_conv=2),
    "srvgg_32": dict(num_feat=8, num_conv=3),
    "span": dict(features=8, num_blocks=2),
    "span_28": dict(features=6, num_blocks=2),
}
SCALES = (2, 3, 4)


def n_params(tree) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(tree))


def conv(k: int, cin: int, cout: int) -> int:
    return k * k * cin * cout + cout


def abstract_param_count(model, channels: int = 3) -> int:
    x = jax.ShapeDtypeStruct((1, 8, 8, channels), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    return n_params(variables["params"])


def upsampler_by_hand(f: int, scale: int) -> int:
    if scale == 4:
        return 2 * conv(3, f, 4 * f)
    return conv(3, f, scale * scale * f)


def edsr_by_hand(f: int, blocks: int, scale: int, c: int = 3) -> int:
    head = conv(3, c, f)
    body = (2 * blocks + 1) * conv(3, f, f)
    tail = conv(3, f, c)
    return head + body + upsampler_by_hand(f, scale) + tail


def rdn_by_hand(g0: int, d: int, c: int, g: int, scale: int, ch: int = 3) -> int:
    shallow = conv(3, ch, g0) + conv(3, g0, g0)
    rdb = sum(conv(3, g0 + i * g, g) for i in range(c)) + conv(1, g0 + c * g, g0)
    fusion = conv(1, d * g0, g0) + conv(3, g0, g0)
    return shallow + d * rdb + fusion + upsampler_by_hand(g, scale) + conv(3, g, ch)


def random_variables(model, x_shape, seed: int = 0):
    """Variables of the model's own structure and dtypes, filled from numpy.

    ``model.init`` is traced only abstractly: compiling its random initialisers costs seconds per
    model on CPU, while numpy He-scaled kernels and small biases exercise the same forward pass.
    """
    x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
    abstract = jax.eval_shape(model.init, jax.random.key(0), x)
    rng = np.random.default_rng(seed)

    def fill(leaf):
        # HWIO conv kernels get He scaling from their fan-in; biases stay small.
        std = np.sqrt(2.0 / np.prod(leaf.shape[:3])) if leaf.ndim == 4 else 0.01
        return jnp.asarray(rng.standard_normal(leaf.shape) * std, dtype=leaf.dtype)

    return jax.tree.map(fill, abstract)


@functools.cache
def jitted_apply(model):
    return jax.jit(model.apply)


def lr_shape(model, batch: int = 1) -> tuple[int, int, int, int]:
    """Non-square LR input wide enough that borders are out of reach of the middle pixel."""
    size = 2 * model.receptive_radius + 7
    return (batch, size, size + 1, 3)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", sorted(SR_MODELS))
def test_shape_dtype_and_receptive_radius(name, scale):
    if name in ("rrdbnet", "esrgan") and scale == 3:  # ESRGAN's upsampler: x1, x2, x4 only.
        with pytest.raises(ValueError, match="supports scales"):
            get_sr_model(name, scale, **TINY[name])
        return
    model = get_sr_model(name, scale, **TINY[name])
    radius = model.receptive_radius
    assert isinstance(radius, int)
    shape = lr_shape(model, batch=2)
    variables = random_variables(model, shape)
    x = jax.random.uniform(jax.random.key(1), shape)
    p = shape[1] // 2
    # Perturb one middle LR pixel of the first image; the second image must not notice.
    x2 = x.at[0, p, p, :].add(0.5)
    y, y2 = jitted_apply(model)(variables, x), jitted_apply(model)(variables, x2)

    assert y.shape == (2, shape[1] * scale, shape[2] * scale, 3)
    assert y.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(y)))
    np.testing.assert_array_equal(np.asarray(y[1]), np.asarray(y2[1]))

    changed = np.argwhere(np.any(np.asarray(y[0]) != np.asarray(y2[0]), axis=-1))
    assert len(changed), "perturbation had no effect"
    reach = int(np.max(np.abs(changed // scale - p)))
    assert reach <= radius
    assert radius <= 2 * reach
    if name.startswith(("edsr", "espcn", "fsrcnn", "srvgg", "span")):
        assert reach == radius  # these bounds are exact


def test_vdsr_with_zero_residual_is_bicubic():
    model = VDSR(scale=3, features=4, num_layers=2)
    x = jax.random.uniform(jax.random.key(4), (1, 5, 6, 3))
    zeros = jax.tree.map(jnp.zeros_like, random_variables(model, x.shape))
    y = jitted_apply(model)(zeros, x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(imresize(x, scale=3)), atol=1e-6)


def test_edsr_mean_shift_round_trips():
    # With every weight zero the network output is the tail bias (zero) plus the restored mean.
    model = EDSR(scale=2, features=4, num_blocks=1)
    x = jax.random.uniform(jax.random.key(5), (1, 3, 3, 3))
    zeros = jax.tree.map(jnp.zeros_like, random_variables(model, x.shape))
    y = jitted_apply(model)(zeros, x)
    np.testing.assert_allclose(np.asarray(y[0, 0, 0]), [0.4488, 0.4371, 0.4040], rtol=1e-6)


def test_real_init_runs():
    model = get_sr_model("edsr_baseline", 2, features=4, num_blocks=1)
    x = jnp.full((1, 4, 4, 3), 0.5)
    variables = model.init(jax.random.key(0), x)
    y = model.apply(variables, x)
    assert y.shape == (1, 8, 8, 3)
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(variables))


@pytest.mark.parametrize(
    "model",
    [
        SRCNN(scale=2, channels=1, features=(8, 4)),
        VDSR(scale=3, channels=1, features=8, num_layers=3),
        EDSR(scale=4, channels=1, features=8, num_blocks=1, rgb_mean=(0.45,)),
        RDN(scale=2, channels=1, features=8, num_blocks=1, num_layers=2, growth=4),
    ],
    ids=lambda m: type(m).__name__,
)
def test_single_channel_models(model):
    x = jnp.full((1, 4, 4, 1), 0.5)
    y = jitted_apply(model)(random_variables(model, x.shape), x)
    assert y.shape == (1, 4 * model.scale, 4 * model.scale, 1)


@pytest.mark.parametrize(
    ("name", "scale", "expected", "published"),
    [
        ("edsr_baseline", 2, edsr_by_hand(64, 16, 2), 1.37e6),
        ("edsr_baseline", 3, edsr_by_hand(64, 16, 3), None),
        ("edsr_baseline", 4, edsr_by_hand(64, 16, 4), 1.52e6),
        ("edsr_m", 4, edsr_by_hand(64, 16, 4), 1.52e6),
        ("edsr_l", 2, edsr_by_hand(256, 32, 2), 40.7e6),
        ("edsr_l", 3, edsr_by_hand(256, 32, 3), None),
        ("edsr_l", 4, edsr_by_hand(256, 32, 4), 43.1e6),
        ("rdn", 2, rdn_by_hand(64, 16, 8, 64, 2), 22.0e6),
        ("rdn", 3, rdn_by_hand(64, 16, 8, 64, 3), None),
        ("rdn", 4, rdn_by_hand(64, 16, 8, 64, 4), 22.0e6),
        ("srcnn", 2, conv(9, 3, 64) + conv(1, 64, 32) + conv(5, 32, 3), None),
        ("vdsr", 3, conv(3, 3, 64) + 18 * conv(3, 64, 64) + conv(3, 64, 3), None),
    ],
)
def test_full_size_parameter_counts(name, scale, expected, published):
    count = abstract_param_count(get_sr_model(name, scale))
    assert count == expected
    if published is not None:
        assert abs(count - published) / published < 0.02


def test_edsr_variants_fields():
    base = get_sr_model("edsr_baseline", 2)
    large = get_sr_model("edsr_l", 2)
    assert (base.features, base.num_blocks, base.res_scale) == (64, 16, 1.0)
    assert (large.features, large.num_blocks, large.res_scale) == (256, 32, 0.1)
    assert get_sr_model("edsr_m", 2) == base


@pytest.mark.parametrize(
    ("name", "scale"),
    [("edsr_baseline", 5), ("edsr_l", 1), ("rdn", 8), ("rdn", 0), ("srcnn", 0), ("vdsr", 2.5)],
)
def test_unsupported_scale_raises(name, scale):
    with pytest.raises(ValueError, match="scale"):
        get_sr_model(name, scale)


def test_edsr_mean_must_match_channels():
    with pytest.raises(ValueError, match="rgb_mean"):
        EDSR(scale=2, channels=1)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown SR model") as err:
        get_sr_model("srgan_unet", 4)
    for name in SR_MODELS:
        assert name in str(err.value)


@pytest.mark.parametrize("name", ["srcnn", "vdsr", "edsr_l", "rdn"])
def test_bfloat16_compute(name):
    model32 = get_sr_model(name, 2, **TINY[name])
    model16 = get_sr_model(name, 2, compute_dtype=jnp.bfloat16, **TINY[name])
    shape = lr_shape(model32, batch=2)
    x = jax.random.uniform(jax.random.key(1), shape)
    abstract = jax.eval_shape(model16.init, jax.random.key(0), x)
    assert {p.dtype for p in jax.tree.leaves(abstract)} == {jnp.dtype(jnp.float32)}
    variables = random_variables(model16, shape)
    y16 = jitted_apply(model16)(variables, x)
    assert y16.dtype == jnp.float32
    # Same float32 params through the float32 model: bf16 only adds rounding noise.
    y32 = jitted_apply(model32)(variables, x)
    rel_err = float(jnp.linalg.norm(y16 - y32) / jnp.linalg.norm(y32))
    assert 0 < rel_err < 0.02


def test_receptive_radius_of_full_models():
    # Head + 2 per block + body conv + upsampler conv at LR, upsampler/tail convs at finer grids.
    assert get_sr_model("edsr_baseline", 2).receptive_radius == 16 * 2 + 4
    assert get_sr_model("edsr_l", 4).receptive_radius == 32 * 2 + 4
    assert get_sr_model("rdn", 3).receptive_radius == 16 * 8 + 5
    assert get_sr_model("vdsr", 4).receptive_radius == 7  # 1.5 (bicubic) + 20 / 4
