"""GAN super-resolution through the trainer: SRGAN, ESRGAN (two stages), Real-ESRGAN.

Tiny networks and two steps on the offline photos; one step's losses are recomputed in float64
NumPy from the published formulas on the same discriminator logits.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import REPO, load_config, tiny
from PIL import Image

from genres_jax import tasks
from genres_jax import upscale as upscale_cli
from genres_jax.inference import upscalers
from genres_jax.models import vgg
from genres_jax.ops import tiling
from genres_jax.tasks import gan_sr, gan_sr_parts
from genres_jax.train import checkpointing, periodic_eval, sharding, trainer, workdirs

GENERATORS = {
    "rrdbnet": {"num_blocks": 1, "features": 8, "growth": 4},
    "srresnet": {"num_blocks": 1, "features": 8},
}
DISCRIMINATORS = {"vgg": {"features": 4, "hidden": 8}, "unet": {"features": 4}}
TRAIN_KEYS = {"g_loss", "pixel_loss", "g_adv_loss", "d_loss", "d_real_logit", "d_fake_logit"}


def _tiny_gan(name: str, data_dir: str, **overrides):
    """Config ``name`` at 8x8 LR / 32x32 HR patches, batch 2, 2 steps, one validation image."""
    config = load_config(name)
    settings = {
        "batch_size": 2,
        "total_steps": 2,
        "log_every": 1,
        "eval_every": 2,
        "checkpoint_every": 2,
        "dataset.lr_patch_size": 8,
        "model.overrides": GENERATORS[config.model.name],
        "sr_eval.max_images": 1,
        "sr_eval.tile": 0,
        "sr_eval.panels": 1,
        "sr_eval.panel_size": 32,
    }
    if "discriminator" in config:
        settings["discriminator.overrides"] = DISCRIMINATORS[config.discriminator.name]
    return tiny(config, data_dir, **{**settings, **overrides})


def _check_run(workdir, out) -> list[dict]:
    """Metrics, a validation panel, a checkpoint and best weights were written at step 2."""
    assert (out["step"], out["ended"], out["skipped_steps"]) == (2, "done", 0)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    for r in train:
        assert r.keys() >= TRAIN_KEYS, r
        assert all(math.isfinite(r[k]) for k in TRAIN_KEYS)
    (ev,) = [r for r in records if r["kind"] == "eval"]
    assert ev["step"] == 2 and 0 < ev["psnr_y"] < 60 and 0 < ev["ssim_y"] <= 1
    panel = Image.open(os.path.join(workdir, "samples", "val_0_0000002.png"))
    assert panel.size == (3 * 32 + 4 + 4, 32 + 4)  # bicubic | model | HR, 2-pixel frame
    assert os.listdir(os.path.join(workdir, "checkpoints")) == ["2"]
    assert os.listdir(os.path.join(workdir, "best")) == ["2"]
    return train


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> str:
    """torchvision's vgg19 ``features.*`` layout in a .npz: He-random conv1_1 and conv1_2 (the
    layers the tests use), zeros for the deeper convs (never run: the task drops them)."""
    rng = np.random.default_rng(0)
    state = {}
    for name, (index, cin, cout) in vgg.VGG19_CONVS.items():
        shallow = name in ("conv1_1", "conv1_2")
        std = math.sqrt(2.0 / (9 * cin)) if shallow else 0.0
        state[f"features.{index}.weight"] = (rng.normal(size=(cout, cin, 3, 3)) * std).astype(
            np.float32
        )
        state[f"features.{index}.bias"] = np.full(cout, 0.01 if shallow else 0.0, np.float32)
    path = str(tmp_path_factory.mktemp("vgg") / "vgg19_features.npz")
    np.savez_compressed(path, **state)
    return path


@pytest.fixture(scope="module")
def esrgan_runs(sr_data_dir, vgg_file, tmp_path_factory):
    """ESRGAN's two stages: PSNR pre-training (task sr), then the GAN with init_from."""
    root = tmp_path_factory.mktemp("esrgan")
    psnr = _tiny_gan("esrgan_psnr_x4", sr_data_dir, total_steps=1, eval_every=1)
    trainer.train_and_evaluate(psnr, str(root / "psnr"))
    config = _tiny_gan(
        "esrgan_x4",
        sr_data_dir,
        init_from=str(root / "psnr"),
        **{
            "loss.vgg_weights": vgg_file,
            "loss.perceptual_layers": {"conv1_2": 1.0},
            "g_optimizer.learning_rate": 1e-3,
        },
    )
    out = trainer.train_and_evaluate(config, str(root / "gan"))
    return {"psnr": str(root / "psnr"), "gan": str(root / "gan"), "config": config, "out": out}


