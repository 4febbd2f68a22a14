"""The sampling CLI and the generate -> upscale cascade, on real (tiny) trained workdirs."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from conftest import load_config, tiny
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from genres_jax import sample
from genres_jax.ops import imresize
from genres_jax.train import trainer


@pytest.fixture(scope="module")
def gan_workdir(tmp_path_factory, fmnist_data_dir) -> str:
    config = tiny(load_config("gan_mlp_fashion_mnist"), fmnist_data_dir, total_steps=2)
    config.eval_every = 0
    workdir = str(tmp_path_factory.mktemp("gan"))
    trainer.train_and_evaluate(config, workdir)
    return workdir


def _run(capsys, *args) -> tuple[int, dict | str]:
    code = sample.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else err)


def _read(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.float64) / 255.0


def test_samples_are_reproducible_and_written_one_per_file(gan_workdir, tmp_path, capsys):
    code, info = _run(
        capsys, "--workdir", gan_workdir, "--num", 5, "--out", tmp_path / "a.png",
        "--out-dir", tmp_path / "a", "--batch-size", 2,
    )  # fmt: skip
    assert code == 0, info
    assert info["num"] == 5 and info["image_shape"] == [28, 28, 1] and info["images"] == 5
    assert sorted(os.listdir(tmp_path / "a")) == [f"sample_{i:05d}.png" for i in range(5)]
    first = [_read(tmp_path / "a" / f"sample_{i:05d}.png") for i in range(5)]
    assert all(im.shape == (28, 28) for im in first)
    assert np.std([im.mean() for im in first]) > 0  # Five different samples.
    code, _ = _run(
        capsys, "--workdir", gan_workdir, "--num", 5, "--out", tmp_path / "b.png",
        "--out-dir", tmp_path / "b", "--batch-size", 2,
    )  # fmt: skip
    assert code == 0
    for i, im in enumerate(first):
        np.testing.assert_array_equal(im, _read(tmp_path / "b" / f"sample_{i:05d}.png"))
    grid = _read(tmp_path / "a.png")
    assert grid.shape[0] >= 2 * 28 and grid.shape[1] >= 2 * 28


def test_bicubic_cascade_is_matlab_imresize_of_the_samples(gan_workdir, tmp_path, capsys):
    common = ("--workdir", gan_workdir, "--num", 3, "--seed", 7)
    code, _ = _run(capsys, *common, "--out", tmp_path / "lo.png", "--out-dir", tmp_path / "lo")
    assert code == 0
    code, info = _run(
        capsys, *common, "--method", "bicubic", "--scale", 2, "--out", tmp_path / "hi.png",
        "--out-dir", tmp_path / "hi",
    )  # fmt: skip
    assert code == 0 and info["scale"] == 2 and info["image_shape"] == [56, 56, 1]
    for i in range(3):
        low = _read(tmp_path / "lo" / f"sample_{i:05d}.png")
        high = _read(tmp_path / "hi" / f"sample_{i:05d}.png")
        # The cascade upscales the float samples; the reference upscales their 8-bit PNGs.
        ref = np.clip(imresize.imresize_numpy(low[..., None], scale=2.0)[..., 0], 0, 1)
        assert high.shape == (56, 56)
        assert np.abs(high - ref).max() <= 2.5 / 255


def test_sr_cascade_upscales_grey_samples_with_an_rgb_model(
    gan_workdir, tiny_sr_workdir, tmp_path, capsys
):
    code, info = _run(
        capsys, "--workdir", gan_workdir, "--upscaler", tiny_sr_workdir, "--num", 2,
        "--out", tmp_path / "sr.png", "--out-dir", tmp_path / "sr",
    )  # fmt: skip
    assert code == 0, info
    assert info["scale"] == 2 and info["image_shape"] == [56, 56, 1]
    assert info["model"] == "edsr_m" and info["weights"] == "best"
    assert _read(tmp_path / "sr" / "sample_00001.png").shape == (56, 56)


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--method", "sharpest", "--scale", "2"), "unknown method"),
        (("--method", "bicubic"), "--scale"),
        (("--scale", "2"), "--scale needs --method"),
        (("--num", "0"), ">= 1"),
        (("--num", "9" * 30), "of memory"),  # Refused before any sample is drawn or named.
        (("--num", "9" * 30, "--out-dir", "many"), "of memory"),
    ],
)
def test_bad_flags_are_clear_errors(gan_workdir, tmp_path, capsys, extra, message):
    extra = [str(tmp_path / a) if a == "many" else a for a in extra]
    code, err = _run(capsys, "--workdir", gan_workdir, "--out", tmp_path / "x.png", *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert os.listdir(tmp_path) == []


def test_wrong_workdirs_are_clear_errors(gan_workdir, tiny_sr_workdir, tmp_path, capsys):
    out = tmp_path / "x.png"
    code, err = _run(capsys, "--workdir", tmp_path / "nothing", "--out", out)
    assert code == 2 and "no config.json" in err
    code, err = _run(capsys, "--workdir", tiny_sr_workdir, "--out", out)
    assert code == 2 and "not a generative model" in err
    code, err = _run(capsys, "--workdir", gan_workdir, "--upscaler", gan_workdir, "--out", out)
    assert code == 2 and "not super-resolution" in err
    assert not out.exists()


def test_existing_outputs_are_kept_without_overwrite(gan_workdir, tmp_path, capsys):
    out = tmp_path / "grid.png"
    out.write_bytes(b"precious")
    code, err = _run(capsys, "--workdir", gan_workdir, "--out", out)
    assert code == 2 and "--overwrite" in err and out.read_bytes() == b"precious"
    code, _ = _run(capsys, "--workdir", gan_workdir, "--out", out, "--overwrite", "--num", 1)
    assert code == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _damaged_copy(src: str, dst: str, victim: str, data: bytes) -> None:
    shutil.copytree(src, dst)
    files = sorted(
        os.path.relpath(os.path.join(root, name), dst)
        for root, _, names in os.walk(dst)
        for name in names
        if victim in os.path.join(root, name)
    )
    assert files, victim
    for rel in files:
        with open(os.path.join(dst, rel), "wb") as f:
            f.write(data)


@settings(
    max_examples=int(os.environ.get("GENRES_FUZZ_EXAMPLES", "6")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    victim=st.sampled_from(["config.json", "_CHECKPOINT_METADATA", "manifest.ocdbt", "_METADATA"]),
    data=st.binary(max_size=64),
)
def test_damaged_workdirs_give_a_clear_error(gan_workdir, tmp_path_factory, victim, data):
    """Malformed workdir files: a clear error (exit 2) or valid samples, never a traceback."""
    root = tmp_path_factory.mktemp("damaged")
    workdir = str(root / "workdir")
    _damaged_copy(gan_workdir, workdir, victim, data)
    out = root / "out.png"
    code = sample.main(["--workdir", workdir, "--num", "1", "--out", str(out)])
    assert code in (0, 2)
    if code == 0:
        assert min(_read(out).shape) >= 28  # One sample in a padded grid.
    else:
        assert not out.exists()


def test_out_dir_never_replaces_a_users_file_without_overwrite(gan_workdir, tmp_path, capsys):
    folder = tmp_path / "samples"
    folder.mkdir()
    (folder / "sample_00002.png").write_bytes(b"mine")  # Not the first name: all are checked.
    args = ["--workdir", gan_workdir, "--num", 4, "--out", tmp_path / "g.png", "--out-dir", folder]
    code, err = _run(capsys, *args)
    assert code == 2 and err.startswith("error:") and "sample_00002.png" in err
    assert sorted(os.listdir(tmp_path)) == ["samples"]  # No grid written either.
    assert sorted(os.listdir(folder)) == ["sample_00002.png"]
    assert (folder / "sample_00002.png").read_bytes() == b"mine"
    code, info = _run(capsys, *args, "--overwrite")
    assert code == 0, info
    assert sorted(os.listdir(folder)) == [f"sample_{i:05d}.png" for i in range(4)]
    assert _read(folder / "sample_00002.png").shape == (28, 28)
