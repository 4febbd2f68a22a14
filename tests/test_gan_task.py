"""The GAN task's pure functions: samples come from the EMA generator, the EMA follows training."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_config

from genres_jax.losses import adversarial
from genres_jax.tasks import base, gan


def _task_and_state():
    config = load_config("gan_mlp_fashion_mnist")
    config.num_samples = 4
    task = gan.make(config, (28, 28, 1))
    batch = {"image": np.zeros((8, 28, 28, 1), np.uint8), "label": np.zeros(8, np.int32)}
    state = jax.jit(task.init)(jax.random.PRNGKey(0), batch)
    return config, task, state


def test_samples_use_the_ema_weights():
    config, task, state = _task_and_state()
    g = gan.GAN_MODELS["mlp"](config.model, (28, 28, 1), jnp.float32)[0]
    # Make the EMA weights differ from the live ones; samples must follow the EMA.
    state = state.replace(ema_params=jax.tree.map(lambda p: p * 0.5, state.g_params))
    key = jax.random.PRNGKey(3)
    samples = task.sample_images(state, key)["samples"]
    z = jax.random.normal(key, (4, config.model.latent_dim))
    with_ema, _ = base.apply_model(g, state.ema_params, state.g_stats, z, train=False)
    with_live, _ = base.apply_model(g, state.g_params, state.g_stats, z, train=False)
    np.testing.assert_allclose(samples, (with_ema + 1) / 2, atol=1e-6)
    assert np.abs(np.asarray(samples) - np.asarray((with_live + 1) / 2)).max() > 1e-4
    assert samples.shape == (4, 28, 28, 1) and samples.min() >= 0 and samples.max() <= 1


def test_ema_moves_towards_the_generator_with_warm_up_decay():
    config, task, state = _task_and_state()
    batch = {
        "image": np.random.default_rng(0).integers(0, 256, (8, 28, 28, 1), dtype=np.uint8),
        "label": np.zeros(8, np.int32),
    }
    new, metrics = jax.jit(task.train_step)(state, batch, jax.random.PRNGKey(1))
    assert int(new.step) == 1 and np.isfinite(float(metrics["g_loss"]))
    # Step 0: decay = min(0.999, 1/10) = 0.1, so ema = 0.1 * old + 0.9 * new generator weights.
    for old, live, ema in zip(
        jax.tree.leaves(state.ema_params),
        jax.tree.leaves(new.g_params),
        jax.tree.leaves(new.ema_params),
        strict=True,
    ):
        np.testing.assert_allclose(ema, 0.1 * old + 0.9 * live, rtol=1e-5, atol=1e-7)


def _dcgan(g_fakes: str, lr: float = 1.0):
    config = load_config("dcgan_fashion_mnist")
    config.model.features = 8
    config.gan.g_fakes = g_fakes
    # Plain SGD: its first update is -lr * gradient, so the gradient can be read back.
    config.g_optimizer.name = "sgd"
    config.g_optimizer.learning_rate = lr
    size = config.dataset.image_size or 28
    task = gan.make(config, (size, size, 1))
    batch = {
        "image": np.random.default_rng(1).integers(0, 256, (8, size, size, 1), dtype=np.uint8),
        "label": np.zeros(8, np.int32),
    }
    state = jax.jit(task.init)(jax.random.PRNGKey(0), batch)
    return config, task, state, batch


def test_shared_fakes_train_the_generator_on_the_discriminators_batch():
    """With g_fakes = "shared" the generator's gradient is that of the generator loss of the very
    fakes the discriminator was updated on (one generator forward, as PyTorch's DCGAN loop),
    scored by the updated discriminator; its BatchNorm statistics move once per step."""
    config, task, state, batch = _dcgan("shared")
    key = jax.random.PRNGKey(5)
    new, _ = jax.jit(task.train_step)(state, batch, key)
    g, d = gan.GAN_MODELS["dcgan"](config.model, batch["image"].shape[1:], jnp.float32)
    z_d_key = jax.random.split(jax.random.fold_in(key, 0), 3)[0]
    z = jax.random.normal(z_d_key, (8, config.model.latent_dim), jnp.float32)

    def generator_loss(g_params):
        fake, _ = base.apply_model(g, g_params, state.g_stats, z, train=True)
        logits, _ = base.apply_model(d, new.d_params, new.d_stats, fake, train=True)
        return adversarial.generator_loss(config.gan.loss, logits)

    want = jax.grad(generator_loss)(state.g_params)
    got = jax.tree.map(lambda old, upd: old - upd, state.g_params, new.g_params)
    for w, o in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
        np.testing.assert_allclose(o, w, rtol=2e-3, atol=2e-6)
    _, stats_once = base.apply_model(g, state.g_params, state.g_stats, z, train=True)
    for w, o in zip(jax.tree.leaves(stats_once), jax.tree.leaves(new.g_stats), strict=True):
        np.testing.assert_allclose(o, w, rtol=1e-5, atol=1e-6)


def test_shared_fakes_save_a_generator_pass():
    flops = {}
    for mode in ("shared", "fresh"):
        _, task, state, batch = _dcgan(mode)
        compiled = jax.jit(task.train_step).lower(state, batch, jax.random.PRNGKey(0)).compile()
        flops[mode] = compiled.cost_analysis()["flops"]
    # One generator forward at batch 8 is far more than 1% of the step.
    assert flops["shared"] < 0.99 * flops["fresh"]


def test_unknown_g_fakes_is_a_config_error():
    config = load_config("dcgan_fashion_mnist")
    config.gan.g_fakes = "recycled"
    with pytest.raises(ValueError, match="gan.g_fakes must be one of shared, fresh"):
        gan.validate(config)
