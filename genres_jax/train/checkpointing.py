"""Orbax checkpoints of the train state, the base RNG key and the data iterator.

A checkpoint is one Orbax step directory with three items: ``state`` (the task's pytree:
parameters, optimizer state, EMA, step), ``rng`` (the base key of the run) and ``data`` (the
grain iterator position of each process), so a resumed run continues with exactly the batches
and random numbers an uninterrupted run would have used. Orbax writes a step to a temporary
directory and renames it when complete, so a partly written step is never picked up.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy, save_decision_policy

from genres_jax import UserError


def make_manager(directory: str, *, save_every: int, keep: int) -> ocp.CheckpointManager:
    """Saves every ``save_every`` steps (asynchronously) and keeps the newest ``keep``."""
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=save_decision_policy.FixedIntervalPolicy(save_every),
        preservation_policy=preservation_policy.LatestN(keep),
        create=True,
        enable_async_checkpointing=True,
        # Directories of saves cut short by a crash are removed at the next start.
        cleanup_tmp_directories=True,
    )
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def make_best_manager(
    directory: str, metric: str, *, higher_is_better: bool = True
) -> ocp.CheckpointManager:
    """Keeps only the inference parameters with the best ``metric`` seen so far.

    ``metric`` "latest" keeps the newest. Saves whose metrics lack ``metric`` (written under
    another policy before a restart) rank last.
    """
    sign = 1.0 if higher_is_better else -1.0
    if metric == "latest":
        policy = preservation_policy.LatestN(1)
    else:
        policy = preservation_policy.BestN(
            get_metric_fn=lambda m: sign * m[metric] if metric in m else -math.inf,
            n=1,
            keep_checkpoints_without_metrics=False,
        )
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=save_decision_policy.ContinuousCheckpointingPolicy(),
        preservation_policy=policy,
        create=True,
    )
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def drop_steps_after(manager: ocp.CheckpointManager, step: int) -> None:
    """Deletes saved steps newer than ``step``: a run resumed from ``step`` writes them again."""
    for s in manager.all_steps():
        if s > step:
            manager.delete(s)


def save_params(
    manager: ocp.CheckpointManager, step: int, params: Any, metrics: dict[str, float]
) -> None:
    """Offers ``params`` to a `make_best_manager` manager, which keeps them if they rank best.

    Every offer is saved and ranked: a continuous save policy would silently skip a step
    while the previous save is still being written, and could lose the best weights.
    """
    manager.wait_until_finished()
    manager.save(
        step,
        args=ocp.args.Composite(params=ocp.args.StandardSave(params)),
        metrics=metrics,
        force=True,
    )


def read_latest(directory: str, item: str, target: Any = None) -> tuple[Any, int]:
    """(``item`` of the newest complete checkpoint in ``directory``, its step), read-only.

    The one way tools read checkpoints. Restored into ``target`` (arrays or shape/dtype/sharding
    structs) when given, else as host (numpy) arrays, which works on any device setup.
    FileNotFoundError when ``directory`` holds no complete checkpoint.
    """
    with ocp.CheckpointManager(
        os.path.abspath(directory), options=ocp.CheckpointManagerOptions(read_only=True)
    ) as manager:
        step = manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"no complete checkpoint in {directory!r}")
        how = ocp.args.StandardRestore() if target is None else ocp.args.StandardRestore(target)
        restored = manager.restore(step, args=ocp.args.Composite(**{item: how}))
    return restored[item], int(step)


def load_params(directory: str) -> tuple[Any, int]:
    """(parameters, step) from a best-parameters directory written by `save_params`."""
    return read_latest(directory, "params")


def save(
    manager: ocp.CheckpointManager,
    step: int,
    state: Any,
    rng: jax.Array,
    data_iterator: Any,
    *,
    force: bool = False,
) -> bool:
    """Saves if the policy (or ``force``) says so; returns whether a save started."""
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        rng=ocp.args.StandardSave({"key": rng}),
        data=grain.checkpoint.CheckpointSave(data_iterator),
    )
    return manager.save(step, args=args, force=force)


def abstract_like(tree: Any) -> Any:
    """Shape/dtype/sharding skeleton of ``tree`` to restore into."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def restore(
    manager: ocp.CheckpointManager,
    step: int,
    abstract_state: Any,
    abstract_rng: Any,
    data_iterator: Any,
) -> tuple[Any, jax.Array]:
    """Restores ``step`` into the given abstract targets; the iterator is restored in place."""
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            rng=ocp.args.StandardRestore({"key": abstract_rng}),
            data=grain.checkpoint.CheckpointRestore(data_iterator),
        ),
    )
    return restored["state"], restored["rng"]["key"]


