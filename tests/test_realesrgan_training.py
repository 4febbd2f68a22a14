"""Real-ESRGAN's training recipe around the degradations: HR-only input pipeline, sharpened
targets, the pool of pairs, degraded validation, training grids and the kept best weights."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import load_config, tiny
from PIL import Image
from test_gan_sr_task import _tiny_gan

from genres_jax import tasks
from genres_jax.data import inputs, sr_pairs
from genres_jax.evaluation import sr_protocol
from genres_jax.ops import degradations, sharpen
from genres_jax.tasks import gan_sr, gan_sr_parts
from genres_jax.train import checkpointing, trainer

POOL = {"degradation.pool_size": 4, "total_steps": 4, "loss.perceptual_weight": 0.0}


@pytest.fixture(scope="module")
def realesrgan_run(sr_data_dir, tmp_path_factory):
    """4 steps of tiny Real-ESRGAN with a 4-pair pool, validated at steps 2 and 4."""
    workdir = str(tmp_path_factory.mktemp("realesrgan"))
    config = _tiny_gan("realesrgan_x4", sr_data_dir, **POOL)
    return workdir, config, trainer.train_and_evaluate(config, workdir)


def test_pipeline_ships_hr_only_when_lr_is_made_on_the_device(sr_data_dir):
    blind = _tiny_gan("realesrgan_x4", sr_data_dir)
    classical = _tiny_gan("srgan_x4", sr_data_dir)
    rng = np.random.default_rng(0)
    for config, keys in ((blind, {"hr"}), (classical, {"hr", "lr"})):
        source, (patch,) = inputs.train_inputs(config)
        assert set(source[0]) == keys | {"name"}
        crop = patch.random_map(source[0], rng)
        assert set(crop) == keys and crop["hr"].shape == (32, 32, 3)
        if "lr" in crop:  # Aligned with the HR crop (borders see pixels outside the crop).
            inner = np.s_[2:-2, 2:-2]
            lr_of_crop = sr_pairs.bicubic_lr(crop["hr"], 4)[inner].astype(int)
            assert np.max(np.abs(crop["lr"][inner] - lr_of_crop)) <= 1


def test_pool_is_carried_and_checkpointed(realesrgan_run):
    workdir, _, out = realesrgan_run
    state = jax.device_get(out["state"])
    pool = state.pool
    assert int(pool["fill"]) == 4  # Full after two batches of 2, then exchanged twice.
    assert pool["lr"].shape == (4, 8, 8, 3) and pool["hr"].shape == (4, 32, 32, 3)
    assert pool["lr"].dtype == np.uint8 and pool["hr"].dtype == np.uint8
    assert all(np.ptp(p) > 0 for p in pool["hr"])  # Real crops, not the zeros it started with.
    assert state.d_stats  # The U-Net's spectral-norm vectors are carried too.
    # The checkpoint holds the pool, so a resumed run trains on the same pairs.
    directory = os.path.join(workdir, "checkpoints")
    options = ocp.CheckpointManagerOptions(read_only=True)
    with ocp.CheckpointManager(directory, options=options) as manager:
        args = ocp.args.Composite(state=ocp.args.StandardRestore())
        saved = manager.restore(4, args=args)["state"]["pool"]
    for key in ("lr", "hr", "fill"):
        np.testing.assert_array_equal(saved[key], pool[key])


def test_grids_validation_and_best_weights_of_a_gan_run(realesrgan_run):
    workdir, config, _ = realesrgan_run
    # Training pairs grid: the batch's 2 panels of LR (nearest) | model | sharpened HR.
    grid = Image.open(os.path.join(workdir, "samples", "train_pairs_0000002.png"))
    assert grid.size == (2 * (3 * 32 + 4 + 2) + 2, 32 + 4)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        evals = [r for r in map(json.loads, f) if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4]
    # GAN training without LPIPS weights keeps the newest validated weights, not the best PSNR.
    assert sr_protocol.best_metric(config) == "latest"
    assert os.listdir(os.path.join(workdir, "best")) == ["4"]


def test_validation_lr_is_degraded_with_a_fixed_key_per_image(sr_data_dir):
    config = _tiny_gan("realesrgan_x4", sr_data_dir, **{"loss.perceptual_weight": 0.0})
    task = tasks.make(config, (8, 8, 3))
    hr = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    first = task.validation_lr(hr, 0)
    assert first.shape == (12, 16, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(task.validation_lr(hr, 0), first)  # The same every evaluation.
    assert not np.array_equal(task.validation_lr(hr, 1), first)  # Its own draw per image.
    assert np.mean(np.abs(first.astype(float) - sr_pairs.bicubic_lr(hr, 4))) > 1.0
    config.degradation.validation = "bicubic"
    assert tasks.make(config, (8, 8, 3)).validation_lr is None


def test_sharpened_hr_feeds_the_degradation_and_the_pixel_target(sr_data_dir):
    overrides = {"loss.perceptual_weight": 0.0, "loss.adversarial_weight": 0.0}
    config = _tiny_gan("realesrgan_x4", sr_data_dir, **overrides)
    settings = gan_sr_parts.sharpen_settings(config)
    assert settings.degradation_input and settings.pixel_target and not settings.adversarial_target
    task = tasks.make(config, (8, 8, 3))
    rng = np.random.default_rng(2)
    batch = {"hr": jnp.asarray(rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))}
    key = jax.random.key(3)
    state = jax.jit(task.init)(jax.random.key(0), batch)
    _, metrics = jax.jit(task.train_step)(state, batch, key)

    cfg = gan_sr_parts.degradation(config)
    hr = batch["hr"].astype(jnp.float32) / 255.0
    sharp = sharpen.unsharp_mask(hr, weight=0.5, radius=50, threshold=10.0)
    lr = degradations.degrade(jax.random.fold_in(key, 0), sharp, cfg)
    g = gan_sr_parts.build_generator(config)
    sr = np.asarray(g.apply({"params": state.g_params}, lr), np.float64)
    want = np.mean(np.abs(sr - np.asarray(sharp, np.float64)))
    np.testing.assert_allclose(float(metrics["pixel_loss"]), want, rtol=1e-5)
    plain = np.mean(np.abs(sr - np.asarray(hr, np.float64)))
    assert abs(plain - want) > 50 * 1e-5 * want  # Plain HR as target is told apart.
    # The step's LR is the sharpened HR degraded, not the plain HR.
    step_lr = gan_sr.training_lr(
        state, batch, key, degradation=cfg, scale=4, sharpen_settings=settings
    )
    np.testing.assert_array_equal(np.asarray(step_lr), np.asarray(lr))
    unsharpened = degradations.degrade(jax.random.fold_in(key, 0), hr, cfg)
    assert not np.array_equal(np.asarray(unsharpened), np.asarray(lr))


def _manager_keeps(tmp_path, metric, higher, history):
    manager = checkpointing.make_best_manager(
        str(tmp_path / metric), metric, higher_is_better=higher
    )
    for step, metrics in history:
        checkpointing.save_params(manager, step, {"w": np.full(2, step, np.float32)}, metrics)
    manager.wait_until_finished()
    kept = manager.all_steps()
    manager.close()
    return kept


def test_best_weights_follow_the_metric_and_its_direction(tmp_path):
    history = [
        (1, {"psnr_y": 20.0, "lpips": 0.30}),
        (2, {"psnr_y": 22.0, "lpips": 0.35}),
        (3, {"psnr_y": 21.0, "lpips": 0.20}),
        (4, {"psnr_y": 19.0}),
    ]
    assert _manager_keeps(tmp_path, "psnr_y", True, history) == [2]
    assert _manager_keeps(tmp_path, "lpips", False, history) == [3]  # Lower is better; 4 lacks it.
    assert _manager_keeps(tmp_path, "latest", True, history) == [4]


@pytest.mark.parametrize(
    ("name", "overrides", "expected"),
    [
        ("edsr_x2", {}, "psnr_y"),
        ("esrgan_psnr_x4", {}, "psnr_y"),
        ("esrgan_x4", {}, "latest"),
        ("esrgan_x4", {"sr_eval.lpips_weights": "w.npz"}, "lpips"),
        (
            "realesrgan_x4",
            {"loss.perceptual_weight": 0.0, "loss.adversarial_weight": 0.0},
            "psnr_y",
        ),
        ("esrgan_x4", {"sr_eval.best_metric": "ssim_y"}, "ssim_y"),
    ],
)
def test_auto_best_metric_by_kind_of_training(name, overrides, expected, sr_data_dir):
    config = tiny(load_config(name), sr_data_dir, **overrides)
    assert sr_protocol.best_metric(config) == expected


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("realesrgan_x4", {"degradation.pool_size": 3}, "multiple of batch_size=2"),
        ("esrgan_x4", {"degradation.validation": "degraded"}, "needs an on-device degradation"),
        ("realesrgan_x4", {"degradation.validation": "jpeg"}, "valid: bicubic, degraded"),
        ("realesrgan_x4", {"sharpen.radius": 0}, "sharpen.radius must be an integer >= 1"),
        ("realesrgan_x4", {"sharpen.weight": -1.0}, "must be >= 0"),
        ("realesrgan_x4", {"sr_eval.best_metric": "fid"}, "valid: auto, latest, psnr_y"),
        ("esrgan_x4", {"sr_eval.best_metric": "lpips"}, "needs LPIPS weights"),
        ("realesrgan_x4", {"sr_eval.lpips_weights": "/nonexistent/lpips.npz"}, "is not a file"),
    ],
)
def test_bad_recipe_settings_are_config_errors(sr_data_dir, name, overrides, message):
    config = _tiny_gan(name, sr_data_dir, **{"loss.perceptual_weight": 0.0, **overrides})
    with pytest.raises(trainer.ConfigError, match=message):
        trainer.validate_config(config)