def test_esrgan_stage_two_trains_with_perceptual_and_relativistic_losses(esrgan_runs):
    train = _check_run(esrgan_runs["gan"], esrgan_runs["out"])
    assert all(r["perceptual_loss"] > 0 for r in train)
    assert "conv1_2" in esrgan_runs["out"]["state"].vgg_params
    assert "conv2_1" not in esrgan_runs["out"]["state"].vgg_params  # Deeper convs never run.


def test_srgan_trains_without_perceptual_loss(sr_data_dir, tmp_path):
    # SRGAN (vanilla GAN, VGG discriminator, bicubic LR), perceptual term switched off; Real-
    # ESRGAN's run is in test_realesrgan_training.
    config = _tiny_gan(
        "srgan_x4", sr_data_dir, **{"loss.perceptual_weight": 0.0, "loss.pixel_weight": 1.0}
    )
    out = trainer.train_and_evaluate(config, str(tmp_path))
    train = _check_run(tmp_path, out)
    assert "perceptual_loss" not in train[0] and out["state"].vgg_params == {}


def test_realesrgan_lr_comes_from_hr_and_the_step_key(sr_data_dir):
    config = _tiny_gan("realesrgan_x4", sr_data_dir)
    cfg = gan_sr_parts.degradation(config)
    rng = np.random.default_rng(2)
    hr = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    key = jax.random.key(5)

    @jax.jit
    def lr_at(step, pipeline_lr):
        state = types.SimpleNamespace(step=step)
        batch = {"hr": hr, "lr": pipeline_lr}
        return gan_sr.training_lr(state, batch, key, degradation=cfg, scale=4)

    zeros, whites = np.zeros((2, 8, 8, 3), np.uint8), np.full((2, 8, 8, 3), 255, np.uint8)
    first = np.asarray(lr_at(0, zeros))
    assert first.shape == (2, 8, 8, 3)
    np.testing.assert_allclose(first * 255.0, np.round(first * 255.0), atol=1e-3)  # 8-bit levels.
    np.testing.assert_array_equal(np.asarray(lr_at(0, whites)), first)  # Pipeline LR unused.
    assert np.max(np.abs(np.asarray(lr_at(1, zeros)) - first)) > 0.05  # A new draw each step.
    assert not np.array_equal(first[0], first[1])  # And each image.
    # Classical degradation: the pipeline's LR, as is.
    bicubic = gan_sr.training_lr(
        types.SimpleNamespace(step=0), {"hr": hr, "lr": whites}, key, degradation=None, scale=4
    )
    np.testing.assert_array_equal(bicubic, np.ones((2, 8, 8, 3), np.float32))


def _softplus(x):
    return np.logaddexp(0.0, x)


