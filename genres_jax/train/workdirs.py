"""What a trained workdir holds, for the tools that use one: its config and inference weights.

A workdir written by ``train.py`` has ``config.json`` and ``checkpoints/`` (full train states);
super-resolution runs also keep ``best/`` (the EMA weights with the best validation Y-PSNR).
Inference loads ``best/`` when present, else the newest checkpoint's EMA (or plain) weights.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from genres_jax import UserError
from genres_jax.train import checkpointing


class WorkdirError(UserError):
    """A workdir that is missing or lacks what a tool needs; the message names it."""


def load_config(workdir: str) -> ml_collections.ConfigDict:
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise WorkdirError(f"{workdir!r} is not a training workdir (no config.json)")
    try:
        with open(path) as f:
            return ml_collections.ConfigDict(json.load(f))
    except (OSError, ValueError) as e:
        raise WorkdirError(f"cannot read {path}: {e}") from None


def read_checkpoint(
    directory: str, item: str, workdir: str, target: Any = None, *, required: bool = True
) -> tuple[Any, int] | None:
    """`checkpointing.read_latest` whose failures become one `WorkdirError` naming the workdir.

    None, when not ``required``, for a directory without a complete checkpoint.

    A checkpoint directory that cannot be read (truncated or overwritten metadata, a corrupt
    array store, a mismatched tree) is a property of the workdir, so the user gets one line
    naming it rather than a traceback from deep inside the checkpoint library.
    """
    if not os.path.isdir(directory):
        if not required:
            return None
        raise WorkdirError(f"{workdir!r} holds no {os.path.basename(directory)}/")
    try:
        return checkpointing.read_latest(directory, item, target)
    except FileNotFoundError:
        if not required:
            return None
        raise WorkdirError(f"{workdir!r} holds no complete checkpoint") from None
    except Exception as e:  # Orbax/TensorStore raise many types for damaged files.
        detail = " ".join(str(e).split())[:200]
        raise WorkdirError(f"cannot read {directory!r} ({type(e).__name__}: {detail})") from None


def load_inference_params(workdir: str) -> tuple[Any, int, str]:
    """(params, step, where from): ``best/``, else the latest checkpoint's EMA weights."""
    best = os.path.join(workdir, "best")
    found = read_checkpoint(best, "params", workdir, required=False)
    if found is not None:
        return (*found, "best")
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise WorkdirError(f"{workdir!r} holds no weights (neither best/ nor checkpoints/)")
    state, step = read_checkpoint(ckpt_dir, "state", workdir)
    for key in ("ema_params", "params", "g_params"):
        if key in state:
            return state[key], step, f"checkpoint {step} ({key})"
    raise WorkdirError(f"checkpoint {step} in {workdir!r} has no parameters")
