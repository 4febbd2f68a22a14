"""Evaluation inside a training run, and the fine-tuning start from another workdir."""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp

from genres_jax import tasks
from genres_jax.evaluation import sr_protocol
from genres_jax.inference import upscalers
from genres_jax.train import checkpointing, sharding
from genres_jax.train.config_checks import ConfigError


def evaluate(state, eval_step, source, operations, config, rng, mesh) -> dict[str, float]:
    """Runs ``eval_step`` over one pass of ``source``; returns sums / count per metric."""
    totals = None
    for batch in sharding.global_eval_batches(
        source,
        batch_size=config.eval_batch_size,
        operations=operations,
        mesh=mesh,
        max_records=config.get("eval_max_records", 0),
    ):
        sums = eval_step(state, batch, rng)
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(totals)
    count = max(float(totals.pop("count")), 1.0)
    return {k: float(v) / count for k, v in totals.items()}


def init_from(task, state, workdir: str, state_sh, verbose: bool):
    """Fine-tuning start: every parameter of ``workdir``'s best weights that fits is loaded."""
    if task.with_params is None:
        raise ConfigError("init_from is not supported by this task")
    pretrained, step = checkpointing.load_params(os.path.join(workdir, "best"))
    params, taken = tasks.base.merge_matching(task.inference_params(state), pretrained)
    state = jax.jit(lambda s: s, out_shardings=state_sh)(task.with_params(state, params))
    if verbose:
        total = len(jax.tree.leaves(params))
        print(
            f"Initialised {len(taken)} of {total} parameter arrays from {workdir} (step {step})",
            file=sys.stderr,
        )
    return state


def validate_sr(
    task, state, predict, source, config, writer, step: int, lpips=None
) -> dict[str, float]:
    """Whole-image SR validation (tiled, so one compilation serves every image size).

    Writes a bicubic | model | HR panel per image (the first ``panels`` images) and returns the
    mean PSNR/SSIM on RGB and Y, and LPIPS with a ``lpips`` scorer (`sr_protocol.lpips_scorer`).
    The LR images are the split's bicubic ones, or the task's own (``task.validation_lr``,
    e.g. degraded as in training).
    """
    cfg = config.sr_eval
    overlap = cfg.overlap if cfg.overlap >= 0 else task.receptive_radius
    upscale = upscalers.model_upscaler(
        lambda lr: predict(state, lr),
        scale=config.scale,
        tile=cfg.tile,
        overlap=overlap,
        # Tiles are predicted a multiple of the device count at a time, split over them.
        batch_size=sharding.padded_batch_size(cfg.batch_size),
    )
    panels = {}

    def keep_panel(name, sr, pair):
        if len(panels) < cfg.panels:
            panels[f"val_{len(panels)}"] = sr_protocol.comparison_panel(
                pair["lr"], sr, pair["hr"], scale=config.scale, size=cfg.panel_size
            )[None]

    def pair(i):
        record = source[i]
        if task.validation_lr is None:
            return record
        return {**record, "lr": task.validation_lr(record["hr"], i)}

    n = len(source) if not cfg.max_images else min(cfg.max_images, len(source))
    result = sr_protocol.evaluate_pairs(
        upscale,
        (pair(i) for i in range(n)),
        crop_border=cfg.crop_border if cfg.crop_border >= 0 else config.scale,
        on_image=keep_panel,
        lpips=lpips,
    )
    writer.write_images(step, panels)
    return result["mean"]
