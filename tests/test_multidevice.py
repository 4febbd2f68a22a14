"""One code path for 1 and N devices: 8 simulated CPU devices train to the 1-device result."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import device_env

HERE = os.path.dirname(os.path.abspath(__file__))


def _train(tmp_path, data_dir, devices: int, name: str, *overrides: str) -> dict:
    env = device_env(devices)
    out = tmp_path / f"{devices}.npz"
    cmd = [
        sys.executable,
        os.path.join(HERE, "train_and_dump.py"),
        name,
        data_dir,
        str(tmp_path / f"run{devices}"),
        str(out),
        *overrides,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


# SGD rather than Adam: Adam's first steps move every parameter by about +-lr whatever the size
# of its gradient, so float-rounding differences in near-zero gradients would show up as
# differences of a whole step; SGD keeps them at rounding size, which is what is tested here.
_SGD = ("optimizer.name=sgd", "optimizer.learning_rate=0.05")
_GAN_SGD = tuple(f"{o}_{s}" for o in ("g", "d") for s in _SGD)


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        # BatchNorm statistics over a batch split across devices must be the global ones.
        # Shared fakes: the generator's backward pass reuses the discriminator pass's forward.
        ("dcgan_fashion_mnist", ("total_steps=4", "eval_every=4", "gan.g_fakes=shared", *_GAN_SGD)),
        ("vae_conv_fashion_mnist", ("total_steps=4", "eval_every=4", *_SGD)),
    ],
)
def test_eight_devices_match_one(tmp_path, fmnist_data_dir, name, overrides):
    one = _train(tmp_path, fmnist_data_dir, 1, name, *overrides)
    eight = _train(tmp_path, fmnist_data_dir, 8, name, *overrides)
    assert int(one.pop("devices")) == 1 and int(eight.pop("devices")) == 8
    assert one.keys() == eight.keys()
    worst = 0.0
    for key in one:
        ref, got = one[key].astype(np.float64), eight[key].astype(np.float64)
        scale = max(np.linalg.norm(ref), 1e-12)
        worst = max(worst, float(np.linalg.norm(got - ref) / scale))
    # Float32 reductions in another order differ by rounding (~1e-7 relative per op); a wrong
    # reduction (per-device BatchNorm statistics, a per-device mean loss) differs by far more.
    assert worst < 1e-5, worst


_SPLIT_PROGRAM = """
import json, sys
import jax, jax.numpy as jnp, numpy as np
from genres_jax.train import sharding

mesh = sharding.make_mesh()
state = {"w": jnp.asarray(np.random.default_rng(0).normal(size=(3, 3, 2, 5)), jnp.float32)}
state_sh = {"w": sharding.replicated(mesh)}
def predict(state, x):
    return jax.lax.conv_general_dilated(
        x, state["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

run = sharding.split_over_batch(predict, state_sh, mesh)
out = {}
for rows in (4, 3):
    x = np.random.default_rng(rows).normal(size=(rows, 6, 7, 2)).astype(np.float32)
    out[rows] = {"got": np.asarray(run(state, x)).tolist(), "x": x.tolist()}
seen = {"split": run.split._cache_size(), "whole": run.whole._cache_size()}
print(json.dumps({"out": out, "w": np.asarray(state["w"]).tolist(), "seen": seen}))
"""


def test_split_over_batch_spreads_rows_and_gives_the_whole_batch_result():
    env = device_env(4)
    proc = subprocess.run(
        [sys.executable, "-c", _SPLIT_PROGRAM], env=env, capture_output=True, text=True,
        timeout=300, cwd=os.path.dirname(HERE),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # 4 rows went split over the 4 devices, 3 rows whole: each form compiled once.
    assert result["seen"] == {"split": 1, "whole": 1}, result["seen"]
    w = np.asarray(result["w"], np.float64)
    for rows, item in result["out"].items():
        x = np.pad(np.asarray(item["x"], np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
        # A float64 'SAME' 3x3 correlation, written out.
        want = sum(
            np.einsum("nhwc,co->nhwo", x[:, i : i + 6, j : j + 7], w[i, j])
            for i in range(3)
            for j in range(3)
        )
        np.testing.assert_allclose(np.asarray(item["got"]), want, rtol=1e-5, atol=1e-5)
        assert len(item["got"]) == int(rows)
