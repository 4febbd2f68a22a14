"""Optimizers and learning-rate schedules from a config block.

``optimizer`` block keys: ``name`` (adam | adamw | sgd), ``learning_rate``, ``b1``, ``b2``,
``eps``, ``weight_decay``, ``grad_clip_norm`` (0 = off), ``schedule`` (constant | cosine |
step), ``warmup_steps``, and for ``step``: ``decay_steps`` (tuple of boundaries) and
``decay_factor`` (EDSR halves its rate every 200k iterations: ``step`` with factor 0.5).
"""

from __future__ import annotations

import ml_collections
import optax

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step")


def validate(cfg: ml_collections.ConfigDict, prefix: str = "optimizer") -> None:
    """Raises ValueError for unknown names or impossible values."""
    if cfg.name not in OPTIMIZERS:
        raise ValueError(f"{prefix}.name={cfg.name!r} is not one of {', '.join(OPTIMIZERS)}")
    schedule = cfg.get("schedule", "constant")
    if schedule not in SCHEDULES:
        raise ValueError(f"{prefix}.schedule={schedule!r} is not one of {', '.join(SCHEDULES)}")
    if not cfg.learning_rate > 0:
        raise ValueError(f"{prefix}.learning_rate must be > 0, got {cfg.learning_rate}")
    if cfg.get("warmup_steps", 0) < 0:
        raise ValueError(f"{prefix}.warmup_steps must be >= 0")


def make_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    lr = cfg.learning_rate
    warmup = cfg.get("warmup_steps", 0)
    schedule = cfg.get("schedule", "constant")
    if schedule == "constant":
        main = optax.constant_schedule(lr)
    elif schedule == "cosine":
        main = optax.cosine_decay_schedule(lr, max(1, total_steps - warmup))
    else:
        boundaries = {int(s) - warmup: cfg.get("decay_factor", 0.5) for s in cfg.decay_steps}
        main = optax.piecewise_constant_schedule(lr, boundaries)
    if warmup:
        return optax.join_schedules(
            [optax.linear_schedule(0.0, lr, warmup), main], boundaries=[warmup]
        )
    return main


def make_optimizer(
    cfg: ml_collections.ConfigDict, total_steps: int
) -> optax.GradientTransformation:
    """The optimizer of ``cfg`` with its schedule and optional global-norm clipping."""
    schedule = make_schedule(cfg, total_steps)
    if cfg.name == "adam":
        tx = optax.adam(
            schedule, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-8)
        )
    elif cfg.name == "adamw":
        tx = optax.adamw(
            schedule,
            b1=cfg.get("b1", 0.9),
            b2=cfg.get("b2", 0.999),
            eps=cfg.get("eps", 1e-8),
            weight_decay=cfg.get("weight_decay", 1e-4),
        )
    else:
        tx = optax.sgd(schedule, momentum=cfg.get("momentum", 0.9))
    if cfg.get("grad_clip_norm", 0.0):
        tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), tx)
    return tx
