"""Transposed convolutions as matrix products compute what ``nn.ConvTranspose`` computes."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genres_jax.models import upconv
from genres_jax.models.gan import DCGANGenerator
from genres_jax.models.vae import ConvVAE

KEY = jax.random.key(0)


def _perturbed(variables, scale=0.3):
    """Parameters away from their initial values (a zero bias would hide a misplaced one)."""
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.key(5), len(leaves))
    return jax.tree.unflatten(
        tree, [a + scale * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys, strict=True)]
    )


def _value_and_grads(module, variables, x, cotangent):
    def f(v, x):
        return jnp.vdot(module.apply(v, x), cotangent)

    return jax.jit(lambda v, x: (module.apply(v, x), jax.grad(f, argnums=(0, 1))(v, x)))(
        variables, x
    )


def _assert_close(a, b, tol=2e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        scale = max(1.0, float(jnp.max(jnp.abs(y))))
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=tol * scale)


@pytest.mark.parametrize("transpose_kernel", [True, False])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("shape", [(3, 7, 5, 6), (2, 1, 4, 3)])
def test_conv_transpose_2x_matches_flax_in_value_and_gradients(transpose_kernel, use_bias, shape):
    x = jax.random.normal(KEY, shape)
    reference = nn.ConvTranspose(
        4,
        (4, 4),
        strides=(2, 2),
        padding=((2, 2), (2, 2)),
        transpose_kernel=transpose_kernel,
        use_bias=use_bias,
    )
    variables = _perturbed(reference.init(KEY, x))
    ours = upconv.ConvTranspose2x(
        4, transpose_kernel=transpose_kernel, use_bias=use_bias, form="matmul"
    )
    # The same parameters (names, shapes): a checkpoint of one loads into the other.
    ours_init = ours.init(KEY, x)
    assert jax.tree.map(jnp.shape, ours_init) == jax.tree.map(jnp.shape, variables)
    ct = jax.random.normal(jax.random.key(9), (shape[0], 2 * shape[1], 2 * shape[2], 4))
    want, want_grads = _value_and_grads(reference, variables, x, ct)
    got, got_grads = _value_and_grads(ours, variables, x, ct)
    assert got.shape == want.shape == ct.shape
    _assert_close(got, want)
    _assert_close(got_grads, want_grads)
    # form="xla" is nn.ConvTranspose's own computation.
    _assert_close(
        upconv.ConvTranspose2x(
            4, transpose_kernel=transpose_kernel, use_bias=use_bias, form="xla"
        ).apply(variables, x),
        want,
    )


@pytest.mark.parametrize("transpose_kernel", [True, False])
def test_project_is_a_valid_transposed_conv_of_a_1x1_map(transpose_kernel):
    z = jax.random.normal(KEY, (5, 1, 1, 6))
    reference = nn.ConvTranspose(3, (7, 7), padding="VALID", transpose_kernel=transpose_kernel)
    variables = _perturbed(reference.init(KEY, z))
    ours = upconv.Project(3, size=7, transpose_kernel=transpose_kernel, form="matmul")
    assert jax.tree.map(jnp.shape, ours.init(KEY, z)) == jax.tree.map(jnp.shape, variables)
    ct = jax.random.normal(jax.random.key(3), (5, 7, 7, 3))
    want, want_grads = _value_and_grads(reference, variables, z, ct)
    got, got_grads = _value_and_grads(ours, variables, z, ct)
    _assert_close(got, want)
    _assert_close(got_grads, want_grads)
    with pytest.raises(ValueError, match="1x1"):
        ours.init(KEY, jnp.zeros((1, 2, 2, 6)))


def test_unknown_form_is_refused_before_anything_runs():
    with pytest.raises(ValueError, match="conv_form 'winograd'"):
        upconv.resolve_form("winograd")
    from genres_jax.train import config_checks, defaults

    config = defaults.gan_config("dcgan")
    config.model.conv_form = "winograd"
    with pytest.raises(ValueError, match="unknown model.conv_form 'winograd'; valid: auto"):
        config_checks.validate_config(config)
    assert upconv.resolve_form("auto") == ("matmul" if jax.default_backend() == "cpu" else "xla")


def _generator_loss(gen, variables, z):
    def f(params):
        out, _ = gen.apply({**variables, "params": params}, z, train=True, mutable=["batch_stats"])
        return jnp.sum(jnp.sin(3.0 * out)), out

    return jax.jit(jax.value_and_grad(f, has_aux=True))(variables["params"])


@pytest.mark.parametrize("size", [28, 32])
def test_dcgan_generator_forms_agree_and_keep_the_checkpoint_layout(size):
    z = jax.random.normal(KEY, (4, 100))
    forms = {
        f: DCGANGenerator(image_size=size, channels=1, features=8, conv_form=f)
        for f in ("matmul", "xla")
    }
    variables = forms["xla"].init(KEY, z, train=False)
    # The parameter names that nn.ConvTranspose layers had: older checkpoints restore as they are.
    names = sorted(k for k in variables["params"] if k.startswith("ConvTranspose"))
    assert names == [f"ConvTranspose_{i}" for i in range({28: 3, 32: 4}[size])]
    assert jax.tree.map(jnp.shape, forms["matmul"].init(KEY, z, train=False)) == jax.tree.map(
        jnp.shape, variables
    )
    variables = {**variables, "params": _perturbed(variables["params"], 0.02)}
    (loss_m, out_m), grads_m = _generator_loss(forms["matmul"], variables, z)
    (loss_x, out_x), grads_x = _generator_loss(forms["xla"], variables, z)
    _assert_close(out_m, out_x)
    _assert_close(grads_m, grads_x, tol=1e-4)


def test_conv_vae_forms_agree():
    x = jax.random.uniform(KEY, (3, 28, 28, 1))
    models = {f: ConvVAE(latent_dim=4, features=(8, 16), conv_form=f) for f in ("matmul", "xla")}
    variables = _perturbed(models["xla"].init(KEY, x, KEY), 0.05)
    assert jax.tree.map(jnp.shape, models["matmul"].init(KEY, x, KEY)) == jax.tree.map(
        jnp.shape, variables
    )
    got = models["matmul"].apply(variables, x, KEY)
    want = models["xla"].apply(variables, x, KEY)
    _assert_close(got, want)
