"""Feature extractors for the generative metrics: a trained classifier, or InceptionV3.

FID, KID and precision/recall compare sets of feature vectors
(`genres_jax.evaluation.generative_metrics`); this module turns images into them. Two kinds:

* a classifier workdir trained by the project (``task: classifier``): features are its
  embedding (`ConvClassifier.embed`). The default for Fashion-MNIST is the shipped
  ``weights/classifier_fashion_mnist`` (Inception weights cannot be downloaded here, and a
  shared network makes everyone's numbers comparable);
* InceptionV3 (the FID graph, `genres_jax.models.inception`) from a weights file the user
  supplies, converted once with ``python -m genres_jax.features convert-inception`` from the
  PyTorch port of the FID weights (README). Nothing is downloaded at run time.

An extractor takes images in [0, 1] of any size and 1 or 3 channels: grey becomes RGB by
repetition, RGB becomes grey by BT.601 luma weights without offset, and other sizes are resized
to the network's input (classifier: MATLAB bicubic `imresize`, as the project makes LR images;
Inception: bilinear without antialiasing, as the reference FID code resizes to 299x299).
Every reported number names the extractor (`FeatureExtractor.name`) and its weights'
fingerprint (a hash of the parameters), so numbers from different networks are never mixed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from genres_jax import UserError
from genres_jax.ops import imresize
from genres_jax.train import workdirs

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


DEFAULT_CLASSIFIER = os.path.join(REPO_ROOT, "weights", "classifier_fashion_mnist")


FASHION_MNIST_DATASETS = ("fashion_mnist_local", "fashion_mnist", "fashion_mnist_sr_local")


EXTRACTOR_FILE = "extractor.json"  # Input shape and test accuracy of an exported classifier.


_LUMA = (0.299, 0.587, 0.114)


class ExtractorError(UserError):
    """A feature extractor that cannot be loaded; the message names the path and the fix."""


@dataclasses.dataclass(frozen=True)
class FeatureExtractor:
    """A network that maps images to feature vectors, with what identifies it.

    ``embed(params, x)`` takes images at ``input_shape`` in [0, 1] and returns (N, ``dim``).
    """

    name: str
    fingerprint: str
    input_shape: tuple[int, int, int]
    dim: int
    params: Any
    embed: Callable[[Any, jax.Array], jax.Array]
    resize_method: str  # "bicubic" (MATLAB imresize) or "bilinear" (no antialiasing).
    source: str

    def features(self, params: Any, images: jax.Array) -> jax.Array:
        """(N, dim) features of images (N, H, W, 1|3) in [0, 1]; jit-able (``params`` traced)."""
        return self.embed(params, prepare_images(images, self.input_shape, self.resize_method))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "source": self.source,
            "input_shape": list(self.input_shape),
            "dim": self.dim,
        }


def prepare_images(images: jax.Array, input_shape: tuple[int, int, int], method: str) -> jax.Array:
    """Channels (grey <-> RGB) and size to ``input_shape``; values clipped to [0, 1]."""
    x = jnp.asarray(images, jnp.float32)
    h, w, c = input_shape
    if x.shape[-1] == 3 and c == 1:
        x = jnp.tensordot(x, jnp.asarray(_LUMA, jnp.float32), axes=([-1], [0]))[..., None]
    elif x.shape[-1] == 1 and c == 3:
        x = jnp.repeat(x, 3, axis=-1)
    elif x.shape[-1] != c:
        raise ValueError(f"cannot feed {x.shape[-1]}-channel images to a {c}-channel network")
    if x.shape[1:3] != (h, w):
        if method == "bicubic":
            x = imresize.imresize(x, output_shape=(h, w), method="bicubic")
        else:
            x = jax.image.resize(x, (x.shape[0], h, w, c), "bilinear", antialias=False)
    return jnp.clip(x, 0.0, 1.0)


def fingerprint(params: Any) -> str:
    """First 12 hex digits of SHA-1 over the parameters' paths, shapes and float32 bytes."""
    digest = hashlib.sha1()
    for path, leaf in sorted(
        (jax.tree_util.keystr(p), np.asarray(v))
        for p, v in jax.tree_util.tree_leaves_with_path(params)
    ):
        digest.update(f"{path}{leaf.shape}".encode())
        digest.update(np.ascontiguousarray(leaf, np.float32).tobytes())
    return digest.hexdigest()[:12]


def _classifier_input_shape(workdir: str, config) -> tuple[int, int, int]:
    path = os.path.join(workdir, EXTRACTOR_FILE)
    if os.path.isfile(path):
        with open(path) as f:
            return tuple(int(d) for d in json.load(f)["input_shape"])
    from genres_jax.data import inputs, pipeline  # Deferred: reads the training data.

    source, operations = inputs.train_inputs(config)
    return tuple(int(d) for d in pipeline.example_batch(source, operations, 1)["image"].shape[1:])


def load_classifier(workdir: str) -> FeatureExtractor:
    """The embedding of a trained classifier workdir (``best/`` or its latest checkpoint)."""
    from genres_jax import tasks  # Deferred: task modules import their model families.

    config = workdirs.load_config(workdir)
    if not tasks.supports(config.get("task"), "embed"):
        raise ExtractorError(
            f"{workdir!r} is a {config.get('task')!r} workdir; a feature extractor directory "
            f"must be a trained classifier (task {' or '.join(tasks.names_supporting('embed'))})"
        )
    params, _, origin = workdirs.load_inference_params(workdir)
    model = tasks.get(config.task).build_model(config)
    params = jax.tree.map(jnp.asarray, params)
    return FeatureExtractor(
        name=os.path.basename(os.path.normpath(workdir)),
        fingerprint=fingerprint(params),
        input_shape=_classifier_input_shape(workdir, config),
        dim=int(config.model.embed_dim),
        params=params,
        embed=lambda p, x: model.apply({"params": p}, x, method=model.embed),
        resize_method="bicubic",
        source=f"{os.path.abspath(workdir)} ({origin})",
    )


