"""Any device count runs the shipped configs: evaluation pads its batches, metrics do not move."""

from __future__ import annotations

import glob
import json
import math
import os
import subprocess
import sys

import pytest
from conftest import device_env
from eval_on_devices import COMPARED

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = sorted(
    os.path.basename(p)[:-3] for p in glob.glob(os.path.join(HERE, "..", "configs", "*.py"))
)


def _run(tmp_path, fm_dir, sr_dir, devices: int, names) -> dict:
    env = device_env(devices)
    cmd = [
        sys.executable,
        os.path.join(HERE, "eval_on_devices.py"),
        fm_dir,
        sr_dir,
        str(tmp_path / f"d{devices}"),
        *names,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result.pop("devices") == devices
    return result


def test_every_config_passes_the_checks_on_eight_devices(tmp_path, fmnist_data_dir, sr_data_dir):
    # The checks of a run refused every shipped config on 8 devices before evaluation padded
    # its batches (eval_batch_size 500); ``python train.py`` with each config's own batch sizes
    # and 2 steps on 8 simulated devices is the full-size form (README).
    result = _run(tmp_path, fmnist_data_dir, sr_data_dir, 8, ["--check", *CONFIGS])
    assert result == {name: "valid" for name in CONFIGS}


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory, fmnist_data_dir, sr_data_dir):
    """The compared configs, and GAN super-resolution (SRGAN), run on 8 devices."""
    names = [*COMPARED, "srgan_x4"]
    return _run(tmp_path_factory.mktemp("d8"), fmnist_data_dir, sr_data_dir, 8, names)


def test_runs_on_eight_devices_evaluate(eight_devices):
    assert sorted(eight_devices) == sorted([*COMPARED, "srgan_x4"])
    for name, metrics in eight_devices.items():
        assert metrics, f"{name}: no evaluation ran"
        assert all(math.isfinite(v) for v in metrics.values()), (name, metrics)


def test_evaluation_is_the_same_on_one_three_and_eight_devices(
    tmp_path, fmnist_data_dir, sr_data_dir, eight_devices
):
    one = _run(tmp_path, fmnist_data_dir, sr_data_dir, 1, COMPARED)
    three = _run(tmp_path, fmnist_data_dir, sr_data_dir, 3, COMPARED)
    for name in COMPARED:
        for got in (three[name], eight_devices[name]):
            assert got.keys() == one[name].keys(), name
            for key, ref in one[name].items():
                # Sums in another order differ by float rounding; a padding row counted, or a
                # sample drawn differently, moves a metric by far more.
                assert got[key] == pytest.approx(ref, rel=2e-4, abs=1e-5), (name, key)


def test_a_training_batch_that_does_not_split_names_the_nearest_valid_sizes(tmp_path):
    env = device_env(8)
    cmd = [sys.executable, os.path.join(HERE, "..", "train.py"), "--config"]
    cmd += [os.path.join(HERE, "..", "configs", "edsr_x2.py"), "--workdir", str(tmp_path / "w")]
    cmd += ["--config.batch_size=12"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: batch_size=12 is not divisible by the 8 devices; "
        "the nearest valid batch sizes are 8 or 16"
    )
