"""``python -m genres_jax.export`` (one program for every image size, weights inside) and
``upscale`` over folders (one model load, bad files skipped and reported, nothing replaced)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import types

import numpy as np
import pytest
from conftest import load_config
from PIL import Image

from genres_jax import export as export_cli
from genres_jax import inference
from genres_jax import upscale as upscale_cli
from genres_jax.inference import exported


@pytest.fixture(scope="module")
def span_workdir(sr_data_dir, tmp_path_factory) -> str:
    """A tiny SPAN x2 workdir after 2 steps: exported and served in its folded form."""
    from genres_jax.train import trainer

    config = load_config("span:x2")
    config.dataset.data_dir = sr_data_dir
    # The shipped config's form (bicubic residual, img_range 1), only smaller.
    config.model.overrides.update({"features": 6, "num_blocks": 2})
    assert config.model.overrides["residual"] == "bicubic"
    config.dataset.lr_patch_size = 16
    config.batch_size, config.total_steps, config.eval_every = 4, 2, 2
    config.sr_eval.max_images, config.sr_eval.panels, config.progress_bar = 1, 0, False
    workdir = str(tmp_path_factory.mktemp("tiny_span"))
    trainer.train_and_evaluate(config, workdir)
    return workdir


@pytest.fixture
def run(capsys):
    """``python -m genres_jax.<module> ARGS`` in this process: (returncode, stderr)."""
    mains = {"export": export_cli.main, "upscale": upscale_cli.main}

    def call(module: str, *args) -> types.SimpleNamespace:
        capsys.readouterr()
        rc = mains[module]([str(a) for a in args])
        return types.SimpleNamespace(returncode=rc, stderr=capsys.readouterr().err)

    return call


@pytest.mark.parametrize("which", ["edsr", "span"])
def test_exported_program_equals_the_workdir_on_two_sizes(
    which, tiny_sr_workdir, span_workdir, tmp_path, capsys
):
    workdir = tiny_sr_workdir if which == "edsr" else span_workdir
    out = tmp_path / f"{which}.jaxexport"
    assert export_cli.main([workdir, str(out)]) == 0
    assert "->" in capsys.readouterr().err
    from_workdir = inference.load_upscaler(workdir)
    from_file = inference.load_exported(str(out))
    assert from_file.scale == from_workdir.scale == 2
    assert from_file.receptive_radius == from_workdir.receptive_radius
    rng = np.random.default_rng(0)
    for shape in [(23, 31, 3), (40, 17, 3)]:
        image = rng.random(shape).astype(np.float32)
        for tile in (0, 12):  # Whole images and fixed-size windows: one program for both.
            a = dataclasses.replace(from_file, tile=tile)(image)
            b = dataclasses.replace(from_workdir, tile=tile)(image)
            assert a.shape == (2 * shape[0], 2 * shape[1], 3)
            np.testing.assert_allclose(a, b, rtol=0, atol=2e-5)
    # The file runs with JAX alone: the format the module docstring promises.
    code = (
        "import sys, jax, numpy as np\n"
        "blob = open(sys.argv[1], 'rb').read()\n"
        "header, meta, program = blob.split(b'\\n', 2)\n"
        "f = jax.export.deserialize(bytearray(program))\n"
        "print(f.call(np.zeros((1, 5, 7, 3), np.float32)).shape)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "(1, 10, 14, 3)"


def test_damaged_or_foreign_files_are_one_clear_error(tiny_sr_workdir, tmp_path, run):
    good = tmp_path / "m.jaxexport"
    exported.export_upscaler(tiny_sr_workdir, str(good))
    blob = good.read_bytes()
    cases = {
        "foreign.jaxexport": (b"\x89PNG\r\n\x1a\n" + b"0" * 100, "not an exported genres_jax"),
        "truncated.jaxexport": (blob[: len(blob) // 2], "damaged or truncated"),
        "meta.jaxexport": (blob.replace(b'"scale"', b'"scal"', 1), "description is damaged"),
    }
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(exported.ExportError, match=message):
            inference.load_exported(str(path))
        proc = run("upscale", image, tmp_path / f"{name}.png", "--exported", path)
        assert proc.returncode == 2
        assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr
        assert not (tmp_path / f"{name}.png").exists()
    # Exporting over an existing file needs --overwrite, and a non-SR workdir is refused.
    proc = run("export", tiny_sr_workdir, good)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr
    assert good.read_bytes() == blob
    proc = run("export", tmp_path, tmp_path / "x.jaxexport")
    assert proc.returncode == 2 and "not a training workdir" in proc.stderr
    proc = run("export", tiny_sr_workdir, tmp_path / "y.jaxexport", "--platforms", "gpu9")
    assert proc.returncode == 2 and "--platforms" in proc.stderr


def test_upscale_with_an_exported_file_writes_what_the_workdir_writes(
    tiny_sr_workdir, tmp_path, run
):
    image = tmp_path / "in.png"
    pixels = np.random.default_rng(1).integers(0, 256, (21, 26, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    program = tmp_path / "m.jaxexport"
    assert run("export", tiny_sr_workdir, program).returncode == 0
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert run("upscale", image, a, "--workdir", tiny_sr_workdir, "--tile", "8").returncode == 0
    proc = run("upscale", image, b, "--exported", program, "--tile", "8")
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def _photo(path, shape, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def test_folder_of_good_and_bad_files(tiny_sr_workdir, tmp_path, run):
    src = tmp_path / "photos"
    src.mkdir()
    _photo(src / "a.png", (12, 10, 3), 0)
    _photo(src / "b.jpg", (9, 14, 3), 1)
    _photo(src / "c.png", (12, 10), 2)  # grey
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (src / "notes.txt").write_text("not an image, not picked up")
    extra = tmp_path / "extra.png"
    _photo(extra, (7, 7, 3), 3)
    out = tmp_path / "out"

    proc = run("upscale", src, extra, out, "--workdir", tiny_sr_workdir)
    assert proc.returncode == 1, proc.stderr  # some failed
    assert "skipped" in proc.stderr and "broken.png" in proc.stderr
    assert "4 of 5 images" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(os.listdir(out)) == ["a.png", "b.jpg", "c.png", "extra.png"]
    assert Image.open(out / "a.png").size == (20, 24)
    assert Image.open(out / "c.png").mode == "L"
    # Each output is what the single-image command writes.
    single = tmp_path / "single.png"
    assert run("upscale", src / "a.png", single, "--workdir", tiny_sr_workdir).returncode == 0
    assert np.array_equal(np.asarray(Image.open(single)), np.asarray(Image.open(out / "a.png")))

    # Existing outputs are never replaced without --overwrite: refused before any work.
    before = {n: (out / n).read_bytes() for n in os.listdir(out)}
    os.remove(src / "broken.png")
    proc = run("upscale", src, out, "--workdir", tiny_sr_workdir)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr and "exist" in proc.stderr
    assert {n: (out / n).read_bytes() for n in os.listdir(out)} == before
    proc = run("upscale", src, out, "--method", "bicubic", "--scale", "2", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert (out / "a.png").read_bytes() != before["a.png"]


def test_folder_mistakes_are_one_line(tmp_path, run):
    src = tmp_path / "photos"
    src.mkdir()
    bicubic = ("--method", "bicubic", "--scale", "2")
    empty = run("upscale", src, tmp_path / "o", *bicubic)
    assert empty.returncode == 2 and "no PNG or JPEG images" in empty.stderr
    _photo(src / "a.png", (6, 6, 3), 0)
    other = tmp_path / "other"
    other.mkdir()
    _photo(other / "a.png", (6, 6, 3), 1)
    clash = run("upscale", src, other, tmp_path / "o", *bicubic)
    assert clash.returncode == 2 and "would both be written as a.png" in clash.stderr
    into_itself = run("upscale", src, src, *bicubic)
    assert into_itself.returncode == 2 and "holds the inputs" in into_itself.stderr
    missing = run("upscale", src, tmp_path / "nope.png", tmp_path / "o", *bicubic)
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
    for proc in (empty, clash, into_itself, missing):
        assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert not (tmp_path / "o").exists()


def test_same_size_images_share_model_calls_and_give_the_single_image_result(
    tiny_sr_workdir, tmp_path, capsys
):
    src = tmp_path / "frames"
    src.mkdir()
    for i in range(5):
        _photo(src / f"f{i}.png", (11, 13, 3), 10 + i)
    _photo(src / "other.png", (9, 9, 3), 20)  # another size: its own calls
    calls = []
    from genres_jax.inference import upscalers

    real = upscalers.workdir_predictor

    def counting(*a, **k):
        predict, *rest = real(*a, **k)

        def counted(x):
            calls.append(x.shape[0])
            return predict(x)

        return (counted, *rest)

    upscalers.workdir_predictor = counting
    try:
        out = tmp_path / "out"
        args = [str(src), str(out), "--workdir", tiny_sr_workdir, "--tile", "8"]
        assert upscale_cli.main([*args, "--batch-size", "3"]) == 0
    finally:
        upscalers.workdir_predictor = real
    # 5 images of 2x2 windows = 20 windows in calls of 3, then 4 windows of other.png.
    assert calls == [3] * 7 + [3, 3]
    capsys.readouterr()
    for i in range(5):
        single = tmp_path / f"single{i}.png"
        argv = [str(src / f"f{i}.png"), str(single), "--workdir", tiny_sr_workdir, "--tile", "8"]
        assert upscale_cli.main(argv) == 0
        got = np.asarray(Image.open(out / f"f{i}.png"))
        assert np.array_equal(got, np.asarray(Image.open(single)))
