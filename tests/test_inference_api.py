"""The Python API (`genres_jax.inference`): the commands are built on it, byte for byte."""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, load_config, tiny
from PIL import Image

from genres_jax import UserError, inference, sample, upscale
from genres_jax.ops.imresize import imresize_numpy
from genres_jax.train import trainer

SHIPPED_X2 = os.path.join(REPO, "weights", "edsr_x2")


def _photo(shape, seed=0) -> np.ndarray:
    """A smooth random image with some edges, uint8."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (shape[0] // 4 + 1, shape[1] // 4 + 1, *shape[2:]), np.uint8)
    big = np.kron(small, np.ones((4, 4) + (1,) * (len(shape) - 2), np.uint8))
    return np.ascontiguousarray(big[: shape[0], : shape[1]])


@pytest.mark.parametrize(
    ("mode", "shape"), [("RGB", (40, 52, 3)), ("L", (36, 30)), ("RGBA", (33, 41, 4))]
)
def test_upscale_command_writes_exactly_what_load_upscaler_returns(tmp_path, mode, shape):
    pixels = _photo(shape)
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    Image.fromarray(pixels, mode).save(src)
    # A small tile, so the command and the API both go through the tiled path.
    assert upscale.main([str(src), str(out), "--workdir", SHIPPED_X2, "--tile", "16"]) == 0
    up = dataclasses.replace(inference.load_upscaler(SHIPPED_X2), tile=16)
    got = up(pixels)
    assert got.dtype == np.uint8 and got.shape == (2 * shape[0], 2 * shape[1], *shape[2:])
    np.testing.assert_array_equal(np.asarray(Image.open(out)), got)


def test_upscaler_keeps_the_array_kind():
    image = _photo((24, 20, 3), seed=1)
    up = inference.load_upscaler(SHIPPED_X2)
    as_uint8 = up(image)
    as_float = up(image.astype(np.float32) / 255.0)
    as_jax = up(jnp.asarray(image))
    assert isinstance(as_jax, jax.Array) and as_jax.dtype == jnp.uint8
    np.testing.assert_array_equal(np.asarray(as_jax), as_uint8)
    assert as_float.dtype == np.float32 and as_float.min() >= 0.0 and as_float.max() <= 1.0
    # Float out is the same result before rounding to 8 bits.
    assert np.max(np.abs(as_float * 255.0 - as_uint8.astype(np.float32))) <= 0.5 + 1e-3
    sixteen = up(image.astype(np.uint16) * 257)
    assert sixteen.dtype == np.uint16
    assert np.max(np.abs(sixteen / 65535.0 - as_float)) <= 1.0 / 65535.0


def test_tiled_upscaling_equals_whole_image():
    image = _photo((70, 90, 3), seed=2).astype(np.float32) / 255.0
    up = inference.load_upscaler(SHIPPED_X2)
    whole = dataclasses.replace(up, tile=0)(image)
    tiled = dataclasses.replace(up, tile=24)(image)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


@pytest.mark.parametrize("method", ["bicubic", "bilinear", "lanczos3"])
def test_classical_matches_the_float64_matlab_definition(method):
    image = _photo((30, 26, 3), seed=3).astype(np.float64) / 255.0
    up = inference.classical(method, 3)
    got = dataclasses.replace(up, tile=8)(image.astype(np.float32))
    ref = np.clip(imresize_numpy(image, scale=3, method=method), 0.0, 1.0)
    np.testing.assert_allclose(got, ref, atol=2e-5)


def test_api_user_errors():
    with pytest.raises(UserError, match="unknown method 'cubic'; valid: .*bicubic"):
        inference.classical("cubic", 2)
    with pytest.raises(UserError, match="upscales x2, not x4"):
        inference.load_upscaler(SHIPPED_X2, scale=4)
    with pytest.raises(UserError, match="not a training workdir"):
        inference.load_upscaler(os.path.join(REPO, "configs"))
    up = inference.classical("bicubic", 2)
    with pytest.raises(UserError, match=r"expected an \(H, W\) or \(H, W, C\) image"):
        up(np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(UserError, match="expected uint8, uint16 or float"):
        up(np.zeros((4, 4, 3), np.int64))


@pytest.fixture(scope="module")
def gan_workdir(tmp_path_factory, fmnist_data_dir) -> str:
    config = tiny(load_config("dcgan_fashion_mnist"), fmnist_data_dir, total_steps=2)
    config.eval_every = 0
    workdir = str(tmp_path_factory.mktemp("gan"))
    trainer.train_and_evaluate(config, workdir)
    return workdir


def test_sample_command_writes_what_load_generator_draws(gan_workdir, fmnist_data_dir, tmp_path):
    out_dir = tmp_path / "images"
    args = ["--workdir", gan_workdir, "--num", "7", "--batch-size", "4", "--seed", "3"]
    args += ["--out", str(tmp_path / "grid.png"), "--out-dir", str(out_dir)]
    args += ["--data-dir", fmnist_data_dir]
    assert sample.main(args) == 0
    gen = inference.load_generator(gan_workdir, batch_size=4, data_dir=fmnist_data_dir)
    images = gen(jax.random.key(3), 7)
    assert images.shape == (7, 28, 28, 1) and images.min() >= 0.0 and images.max() <= 1.0
    for i, image in enumerate(images):
        written = np.asarray(Image.open(out_dir / f"sample_{i:05d}.png"))
        np.testing.assert_array_equal(written, np.round(image[..., 0] * 255).astype(np.uint8))
    assert np.std(images.reshape(7, -1).mean(axis=1)) > 0  # Seven different samples.
    np.testing.assert_array_equal(gen(jax.random.key(3), 7), images)  # Seeded.


def test_load_generator_refuses_an_sr_workdir():
    with pytest.raises(UserError, match="not a generative model"):
        inference.load_generator(SHIPPED_X2)
