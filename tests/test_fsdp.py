"""FSDP-style sharding (``mesh.model`` > 1) on 8 simulated CPU devices.

Parameters and optimizer state split over the ``model`` axis must train exactly as pure data
parallelism does, and a checkpoint written sharded must restore, sharded or not. The runs need
their own process (XLA_FLAGS is read when JAX starts): this file runs itself as a script.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import device_env, load_config, tiny
from jax.sharding import PartitionSpec as P

from genres_jax.train import config_checks, sharding

HERE = os.path.dirname(os.path.abspath(__file__))
M = sharding.MODEL_AXIS


def test_param_spec_picks_the_largest_divisible_dimension():
    assert sharding.param_spec((3, 3, 16, 64), 4) == P(None, None, None, M)
    assert sharding.param_spec((3, 3, 64, 16), 4) == P(None, None, M, None)
    # A tie goes to the later dimension (a kernel's output features).
    assert sharding.param_spec((3, 3, 16, 16), 8) == P(None, None, None, M)
    # 6 is not divisible by 4, so the smaller dimension is split.
    assert sharding.param_spec((6, 4), 4) == P(None, M)
    # Nothing divisible, scalars, and a model axis of 1: replicated.
    for shape, model in [((3,), 4), ((), 4), ((3, 3, 3, 5), 2), ((64, 64), 1), ((2,), 4)]:
        assert sharding.param_spec(shape, model) == P(), shape


@pytest.mark.parametrize("value", [0, -2, 3])
def test_bad_model_axis_sizes_are_config_errors(value):
    # This process has one CPU device: 3 does not divide it.
    config = load_config("edsr_x2")
    config.mesh.model = value
    with pytest.raises(config_checks.ConfigError, match="mesh.model"):
        config_checks.validate_config(config)


def test_sharded_training_matches_data_parallel_and_its_checkpoint_restores(tmp_path, sr_data_dir):
    env = device_env(8)
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), sr_data_dir, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "all checks passed" in proc.stdout


# ------------------------------------------------------------------ The 8-device process.


def _relative_error(a, b) -> float:
    import jax

    worst = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        worst = max(worst, float(np.linalg.norm(x - y) / max(np.linalg.norm(x), 1e-12)))
    return worst


def _main(data_dir: str, root: str) -> None:
    import jax

    from genres_jax.train import trainer

    assert jax.device_count() == 8

    def run(workdir: str, model: int, **kw):
        config = tiny(
            load_config("edsr_x2"),
            data_dir,
            **{
                "batch_size": 8,
                "total_steps": 4,
                "eval_every": 0,
                "checkpoint_every": 2,
                "mesh.model": model,
                "model.overrides": {"features": 16, "num_blocks": 2},
                "dataset.lr_patch_size": 8,
                # SGD: Adam's first steps move each weight by about +-lr whatever its gradient,
                # which would turn rounding-size differences into whole-step ones.
                "optimizer.name": "sgd",
                "optimizer.learning_rate": 0.05,
                "optimizer.schedule": "constant",
                "optimizer.warmup_steps": 0,
            },
        )
        return trainer.train_and_evaluate(config, os.path.join(root, workdir), **kw)["state"]

    data_parallel = run("dp", 1)
    # Sharded for two steps, checkpointed, then resumed sharded and, in a copy, replicated
    # (a mesh layout may change between restarts).
    first_half = run("fsdp", 4, stop_at=2)
    shutil.copytree(os.path.join(root, "fsdp"), os.path.join(root, "fsdp_then_dp"))
    fsdp = run("fsdp", 4)
    as_dp = run("fsdp_then_dp", 1)

    # Every state array is laid out by the rule, and each device holds its 1/4 of a split one.
    for state in (first_half, fsdp):
        kernel = state.params["upsampler"]["conv_0"]["kernel"]  # (3, 3, 16, 64)
        assert kernel.sharding.spec == P(None, None, None, M)
        assert {s.data.shape for s in kernel.addressable_shards} == {(3, 3, 16, 16)}
        for leaf in jax.tree.leaves(state):
            assert leaf.sharding.spec == sharding.param_spec(leaf.shape, 4)
        assert any(M in tuple(leaf.sharding.spec) for leaf in jax.tree.leaves(state.opt_state))
    assert as_dp.params["upsampler"]["conv_0"]["kernel"].sharding.spec == P()

    # Same training: summed in another order, float32 gradients differ by rounding only.
    assert int(data_parallel.step) == int(fsdp.step) == int(as_dp.step) == 4
    for other in (fsdp, as_dp):
        error = _relative_error(data_parallel, other)
        assert error < 1e-5, error
    print("all checks passed")


if __name__ == "__main__":
    _main(*sys.argv[1:])
