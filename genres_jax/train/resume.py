"""What a run reads back when it starts again, and the one way a failed save ends it.

- `restore_newest_readable`: the newest checkpoint that reads back; newer damaged ones are moved
  aside, a checkpoint of another model is refused.
- `saving`: a checkpoint save (or the wait for one) that fails - no space, a quota, an I/O error
  - becomes one `checkpointing.CheckpointSaveError` line.
- `evaluated`: whether a step's evaluation reached ``metrics.jsonl`` (one given up on a signal
  did not, and is run again).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import jax
from jax.experimental import multihost_utils

from genres_jax.train import checkpointing, summaries
from genres_jax.train.config_checks import ConfigError


def restore_newest_readable(
    manager, abstract_state, state_sh, train_rng, repl, train_iter, workdir: str, is_chief: bool
):
    """(state, rng, step) of the newest checkpoint that reads back.

    Newer steps that cannot be read (truncated, overwritten or missing files) are moved to
    ``damaged_checkpoints/`` with a warning, never deleted; with none readable nothing is moved
    and the run stops. A checkpoint whose tree or shapes do not fit this config is refused.
    """
    target = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), abstract_state, state_sh
    )
    rng_target = jax.ShapeDtypeStruct(train_rng.shape, train_rng.dtype, sharding=repl)
    directory = os.path.join(workdir, "checkpoints")
    damaged: list[tuple[int, str]] = []
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            difference = checkpointing.layout_difference(directory, step, abstract_state)
            if difference:
                raise ConfigError(
                    f"checkpoint {step} in {workdir} does not fit this config's model and data "
                    f"({difference}). Use another --workdir."
                )
            try:
                state, rng = checkpointing.restore(manager, step, target, rng_target, train_iter)
            except Exception as e:  # The layout fits: what fails now is the files.
                raise checkpointing.DamagedCheckpoint(checkpointing.cause_of(e)) from None
        except checkpointing.DamagedCheckpoint as e:
            damaged.append((step, str(e)))
            continue
        if damaged:
            if jax.process_count() > 1:  # Every process has read before one moves anything.
                multihost_utils.sync_global_devices("checked checkpoints")
            for bad, cause in damaged:
                if is_chief:
                    moved = checkpointing.move_aside(directory, bad)
                    print(
                        f"warning: checkpoint {bad} in {directory} cannot be read ({cause}); "
                        f"moved to {moved}, resuming from step {step}",
                        file=sys.stderr,
                    )
            if jax.process_count() > 1:
                multihost_utils.sync_global_devices("moved damaged checkpoints")
            manager.reload()
        return state, rng, step
    listed = ", ".join(f"{s} ({cause})" for s, cause in damaged)
    raise ConfigError(
        f"no checkpoint in {directory} can be read: {listed}. Nothing was moved or deleted; "
        "move the damaged steps away to start that workdir afresh, or use another --workdir."
    )


@contextlib.contextmanager
def saving(manager, step: int) -> Iterator[None]:
    """Around a save of ``step`` or the wait for saves in flight: a failure ends the run with one
    line; earlier checkpoints are untouched and the unfinished one is removed, so the same
    command resumes once the cause is gone. (An asynchronous save's failure surfaces at the next
    save or wait: the step it names is the one that failed.)"""
    directory = str(manager.directory)
    try:
        yield
    except Exception as e:
        cause, failed = checkpointing.save_failure(e, directory)
        kept = [s for s in manager.all_steps() if s != failed]
        raise checkpointing.CheckpointSaveError(
            f"cannot write checkpoint {failed if failed is not None else step} in {directory}: "
            f"{cause}. Earlier checkpoints are intact (newest: "
            f"{max(kept) if kept else 'none'}); free space and run the same command to resume."
        ) from None


def evaluated(jsonl_path: str, step: int) -> bool:
    """Whether ``metrics.jsonl`` holds the evaluation of ``step``."""
    records = summaries.read_records(jsonl_path)
    return any(r.get("kind") == "eval" and r.get("step") == step for r in records)
