"""The GAN task's pure functions: samples come from the EMA generator, the EMA follows training."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from conftest import load_config

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