def test_one_step_matches_float64_formulas_and_init_from_is_exact(esrgan_runs):
    config = esrgan_runs["config"]
    task = tasks.make(config, (8, 8, 3))
    rng = np.random.default_rng(1)
    batch = {
        "lr": jnp.asarray(rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)),
        "hr": jnp.asarray(rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)),
    }
    # Any state of this config will do: init_from replaces the generator and its EMA.
    trained = esrgan_runs["out"]["state"]
    mesh = sharding.make_mesh()
    with jax.set_mesh(mesh):
        state_sh = jax.tree.map(lambda _: sharding.replicated(mesh), trained)
        state = periodic_eval.init_from(task, trained, esrgan_runs["psnr"], state_sh, False)
    pretrained, _ = checkpointing.load_params(os.path.join(esrgan_runs["psnr"], "best"))
    pairs = zip(jax.tree.leaves(trained.g_params), jax.tree.leaves(pretrained), strict=True)
    assert any(not np.array_equal(a, b) for a, b in pairs)  # Two GAN steps moved them.
    for tree in (state.g_params, state.ema_params):
        jax.tree.map(np.testing.assert_array_equal, tree, pretrained)

    step = jax.jit(task.train_step)
    s1, m1 = step(state, batch, jax.random.key(2))
    s2, _ = step(s1, batch, jax.random.key(2))

    g = gan_sr_parts.build_generator(config)
    d = gan_sr_parts.build_discriminator(config)
    lr, hr = (np.asarray(batch[k], np.float64) / 255.0 for k in ("lr", "hr"))
    hr32, lr32 = jnp.asarray(hr, jnp.float32), jnp.asarray(lr, jnp.float32)
    loss = config.loss

    def logits(d_params, images):
        # As in the step: D in training mode on the real batch, then on the fake one.
        v = {"params": d_params, "batch_stats": state.d_stats}
        r, st = d.apply(v, hr32, train=True, mutable=["batch_stats"])
        f, _ = d.apply({**v, **st}, images, train=True, mutable=["batch_stats"])
        return r, f

    def perc(images):
        # VGG's conv1_2 output before its ReLU, written out: ImageNet normalisation, a padded
        # 3x3 conv, ReLU, a padded 3x3 conv; then the mean absolute difference (L1).
        vgg = state.vgg_params
        mean = jnp.asarray([0.485, 0.456, 0.406])
        std = jnp.asarray([0.229, 0.224, 0.225])

        def conv(x, layer):
            dims = ("NHWC", "HWIO", "NHWC")
            y = jax.lax.conv_general_dilated(
                x, layer["kernel"], (1, 1), ((1, 1), (1, 1)), dimension_numbers=dims
            )
            return y + layer["bias"]

        def phi(x):
            return conv(jax.nn.relu(conv((x - mean) / std, vgg["conv1_1"])), vgg["conv1_2"])

        return jnp.mean(jnp.abs(phi(images) - phi(hr32)))

    # The losses written out directly, differentiated by autodiff, against the step's pullbacks.
    def direct_g_loss(g_params):
        out = g.apply({"params": g_params}, lr32)
        r, f = logits(state.d_params, out)
        r = jax.lax.stop_gradient(r)
        adv = 0.5 * (
            jnp.mean(jax.nn.softplus(r - f.mean())) + jnp.mean(jax.nn.softplus(r.mean() - f))
        )
        return (
            loss.pixel_weight * jnp.mean(jnp.abs(out - hr32))
            + loss.perceptual_weight * perc(out)
            + loss.adversarial_weight * adv
        )

    @jax.jit
    def reference():
        sr = g.apply({"params": state.g_params}, lr32)
        real, fake = logits(state.d_params, sr)

        def direct_d_loss(d_params):
            r, f = logits(d_params, sr)
            return 0.5 * (
                jnp.mean(jax.nn.softplus(f.mean() - r)) + jnp.mean(jax.nn.softplus(f - r.mean()))
            )

        g_norm = optax.global_norm(jax.grad(direct_g_loss)(state.g_params))
        d_norm = optax.global_norm(jax.grad(direct_d_loss)(state.d_params))
        return sr, real, fake, perc(sr), g_norm, d_norm

    sr, real, fake, perc_ref, g_norm, d_norm = map(np.asarray, reference())
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    # Relativistic average GAN (ESRGAN): BCE of real - mean(fake) and fake - mean(real).
    d_ref = 0.5 * (_softplus(-(real - fake.mean())).mean() + _softplus(fake - real.mean()).mean())
    g_ref = 0.5 * (_softplus(real - fake.mean()).mean() + _softplus(-(fake - real.mean())).mean())
    pixel_ref = np.mean(np.abs(sr.astype(np.float64) - hr))
    total_ref = (
        loss.pixel_weight * pixel_ref
        + loss.perceptual_weight * float(perc_ref)
        + loss.adversarial_weight * g_ref
    )
    np.testing.assert_allclose(m1["d_loss"], d_ref, rtol=1e-5)
    np.testing.assert_allclose(m1["g_adv_loss"], g_ref, rtol=1e-5)
    np.testing.assert_allclose(m1["pixel_loss"], pixel_ref, rtol=1e-5)
    np.testing.assert_allclose(m1["perceptual_loss"], float(perc_ref), rtol=1e-4)
    np.testing.assert_allclose(m1["g_loss"], total_ref, rtol=1e-5)
    np.testing.assert_allclose(m1["d_real_logit"], real.mean(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m1["g_grad_norm"], g_norm, rtol=1e-4)
    np.testing.assert_allclose(m1["d_grad_norm"], d_norm, rtol=1e-4)

    # EMA: e_{t+1} = d_t e_t + (1 - d_t) p_{t+1}, d_t = min(decay, (1 + t) / (10 + t)).
    t0 = int(state.step)
    decays = [min(config.ema_decay, (1 + t) / (10 + t)) for t in (t0, t0 + 1)]

    def ema_ref(e0, p1, p2):
        e0, p1, p2 = (np.asarray(x, np.float64) for x in (e0, p1, p2))
        e1 = decays[0] * e0 + (1 - decays[0]) * p1
        return decays[1] * e1 + (1 - decays[1]) * p2

    want = jax.tree.map(ema_ref, state.ema_params, s1.g_params, s2.g_params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-7), s2.ema_params, want)
    # predict runs the EMA weights, not the raw ones.
    outputs = jax.jit(
        lambda s: (
            task.predict(s, lr32),
            *(g.apply({"params": p}, lr32) for p in (s.ema_params, s.g_params)),
        )
    )(s2)
    predicted, from_ema, from_raw = map(np.asarray, outputs)
    np.testing.assert_allclose(predicted, from_ema, rtol=0, atol=1e-6)
    assert np.max(np.abs(predicted - from_raw)) > 1e-5


