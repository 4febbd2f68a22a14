"""Runs tiny configs for one unchanged step in a fresh process and prints their eval metrics.

``python tests/eval_on_devices.py FM_DATA_DIR SR_DATA_DIR WORKDIR NAME [NAME ...]``: for each
config, one training step at learning rate 0 (a warm-up's first step), so the evaluated state
is the initial one whatever the device count, then the evaluation the config runs (GAN/VAE/
classifier metrics, FID & co., SR validation). Prints one JSON object {name: metrics}. The
device count comes from XLA_FLAGS, which must be set before JAX starts. With ``--check`` first,
only the checks a run makes before compiling anything, with the default ``eval_batch_size``.
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax
from conftest import load_config, tiny

from genres_jax.train import trainer
from genres_jax.train.defaults import base_config

# Tiny networks of each SR generator and discriminator family (model sizes only).
SR_MODELS = {
    "srcnn": {"features": (8, 4)},
    "vdsr": {"num_layers": 3, "features": 8},
    "edsr": {"num_blocks": 1, "features": 8},
    "rdn": {"num_blocks": 1, "num_layers": 2, "features": 8, "growth": 4},
    "rrdbnet": {"num_blocks": 1, "features": 8, "growth": 4},
    "srresnet": {"num_blocks": 1, "features": 8},
    "espcn": {"features": (8, 4)},
    "fsrcnn": {"d": 8, "s": 4, "m": 1},
    "srvgg": {"num_feat": 8, "num_conv": 2},
    "span": {"features": 6, "num_blocks": 2},
}
DISCRIMINATORS = {"vgg": {"features": 4, "hidden": 8}, "unet": {"features": 4}}
# Not a multiple of 3 or 8: evaluation pads each batch to the device count.
EVAL_BATCH = 50
# One config per evaluation path, its numbers compared between 1, 3 and 8 devices: GAN
# (discriminator metrics, FID/KID/precision/recall of samples), VAE (ELBO, importance-weighted
# bound, FID), classifier accuracy and SR validation. They train on the same batch (24 = a
# multiple of 1, 3 and 8) everywhere, so that BatchNorm statistics are the same too.
COMPARED = ("dcgan_fashion_mnist", "vae_conv_fashion_mnist", "classifier_fashion_mnist", "edsr_x2")


def tiny_for_devices(name: str, fm_data_dir: str, sr_data_dir: str):
    config = load_config(name)
    sr = config.task in ("sr", "gan_sr")
    batch = 24 if name in COMPARED else 8
    settings = {"batch_size": batch, "total_steps": 1, "eval_every": 1, "log_every": 1}
    settings["checkpoint_every"] = 1
    if sr:
        family = config.model.name.split("_")[0]
        settings.update({"dataset.lr_patch_size": 8, "sr_eval.max_images": 1})
        # The config's own form (e.g. a bicubic residual), at a tiny size.
        overrides = {**config.model.overrides, **SR_MODELS[family]}
        settings.update({"sr_eval.panels": 0, "model.overrides": overrides})
        if "discriminator" in config:
            settings["discriminator.overrides"] = DISCRIMINATORS[config.discriminator.name]
        if "perceptual_weight" in config.get("loss", {}):
            settings["loss.perceptual_weight"] = 0.0
        if config.get("degradation", {}).get("pool_size"):
            settings["degradation.pool_size"] = batch
    if config.dataset.name == "celeb_a":  # Needs the internet once: offline images instead.
        config.dataset.update({"name": "fashion_mnist_local", "eval_split": "test"})
    data_dir = fm_data_dir if config.dataset.name.startswith("fashion_mnist") else sr_data_dir
    config = tiny(config, data_dir, **settings)
    config.eval_batch_size = EVAL_BATCH
    if config.get("generative_eval"):
        config.generative_eval.batch_size = EVAL_BATCH
    for block in ("optimizer", "g_optimizer", "d_optimizer"):
        if block in config:
            config[block].warmup_steps = 10  # The first step's learning rate is 0.
    return config


def main(argv: list[str]) -> None:
    fm_data_dir, sr_data_dir, workdir, *names = argv
    out = {"devices": jax.device_count()}
    if names[0] == "--check":  # Only the checks a run makes before anything is compiled.
        for name in names[1:]:
            config = tiny_for_devices(name, fm_data_dir, sr_data_dir)
            config.eval_batch_size = base_config().eval_batch_size  # The default, 500.
            trainer.validate_config(config)
            out[name] = "valid"
        names = []
    for name in names:
        start = time.perf_counter()
        config = tiny_for_devices(name, fm_data_dir, sr_data_dir)
        result = trainer.train_and_evaluate(config, os.path.join(workdir, name))
        out[name] = result["eval"]
        print(f"{name}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
