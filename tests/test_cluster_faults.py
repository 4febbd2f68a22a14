"""Cluster faults: two trainers on one workdir, signals during evaluation, full disks, damaged
checkpoints. Real processes, a real small file system where the machine allows mounting one."""

from __future__ import annotations

import errno
import glob
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import REPO, device_env, load_config, tiny, train_cmd
from mistakes import one_line

from genres_jax.train import periodic_eval, preemption, summaries, trainer, workdir_lock
from genres_jax.train.config_checks import ConfigError

GAN = "gan_mlp_fashion_mnist"


def _train_cmd(workdir, data_dir, *overrides) -> list[str]:
    every4 = ("--config.log_every=4", "--config.checkpoint_every=4", "--config.keep_checkpoints=2")
    return train_cmd(GAN, workdir, data_dir, *every4, *overrides)


def _records(workdir) -> list[dict]:
    return summaries.read_records(os.path.join(workdir, "metrics.jsonl"))


def _steps(workdir) -> list[int]:
    folder = os.path.join(workdir, "checkpoints")
    return sorted(int(n) for n in os.listdir(folder) if n.isdigit())


# ------------------------------------------------------------------------------ One writer.


def test_the_kernel_lock_refuses_a_second_holder_until_the_first_lets_go(tmp_path):
    first, second = (workdir_lock.WorkdirLock(str(tmp_path)) for _ in range(2))
    first.acquire()
    assert first.mode == "flock"
    with pytest.raises(workdir_lock.WorkdirBusyError) as refused:
        second.acquire()
    message = str(refused.value)
    assert f"process {os.getpid()} on host {socket.gethostname()} since 20" in message
    assert f"(lock {tmp_path}/train.lock)" in message
    first.release()
    second.acquire()  # Released: the next one gets it.
    assert second.held
    second.release()
    # Each process of a multi-process run locks a file of its own.
    assert workdir_lock.lock_path("w", 3) == os.path.join("w", "train.3.lock")


def test_the_lease_goes_stale_or_dies_with_its_process(tmp_path, monkeypatch):
    monkeypatch.setenv(workdir_lock.ENV, "lease")
    path = workdir_lock.lock_path(str(tmp_path))
    holder = workdir_lock.WorkdirLock(str(tmp_path))
    holder.acquire()
    assert holder.mode == "lease"
    with pytest.raises(workdir_lock.WorkdirBusyError, match="lease renewed 0 s ago"):
        workdir_lock.WorkdirLock(str(tmp_path)).acquire()
    holder.release()
    assert not os.path.exists(path)  # Given back: nothing for the next start to wait for.

    def lease(host, pid, age):
        with open(path, "w") as f:
            beat = time.time() - age
            f.write(f'{{"host": "{host}", "pid": {pid}, "since": {beat}, "mode": "lease", ')
            f.write(f'"heartbeat": {beat}}}')

    other = workdir_lock.WorkdirLock(str(tmp_path))
    lease("node-7", 4242, age=5.0)  # Another node, renewed 5 s ago: still held.
    with pytest.raises(workdir_lock.WorkdirBusyError, match="process 4242 on host node-7"):
        other.acquire()
    lease("node-7", 4242, age=workdir_lock.LEASE_S + 1)  # Its node was lost: stale.
    other.acquire()
    other.release()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    lease(socket.gethostname(), int(gone.stdout), age=1.0)  # Fresh, but its process is dead.
    other.acquire()
    other.release()


def test_the_lease_is_renewed_and_serves_file_systems_without_locks(tmp_path, monkeypatch):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(workdir_lock.fcntl, "flock", no_locks)
    monkeypatch.setattr(workdir_lock, "LEASE_S", 0.6)
    lock = workdir_lock.WorkdirLock(str(tmp_path))
    lock.acquire()
    assert lock.mode == "lease"
    first = workdir_lock._read(lock.path)["heartbeat"]
    time.sleep(0.5)
    assert workdir_lock._read(lock.path)["heartbeat"] > first
    lock.release()