def test_upscale_uses_ema_weights_and_tiles_exactly(esrgan_runs, tmp_path):
    workdir, state = esrgan_runs["gan"], esrgan_runs["out"]["state"]
    predict, scale, radius, info = upscalers.workdir_predictor(workdir)
    assert (scale, info["weights"]) == (4, "best")
    params, _, _ = workdirs.load_inference_params(workdir)
    jax.tree.map(np.testing.assert_array_equal, params, jax.device_get(state.ema_params))
    g_leaves = jax.tree.leaves(jax.device_get(state.g_params))
    assert any(
        not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), g_leaves, strict=True)
    )

    image = np.random.default_rng(3).integers(0, 256, (53, 70, 3), dtype=np.uint8)
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    Image.fromarray(image).save(src)
    assert upscale_cli.main([str(src), str(dst), "--workdir", workdir, "--tile", "12"]) == 0
    got = np.asarray(Image.open(dst))
    assert got.shape == (53 * 4, 70 * 4, 3)

    x = image.astype(np.float32) / 255.0
    whole = np.asarray(predict(jnp.asarray(x[None])))[0]
    tiled = tiling.tiled_apply(
        lambda t: predict(jnp.asarray(t)), x, scale=4, tile=12, overlap=radius
    )
    assert 12 + 2 * radius < 53  # Several windows along both axes.
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)
    want = np.round(np.clip(whole, 0.0, 1.0) * 255.0)
    assert np.max(np.abs(got.astype(np.float64) - want)) <= 1.0


def test_missing_vgg_weights_stop_the_run_before_compiling(sr_data_dir, tmp_path):
    for path, message in [("", "needs VGG19 weights"), (str(tmp_path / "no.npz"), "not a file")]:
        config = _tiny_gan("esrgan_x4", sr_data_dir, **{"loss.vgg_weights": path})
        with pytest.raises(trainer.ConfigError, match=message) as err:
            trainer.train_and_evaluate(config, str(tmp_path / "run"))
        assert "--config.loss.vgg_weights=PATH" in str(err.value)
        assert "perceptual_weight=0" in str(err.value)
    assert not (tmp_path / "run" / "checkpoints").exists()

    proc = subprocess.run(
        [sys.executable, "train.py", "--config", "configs/realesrgan_x4.py"]
        + ["--workdir", str(tmp_path / "cli"), f"--config.dataset.data_dir={sr_data_dir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "error: loss.perceptual_weight > 0 needs VGG19 weights" in proc.stderr
    assert "Traceback" not in proc.stderr


def _bad_file(tmp_path):
    path = tmp_path / "vgg16.npz"
    np.savez(path, **{"features.0.weight": np.zeros((64, 3, 3, 3), np.float32)})
    return {"loss.vgg_weights": str(path)}


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("esrgan_x4", {"discriminator.name": "resnet"}, "discriminator 'resnet'; valid: unet, vgg"),
        ("esrgan_x4", {"loss.adversarial": "wgan"}, "valid: hinge, nonsaturating, relativistic"),
        ("esrgan_x4", {"degradation.kind": "jpeg"}, "valid: bicubic, realesrgan"),
        ("esrgan_x4", {"discriminator.overrides": {"input_size": 128}}, "patches of 32x32"),
        ("realesrgan_x4", {"dataset.lr_patch_size": 5}, "multiples of 8"),
        ("realesrgan_x4", {"degradation.overrides": {"final_sinc_prob": 2.0}}, "final_sinc_prob"),
        ("srgan_x4", {"model.overrides": {"batch_norm": True}}, "batch_norm=True"),
        ("srgan_x4", {"loss.perceptual_layers": {"relu9_9": 1.0}}, "unknown VGG19 layer"),
        ("srgan_x4", {"loss.perceptual_weight": 0.0, "loss.adversarial_weight": 0.0}, "nothing"),
        ("esrgan_x4", _bad_file, "lacks 'features.0.bias'"),
    ],
)
def test_bad_settings_are_config_errors(sr_data_dir, tmp_path, name, overrides, message):
    if callable(overrides):
        overrides = overrides(tmp_path)
    config = _tiny_gan(name, sr_data_dir, **overrides)
    with pytest.raises(trainer.ConfigError, match=message):
        trainer.validate_config(config)
