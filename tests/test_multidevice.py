"""One code path for 1 and N devices: 8 simulated CPU devices train to the 1-device result."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def _train(tmp_path, data_dir, devices: int, name: str, *overrides: str) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
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
