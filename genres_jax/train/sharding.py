"""Device mesh and array placement: one code path for 1 device, N devices and N hosts.

The mesh is ``(data, model)`` over every device of every process, ``model`` of size
``config.mesh.model`` (1 by default). The batch is split over both axes together, so every
device sees its own examples. With ``model`` = 1 parameters and optimizer state are replicated
(pure data parallelism); with ``model`` > 1 each of their arrays is split along its largest
dimension divisible by ``model`` (`state_shardings`), FSDP-style: XLA gathers a weight where
it is used and reduce-scatters its gradient, so each device stores 1/``model`` of the state.
Each process feeds only its own slice of the global batch (`host_batch_to_global`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
MODEL_AXIS = "model"
# Mesh axes the batch is split over, in this order (those the mesh has).
BATCH_AXES = (DATA_AXIS, MODEL_AXIS)


def make_mesh(model: int = 1) -> Mesh:
    """A ``(data, model)`` mesh over all devices, ``model`` devices along the second axis.

    Auto axis types keep XLA's sharding propagation (GSPMD): arrays made inside a step, such as
    latent noise, take their sharding from `constrain_batch` rather than from their types.
    """
    n = jax.device_count()
    if model < 1 or n % model:
        raise ValueError(f"mesh model axis size {model} must be a positive divisor of {n} devices")
    return jax.make_mesh(
        (n // model, model), (DATA_AXIS, MODEL_AXIS), axis_types=(AxisType.Auto, AxisType.Auto)
    )


def _batch_axes(axis_names) -> tuple[str, ...]:
    return tuple(a for a in BATCH_AXES if a in axis_names)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over ``data`` and ``model`` together, the rest whole."""
    return NamedSharding(mesh, P(_batch_axes(mesh.axis_names)))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def param_spec(shape: tuple[int, ...], model: int) -> P:
    """How one state array is split over ``model`` devices: along its largest dimension that
    ``model`` divides (the later one on a tie: a kernel's output features), else replicated."""
    if model == 1:
        return P()
    dims = [(size, i) for i, size in enumerate(shape) if size >= model and size % model == 0]
    if not dims:
        return P()
    axis = max(dims)[1]
    return P(*(MODEL_AXIS if i == axis else None for i in range(len(shape))))


def state_shardings(abstract_state: Any, mesh: Mesh) -> Any:
    """A `NamedSharding` per leaf of ``abstract_state`` (arrays or shape/dtype structs).

    Replicated on a mesh whose ``model`` axis has size 1; otherwise `param_spec` per array.
    Optimizer moments and EMA weights have their parameter's shape and so its layout.
    """
    model = dict(mesh.shape).get(MODEL_AXIS, 1)
    return jax.tree.map(
        lambda x: NamedSharding(mesh, param_spec(tuple(x.shape), model)), abstract_state
    )


def replicate(tree: Any, mesh: Mesh) -> Any:
    """A host value (the same on every process) as arrays replicated over ``mesh``.

    Goes through jit rather than ``device_put``: with several processes a ``device_put`` onto a
    sharding that spans them gave arrays Orbax could not save.
    """
    return jax.jit(lambda t: t, out_shardings=replicated(mesh))(tree)


def host_batch_to_global(batch: Any, mesh: Mesh) -> Any:
    """Assembles each process's local batch into global arrays split like `batch_sharding`."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch
    )


def split_over_batch(predict: Callable, state_sh: Any, mesh: Mesh) -> Callable:
    """``predict(state, x)`` jitted so that a batch whose rows divide over the devices is split
    over them (each device runs its share), and any other batch runs whole, replicated.

    ``x`` is a host array that every process holds whole (validation tiles), so each device
    takes its rows from it; the result comes back replicated.
    """
    repl, split = replicated(mesh), batch_sharding(mesh)
    whole = jax.jit(predict, in_shardings=(state_sh, repl), out_shardings=repl)
    shared = jax.jit(predict, in_shardings=(state_sh, split), out_shardings=repl)
    devices = mesh.devices.size

    def run(state: Any, x: Any) -> jax.Array:
        if x.shape[0] % devices:
            return whole(state, x)
        rows = np.asarray(x)
        return shared(state, jax.make_array_from_callback(rows.shape, split, rows.__getitem__))

    run.split, run.whole = shared, whole  # The two compiled forms, for inspection.
    return run


def gather_to_host(x: jax.Array) -> np.ndarray:
    """A batch-sharded array, whole, as numpy on every process."""
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def constrain_batch(x: jax.Array) -> jax.Array:
    """Inside a jitted step under `jax.set_mesh`: lay ``x`` out like the batch.

    Without a mesh in context (a step called on its own, in a notebook) it returns ``x``.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    return jax.lax.with_sharding_constraint(x, P(_batch_axes(mesh.axis_names)))


def padded_batch_size(requested: int) -> int:
    """The smallest multiple of the device count that holds ``requested`` rows.

    Evaluation runs any requested batch size on any number of devices: its batches are padded
    up to this size with rows whose ``mask`` is 0, which every metric leaves out of its sums.
    """
    n = jax.device_count()
    return max(1, -(-int(requested) // n)) * n


def eval_batch_rows(requested: int) -> tuple[int, int]:
    """(records, rows) of one evaluation batch on this process for a requested global size.

    Each batch holds the same records whatever the device count (``requested`` of them, split
    between processes) and is padded to ``rows`` with masked rows so it splits over the local
    devices: a metric then sees every record in the same batch and row as on one device.
    """
    return per_process(requested), per_process(padded_batch_size(requested))


def global_eval_batches(
    source: Any,
    *,
    batch_size: int,
    operations: Any,
    mesh: Mesh,
    max_records: int = 0,
    keys: tuple[str, ...] | None = None,
) -> Any:
    """One ordered evaluation pass over ``source`` as global batches split like the batch.

    ``batch_size`` records per batch over all processes, padded up to a multiple of the device
    count with rows whose ``mask`` is 0 (`genres_jax.data.pipeline.eval_batches`); ``keys``
    keeps only those fields. The one way every evaluation (losses, generative metrics, the
    VAE's bounds) reads its data on any number of devices and processes.
    """
    from genres_jax.data import pipeline  # Deferred: grain is only needed when evaluating.

    records, rows = eval_batch_rows(batch_size)
    for host_batch in pipeline.eval_batches(
        source,
        batch_size=records,
        rows=rows,
        operations=operations,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        max_records=max_records,
    ):
        if keys is not None:
            host_batch = {k: host_batch[k] for k in keys}
        yield host_batch_to_global(host_batch, mesh)


def nearest_valid_batch_sizes(requested: int) -> tuple[int, ...]:
    """The multiples of the device count just below and above ``requested`` (for messages)."""
    n = jax.device_count()
    below = requested // n * n
    return tuple(b for b in (below, below + n) if b > 0 and b != requested)


def per_process(global_batch: int) -> int:
    return global_batch // jax.process_count()
