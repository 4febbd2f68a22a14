"""LPIPS and degraded LR in SR evaluation: the evaluate CLI and validation during training."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import skimage.data
from conftest import REPO, load_config
from PIL import Image
from test_lpips import FULL_WIDTHS, make_state, reference_lpips

from genres_jax import evaluate
from genres_jax.ops import imresize
from genres_jax.train import trainer


@pytest.fixture(scope="module")
def lpips_file(tmp_path_factory) -> tuple[str, dict]:
    """AlexNet LPIPS weights at the published widths (random values), as the lpips package
    names them, and the state dict itself."""
    state = make_state("alex", FULL_WIDTHS["alex"], seed=4)
    path = str(tmp_path_factory.mktemp("lpips") / "lpips_alex.npz")
    np.savez(path, **state)
    return path, state


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory) -> str:
    """Two 68x76 photo crops."""
    folder = tmp_path_factory.mktemp("hr")
    photo = skimage.data.astronaut()
    for i, (y, x) in enumerate([(40, 180), (200, 260)]):
        Image.fromarray(photo[y : y + 68, x : x + 76]).save(folder / f"crop{i}.png")
    return str(folder)


def _evaluate(tmp_path, *args) -> dict:
    out = tmp_path / f"result{len(os.listdir(tmp_path))}.json"
    assert evaluate.main([*args, "--output", str(out)]) == 0
    return json.loads(out.read_text())


def test_lpips_of_bicubic_matches_the_float64_definition(lpips_file, hr_dir, tmp_path):
    path, state = lpips_file
    result = _evaluate(tmp_path, "--method", "bicubic", "--scale", "2", "--hr-dir", hr_dir)
    with_lpips = _evaluate(
        tmp_path, "--method", "bicubic", "--scale", "2", "--hr-dir", hr_dir, "--lpips-weights", path
    )
    assert set(with_lpips["mean"]) == set(result["mean"]) | {"lpips"}
    for name in ("crop0.png", "crop1.png"):
        hr = np.asarray(Image.open(os.path.join(hr_dir, name)), np.float64) / 255.0
        lr = imresize.imresize_numpy(hr, scale=0.5, method="bicubic")
        lr = np.round(np.clip(lr, 0, 1) * 255.0) / 255.0
        sr = imresize.imresize_numpy(lr, scale=2, method="bicubic")
        sr = np.round(np.clip(sr, 0, 1) * 255.0) / 255.0  # Measured on the saved 8-bit image.
        want = reference_lpips(state, "alex", sr[None], hr[None])[0]
        got = with_lpips["per_image"][name]["lpips"]
        np.testing.assert_allclose(got, want, rtol=2e-3)
        assert got > 0
        assert with_lpips["per_image"][name]["psnr_y"] == result["per_image"][name]["psnr_y"]


def test_degraded_lr_is_fixed_by_the_seed(hr_dir, tmp_path):
    common = ["--method", "bicubic", "--scale", "4", "--hr-dir", hr_dir]
    clean = _evaluate(tmp_path, *common)
    first = _evaluate(tmp_path, *common, "--degraded", "--seed", "3")
    again = _evaluate(tmp_path, *common, "--degraded", "--seed", "3")
    other = _evaluate(tmp_path, *common, "--degraded", "--seed", "4")
    assert first["lr"] == "degraded (seed 3)" and "lr" not in clean
    assert first["per_image"] == again["per_image"]
    assert first["per_image"] != other["per_image"]
    # Blur, noise and JPEG cost the bicubic baseline PSNR against the clean LR's.
    assert first["mean"]["psnr_y"] < clean["mean"]["psnr_y"] - 0.3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lpips-weights", "/nonexistent.npz"], "is not a file"),
        (["--lpips-weights", "BAD"], "lpips"),
        (["--degraded", "--seed", "-1"], "--seed: must be >= 0"),
    ],
)
def test_bad_lpips_and_degradation_flags(args, message, hr_dir, tmp_path):
    args = [str(tmp_path / "bad.npz") if a == "BAD" else a for a in args]
    np.savez(tmp_path / "bad.npz", **{"features.0.weight": np.zeros((64, 3, 3, 3), np.float32)})
    proc = subprocess.run(
        [sys.executable, "-m", "genres_jax.evaluate", "--method", "bicubic", "--scale", "2"]
        + ["--hr-dir", hr_dir, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_validation_reports_lpips_and_keeps_the_lowest(lpips_file, sr_data_dir, tmp_path):
    config = load_config("edsr_x2")
    config.dataset.data_dir = sr_data_dir
    config.model.overrides = {"num_blocks": 1, "features": 8}
    config.dataset.lr_patch_size = 16
    config.batch_size, config.total_steps, config.eval_every = 4, 3, 1
    config.optimizer.learning_rate = 3e-3
    config.sr_eval.max_images, config.sr_eval.panels, config.progress_bar = 1, 0, False
    config.sr_eval.lpips_weights = lpips_file[0]
    config.sr_eval.best_metric = "lpips"
    trainer.train_and_evaluate(config, str(tmp_path))
    with open(tmp_path / "metrics.jsonl") as f:
        evals = [r for r in map(json.loads, f) if r["kind"] == "eval"]
    scores = {r["step"]: r["lpips"] for r in evals}
    assert sorted(scores) == [1, 2, 3] and len(set(scores.values())) == 3
    assert os.listdir(tmp_path / "best") == [str(min(scores, key=scores.get))]