def test_a_second_trainer_stops_at_once_and_a_killed_one_never_blocks(tmp_path, fmnist_data_dir):
    workdir = tmp_path / "run"
    cmd = _train_cmd(workdir, fmnist_data_dir)
    # Kept checkpoints, none deleted while `sample` below reads the newest one.
    keep = ("--config.checkpoint_every=40", "--config.keep_checkpoints=1000")
    first = subprocess.Popen(
        [*cmd, "--config.total_steps=100000", *keep], stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while not (os.path.isdir(workdir / "checkpoints") and _steps(workdir)):
        assert time.time() < deadline and first.poll() is None, "the first trainer made no progress"
        time.sleep(0.05)
    before = sorted(os.listdir(workdir))
    second = subprocess.run(
        [*cmd, "--config.total_steps=8"],
        capture_output=True,
        text=True,
        timeout=120,
        env=device_env(),
    )
    line = one_line(second.stderr, second.returncode)
    assert line.startswith(f"error: workdir {workdir} is being trained by process {first.pid} ")
    assert f"on host {socket.gethostname()} since " in line and "use another --workdir" in line
    assert sorted(os.listdir(workdir)) == before
    # Read-only tools work meanwhile.
    drawn = subprocess.run(
        [
            sys.executable,
            "-m",
            "genres_jax.sample",
            "--workdir",
            str(workdir),
            "--num",
            "4",
            "--out",
            str(tmp_path / "grid.png"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=device_env(),
    )
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    first.send_signal(signal.SIGKILL)
    first.wait()
    # The kernel dropped the dead process's lock: the same command resumes at once.
    last = _steps(workdir)[-1]
    resumed = subprocess.run(
        [*cmd, f"--config.total_steps={last + 4}"],
        capture_output=True,
        text=True,
        timeout=300,
        env=device_env(),
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"Resumed from step {last}" in resumed.stderr


# ------------------------------------------------------------------- Signals during evaluation.


def test_a_signal_during_evaluation_gives_it_up_and_the_resumed_run_evaluates(
    tmp_path, fmnist_data_dir, monkeypatch
):
    config = tiny(load_config(GAN), fmnist_data_dir)
    config.eval_every = config.checkpoint_every = 4
    workdir = str(tmp_path / "run")
    original = periodic_eval.evaluate
    seen = []

    def endless(*args, **kwargs):  # An evaluation that would never end.
        seen.append(1)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(600)
        raise AssertionError("the evaluation was not given up")

    monkeypatch.setattr(periodic_eval, "evaluate", endless)
    result = trainer.train_and_evaluate(config, workdir)
    assert (result["ended"], result["step"], seen) == ("preempted", 4, [1])
    assert _steps(workdir) == [4]  # The last completed step is checkpointed...
    assert [r for r in _records(workdir) if r["kind"] == "eval"] == []  # ...nothing half-done.

    monkeypatch.setattr(periodic_eval, "evaluate", original)
    result = trainer.train_and_evaluate(config, workdir)
    assert result["ended"] == "done" and result["step"] == 8
    records = _records(workdir)
    assert [r["step"] for r in records if r["kind"] == "eval"] == [4, 8]
    assert [r["step"] for r in records if r["kind"] == "train"] == [2, 4, 6, 8]


def test_a_signal_before_the_first_step_ends_the_start(tmp_path, fmnist_data_dir, monkeypatch):
    config = tiny(load_config(GAN), fmnist_data_dir)
    original = trainer._fitting_step

    def signalled(*args):  # SIGTERM while the train step compiles.
        compiled = original(*args)
        os.kill(os.getpid(), signal.SIGTERM)
        return compiled

    monkeypatch.setattr(trainer, "_fitting_step", signalled)
    result = trainer.train_and_evaluate(config, str(tmp_path / "run"))
    assert result["ended"] == "preempted" and result["step"] is None
    assert not os.path.isdir(tmp_path / "run" / "checkpoints") or not _steps(tmp_path / "run")


# ---------------------------------------------------------------- Full disks, damaged steps.


@pytest.fixture
def small_disk(tmp_path):
    """A 48 MB file system of its own (tmpfs), or None where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def _fill(folder, leave: int) -> str:
    """Fills ``folder``'s file system but ``leave`` bytes; returns the filler's path."""
    stats = os.statvfs(folder)
    filler = os.path.join(folder, "filler")
    with open(filler, "wb") as f:
        f.truncate(0)
        os.posix_fallocate(f.fileno(), 0, max(stats.f_bavail * stats.f_frsize - leave, 1))
    return filler


def test_a_full_disk_keeps_every_checkpoint_and_the_same_command_resumes(
    tmp_path, fmnist_data_dir, small_disk
):
    """On a real small file system filled up (where the machine lets a test mount one), else
    with the process's file size limit (RLIMIT_FSIZE), which fails a write the same way."""
    import resource

    root = small_disk or tmp_path
    workdir = root / "run"
    cmd = [*_train_cmd(workdir, fmnist_data_dir), "--config.total_steps=16"]
    first = subprocess.run(
        [*cmd[:-1], "--config.total_steps=8"],
        capture_output=True,
        text=True,
        timeout=300,
        env=device_env(),
    )
    assert first.returncode == 0, first.stderr[-2000:]
    assert _steps(workdir) == [4, 8]

    limit = None
    if small_disk is not None:
        filler = _fill(small_disk, leave=2_000_000)  # Less than one checkpoint (about 6 MB).
    else:

        def limit():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    full = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env=device_env(), preexec_fn=limit
    )
    cause = "No space left on device [Errno 28]" if small_disk else "File too large [Errno 27]"
    assert full.returncode == 2
    # The library's own reports of the failed writes are not shown: one line says it all.
    assert full.stderr.strip().splitlines() == [
        f"Resumed from step 8 in {workdir}",
        f"error: cannot write checkpoint 12 in {workdir}/checkpoints: {cause}. Earlier "
        "checkpoints are intact (newest: 8); free space and run the same command to resume.",
    ]
    assert sorted(os.listdir(workdir / "checkpoints")) == ["4", "8"]  # No partial step left.

    if small_disk is not None:
        os.remove(filler)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=device_env())
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Resumed from step 8" in again.stderr and _steps(workdir) == [12, 16]


def _damage(workdir, step: int) -> None:
    """Truncates the largest array file of ``step``, as a crashed copy or a bad disk would."""
    files = glob.glob(
        str(workdir / "checkpoints" / str(step) / "state" / "**" / "d" / "*"), recursive=True
    )
    biggest = max(files, key=os.path.getsize)
    with open(biggest, "r+b") as f:
        f.truncate(64)


def test_a_damaged_newest_checkpoint_is_moved_aside_and_training_resumes(
    tmp_path, fmnist_data_dir, capsys
):
    config = tiny(load_config(GAN), fmnist_data_dir)
    config.eval_every, config.keep_checkpoints = 0, 3
    workdir = tmp_path / "run"
    trainer.train_and_evaluate(config, str(workdir))
    assert _steps(workdir) == [4, 8]
    _damage(workdir, 8)
    config.total_steps = 12
    capsys.readouterr()
    result = trainer.train_and_evaluate(config, str(workdir))
    err = capsys.readouterr().err
    assert result["step"] == 12
    moved = workdir / "damaged_checkpoints" / "8"
    assert f"warning: checkpoint 8 in {workdir}/checkpoints cannot be read (" in err
    assert f"moved to {moved}, resuming from step 4" in err and "Resumed from step 4" in err
    assert os.path.isdir(moved / "state") and _steps(workdir) == [4, 8, 12]  # 8 trained again.

    # None readable: nothing is moved, and the run stops with one message.
    for step in (4, 8, 12):
        _damage(workdir, step)
    config.total_steps = 16
    with pytest.raises(ConfigError, match=rf"no checkpoint in {workdir}/checkpoints can be read"):
        trainer.train_and_evaluate(config, str(workdir))
    assert _steps(workdir) == [4, 8, 12]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_work_is_given_up_even_when_the_signal_lands_where_errors_are_swallowed():
    """A signal handler's exception raised inside a ``__del__`` (or a garbage-collection
    callback) is only printed by Python; the handler raises again until the work is left."""

    class Finalised:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)  # The handler runs, and raises, in here.
            time.sleep(0.05)

    handler = preemption.PreemptionHandler()
    loops = 0
    with handler:
        with pytest.raises(preemption.Abandoned), handler.abandonable():
            Finalised()  # Collected at once: the first Abandoned is swallowed.
            while loops < 500:  # Ten seconds of "evaluation", given up long before its end.
                loops += 1
                time.sleep(0.02)
        handler.given_up()
    assert handler.requested == signal.SIGTERM and loops < 500
