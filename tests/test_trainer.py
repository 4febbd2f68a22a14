"""The trainer end to end on real (offline) Fashion-MNIST, in-process, with tiny settings."""

from __future__ import annotations

import glob
import json
import os

import jax
import numpy as np
import pytest
from conftest import load_config, tiny
from PIL import Image

from genres_jax.train import trainer


def _records(workdir: str, kind: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["kind"] == kind]


def _assert_trees_equal(a, b) -> None:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_vae_training_lowers_the_loss(fmnist_data_dir, tmp_path):
    config = tiny(load_config("vae_mlp_fashion_mnist"), fmnist_data_dir)
    config.batch_size, config.total_steps, config.log_every = 32, 60, 10
    config.eval_every = 60
    out = trainer.train_and_evaluate(config, str(tmp_path))
    train = _records(str(tmp_path), "train")
    assert [r["step"] for r in train] == list(range(10, 61, 10))
    assert train[-1]["loss"] < 0.75 * train[0]["loss"]
    evals = _records(str(tmp_path), "eval")
    assert len(evals) == 1 and evals[0]["step"] == 60
    # Test ELBO in nats per image: a negative number, KL non-negative, bits/dim consistent.
    e = out["eval"]
    assert e["elbo"] < 0 and e["kl"] >= 0
    np.testing.assert_allclose(e["bits_per_dim"], -e["elbo"] / (784 * np.log(2)), rtol=1e-4)


def test_gan_run_writes_metrics_samples_tensorboard_and_checkpoints(fmnist_data_dir, tmp_path):
    config = tiny(load_config("dcgan_fashion_mnist"), fmnist_data_dir)
    out = trainer.train_and_evaluate(config, str(tmp_path))
    train = _records(str(tmp_path), "train")
    assert {"d_loss", "g_loss", "d_real_logit", "d_fake_logit"} <= set(train[-1])
    assert all(np.isfinite(r["d_loss"]) for r in train)
    evals = _records(str(tmp_path), "eval")
    last_eval = evals[-1]
    assert {"d_accuracy", "d_real_logit"} <= set(last_eval)
    # Each evaluation's own time is on its record and in the run's summary, not in its metrics.
    assert all(r["eval_seconds"] > 0 for r in evals) and "eval_seconds" not in out["eval"]
    assert out["timing"]["evaluations"] == len(evals)
    assert out["timing"]["eval_seconds"] == pytest.approx(sum(r["eval_seconds"] for r in evals))
    assert out["timing"]["steps"] == config.total_steps
    # The config's generative_eval block: FID & co. in the shipped classifier's features.
    assert last_eval["fid/classifier_fashion_mnist"] > 0
    assert 0 <= last_eval["recall/classifier_fashion_mnist"] <= 1
    samples = sorted(glob.glob(str(tmp_path / "samples" / "samples_*.png")))
    assert samples and samples[-1].endswith("samples_0000008.png")
    grid = np.asarray(Image.open(samples[-1]))
    assert grid.ndim == 2 and grid.shape[0] == 2 * 28 + 3 * 2  # 2x2 grid of 28x28, padded.
    assert glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4", "8"]
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["model"]["name"] == "dcgan"


@pytest.mark.parametrize("config_name", ["dcgan_fashion_mnist", "vae_conv_fashion_mnist"])
def test_resume_gives_the_same_parameters(fmnist_data_dir, tmp_path, config_name):
    """8 steps straight == 4 steps, a restart from the checkpoint, 4 more (same seed, CPU)."""
    config = tiny(load_config(config_name), fmnist_data_dir, eval_every=0)
    straight = trainer.train_and_evaluate(config, str(tmp_path / "straight"))
    first = trainer.train_and_evaluate(config, str(tmp_path / "resumed"), stop_at=4)
    assert first["step"] == 4
    resumed = trainer.train_and_evaluate(config, str(tmp_path / "resumed"))
    assert resumed["step"] == 8
    _assert_trees_equal(straight["state"], resumed["state"])
    # And not trivially: training moved the parameters away from the 4-step state.
    moved = jax.tree.leaves(
        jax.tree.map(lambda a, b: np.abs(a - b).max(), first["state"], resumed["state"])
    )
    assert max(float(m) for m in moved) > 0


def test_completed_run_restarts_as_a_no_op(fmnist_data_dir, tmp_path):
    config = tiny(load_config("gan_mlp_fashion_mnist"), fmnist_data_dir, eval_every=0)
    done = trainer.train_and_evaluate(config, str(tmp_path))
    again = trainer.train_and_evaluate(config, str(tmp_path))
    assert again["step"] == 8
    _assert_trees_equal(done["state"], again["state"])


@pytest.mark.parametrize(
    "overrides",
    [
        {"gan.loss": "hinge"},
        {"gan.loss": "wgan", "gan.gp_weight": 10.0, "gan.n_critic": 2, "model.d_norm": "layer"},
        {"dataset.image_size": 32},
    ],
)
def test_gan_variants_train(fmnist_data_dir, tmp_path, overrides):
    config = tiny(
        load_config("dcgan_fashion_mnist"),
        fmnist_data_dir,
        total_steps=4,
        eval_every=0,
        **overrides,
    )
    out = trainer.train_and_evaluate(config, str(tmp_path))
    assert out["step"] == 4
    assert all(np.isfinite(v) for v in out["train"].values())
    if overrides.get("gan.gp_weight"):
        assert out["train"]["gradient_penalty"] > 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model.name": "resnet9000"}, "unknown GAN model 'resnet9000'; valid: dcgan, mlp"),
        ({"gan.loss": "lsgan"}, "unknown GAN loss 'lsgan'"),
        ({"batch_size": -4}, "batch_size must be a positive integer"),
        ({"gan.gp_weight": 10.0}, "batch norm"),
        ({"task": "diffusion"}, "unknown task 'diffusion'; valid: classifier, gan"),
    ],
)
def test_bad_configs_fail_before_training(fmnist_data_dir, tmp_path, overrides, message):
    config = tiny(load_config("dcgan_fashion_mnist"), fmnist_data_dir, **overrides)
    with pytest.raises(trainer.ConfigError, match=message.replace("(", r"\(")):
        trainer.train_and_evaluate(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run" / "checkpoints")
