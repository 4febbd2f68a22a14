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
import orbax.checkpoint as ocp

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


def restore(manager: ocp.CheckpointManager, step: int, args: Any, workdir: str) -> Any:
    """``manager.restore`` whose failures on damaged files become a `WorkdirError`.

    A checkpoint directory that cannot be read (truncated or overwritten metadata, a corrupt
    array store, a mismatched tree) is a property of the workdir, so the user gets one line
    naming it rather than a traceback from deep inside the checkpoint library.
    """
    try:
        return manager.restore(step, args=args)
    except Exception as e:  # Orbax/TensorStore raise many types for damaged files.
        detail = " ".join(str(e).split())[:200]
        raise WorkdirError(
            f"cannot read checkpoint {step} in {workdir!r} ({type(e).__name__}: {detail})"
        ) from None


def load_inference_params(workdir: str) -> tuple[Any, int, str]:
    """(params, step, where from): ``best/``, else the latest checkpoint's EMA weights."""
    best = os.path.join(workdir, "best")
    if os.path.isdir(best):
        try:
            params, step = checkpointing.load_params(best)
            return params, step, "best"
        except FileNotFoundError:
            pass
        except Exception as e:  # Damaged files: see `restore`.
            detail = " ".join(str(e).split())[:200]
            raise WorkdirError(f"cannot read {best!r} ({type(e).__name__}: {detail})") from None
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise WorkdirError(f"{workdir!r} holds no weights (neither best/ nor checkpoints/)")
    with ocp.CheckpointManager(
        os.path.abspath(ckpt_dir), options=ocp.CheckpointManagerOptions(read_only=True)
    ) as manager:
        step = manager.latest_step()
        if step is None:
            raise WorkdirError(f"{workdir!r} holds no complete checkpoint")
        args = ocp.args.Composite(state=ocp.args.StandardRestore())
        state = restore(manager, step, args, workdir)["state"]
    for key in ("ema_params", "params", "g_params"):
        if key in state:
            return state[key], step, f"checkpoint {step} ({key})"
    raise WorkdirError(f"checkpoint {step} in {workdir!r} has no parameters")
