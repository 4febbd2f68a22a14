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
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy, save_decision_policy


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
