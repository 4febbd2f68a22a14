"""Checks that run before anything expensive: config values, and the workdir's own config.

A run refuses a config that cannot work (`validate_config`) and a workdir written by a
different experiment (`check_workdir_config`): resuming a checkpoint under another model, data
or optimizer would silently mix two runs. Keys that only steer the loop (how long, how often to
log or save, where the data lives, how validation is shown) may change between restarts.
"""

from __future__ import annotations

import json
import math
import os

import jax
import ml_collections

from genres_jax import UserError, tasks
from genres_jax.data import inputs
from genres_jax.train import nonfinite, precision, sharding


class ConfigError(UserError):
    """A config value that cannot work; raised before anything is compiled."""


# Keys that may differ from the workdir's recorded config when a run resumes.
RESUMABLE_CHANGES = (
    "total_steps",
    "log_every",
    "eval_every",
    "checkpoint_every",
    "keep_checkpoints",
    "progress_bar",
    "loss.vgg_weights",  # A file path: the weights live in the checkpoint once loaded.
    "eval_max_records",
    "eval_batch_size",
    "num_samples",
    "nonfinite_policy",
    "nonfinite_max_consecutive",
    "preemption_grace_s",
    "model.conv_form",  # The same function computed another way (models/upconv.py).
    "init_from",
    "dataset.data_dir",
    "dataset.source_dir",
    "dataset.train_dir",
    "dataset.validation_dir",
    "dataset.worker_count",
    "dataset.read_threads",
    "dataset.cache",
    "sr_eval.",
    # The state's structure and dtypes do not depend on these (parameters are float32 in every
    # precision; a checkpoint restores into any mesh layout), and "auto" precision already
    # differs between a GPU run and its resumption on a CPU. compute_dtype is the key that
    # precision replaced, still present in workdirs recorded before it.
    "precision",
    "compute_dtype",
    "mesh.",
)


def _positive_int(config, key: str, minimum: int = 1) -> None:
    value = config[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        kind = "a positive" if minimum == 1 else "a non-negative"
        raise ConfigError(f"{key} must be {kind} integer, got {value!r}")


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Checks shared by every task; the task's own checks follow in `tasks.validate`."""
    for key, value in _flatten(_as_json(config)).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}={value} is not a finite number")
    for key in ("batch_size", "total_steps", "log_every", "checkpoint_every", "keep_checkpoints"):
        _positive_int(config, key)
    for key in ("eval_every", "seed"):
        _positive_int(config, key, minimum=0)
    policy = config.get("nonfinite_policy", "skip")
    if policy not in nonfinite.POLICIES:
        valid = ", ".join(nonfinite.POLICIES)
        raise ConfigError(f"nonfinite_policy={policy!r} is not one of {valid}")
    _positive_int(config, "nonfinite_max_consecutive")
    grace = config.get("preemption_grace_s", 0.0)
    if not isinstance(grace, int | float) or isinstance(grace, bool) or grace < 0:
        raise ConfigError(f"preemption_grace_s must be a number of seconds >= 0, got {grace!r}")
    init_from = config.get("init_from", "")
    if init_from and not os.path.isdir(os.path.join(init_from, "best")):
        raise ConfigError(
            f"init_from={init_from!r} is not a workdir with best weights ({init_from}/best)"
        )
    try:
        precision.check(config.get("precision", "auto"))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    n = jax.device_count()
    model_axis = config.get("mesh", {}).get("model", 1)
    if not isinstance(model_axis, int) or isinstance(model_axis, bool) or model_axis < 1:
        raise ConfigError(f"mesh.model must be a positive integer, got {model_axis!r}")
    if n % model_axis:
        raise ConfigError(
            f"mesh.model={model_axis} does not divide the {n} devices; use a divisor of {n}"
        )
    if config.batch_size % n:
        sizes = " or ".join(str(b) for b in sharding.nearest_valid_batch_sizes(config.batch_size))
        raise ConfigError(
            f"batch_size={config.batch_size} is not divisible by the {n} devices; "
            f"the nearest valid batch sizes are {sizes}"
        )
    _positive_int(config, "eval_batch_size")  # Padded to a multiple of the devices.
    try:
        inputs.validate(config)
        tasks.validate(config)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _flatten(tree, prefix: str = "") -> dict:
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


# Keys added after workdirs were first written, with what their absence has always meant: a
# workdir recorded without one resumes under that value as no change (anything else is one).
ADDED_KEYS = {"gan.g_fakes": "fresh", "dataset.patch_sampling": "image"}


def config_differences(recorded: dict, current: dict) -> list[str]:
    """Keys whose values differ between two configs (as JSON dicts), ignoring resumable ones."""
    old, new = _flatten(recorded), _flatten(current)
    for key, meaning in ADDED_KEYS.items():
        if key in new:
            old.setdefault(key, meaning)
    changed = []
    for key in sorted(set(old) | set(new)):
        if any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE_CHANGES):
            continue
        if old.get(key, "<absent>") != new.get(key, "<absent>"):
            changed.append(f"{key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}")
    return changed


def _as_json(config: ml_collections.ConfigDict) -> dict:
    return json.loads(config.to_json_best_effort(sort_keys=True))


def _has_checkpoints(workdir: str) -> bool:
    folder = os.path.join(workdir, "checkpoints")
    return os.path.isdir(folder) and any(name.isdigit() for name in os.listdir(folder))


def check_workdir_config(
    config: ml_collections.ConfigDict, workdir: str, *, allow_change: bool, dry_run: bool = False
) -> bool:
    """Compares ``config`` with ``workdir/config.json``; returns True when the file must be
    (re)written. A difference outside `RESUMABLE_CHANGES` raises `ConfigError` naming the keys,
    unless ``allow_change`` or the workdir holds no checkpoint yet (nothing to resume, so a
    corrected command after a refused one just starts); the old file is then kept as
    ``config.<n>.json``. ``dry_run`` checks without renaming anything.
    """
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return True
    try:
        with open(path) as f:
            recorded = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    current = _as_json(config)
    changed = config_differences(recorded, current)
    if changed and not allow_change and _has_checkpoints(workdir):
        raise ConfigError(
            f"{workdir} was written by a different config ({len(changed)} keys differ: "
            + "; ".join(changed)
            + "). Use another --workdir, or pass --allow_config_change to continue anyway."
        )
    if changed and not dry_run:
        n = 1
        while os.path.exists(os.path.join(workdir, f"config.{n}.json")):
            n += 1
        os.replace(path, os.path.join(workdir, f"config.{n}.json"))
    return recorded != current


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    path = os.path.join(workdir, "config.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    os.replace(tmp, path)
