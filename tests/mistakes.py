"""What the user-mistake tests share: the promise a refusal keeps, checked in-process and through
the real commands (``python -m genres_jax.X`` and ``train.py`` in their own processes).

The promise: exit code 2, exactly one stderr line and it starts with ``error:``, no traceback,
and the file system as it was.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib

import numpy as np
from conftest import REPO
from hypothesis import HealthCheck, settings
from PIL import Image

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
EDSR_X2 = os.path.join(REPO, "weights", "edsr_x2")


def snapshot(folder) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (equal snapshots: nothing created or changed)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


def one_line(err: str, code: int, expected: int = 2) -> str:
    """The single ``error:`` line of a refusal's stderr, after checking the promise holds."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == expected, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error:"), err
    assert "Traceback" not in err
    return lines[0]


def one_error_line(capsys, code: int, expected: int = 2) -> str:
    """As ``one_line``, for a command's ``main`` run in this process."""
    return one_line(capsys.readouterr().err, code, expected)


def command(name: str, *args) -> list[str]:
    """The argv of a real command: ``train`` is ``train.py``, any other name ``python -m``."""
    if name == "train":
        return [sys.executable, os.path.join(REPO, "train.py"), *map(str, args)]
    return [sys.executable, "-m", f"genres_jax.{name}", *map(str, args)]


def run_all(argvs: list[list[str]], cwd: str = REPO, timeout: float = 300) -> list[tuple]:
    """Runs the commands side by side, each in its own process; (exit code, stdout, stderr)."""
    env = dict(os.environ, PYTHONPATH=REPO)
    running = [
        subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for argv in argvs
    ]
    try:
        results = []
        for process in running:
            out, err = process.communicate(timeout=timeout)
            results.append((process.returncode, out, err))
        return results
    finally:  # A command that hangs fails its test and leaves no process behind.
        for process in running:
            if process.poll() is None:
                process.kill()
                process.wait()


def refused_in_processes(folder, cases: dict[str, list[str]], cwd: str = REPO) -> None:
    """Each case (expected text -> argv) ends in one ``error:`` line holding the text, exit
    code 2, and ``folder`` is left as it was."""
    before = snapshot(folder)
    names = sorted(os.listdir(folder))
    for (expected, argv), (code, _, err) in zip(
        cases.items(), run_all(list(cases.values()), cwd=cwd), strict=True
    ):
        assert expected in one_line(err, code), (argv, err)
    assert snapshot(folder) == before
    assert sorted(os.listdir(folder)) == names


def png_claiming(path, width: int, height: int, rows: int = 1) -> None:
    """A valid PNG stream whose header claims width x height but whose data holds ``rows``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress((b"\x00" + b"\x07" * (3 * width)) * rows)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data))
        f.write(chunk(b"IEND", b""))


def photo(path, height: int, width: int | None = None, seed: int = 0) -> None:
    """A random RGB image file."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width or height, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def read_only_folder(tmp_path):
    """A folder no one can write in, also as root (a read-only mount), or None if impossible."""
    target = tmp_path / "ro"
    target.mkdir()
    if os.geteuid() != 0:
        target.chmod(0o555)
        return target
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(target)], capture_output=True
    )
    return target if done.returncode == 0 else None


def release(target) -> None:
    """Undoes ``read_only_folder``."""
    if os.geteuid() == 0:
        subprocess.run(["umount", str(target)], check=True)
