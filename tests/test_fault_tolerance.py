"""Fault tolerance: preemption signals, kill -9 mid-save, non-finite steps, changed configs.

The kill loop's size is set by GENRES_KILL_ROUNDS (default 3); run with ``-s`` to see the
steps at which the processes were killed and how many kills landed during a checkpoint save.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import REPO, device_env, load_config, tiny, train_cmd

from genres_jax.data import inputs
from genres_jax.train import summaries, trainer

GAN = "gan_mlp_fashion_mnist"


def _final_state(workdir: str) -> dict:
    """The newest checkpoint's state as plain numpy arrays, by path."""
    with ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, "checkpoints")),
        options=ocp.CheckpointManagerOptions(read_only=True),
    ) as manager:
        step = manager.latest_step()
        state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    flat = jax.tree_util.tree_leaves_with_path(state["state"])
    return {"step": step, **{jax.tree_util.keystr(p): np.asarray(v) for p, v in flat}}


def _train_cmd(workdir, data_dir, *overrides) -> list[str]:
    return train_cmd(GAN, workdir, data_dir, *overrides)


def _records(workdir) -> list[dict]:
    return summaries.read_records(os.path.join(workdir, "metrics.jsonl"))


def _wait_for_progress(proc, workdir, after_step: int, timeout: float = 120.0) -> int:
    """Blocks until the process has logged a step beyond ``after_step``; returns that step."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        steps = [r["step"] for r in _records(workdir)]
        if steps and steps[-1] > after_step:
            return steps[-1]
        if proc.poll() is not None:
            return -1
        time.sleep(0.01)
    raise AssertionError("training made no progress")


def test_kill_9_at_random_points_resumes_to_the_uninterrupted_result(tmp_path, fmnist_data_dir):
    overrides = (
        "--config.total_steps=150",
        "--config.log_every=5",
        "--config.checkpoint_every=5",  # Saves in flight most of the time: kills land in them.
    )
    straight = tmp_path / "straight"
    subprocess.run(_train_cmd(straight, fmnist_data_dir, *overrides), check=True, timeout=600)

    rounds = int(os.environ.get("GENRES_KILL_ROUNDS", "3"))
    rng = random.Random(0)
    workdir = tmp_path / "killed"
    kill_steps, mid_save = [], 0
    for _ in range(rounds):
        proc = subprocess.Popen(
            _train_cmd(workdir, fmnist_data_dir, *overrides), stderr=subprocess.DEVNULL
        )
        last = max([r["step"] for r in _records(workdir)], default=0)
        reached = _wait_for_progress(proc, workdir, last)
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if reached < 0:
            break  # Finished before the kill: nothing left to interrupt.
        kill_steps.append(max(r["step"] for r in _records(workdir)))
        # A save cut short leaves its temporary directory behind (removed at the next start).
        names = os.listdir(workdir / "checkpoints")
        mid_save += any("tmp" in n for n in names)
    print(f"\nkill -9 after logged steps {kill_steps}; {mid_save} kills during a checkpoint save")
    assert len(kill_steps) >= min(rounds, 2)
    done = subprocess.run(
        _train_cmd(workdir, fmnist_data_dir, *overrides), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    want, got = _final_state(straight), _final_state(workdir)
    assert got["step"] == want["step"] == 150
    assert want.keys() == got.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    # The log holds each step once, as if the run had never been interrupted.
    steps = [r["step"] for r in _records(workdir) if r["kind"] == "train"]
    assert steps == list(range(5, 151, 5))


def test_sigterm_stops_with_a_checkpoint_and_resumes(tmp_path, fmnist_data_dir):
    workdir = tmp_path / "run"
    cmd = _train_cmd(
        workdir,
        fmnist_data_dir,
        "--config.total_steps=100000",
        "--config.log_every=5",
        "--config.checkpoint_every=100000",
    )
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    _wait_for_progress(proc, workdir, 0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    saved = sorted(int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit())
    assert len(saved) == 1 and saved[0] > 0
    assert (
        f"Stopped by signal at step {saved[0]}; checkpoint: {workdir}/checkpoints/{saved[0]}" in err
    )
    resumed = subprocess.run(
        [*cmd[:-3], f"--config.total_steps={saved[0] + 5}", "--config.log_every=5"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"Resumed from step {saved[0]}" in resumed.stderr


def test_second_signal_exits_at_once(tmp_path, fmnist_data_dir):
    workdir = tmp_path / "run"
    # Steps of about a second, so the second signal arrives while the first waits for one.
    slow = ("--config.model.name=dcgan", "--config.model.features=64", "--config.batch_size=512")
    cmd = _train_cmd(workdir, fmnist_data_dir, "--config.total_steps=1000", "--config.log_every=1")
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        proc = subprocess.Popen([*cmd, *slow], stderr=stderr, text=True)
        _wait_for_progress(proc, workdir, 0)
        proc.send_signal(signal.SIGINT)
        # Two signals sent back to back can merge into one delivery: the second is sent once
        # the first was received, while the run waits for its current step.
        deadline = time.time() + 60
        while "SIGINT received" not in log.read_text() and time.time() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    err = log.read_text()
    assert proc.returncode == 128 + signal.SIGINT, err[-2000:]
    assert "Second signal (SIGINT): exiting now." in err
    assert "Stopped by signal" not in err


class _MarkedRecords:
    """Fashion-MNIST records; those at the ``bad`` indices get label -1."""

    def __init__(self, source, bad: set[int]):
        self.source, self.bad = source, bad

    def __len__(self):
        return len(self.source)

    def __getitem__(self, i):
        record = dict(self.source[i])
        if i in self.bad:
            record["label"] = -1
        return record


class _Poison(grain.transforms.Map):
    """Float images; NaN for the marked records (after the uint8 image operations)."""

    def map(self, record):
        image = record["image"].astype(np.float32)
        if record["label"] == -1:
            image = np.full_like(image, np.nan)
        return {**record, "image": image}


def _nan_data(monkeypatch, bad: set[int]):
    original = inputs.train_inputs

    def patched(config):
        source, ops = original(config)
        return _MarkedRecords(source, bad), [*ops, _Poison()]

    monkeypatch.setattr(inputs, "train_inputs", patched)


@pytest.mark.parametrize("policy", ["skip", "stop"])
def test_nan_in_the_data(tmp_path, fmnist_data_dir, monkeypatch, policy):
    # Every record is NaN: every step is bad.
    _nan_data(monkeypatch, set(range(60_000)))
    config = tiny(load_config("vae_mlp_fashion_mnist"), fmnist_data_dir, eval_every=0)
    config.nonfinite_policy = policy
    config.nonfinite_max_consecutive = 3
    config.log_every = 1
    out = trainer.train_and_evaluate(config, str(tmp_path))
    params = jax.tree.leaves(out["state"].params)
    assert all(np.isfinite(np.asarray(p)).all() for p in params)
    fresh = trainer.train_and_evaluate(config, str(tmp_path / "fresh"), stop_at=0)
    for a, b in zip(params, jax.tree.leaves(fresh["state"].params), strict=True):
        np.testing.assert_array_equal(a, b)  # No bad update was ever applied.
    if policy == "skip":
        assert (out["ended"], out["step"], out["skipped_steps"]) == ("done", 8, 8)
    else:
        assert (out["ended"], out["step"], out["skipped_steps"]) == ("nonfinite", 3, 3)
        assert os.listdir(tmp_path / "checkpoints") == ["3"]
    nonfinite = [r["nonfinite"] for r in _records(tmp_path) if r["kind"] == "train"]
    assert nonfinite and all(v == 1.0 for v in nonfinite)


def test_isolated_nan_batches_are_skipped_and_counted(tmp_path, fmnist_data_dir, monkeypatch):
    # Batches are drawn by a seeded shuffle; poisoning a tenth of the records hits some of them.
    bad = set(range(0, 60_000, 10))
    _nan_data(monkeypatch, bad)
    config = tiny(load_config("vae_mlp_fashion_mnist"), fmnist_data_dir, eval_every=0)
    config.batch_size, config.total_steps = 8, 12
    out = trainer.train_and_evaluate(config, str(tmp_path))
    assert out["ended"] == "done" and 0 < out["skipped_steps"] < 12
    assert all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(out["state"].params))


@pytest.mark.parametrize("policy", ["skip", "stop"])
def test_exploding_learning_rate(tmp_path, fmnist_data_dir, policy):
    config = tiny(load_config("vae_mlp_fashion_mnist"), fmnist_data_dir, eval_every=0)
    config.optimizer.learning_rate = 1e38  # First update: weights ~1e38; then inf and NaN.
    config.nonfinite_policy = policy
    config.nonfinite_max_consecutive = 2
    config.log_every = 1
    out = trainer.train_and_evaluate(config, str(tmp_path))
    assert out["skipped_steps"] >= 2
    assert all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(out["state"].params))
    if policy == "stop":
        assert out["ended"] == "nonfinite" and out["step"] < 8
    else:
        assert out["ended"] == "done" and out["step"] == 8


def test_changed_config_is_refused_with_the_differing_keys(tmp_path, fmnist_data_dir):
    config = tiny(load_config(GAN), fmnist_data_dir, eval_every=0)
    trainer.train_and_evaluate(config, str(tmp_path), stop_at=4)
    # Steering keys may change: more steps, other logging.
    longer = tiny(load_config(GAN), fmnist_data_dir, eval_every=0, total_steps=10, log_every=5)
    assert trainer.train_and_evaluate(longer, str(tmp_path), stop_at=6)["step"] == 6
    other = tiny(load_config(GAN), fmnist_data_dir, eval_every=0, total_steps=10)
    other.model.latent_dim = 64
    other.g_optimizer.learning_rate = 1e-3
    with pytest.raises(trainer.ConfigError) as err:
        trainer.train_and_evaluate(other, str(tmp_path))
    message = str(err.value)
    assert "2 keys differ" in message
    assert "model.latent_dim: 100 -> 64" in message
    assert "g_optimizer.learning_rate: 0.0002 -> 0.001" in message
    assert "--allow_config_change" in message
    # Allowed: the optimizer change resumes; the old config is kept beside the new one.
    lr_only = tiny(load_config(GAN), fmnist_data_dir, eval_every=0, total_steps=10, log_every=5)
    lr_only.g_optimizer.learning_rate = 1e-3
    out = trainer.train_and_evaluate(lr_only, str(tmp_path), allow_config_change=True)
    assert out["step"] == 10
    assert (tmp_path / "config.1.json").exists()
    # A model whose shapes differ cannot load the checkpoint even when allowed.
    with pytest.raises(trainer.ConfigError, match="does not fit this config"):
        trainer.train_and_evaluate(other, str(tmp_path), allow_config_change=True)
    # Refused, not taken for a damaged checkpoint: nothing was moved aside.
    assert not (tmp_path / "damaged_checkpoints").exists()


def test_resume_with_fewer_devices_restores_the_same_state(tmp_path, fmnist_data_dir):
    script = os.path.join(REPO, "tests", "train_and_dump.py")
    outs = {}
    for devices in (8, 1):
        env = device_env(devices)
        out = tmp_path / f"{devices}.npz"
        proc = subprocess.run(
            [
                sys.executable,
                script,
                "dcgan_fashion_mnist",
                fmnist_data_dir,
                str(tmp_path / "run"),
                str(out),
                "stop_at=4",
                "eval_every=0",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        with np.load(out) as f:
            outs[devices] = {k: f[k] for k in f.files}
    assert int(outs[8].pop("devices")) == 8 and int(outs[1].pop("devices")) == 1
    for key in outs[8]:  # The 1-device process restored the 8-device checkpoint bit for bit.
        np.testing.assert_array_equal(outs[1][key], outs[8][key], err_msg=key)


def test_image_smaller_than_the_patch_is_a_clear_error(tmp_path, sr_data_dir):
    config = load_config("edsr_x2")
    config.dataset.data_dir = sr_data_dir
    config.dataset.lr_patch_size = 400  # Larger than chelsea.png (300x451 HR, 150x225 LR).
    config.progress_bar = False
    with pytest.raises(trainer.sources.DatasetError, match="smaller than the 400x400"):
        trainer.train_and_evaluate(config, str(tmp_path))


def test_a_key_added_later_resumes_old_workdirs_under_its_old_meaning():
    from genres_jax.train import config_checks

    recorded = {"gan": {"loss": "nonsaturating", "n_critic": 1}}  # Written before gan.g_fakes.
    same = {"gan": {"loss": "nonsaturating", "n_critic": 1, "g_fakes": "fresh"}}
    other = {"gan": {"loss": "nonsaturating", "n_critic": 1, "g_fakes": "shared"}}
    assert config_checks.config_differences(recorded, same) == []
    assert config_checks.config_differences(recorded, other) == ["gan.g_fakes: 'fresh' -> 'shared'"]
    assert config_checks.config_differences(other, same) == ["gan.g_fakes: 'shared' -> 'fresh'"]
