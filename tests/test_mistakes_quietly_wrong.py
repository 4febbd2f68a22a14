"""Nothing quietly wrong: orientation applied, what was written said, cut or unknown report
input warned about, and messages that name the real problem in one line."""

from __future__ import annotations

import os

import numpy as np
from mistakes import command, one_error_line, refused_in_processes, run_all
from PIL import Image, ImageOps

from genres_jax import upscale


def _phone_photo(path) -> np.ndarray:
    """A JPEG with EXIF orientation 6; returns the image as it is to be shown (40 x 24)."""
    yy, xx = np.mgrid[0:40, 0:24]
    upright = np.stack([yy * 6, xx * 10, np.zeros_like(xx)], -1).astype(np.uint8)
    # Orientation 6: the stored pixels must be turned 90 degrees clockwise to be shown upright,
    # so store the upright image turned 90 degrees counter-clockwise.
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=1)))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, quality=98, exif=exif)
    assert np.asarray(ImageOps.exif_transpose(Image.open(path))).shape[:2] == (40, 24)
    return upright


def _sixteen_bit_png(path) -> None:
    import png

    data = (np.arange(16 * 16 * 3).reshape(16, 16 * 3) * 50).astype(np.uint16)
    with open(path, "wb") as f:
        png.Writer(16, 16, bitdepth=16, greyscale=False).write(f, data)


def test_exif_orientation_is_applied_on_reading(capsys, tmp_path):
    upright = _phone_photo(tmp_path / "phone.jpg")
    argv = [str(tmp_path / "phone.jpg"), str(tmp_path / "o.png"), "--method", "nearest"]
    assert upscale.main([*argv, "--scale", "1"]) == 0, capsys.readouterr().err
    out = np.asarray(Image.open(tmp_path / "o.png")).astype(float)
    assert out.shape == upright.shape
    assert np.abs(out - upright).mean() < 3.0  # JPEG at quality 98.


def test_a_16_bit_input_written_as_jpeg_says_8_bit(capsys, tmp_path):
    _sixteen_bit_png(tmp_path / "deep.png")
    args = [str(tmp_path / "deep.png"), str(tmp_path / "o.jpg"), "--method", "bicubic"]
    assert upscale.main([*args, "--scale", "2"]) == 0
    assert "8-bit from a 16-bit input" in capsys.readouterr().err
    assert Image.open(tmp_path / "o.jpg").mode == "RGB"


def test_report_warns_of_cut_lines_and_refuses_unknown_keys(capsys, tmp_path):
    from genres_jax import report

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lines = ['{"step": 1, "kind": "eval", "psnr_y": 30.0}', '{"step": 2, "kind": "eval", "psnr_y"']
    (run_dir / "metrics.jsonl").write_text("\n".join(lines))
    assert report.main([str(run_dir), "--out", str(tmp_path / "r")]) == 0
    assert "skipped 1 line" in capsys.readouterr().err
    # Refused for the unknown key: the one error line, without the warning about the cut line.
    line = one_error_line(
        capsys, report.main([str(run_dir), "--out", str(tmp_path / "r2"), "--keys", "nosuch"])
    )
    assert "nosuch" in line and not os.path.exists(tmp_path / "r2")


def test_the_real_commands_say_what_they_did_and_name_the_real_problem(tmp_path):
    upright = _phone_photo(tmp_path / "phone.jpg")
    _sixteen_bit_png(tmp_path / "deep.png")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "kind": "eval", "psnr_y": 30.0}\n\n')
    nearest = ["--method", "nearest", "--scale", "1"]
    argvs = [
        command("upscale", tmp_path / "phone.jpg", tmp_path / "upright.png", *nearest),
        command("upscale", tmp_path / "deep.png", tmp_path / "deep.jpg", *nearest),
        command("report", run_dir, "--out", tmp_path / "r"),
    ]
    (up, _, up_err), (deep, _, deep_err), (rep, _, rep_err) = run_all(argvs)
    assert up == 0, up_err
    out = np.asarray(Image.open(tmp_path / "upright.png")).astype(float)
    assert out.shape == upright.shape and np.abs(out - upright).mean() < 3.0
    assert deep == 0 and "8-bit from a 16-bit input" in deep_err, deep_err
    assert rep == 0 and "skipped 1 line" in rep_err, rep_err

    clean = tmp_path / "clean_run"
    clean.mkdir()
    (clean / "metrics.jsonl").write_text('{"step": 1, "kind": "eval", "psnr_y": 30.0}\n')
    no_get_config = tmp_path / "cfg.py"
    no_get_config.write_text("x = 1\n")
    config = os.path.join(os.path.dirname(__file__), "..", "configs", "gan_mlp_fashion_mnist.py")
    cases = {
        "has no get_config() function": command(
            "train", f"--config={no_get_config}", "--workdir=w"
        ),
        "invalid literal": command(
            "train", f"--config={config}", "--workdir=w", "--config.total_steps=abc"
        ),
        "is a folder, not an image": command("upscale", run_dir, tmp_path / "o.png", *nearest),
        "nosuchkey": command("report", clean, "--out", tmp_path / "r2", "--keys", "nosuchkey"),
    }
    refused_in_processes(tmp_path, cases, cwd=str(tmp_path))
