"""Mixed precision by config: bfloat16 compute, float32 state, a clear error for bad values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_config

from genres_jax import tasks
from genres_jax.train import config_checks, precision


def _sr_config():
    config = load_config("edsr_x2")
    config.model.overrides = {"features": 8, "num_blocks": 2}
    return config, (8, 8, 3)


def _gan_config():
    config = load_config("dcgan_fashion_mnist")
    config.model.features = 8
    return config, (28, 28, 1)


def _vae_config():
    config = load_config("vae_conv_fashion_mnist")
    config.model.features = (8, 16)
    return config, (28, 28, 1)


def _classifier_config():
    config = load_config("classifier_fashion_mnist")
    config.model.features = (8, 16)
    config.model.embed_dim = 16
    config.model.dropout = 0.0
    return config, (28, 28, 1)


def _batch(config, image_shape, n: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    if config.task == "sr":
        h, w, c = image_shape
        s = config.scale
        # HR = nearest upsampling of LR plus noise: a target the model's output can approach.
        lr = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
        hr = np.repeat(np.repeat(lr, s, axis=1), s, axis=2)
        return {"lr": lr, "hr": hr}
    batch = {"image": rng.integers(0, 256, (n, *image_shape), dtype=np.uint8)}
    if config.task == "classifier":
        batch["label"] = rng.integers(0, 10, (n,)).astype(np.int32)
    return batch


def _one_step(config, image_shape, name: str, state=None):
    config.precision = name
    task = tasks.make(config, image_shape)
    batch = _batch(config, image_shape)
    if state is None:
        state = jax.jit(task.init)(jax.random.key(0), batch)
    step = jax.jit(task.train_step)
    jaxpr = str(jax.make_jaxpr(task.train_step)(state, batch, jax.random.key(1)))
    new_state, metrics = step(state, batch, jax.random.key(1))
    return state, new_state, jax.device_get(metrics), jaxpr


CASES = {
    "sr": _sr_config,
    "gan": _gan_config,
    "vae": _vae_config,
    "classifier": _classifier_config,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bfloat16_step_close_to_float32_with_float32_state(case):
    config, shape = CASES[case]()
    state, f32_state, f32_metrics, f32_jaxpr = _one_step(config, shape, "float32")
    _, bf16_state, bf16_metrics, bf16_jaxpr = _one_step(config, shape, "bfloat16", state)

    # The computation really runs in bfloat16 under "bfloat16", and not at all under "float32".
    assert "bf16" in bf16_jaxpr and "bf16" not in f32_jaxpr

    # Parameters, optimizer moments, EMA weights and BatchNorm statistics stay float32.
    for path, leaf in jax.tree_util.tree_leaves_with_path(bf16_state):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert leaf.dtype == jnp.float32, jax.tree_util.keystr(path)
    assert jax.tree.map(lambda x: x.dtype, bf16_state) == jax.tree.map(lambda x: x.dtype, f32_state)

    # Losses agree to bfloat16's resolution (8 significand bits, relative step 2**-8 ~ 0.4%),
    # and differ at all: identical values would mean no bfloat16 arithmetic took place.
    assert bf16_metrics.keys() == f32_metrics.keys()
    differs = False
    for key, ref in f32_metrics.items():
        got = float(bf16_metrics[key])
        assert np.isfinite(got), key
        assert abs(got - float(ref)) <= 1e-2 * max(abs(float(ref)), 1.0), (key, got, ref)
        differs |= got != float(ref)
    assert differs


def test_auto_is_bfloat16_on_accelerators_and_float32_on_cpu():
    assert precision.resolve("auto", "cpu") == jnp.float32
    for backend in ("gpu", "cuda", "rocm", "tpu"):
        assert precision.resolve("auto", backend) == jnp.bfloat16
    for backend in ("cpu", "gpu", "tpu"):
        assert precision.resolve("float32", backend) == jnp.float32
        assert precision.resolve("bfloat16", backend) == jnp.bfloat16


def test_configs_recorded_before_precision_use_their_compute_dtype():
    assert precision.compute_dtype({"compute_dtype": "bfloat16"}, "cpu") == jnp.bfloat16
    assert precision.compute_dtype({}, "gpu") == jnp.float32
    assert precision.compute_dtype({"precision": "auto", "compute_dtype": "x"}, "tpu") == (
        jnp.bfloat16
    )


@pytest.mark.parametrize("value", ["fp16", "float16", "bf16", "", None])
def test_invalid_precision_is_a_config_error_naming_the_choices(value):
    config = load_config("edsr_x2")
    config.precision = value
    with pytest.raises(config_checks.ConfigError, match="auto, float32, bfloat16"):
        config_checks.validate_config(config)
    with pytest.raises(ValueError, match="precision="):
        tasks.make(config, (8, 8, 3))