# ------------------------------------------------------------- Damaged steps and failed saves.


class DamagedCheckpoint(Exception):  # noqa: N818 - a finding about files, raised and handled here.
    """A saved step that cannot be read back: its files are truncated, overwritten or missing."""


def _names(path) -> tuple[str, ...]:
    """A pytree path as plain names: dataclass fields, dict keys and tuple indices alike."""
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def layout_difference(directory: str, step: int, abstract_state: Any) -> str:
    """How ``step``'s saved ``state`` differs from ``abstract_state`` in names or shapes ('' when
    it fits). `DamagedCheckpoint` when its description of itself cannot be read."""
    try:
        with ocp.CheckpointManager(
            os.path.abspath(directory),
            item_handlers={"state": ocp.StandardCheckpointHandler()},
            options=ocp.CheckpointManagerOptions(read_only=True),
        ) as reader:
            saved = reader.item_metadata(step)["state"]
        leaves = jax.tree_util.tree_leaves_with_path(saved)
    except Exception as e:  # Orbax and TensorStore raise many types for damaged files.
        raise DamagedCheckpoint(cause_of(e)) from None
    if not leaves:
        raise DamagedCheckpoint("its state has no readable description (_METADATA)")
    have = {_names(p): tuple(m.shape) for p, m in leaves}
    flat = jax.tree_util.tree_leaves_with_path(abstract_state)
    want = {_names(p): tuple(a.shape) for p, a in flat}
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    reshaped = sorted(k for k in set(want) & set(have) if want[k] != have[k])
    parts = []
    if missing:
        parts.append(f"missing {'.'.join(missing[0])} and {len(missing) - 1} more")
    if extra:
        parts.append(f"unexpected {'.'.join(extra[0])} and {len(extra) - 1} more")
    if reshaped:
        k = reshaped[0]
        parts.append(f"{'.'.join(k)} saved as {have[k]}, this model has {want[k]}")
    return "; ".join(parts)


def move_aside(directory: str, step: int) -> str:
    """Moves a damaged ``step`` out of ``directory`` into ``../damaged_checkpoints/`` (never
    deleted: it may still hold something worth saving by hand); returns where it went."""
    aside = os.path.join(os.path.dirname(os.path.abspath(directory)), "damaged_checkpoints")
    os.makedirs(aside, exist_ok=True)
    target, n = os.path.join(aside, str(step)), 1
    while os.path.exists(target):
        target, n = os.path.join(aside, f"{step}.{n}"), n + 1
    os.rename(os.path.join(directory, str(step)), target)
    return target


_OS_ERROR = re.compile(r"os_error_code='?(\d+)")
_TMP_STEP = re.compile(r"/(\d+)\.orbax-checkpoint-tmp")


def cause_of(e: BaseException) -> str:
    """Why a checkpoint library call failed, short: an OS error by name when there is one."""
    if isinstance(e, OSError) and e.errno:
        return f"{e.strerror or os.strerror(e.errno)} [Errno {e.errno}]"
    text = " ".join(str(e).split()).split(" See full TensorStore details")[0]
    found = _OS_ERROR.search(text)
    if found:
        code = int(found.group(1))
        return f"{os.strerror(code)} [Errno {code}]"
    return f"{type(e).__name__}: {text[:200]}"


def save_failure(e: BaseException, directory: str) -> tuple[str, int | None]:
    """(cause, step) of a failed save; the step's unfinished directory is removed (it is never
    loaded, and removing it gives the space back)."""
    found = _TMP_STEP.search(str(e))
    step = int(found.group(1)) if found else None
    if step is not None:
        shutil.rmtree(os.path.join(directory, f"{step}.orbax-checkpoint-tmp"), ignore_errors=True)
    return cause_of(e), step


class CheckpointSaveError(UserError):
    """A checkpoint could not be written (no space, a quota, an I/O error); the message says
    which, and that the earlier checkpoints are intact."""
