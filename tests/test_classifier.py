"""The classifier (model, task, training) and the shipped Fashion-MNIST feature extractor."""

from __future__ import annotations

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, load_config, tiny

from genres_jax.data import fashion_mnist
from genres_jax.evaluation import features
from genres_jax.models.classifier import ConvClassifier
from genres_jax.tasks import classifier
from genres_jax.train import trainer

SHIPPED = os.path.join(REPO, "weights", "classifier_fashion_mnist")


def test_parameter_count_and_shapes():
    model = ConvClassifier()
    x = jnp.zeros((3, 28, 28, 1))
    params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    # 3x3 convs 1->32->64->64 with biases; 28 -> 14 -> 7 -> 3 by pooling; 3*3*64 -> 128 -> 10.
    convs = (9 * 1 * 32 + 32) + (9 * 32 * 64 + 64) + (9 * 64 * 64 + 64)
    expected = convs + (9 * 64 * 128 + 128) + (128 * 10 + 10)
    assert sum(math.prod(p.shape) for p in jax.tree.leaves(params)) == expected == 130_890
    assert jax.eval_shape(model.apply, {"params": params}, x).shape == (3, 10)
    embed = jax.eval_shape(
        lambda p, x: model.apply(p, x, method=model.embed), {"params": params}, x
    )
    assert embed.shape == (3, 128)


def test_logits_are_the_head_of_the_relu_of_the_embedding():
    model = ConvClassifier()
    x = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1))
    params = model.init(jax.random.key(0), x)["params"]
    emb = np.asarray(model.apply({"params": params}, x, method=model.embed), np.float64)
    assert (emb < 0).any()  # The embedding is taken before its ReLU.
    head = params["head"]
    ref = np.maximum(emb, 0) @ np.asarray(head["kernel"], np.float64) + np.asarray(head["bias"])
    np.testing.assert_allclose(np.asarray(model.apply({"params": params}, x)), ref, atol=1e-4)


def _task(**model_overrides):
    config = load_config("classifier_fashion_mnist")
    config.total_steps = 60
    config.optimizer.warmup_steps = 0
    for k, v in model_overrides.items():
        config.model[k] = v
    return config, classifier.make(config, (28, 28, 1))


def test_eval_step_sums_match_a_float64_reference():
    _, task = _task()
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.integers(0, 256, (6, 28, 28, 1), dtype=np.uint8),
        "label": rng.integers(0, 10, 6).astype(np.int32),
        "mask": np.array([1, 1, 1, 1, 0, 0], np.float32),
    }
    state = task.init(jax.random.key(0), batch)
    sums = jax.device_get(task.eval_step(state, batch, jax.random.key(1)))
    model = ConvClassifier()
    logits = np.asarray(model.apply({"params": state.params}, batch["image"] / 255.0), np.float64)[
        :4
    ]
    log_softmax = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1))[:, None]
    log_softmax -= logits.max(1, keepdims=True)
    labels = batch["label"][:4]
    assert float(sums["count"]) == 4
    np.testing.assert_allclose(float(sums["loss"]), -log_softmax[np.arange(4), labels].sum(), 1e-4)
    assert float(sums["accuracy"]) == float((logits.argmax(1) == labels).sum())


def test_training_separates_two_easy_classes():
    _, task = _task(num_classes=2, dropout=0.0, features=(8, 8), embed_dim=16)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 64).astype(np.int32)
    # Class 0: dark images, class 1: bright ones, with noise.
    images = rng.integers(0, 100, (64, 28, 28, 1)) + 120 * labels[:, None, None, None]
    batch = {"image": images.astype(np.uint8), "label": labels}
    state = task.init(jax.random.key(0), batch)
    step = jax.jit(task.train_step)
    for _ in range(30):
        state, metrics = step(state, batch, jax.random.key(2))
    assert float(metrics["accuracy"]) == 1.0 and float(metrics["loss"]) < 0.1
    assert int(state.step) == 30


def test_unknown_model_lists_the_valid_names():
    config = load_config("classifier_fashion_mnist")
    config.model.name = "resnet"
    with pytest.raises(ValueError, match="unknown classifier model 'resnet'; valid: conv"):
        classifier.validate(config)


def test_trainer_run_exports_to_a_feature_extractor(tmp_path, fmnist_data_dir):
    config = tiny(load_config("classifier_fashion_mnist"), fmnist_data_dir)
    workdir = str(tmp_path / "clf")
    result = trainer.train_and_evaluate(config, workdir)
    assert 0.0 <= result["eval"]["accuracy"] <= 1.0
    out = str(tmp_path / "exported")
    info = features.export_classifier(workdir, out)
    assert sorted(os.listdir(out)) == ["best", "config.json", "extractor.json"]
    assert info["input_shape"] == [28, 28, 1] and info["step"] == 8
    assert info["test_accuracy"] == result["eval"]["accuracy"]
    extractor = features.load_classifier(out)
    x = jax.random.uniform(jax.random.key(0), (5, 28, 28, 1))
    model = ConvClassifier()
    direct = model.apply({"params": result["state"].params}, x, method=model.embed)
    np.testing.assert_allclose(extractor.features(extractor.params, x), direct, atol=1e-5)
    assert extractor.fingerprint == info["fingerprint"] and extractor.name == "exported"


def test_shipped_weights_classify_the_test_set():
    """The network behind every Fashion-MNIST FID here: its accuracy on the first 2,000 test
    images, computed from the raw idx files."""
    images, labels = fashion_mnist.load_split(fashion_mnist.DEFAULT_SOURCE_DIR, "test")
    images, labels = images[:2000], labels[:2000]
    extractor = features.resolve("", "fashion_mnist_local")
    assert extractor.name == "classifier_fashion_mnist"
    with open(os.path.join(SHIPPED, "extractor.json")) as f:
        info = json.load(f)
    assert extractor.fingerprint == info["fingerprint"]
    config = load_config("classifier_fashion_mnist")
    model = classifier.build_model(config)
    logits = jax.jit(lambda p, x: model.apply({"params": p}, x))(
        extractor.params, images.astype(np.float32) / 255.0
    )
    accuracy = float(np.mean(np.asarray(logits).argmax(1) == labels))
    assert accuracy > 0.9
    assert (
        sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(SHIPPED) for f in fs)
        < 1_000_000
    )
