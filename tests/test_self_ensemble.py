"""Geometric self-ensemble x8 (``upscalers.self_ensemble``, ``--self-ensemble`` of the CLIs)."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from genres_jax import evaluate, upscale
from genres_jax.inference import upscalers
from genres_jax.ops import imresize, tiling

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED_X2 = os.path.join(REPO, "weights", "edsr_x2")


def _nearest(x, s):
    return jnp.repeat(jnp.repeat(x, s, axis=1), s, axis=2)


@pytest.mark.parametrize(("h", "w"), [(6, 6), (5, 9)])
def test_a_ramp_added_by_the_model_averages_to_its_mean(h, w):
    """predict = nearest upsampling + c * (column / (width - 1)). Nearest upsampling commutes with
    every symmetry, so it survives; the ramp, seen in 4 directions (j, i, 1 - j, 1 - i) over the
    8 symmetries, averages to c / 2 everywhere. A wrong inverse mapping breaks either part."""
    c, s = 0.3, 2

    def predict(x):
        up = _nearest(x, s)
        ramp = jnp.linspace(0.0, 1.0, up.shape[2])[None, None, :, None]
        return up + c * ramp

    x = jax.random.uniform(jax.random.key(0), (2, h, w, 3))
    got = np.asarray(upscalers.geometric_self_ensemble(predict)(x))
    want = np.asarray(_nearest(x, s)) + c / 2
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_an_equivariant_upscaler_is_unchanged():
    """MATLAB bicubic with symmetric padding commutes with flips and quarter turns."""
    x = jax.random.uniform(jax.random.key(1), (1, 7, 10, 3))

    def predict(batch):
        return imresize.imresize(batch[0], scale=3, method="bicubic")[None]

    got = upscalers.geometric_self_ensemble(predict)(x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(predict(x)), atol=1e-5)


def _numpy_ensemble(predict, x: np.ndarray) -> np.ndarray:
    """Reference: the 8 symmetries built with numpy (rot90 then left-right flip), undone in the
    reverse order."""
    outs = []
    for k in range(8):
        t = np.rot90(x, k % 4, axes=(1, 2))
        t = t[:, :, ::-1] if k >= 4 else t
        y = np.asarray(predict(jnp.asarray(np.ascontiguousarray(t))))
        y = y[:, :, ::-1] if k >= 4 else y
        outs.append(np.rot90(y, -(k % 4), axes=(1, 2)))
    return np.mean(outs, axis=0)


def test_model_ensemble_matches_reference_and_tiles_exactly(tiny_sr_workdir):
    predict, scale, radius, _ = upscalers.workdir_predictor(tiny_sr_workdir)
    ensemble = upscalers.geometric_self_ensemble(predict)
    image = np.random.default_rng(2).random((21, 34, 3), dtype=np.float32)
    whole = np.asarray(ensemble(jnp.asarray(image[None])))[0]
    want = _numpy_ensemble(predict, image[None])[0]
    np.testing.assert_allclose(whole, want, atol=1e-5)
    # The random model is not equivariant, so the ensemble really changes its output.
    plain = np.asarray(predict(jnp.asarray(image[None])))[0]
    assert np.max(np.abs(plain - whole)) > 1e-3
    tiled = tiling.tiled_apply(ensemble, image, scale=scale, tile=8, overlap=radius, batch_size=3)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_evaluate_self_ensemble_raises_psnr_of_shipped_weights(tmp_path, capsys):
    from genres_jax.data import sr_photos

    # A crop of a validation photo (scikit-image's astronaut), as a folder of HR images.
    astronaut = sr_photos.read_rgb(os.path.join(sr_photos.skimage_data_dir(), "astronaut.png"))
    Image.fromarray(astronaut[40:200, 160:320]).save(tmp_path / "crop.png")
    common = ["--workdir", SHIPPED_X2, "--hr-dir", str(tmp_path)]
    assert evaluate.main(common) == 0
    plain = json.loads(capsys.readouterr().out)
    assert evaluate.main([*common, "--self-ensemble"]) == 0
    ensembled = json.loads(capsys.readouterr().out)
    assert ensembled["self_ensemble"] is True and "self_ensemble" not in plain
    assert ensembled["mean"]["psnr_y"] > plain["mean"]["psnr_y"]


def test_upscale_self_ensemble_writes_the_ensembled_image(tmp_path, tiny_sr_workdir):
    image = np.random.default_rng(3).integers(0, 256, (12, 17, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "in.png")
    out = tmp_path / "out.png"
    args = [tmp_path / "in.png", out, "--workdir", tiny_sr_workdir, "--self-ensemble"]
    assert upscale.main([str(a) for a in args]) == 0
    predict, *_ = upscalers.workdir_predictor(tiny_sr_workdir)
    sr = _numpy_ensemble(predict, image[None].astype(np.float32) / 255.0)[0]
    want = np.round(np.clip(sr, 0.0, 1.0) * 255.0)
    got = np.asarray(Image.open(out)).astype(np.float64)
    assert got.shape == want.shape and np.max(np.abs(got - want)) <= 1.0


@pytest.mark.parametrize("tool", ["evaluate", "upscale"])
def test_self_ensemble_needs_a_model(tmp_path, capsys, tool):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in.png")
    if tool == "evaluate":
        args = ["--method", "bicubic", "--scale", "2", "--hr-dir", str(tmp_path)]
        rc = evaluate.main([*args, "--self-ensemble"])
    else:
        args = [str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--method", "bicubic"]
        rc = upscale.main([*args, "--scale", "2", "--self-ensemble"])
    assert rc == 2
    assert "--self-ensemble needs --workdir" in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()
