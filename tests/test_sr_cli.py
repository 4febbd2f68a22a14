"""``python -m genres_jax.upscale`` and ``python -m genres_jax.evaluate`` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import png
import pytest
from PIL import Image

from genres_jax import evaluate, upscale
from genres_jax.inference import image_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED_X2 = os.path.join(REPO, "weights", "edsr_x2")
SHIPPED_X4 = os.path.join(REPO, "weights", "edsr_x4")
# The efficient models (README, "Efficient super-resolution").
FSRCNN_X2, FSRCNN_X4, SPAN_X2, SPAN_X4 = (
    os.path.join(REPO, "weights", n) for n in ("fsrcnn_x2", "fsrcnn_x4", "span_x2", "span_x4")
)


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _run(main, *args) -> int:
    return main([str(a) for a in args])


@pytest.mark.parametrize(("mode", "channels"), [("L", 1), ("RGB", 3), ("RGBA", 4)])
def test_upscale_bicubic_keeps_channels(tmp_path, mode, channels):
    src = tmp_path / "in.png"
    data = np.random.default_rng(0).integers(0, 256, (13, 17, channels), dtype=np.uint8)
    Image.fromarray(data[..., 0] if channels == 1 else data, mode).save(src)
    out = tmp_path / "out.png"
    assert _run(upscale.main, src, out, "--scale", 3, "--method", "bicubic") == 0
    result = Image.open(out)
    assert result.mode == mode and result.size == (51, 39)
    if channels == 4:  # Alpha is upscaled by bicubic too.
        ref = image_files.read_image(str(src)).pixels[..., 3:]
        from genres_jax.ops.imresize import imresize

        want = image_files.quantize(np.asarray(imresize(ref, scale=3)), 8)[..., 0]
        np.testing.assert_array_equal(np.asarray(result)[..., 3], want)


def test_upscale_keeps_16_bit_depth(tmp_path):
    data = np.random.default_rng(0).integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    src = tmp_path / "in16.png"
    with open(src, "wb") as f:
        png.Writer(11, 9, bitdepth=16, greyscale=False).write(f, data.reshape(9, 33))
    out = tmp_path / "out16.png"
    assert _run(upscale.main, src, out, "--scale", 2, "--method", "nearest") == 0
    w, h, rows, info = png.Reader(filename=str(out)).asDirect()
    assert (w, h, info["bitdepth"]) == (22, 18, 16)
    back = np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(18, 22, 3)
    np.testing.assert_array_equal(back, data.repeat(2, 0).repeat(2, 1))  # Exact at 16 bits.


@pytest.mark.parametrize(("workdir", "scale"), [(SHIPPED_X2, 2), (SHIPPED_X4, 4)])
def test_upscale_with_shipped_weights_beats_bicubic(tmp_path, workdir, scale):
    from genres_jax.data import sr_pairs, sr_photos
    from genres_jax.evaluation.sr_metrics import psnr

    # A crop of a photo the model never saw (scikit-learn's china.jpg).
    china = sr_photos.read_rgb(sr_photos.unseen_photo_paths()[1])
    hr = china[200:296, 300:396]
    lr = sr_pairs.bicubic_lr(hr, scale)
    Image.fromarray(lr).save(tmp_path / "lr.png")
    for name, how in (("edsr", ["--workdir", workdir]), ("bicubic", ["--method", "bicubic"])):
        out = tmp_path / f"{name}.png"
        assert _run(upscale.main, tmp_path / "lr.png", out, "--scale", scale, *how) == 0
    scores = {
        name: float(
            psnr(
                np.asarray(Image.open(tmp_path / f"{name}.png"), np.float32) / 255,
                hr.astype(np.float32) / 255,
                crop_border=scale,
                y_only=True,
            )
        )
        for name in ("edsr", "bicubic")
    }
    assert scores["edsr"] > scores["bicubic"] + 0.5, scores


BAD_INPUTS = {
    "not_an_image.png": b"this is text, not pixels",
    "empty.png": b"",
    "truncated.png": None,  # Filled in below: a PNG cut in half.
    "zero.png": None,  # A PNG header claiming 0x0 pixels.
}


def _bad_file(tmp_path, name) -> str:
    path = tmp_path / name
    if name == "truncated.png":
        Image.fromarray(_rgb(40, 40)).save(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif name == "zero.png":
        import struct
        import zlib

        def chunk(t, d):
            return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

        ihdr = struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    else:
        path.write_bytes(BAD_INPUTS[name])
    return str(path)


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_upscale_bad_inputs_fail_clearly_and_leave_output_alone(tmp_path, capsys, name):
    src = _bad_file(tmp_path, name)
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    assert _run(upscale.main, src, out, "--scale", 2, "--method", "bicubic", "--overwrite") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and name in err
    assert out.read_bytes() == b"precious"


def test_upscale_refuses_to_overwrite_without_flag(tmp_path, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(_rgb(8, 8)).save(src)
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    assert _run(upscale.main, src, out, "--scale", 2, "--method", "bicubic") == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert _run(upscale.main, src, out, "--scale", 2, "--method", "bicubic", "--overwrite") == 0
    assert Image.open(out).size == (16, 16)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "sharpest"], "unknown method 'sharpest'; valid: bicubic, bilinear"),
        (["--workdir", "/no/such/workdir"], "is not a training workdir"),
        (["--workdir", SHIPPED_X2, "--scale", "4"], "upscales x2, not x4"),
        (["--method", "bicubic"], "--scale is required"),
    ],
)
def test_upscale_usage_errors(tmp_path, capsys, args, message):
    src = tmp_path / "in.png"
    Image.fromarray(_rgb(8, 8)).save(src)
    assert _run(upscale.main, src, tmp_path / "out.png", *args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


def test_unsupported_image_mode(tmp_path, capsys):
    src = tmp_path / "float.tiff"
    Image.fromarray(np.zeros((6, 6), np.float32), mode="F").save(src)
    assert _run(upscale.main, src, tmp_path / "out.png", "--scale", 2, "--method", "bicubic") == 2
    assert "unsupported image mode 'F'" in capsys.readouterr().err


def test_jpeg_output_refuses_alpha(tmp_path, capsys):
    src = tmp_path / "a.png"
    Image.fromarray(np.zeros((6, 6, 4), np.uint8), "RGBA").save(src)
    assert _run(upscale.main, src, tmp_path / "o.jpg", "--scale", 2, "--method", "bicubic") == 2
    assert "JPEG cannot store" in capsys.readouterr().err


def test_4000_pixel_image_upscales_in_bounded_memory(tmp_path, tiny_sr_workdir):
    """A 4000x4000 input through a model workdir, tiled, in a fresh process."""
    src = tmp_path / "big.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (250, 250, 3), dtype=np.uint8)).resize(
        (4000, 4000), Image.Resampling.NEAREST
    ).save(src, compress_level=1)
    code = (
        "import sys\n"
        "from genres_jax import upscale\n"
        f"rc = upscale.main([{str(src)!r}, {str(tmp_path / 'big_x2.jpg')!r}, '--workdir', "
        f"{tiny_sr_workdir!r}, '--tile', '512', '--batch-size', '2'])\n"
        # VmHWM, not ru_maxrss: Linux carries the forking parent's (this test session's) peak
        # over exec into ru_maxrss, while VmHWM belongs to the new program alone.
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print(int(hwm.split()[1]))\n"
        "sys.exit(rc)\n"
    )
    # A plain environment: nothing the test session set (device counts, flags) reaches the CLI.
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ} | {"JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak_mib = int(proc.stdout.split()[-1]) / 1024
    # Input and output as float32 are 183 + 732 MiB and the uint8 output 183 MiB; the rest is
    # the runtime and one batch of tiles. A whole-image pass would add 8-channel activations
    # of 4000x4000 (0.5 GiB each) and 8000x8000 (2 GiB each), several of them at once.
    assert peak_mib < 4000, peak_mib
    assert Image.open(tmp_path / "big_x2.jpg").size == (8000, 8000)


def test_evaluate_bicubic_on_a_folder(tmp_path, capsys):
    folder = tmp_path / "hr"
    folder.mkdir()
    for i, size in enumerate([(37, 41), (64, 50)]):
        Image.fromarray(_rgb(*size, seed=i)).save(folder / f"img{i}.png")
    out = tmp_path / "result.json"
    rc = _run(
        evaluate.main, "--method", "bicubic", "--scale", 3, "--hr-dir", folder, "--output", out
    )
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads(out.read_text())
    assert printed == written
    assert written["scale"] == 3 and written["crop_border"] == 3 and written["num_images"] == 2
    assert set(written["per_image"]) == {"img0.png", "img1.png"}
    assert set(written["mean"]) == {"psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y"}
    mean = np.mean([m["psnr_y"] for m in written["per_image"].values()])
    np.testing.assert_allclose(written["mean"]["psnr_y"], mean)
    # The output file is not replaced without --overwrite.
    rc = _run(
        evaluate.main, "--method", "bicubic", "--scale", 3, "--hr-dir", folder, "--output", out
    )
    assert rc == 2 and "exists" in capsys.readouterr().err


# The README's figures for the shipped weights (mean Y-PSNR / Y-SSIM): validation (2 photos of
# lomiri_photos_local) and the unseen test split (3 photos).
README_VALIDATION = {
    SHIPPED_X2: (39.88, 0.9678),
    SHIPPED_X4: (33.53, 0.8831),
    FSRCNN_X2: (39.49, 0.9668),
    FSRCNN_X4: (33.30, 0.8820),
    SPAN_X2: (39.47, 0.9668),
    SPAN_X4: (33.28, 0.8820),
}
README_TEST = {
    SHIPPED_X2: (32.31, 0.9073),
    SHIPPED_X4: (27.77, 0.8072),
    FSRCNN_X2: (31.82, 0.9050),
    FSRCNN_X4: (27.57, 0.8039),
    SPAN_X2: (31.87, 0.9051),
    SPAN_X4: (27.50, 0.8026),
}


def _recorded_validation(workdir: str) -> dict:
    """The validation the training run logged for the step its best/ weights come from."""
    (step,) = (int(name) for name in os.listdir(os.path.join(workdir, "best")))
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    (record,) = [r for r in records if r["kind"] == "eval" and r["step"] == step]
    return record


def _model_and_bicubic(capsys, workdir: str, scale: int, data_dir: str, split: str):
    rc = _run(evaluate.main, "--workdir", workdir, "--data-dir", data_dir, "--split", split)
    assert rc == 0
    model = json.loads(capsys.readouterr().out)
    rc = _run(
        evaluate.main,
        "--method",
        "bicubic",
        "--scale",
        scale,
        "--data-dir",
        data_dir,
        "--split",
        split,
    )
    assert rc == 0
    bicubic = json.loads(capsys.readouterr().out)
    assert model["data"] == bicubic["data"] == f"lomiri_photos_local:{split}"
    assert model["scale"] == scale
    return model, bicubic


@pytest.mark.parametrize(
    ("workdir", "scale", "gain"),
    [
        (SHIPPED_X2, 2, 2.3),
        (SHIPPED_X4, 4, 1.3),
        (FSRCNN_X2, 2, 1.8),
        (FSRCNN_X4, 4, 1.2),
        (SPAN_X2, 2, 1.8),
        (SPAN_X4, 4, 1.1),
    ],
)
def test_shipped_weights_beat_bicubic_on_every_unseen_test_photo(
    lomiri_data_dir, capsys, workdir, scale, gain
):
    model, bicubic = _model_and_bicubic(capsys, workdir, scale, lomiri_data_dir, "test")
    assert model["mean"]["psnr_y"] > bicubic["mean"]["psnr_y"] + gain
    assert sorted(model["per_image"]) == ["china.jpg", "flower.jpg", "grace_hopper.jpg"]
    for name, metrics in model["per_image"].items():
        assert metrics["psnr_y"] > bicubic["per_image"][name]["psnr_y"] + 0.25, name
    psnr, ssim = README_TEST[workdir]
    assert round(model["mean"]["psnr_y"], 2) == psnr and round(model["mean"]["ssim_y"], 4) == ssim


@pytest.mark.parametrize(
    ("workdir", "scale", "gain"),
    [
        (SHIPPED_X2, 2, 2.0),
        (SHIPPED_X4, 4, 1.0),
        (FSRCNN_X2, 2, 2.0),
        (FSRCNN_X4, 4, 1.3),
        (SPAN_X2, 2, 2.0),
        (SPAN_X4, 4, 1.3),
    ],
)
def test_evaluate_shipped_weights_on_validation(lomiri_data_dir, capsys, workdir, scale, gain):
    model, bicubic = _model_and_bicubic(capsys, workdir, scale, lomiri_data_dir, "validation")
    assert model["mean"]["psnr_y"] > bicubic["mean"]["psnr_y"] + gain
    # The shipped weights give what their training run recorded (and so the README's figures):
    # the same loading, the same protocol.
    recorded = _recorded_validation(workdir)
    for key in ("psnr_y", "psnr_rgb"):
        assert model["mean"][key] == pytest.approx(recorded[key], abs=2e-3), key
    for key in ("ssim_y", "ssim_rgb"):
        assert model["mean"][key] == pytest.approx(recorded[key], abs=2e-5), key
    psnr, ssim = README_VALIDATION[workdir]
    assert round(model["mean"]["psnr_y"], 2) == psnr and round(model["mean"]["ssim_y"], 4) == ssim


def test_evaluate_image_too_small_for_ssim(tmp_path, capsys):
    folder = tmp_path / "hr"
    folder.mkdir()
    Image.fromarray(_rgb(16, 30)).save(folder / "tiny.png")
    rc = _run(evaluate.main, "--method", "bicubic", "--scale", 4, "--hr-dir", folder)
    assert rc == 2
    assert "tiny.png: 28x16 pixels leave less than 11x11 for SSIM" in capsys.readouterr().err


def test_evaluate_stdout_is_json_even_when_the_dataset_is_prepared_first(tmp_path, capsys):
    data_dir = tmp_path / "fresh_tfds"  # Not prepared yet: TFDS prints while it builds it.
    rc = _run(
        evaluate.main,
        "--method",
        "bicubic",
        "--scale",
        4,
        "--data-dir",
        data_dir,
        "--dataset",
        "sr_photos_local",
    )
    assert rc == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["num_images"] >= 1
    assert "sr_photos_local" in captured.err


def test_upscale_outscale_resizes_the_model_output(tmp_path, capsys):
    from genres_jax.inference import upscalers
    from genres_jax.ops import imresize

    image = _rgb(20, 30, seed=5)
    src = tmp_path / "in.png"
    Image.fromarray(image).save(src)
    for outscale, shape in [(1.5, (30, 45, 3)), (3.3, (66, 99, 3)), (2.0, (40, 60, 3))]:
        out = tmp_path / f"out_{outscale}.png"
        rc = _run(upscale.main, src, out, "--workdir", SHIPPED_X2, "--outscale", outscale)
        assert rc == 0
        got = np.asarray(Image.open(out)).astype(np.float64)
        assert got.shape == shape
        predict, *_ = upscalers.workdir_predictor(SHIPPED_X2)
        sr = np.asarray(predict(image[None].astype(np.float32) / 255.0))[0].astype(np.float64)
        if shape[:2] != sr.shape[:2]:
            sr = imresize.imresize_numpy(sr, output_shape=shape[:2], method="bicubic")
        want = np.round(np.clip(sr, 0.0, 1.0) * 255.0)
        assert np.max(np.abs(got - want)) <= 1.0
    rc = _run(upscale.main, src, tmp_path / "m.png", "--method", "bicubic", "--scale", 2)
    assert rc == 0
    rc = _run(
        upscale.main, src, tmp_path / "x.png", "--method", "bicubic", "--scale", 2, "--outscale", 3
    )
    assert rc == 2 and "--outscale needs --workdir" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
