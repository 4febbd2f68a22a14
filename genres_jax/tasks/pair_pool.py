"""A pool of training pairs that mixes degraded LR/HR pairs across steps (Real-ESRGAN).

Real-ESRGAN degrades a whole batch with related random draws (one batch's images share a
second-order branch, and each step's images come from few photos), so its training code keeps
a pool of earlier pairs and trains on pairs drawn from it. Its rule, reproduced here as a pure
function of a pool carried in the train state:

- while the pool is not full, the batch is written into the next free slots and trained on
  as it is;
- once full, the pool is shuffled, its first ``B`` pairs become this step's batch and the new
  batch takes their slots.

The pool holds uint8 pixels: the HR crops arrive as uint8 and the degraded LR images are on
8-bit levels (`genres_jax.ops.degradations.degrade` rounds them), so nothing is lost and an
ESRGAN x4 pool of 720 pairs of 256x256 crops costs 150 MB. Being part of the state, it is
checkpointed: a resumed run draws exactly the pairs an uninterrupted one would.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def check_size(pool_size: int, batch_size: int) -> None:
    """ValueError unless ``pool_size`` is 0 (no pool) or a positive multiple of the batch."""
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 0:
        raise ValueError(f"degradation.pool_size must be an integer >= 0, got {pool_size!r}")
    if pool_size and pool_size % batch_size:
        raise ValueError(
            f"degradation.pool_size={pool_size} must be a multiple of batch_size={batch_size} "
            "(the pool is filled batch by batch)"
        )


def empty(pool_size: int, lr_shape, hr_shape) -> dict[str, jax.Array]:
    """A pool of ``pool_size`` pairs with the per-image shapes of ``lr_shape`` / ``hr_shape``."""
    return {
        "lr": jnp.zeros((pool_size, *lr_shape), jnp.uint8),
        "hr": jnp.zeros((pool_size, *hr_shape), jnp.uint8),
        "fill": jnp.zeros((), jnp.int32),
    }


def exchange(
    pool: dict[str, jax.Array], lr: jax.Array, hr: jax.Array, key: jax.Array
) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
    """(new pool, LR, HR to train on) for this step's uint8 batch ``lr``/``hr`` (rule above)."""
    size, batch = pool["lr"].shape[0], lr.shape[0]

    def fill():
        at = pool["fill"]
        return (
            {
                "lr": jax.lax.dynamic_update_slice_in_dim(pool["lr"], lr, at, axis=0),
                "hr": jax.lax.dynamic_update_slice_in_dim(pool["hr"], hr, at, axis=0),
                "fill": at + batch,
            },
            lr,
            hr,
        )

    def swap():
        order = jax.random.permutation(key, size)
        shuffled_lr, shuffled_hr = pool["lr"][order], pool["hr"][order]
        return (
            {
                "lr": shuffled_lr.at[:batch].set(lr),
                "hr": shuffled_hr.at[:batch].set(hr),
                "fill": pool["fill"],
            },
            shuffled_lr[:batch],
            shuffled_hr[:batch],
        )

    return jax.lax.cond(pool["fill"] >= size, swap, fill)