def convert_torch_inception(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """PyTorch FID-Inception state dict -> flat ``{"params/...": ..., "batch_stats/...": ...}``.

    Conv weights (O, I, kH, kW) become Flax kernels (kH, kW, I, O); BatchNorm ``weight``/``bias``
    become ``scale``/``bias`` and ``running_mean``/``running_var`` the ``mean``/``var``
    statistics. The classifier (``fc``), auxiliary head and ``num_batches_tracked`` are dropped.
    """
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] in ("fc", "AuxLogits") or parts[-1] == "num_batches_tracked":
            continue
        value = np.asarray(value, np.float32)
        *module, leaf = parts
        prefix = "/".join(module)
        if module[-1] == "conv" and leaf == "weight":
            out[f"params/{prefix}/kernel"] = value.transpose(2, 3, 1, 0)
        elif module[-1] == "bn" and leaf in ("weight", "bias"):
            out[f"params/{prefix}/{'scale' if leaf == 'weight' else 'bias'}"] = value
        elif module[-1] == "bn" and leaf in ("running_mean", "running_var"):
            out[f"batch_stats/{prefix}/{'mean' if leaf == 'running_mean' else 'var'}"] = value
        else:
            raise ExtractorError(f"unexpected entry {key!r} in an InceptionV3 state dict")
    return out


def _unflatten(flat: Mapping[str, np.ndarray]) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *path, leaf = key.split("/")
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = jnp.asarray(value)
    return tree


def load_inception(path: str) -> FeatureExtractor:
    """InceptionV3 (FID graph) from a converted ``.npz`` file; shapes are checked against it."""
    from genres_jax.models import inception

    try:
        with np.load(path) as data:
            variables = _unflatten({k: data[k] for k in data.files})
    except (OSError, ValueError) as e:
        raise ExtractorError(f"cannot read InceptionV3 weights {path!r}: {e}") from None
    model = inception.InceptionV3FID()
    size = inception.INPUT_SIZE
    expected = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))
    want = jax.tree.map(lambda s: s.shape, expected)
    try:
        got = jax.tree.map(lambda a: a.shape, variables)
        ok = got == want
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ExtractorError(
            f"{path!r} does not hold InceptionV3 FID weights in the expected layout; convert "
            "the PyTorch FID weights with `python -m genres_jax.features convert-inception`"
        )
    return FeatureExtractor(
        name="inception_v3",
        fingerprint=fingerprint(variables),
        input_shape=(size, size, 3),
        dim=inception.FEATURE_DIM,
        params=variables,
        embed=lambda v, x: model.apply(v, x),
        resize_method="bilinear",
        source=os.path.abspath(path),
    )


def resolve(spec: str, dataset_name: str) -> FeatureExtractor:
    """``spec``: a classifier workdir, an InceptionV3 ``.npz``, or "" for the dataset's default."""
    if not spec:
        if dataset_name in FASHION_MNIST_DATASETS:
            return load_classifier(DEFAULT_CLASSIFIER)
        raise ExtractorError(
            f"no default feature extractor for dataset {dataset_name!r} (the shipped one is for "
            f"{', '.join(FASHION_MNIST_DATASETS)}): pass --feature-extractor DIR (a trained "
            "classifier workdir) or --feature-extractor FILE.npz (InceptionV3 weights, README)"
        )
    if os.path.isdir(spec):
        return load_classifier(spec)
    if os.path.isfile(spec) and spec.endswith(".npz"):
        return load_inception(spec)
    raise ExtractorError(
        f"feature extractor {spec!r} is neither a classifier workdir nor an InceptionV3 .npz file"
    )


def _records(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().endswith("}")]


def export_classifier(workdir: str, out_dir: str) -> dict[str, Any]:
    """Writes ``out_dir`` = config.json + ``best/`` (inference parameters only) + extractor.json."""
    from genres_jax.train import checkpointing

    extractor = load_classifier(workdir)
    _, step, _ = workdirs.load_inference_params(workdir)
    evals = [r for r in _records(os.path.join(workdir, "metrics.jsonl")) if r.get("kind") == "eval"]
    accuracy = evals[-1].get("accuracy") if evals else None
    os.makedirs(out_dir, exist_ok=True)
    with (
        open(os.path.join(workdir, "config.json")) as f,
        open(os.path.join(out_dir, "config.json"), "w") as g,
    ):
        g.write(f.read())
    manager = checkpointing.make_best_manager(os.path.join(out_dir, "best"), "accuracy")
    params = jax.device_get(extractor.params)
    checkpointing.save_params(manager, step, params, {"accuracy": float(accuracy or 0.0)})
    manager.wait_until_finished()
    manager.close()
    info = {
        "input_shape": list(extractor.input_shape),
        "step": step,
        "test_accuracy": accuracy,
        "fingerprint": extractor.fingerprint,
    }
    with open(os.path.join(out_dir, EXTRACTOR_FILE), "w") as f:
        json.dump(info, f, indent=2)
    return info
