"""Device mesh and array placement: one code path for 1 device, N devices and N hosts.

The batch is split over the ``data`` axis of a 1-D mesh over every device of every process;
parameters and optimizer state are replicated. Each process feeds only its own slice of the
global batch (`host_batch_to_global`).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def make_mesh() -> Mesh:
    """A 1-D mesh over all devices, axis ``data``.

    Auto axis types keep XLA's sharding propagation (GSPMD): arrays made inside a step, such as
    latent noise, take their sharding from `constrain_batch` rather than from their types.
    """
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over ``data``, the rest whole."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def host_batch_to_global(batch: Any, mesh: Mesh) -> Any:
    """Assembles each process's local batch into global arrays sharded on ``data``."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch
    )


def constrain_batch(x: jax.Array) -> jax.Array:
    """Inside a jitted step under `jax.set_mesh`: lay ``x`` out like the batch.

    Without a mesh in context (a step called on its own, in a notebook) it returns ``x``.
    """
    if jax.sharding.get_abstract_mesh().empty:
        return x
    return jax.lax.with_sharding_constraint(x, P(DATA_AXIS))


def check_batch_size(global_batch: int, name: str = "batch_size") -> None:
    """The global batch must split evenly over devices (and so over processes)."""
    n = jax.device_count()
    if global_batch <= 0 or global_batch % n:
        raise ValueError(
            f"{name}={global_batch} must be a positive multiple of the device count ({n})"
        )


def per_process(global_batch: int) -> int:
    return global_batch // jax.process_count()
