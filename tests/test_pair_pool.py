"""The pool of training pairs (Real-ESRGAN's rule): filling, then exchanging with the batch."""

from __future__ import annotations

import collections

import jax
import numpy as np
import pytest

from genres_jax.tasks import pair_pool


def _batch(rng, n, tag):
    """uint8 pairs whose HR carries the LR's first pixel, so pairs can be followed."""
    lr = rng.integers(0, 256, (n, 2, 2, 3), dtype=np.uint8)
    lr[:, 0, 0, 0] = tag  # Unique per pair across the test.
    hr = np.repeat(np.repeat(lr, 2, axis=1), 2, axis=2)
    return lr, hr


def _pairs(lr, hr):
    return collections.Counter(a.tobytes() + b.tobytes() for a, b in zip(lr, hr, strict=True))


def test_pool_fills_then_trains_on_earlier_pairs_and_keeps_every_pair():
    rng = np.random.default_rng(0)
    size, n = 6, 2
    pool = pair_pool.empty(size, (2, 2, 3), (4, 4, 3))
    exchange = jax.jit(pair_pool.exchange)
    seen = []
    for step in range(8):
        lr, hr = _batch(rng, n, np.arange(n) + n * step)
        old_pool = jax.device_get(pool)
        pool, out_lr, out_hr = exchange(pool, lr, hr, jax.random.key(step))
        pool, out_lr, out_hr = jax.device_get((pool, out_lr, out_hr))
        assert out_lr.dtype == np.uint8 and out_hr.dtype == np.uint8
        if step < size // n:
            # Filling: the batch is trained on as is and written into the next free slots.
            np.testing.assert_array_equal(out_lr, lr)
            np.testing.assert_array_equal(out_hr, hr)
            assert int(pool["fill"]) == n * (step + 1)
            np.testing.assert_array_equal(pool["lr"][n * step : n * (step + 1)], lr)
            np.testing.assert_array_equal(pool["hr"][n * step : n * (step + 1)], hr)
        else:
            # Full: the batch trained on comes from the pool, the new pairs go in; no pair is
            # lost or duplicated, and every pair stays aligned with its own HR.
            assert int(pool["fill"]) == size
            before = _pairs(old_pool["lr"], old_pool["hr"]) + _pairs(lr, hr)
            after = _pairs(pool["lr"], pool["hr"]) + _pairs(out_lr, out_hr)
            assert before == after
            assert not set(_pairs(out_lr, out_hr)) & set(_pairs(lr, hr))
            assert set(_pairs(lr, hr)) <= set(_pairs(pool["lr"], pool["hr"]))
            seen += list(out_lr[:, 0, 0, 0])
    # Pairs come back from different earlier steps, in a key-dependent order.
    assert len(set(seen)) > n
    first, again, other = (
        jax.device_get(exchange(pool, lr, hr, jax.random.key(k))) for k in (99, 99, 98)
    )
    jax.tree.map(np.testing.assert_array_equal, first, again)  # Same key, same draw.
    assert not np.array_equal(first[0]["lr"], other[0]["lr"])


@pytest.mark.parametrize(("size", "message"), [(3, "multiple of batch_size=2"), (-2, ">= 0")])
def test_pool_size_must_be_a_multiple_of_the_batch(size, message):
    pair_pool.check_size(0, 2)
    pair_pool.check_size(8, 2)
    with pytest.raises(ValueError, match=message):
        pair_pool.check_size(size, 2)
