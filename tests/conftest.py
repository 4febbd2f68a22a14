"""Shared fixtures: the offline Fashion-MNIST prepared once per session, tiny configs."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# The suite checks what programs compute, not how fast. Most of its CPU time goes to compiling
# thousands of small programs; with XLA's backend (LLVM) optimisation at level 1 and its costly
# passes off they compile in about 30% less CPU time, and run about 15% slower (measured on the
# 5 configs of tests/eval_on_devices.py and on tests/test_sr_training.py). XLA's graph passes
# still run, so results move by float rounding at most, which every comparison allows for. Set
# before JAX starts; the processes tests start inherit it.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=1 --xla_llvm_disable_expensive_passes=true"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()


def device_env(devices: int | None = None) -> dict[str, str]:
    """The environment of a process started by a test: CPU only, the suite's XLA flags, and
    ``devices`` simulated CPU devices (else XLA's default of one)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=TEST_XLA_FLAGS)
    if devices is not None:
        env["XLA_FLAGS"] += f" --xla_force_host_platform_device_count={devices}"
    return env


@pytest.fixture(scope="session")
def fmnist_data_dir(tmp_path_factory) -> str:
    """A TFDS data folder holding ``fashion_mnist_local``, built from the Debian package."""

    from genres_jax.data import sources
    from genres_jax.train import defaults

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    cfg = defaults.fashion_mnist_dataset()
    cfg.data_dir = data_dir
    sources.load(cfg, "train")  # Prepares every split.
    assert os.path.isdir(os.path.join(data_dir, "fashion_mnist_local")), os.listdir(data_dir)
    return data_dir


def load_config(name: str):
    """``configs/<name>.py``'s ``get_config()``; ``name:arg`` passes ``arg`` (``span:x4``)."""
    name, _, arg = name.partition(":")
    path = os.path.join(REPO, "configs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"configs_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
    if config.get("dataset", {}).get("name") == "lomiri_photos_local":
        # SR tests train on the nine small scikit-image photos (seconds); the 34-megapixel
        # real-photo set of the shipped configs has its own tests (test_lomiri_photos.py).
        # Every photo alike: drawn by area, half of the patches would come from retina.jpg,
        # 2 of the set's 4.3 megapixels and mostly a black disc.
        config.dataset.name = "sr_photos_local"
        config.dataset.patch_sampling = "image"
    return config


def tiny(config, data_dir: str, **overrides):
    """A config shrunk to seconds on a CPU: small batches, few steps, a slice of the test set."""
    config.dataset.data_dir = data_dir
    config.batch_size = 16
    config.eval_batch_size = 64
    config.total_steps = 8
    config.log_every = 2
    config.eval_every = 8
    config.checkpoint_every = 4
    config.eval_max_records = 128
    config.num_samples = 4
    config.progress_bar = False
    if config.get("generative_eval"):  # FID & co. on a few hundred images.
        config.generative_eval.update(
            {
                "num_samples": 128,
                "batch_size": 64,
                "reference_max_records": 256,
                "kid_subset_size": 64,
                "iw_samples": 4,
                "iw_max_records": 64,
            }
        )
    for key, value in overrides.items():
        target = config
        *path, leaf = key.split(".")
        for part in path:
            target = target[part]
        target[leaf] = value
    return config


@pytest.fixture(scope="session")
def sr_data_dir(tmp_path_factory) -> str:
    """A TFDS data folder holding ``sr_photos_local`` (scikit-image photos + unseen test split)."""
    from genres_jax.data import sources
    from genres_jax.train import defaults

    data_dir = str(tmp_path_factory.mktemp("tfds_sr"))
    cfg = defaults.sr_photos_dataset()
    cfg.name, cfg.data_dir = "sr_photos_local", data_dir
    sources.load(cfg, "train")
    return data_dir


@pytest.fixture(scope="session")
def lomiri_data_dir(tmp_path_factory) -> str:
    """A TFDS data folder holding ``lomiri_photos_local``, prepared from the Debian packages'
    photographs (read-only; about 15 s)."""
    from genres_jax.data import sources
    from genres_jax.train import defaults

    data_dir = str(tmp_path_factory.mktemp("tfds_lomiri"))
    cfg = defaults.sr_photos_dataset()
    assert cfg.name == "lomiri_photos_local"
    cfg.data_dir = data_dir
    sources.load(cfg, "train")
    return data_dir


@pytest.fixture(scope="session")
def tiny_sr_workdir(sr_data_dir, tmp_path_factory) -> str:
    """A real SR workdir (config, checkpoint, best weights) of a tiny EDSR after 2 steps."""
    from genres_jax.train import trainer

    config = load_config("edsr_x2")
    config.dataset.data_dir = sr_data_dir
    config.model.overrides = {"num_blocks": 1, "features": 8}
    config.dataset.lr_patch_size = 16
    config.batch_size, config.total_steps, config.eval_every = 4, 2, 2
    config.sr_eval.max_images, config.sr_eval.panels, config.progress_bar = 1, 0, False
    workdir = str(tmp_path_factory.mktemp("tiny_sr"))
    trainer.train_and_evaluate(config, workdir)
    return workdir


def train_cmd(config: str, workdir, data_dir, *overrides) -> list[str]:
    """``python train.py`` of ``configs/<config>.py`` in ``workdir``: no progress bar, no
    evaluation, batch 16, then ``overrides`` (``--config.key=value``)."""
    return [
        sys.executable,
        os.path.join(REPO, "train.py"),
        f"--config={os.path.join(REPO, 'configs', config + '.py')}",
        f"--workdir={workdir}",
        f"--config.dataset.data_dir={data_dir}",
        "--config.progress_bar=false",
        "--config.eval_every=0",
        "--config.batch_size=16",
        *overrides,
    ]
