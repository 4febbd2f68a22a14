"""Super-resolution training on the offline photos: it learns, keeps its best weights, resumes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import load_config

from genres_jax.data import sources, sr_pairs
from genres_jax.evaluation import sr_protocol
from genres_jax.inference import upscalers
from genres_jax.train import defaults, trainer, workdirs


def _small_sr(name: str, data_dir: str, **overrides):
    config = load_config(name)
    config.dataset.data_dir = data_dir
    config.progress_bar = False
    config.log_every = 50
    for key, value in overrides.items():
        target = config
        *path, leaf = key.split(".")
        for part in path:
            target = target[part]
        target[leaf] = value
    return config


@pytest.fixture(scope="module")
def bicubic_validation(sr_data_dir) -> dict:
    cfg = defaults.sr_photos_dataset()
    cfg.name = "sr_photos_local"
    cfg.data_dir = sr_data_dir
    pairs = sr_pairs.PairSource(sources.load(cfg, "validation"), 2)
    return sr_protocol.evaluate_pairs(
        upscalers.classical_upscaler("bicubic", 2),
        (pairs[i] for i in range(len(pairs))),
        crop_border=2,
    )["mean"]


def test_short_vdsr_run_beats_bicubic_on_validation(sr_data_dir, tmp_path, bicubic_validation):
    config = _small_sr(
        "vdsr_x2",
        sr_data_dir,
        total_steps=200,
        eval_every=200,
        checkpoint_every=200,
        **{
            "model.overrides": {"num_layers": 4, "features": 32},
            "dataset.lr_patch_size": 32,
            "optimizer.learning_rate": 1e-3,
        },
    )
    out = trainer.train_and_evaluate(config, str(tmp_path))
    assert out["eval"]["psnr_y"] > bicubic_validation["psnr_y"] + 0.2, (
        out["eval"],
        bicubic_validation,
    )
    # The best EMA weights are what the tools load, and they reproduce the validation numbers.
    predict, scale, radius, info = upscalers.workdir_predictor(str(tmp_path))
    assert (scale, info["weights"]) == (2, "best")
    cfg = defaults.sr_photos_dataset()
    cfg.name = "sr_photos_local"
    cfg.data_dir = sr_data_dir
    pairs = sr_pairs.PairSource(sources.load(cfg, "validation"), 2)
    again = sr_protocol.evaluate_pairs(
        upscalers.model_upscaler(predict, scale=2, tile=0),
        (pairs[i] for i in range(len(pairs))),
        crop_border=2,
    )["mean"]
    np.testing.assert_allclose(again["psnr_y"], out["eval"]["psnr_y"], atol=1e-3)
    panels = sorted(os.listdir(tmp_path / "samples"))
    assert panels == ["val_0_0000200.png", "val_1_0000200.png"]


def test_best_checkpoint_keeps_the_highest_validation_psnr(sr_data_dir, tmp_path):
    config = _small_sr(
        "edsr_x2",
        sr_data_dir,
        total_steps=6,
        eval_every=2,
        checkpoint_every=3,
        **{
            "model.overrides": {"num_blocks": 1, "features": 8},
            "dataset.lr_patch_size": 16,
            "batch_size": 4,
            "sr_eval.max_images": 1,
            "sr_eval.panels": 0,
        },
    )
    trainer.train_and_evaluate(config, str(tmp_path))
    with open(tmp_path / "metrics.jsonl") as f:
        evals = [r for r in map(json.loads, f) if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4, 6]
    best_step = max(evals, key=lambda r: r["psnr_y"])["step"]
    assert os.listdir(tmp_path / "best") == [str(best_step)]
    _, step, origin = workdirs.load_inference_params(str(tmp_path))
    assert (step, origin) == (best_step, "best")


def test_x4_starts_from_x2_weights_where_shapes_match(sr_data_dir, tmp_path, capfd):
    common = {
        "model.overrides": {"num_blocks": 1, "features": 8},
        "dataset.lr_patch_size": 12,
        "batch_size": 4,
        "total_steps": 2,
        "eval_every": 2,
        "sr_eval.max_images": 1,
        "sr_eval.panels": 0,
    }
    x2 = _small_sr("edsr_x2", sr_data_dir, **common)
    trainer.train_and_evaluate(x2, str(tmp_path / "x2"))
    x4 = _small_sr("edsr_x4", sr_data_dir, init_from=str(tmp_path / "x2"), **common)
    out = trainer.train_and_evaluate(x4, str(tmp_path / "x4"), stop_at=0)  # Initialise only.
    assert out["step"] == 0
    # Kernels and biases of the head, the block's 2 convs, the body conv, the tail and the first
    # x2 upsampling stage come from x2 (12 arrays); only the second x2 stage (2) is new.
    err = capfd.readouterr().err
    assert "Initialised 12 of 14 parameter arrays from" in err, err
    params_x2, _, _ = workdirs.load_inference_params(str(tmp_path / "x2"))
    np.testing.assert_array_equal(
        np.asarray(out["state"].params["head"]["kernel"]), params_x2["head"]["kernel"]
    )


def test_init_from_a_missing_workdir_is_a_config_error(sr_data_dir, tmp_path):
    config = _small_sr("edsr_x4", sr_data_dir, init_from=str(tmp_path / "nothing"))
    with pytest.raises(trainer.ConfigError, match="is not a workdir with best weights"):
        trainer.train_and_evaluate(config, str(tmp_path / "run"))
