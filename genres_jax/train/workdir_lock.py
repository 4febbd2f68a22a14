"""One writer per workdir: a trainer holds `WorkdirLock` on its workdir for its whole life.

A second trainer started on the same workdir (a requeued job whose first copy still runs, a
command started twice) stops before it reads or compiles anything, with one ``error:`` line that
names the holder: host, process id and since when.

How the lock is held, by ``GENRES_WORKDIR_LOCK`` (default ``auto``):

- ``auto``: a kernel lock (``flock``) on ``<workdir>/train.lock``. The kernel drops it when the
  holder dies in any way (kill -9, out-of-memory kill), so a stale lock never blocks the next
  start. Local file systems and NFSv4 (where Linux maps ``flock`` to a byte-range lock the
  server keeps for all clients) support it; where the file system has no locks (it answers
  ENOLCK / EOPNOTSUPP / ENOSYS, e.g. Lustre without ``-o flock``) the lease below is used.
- ``lease``: a heartbeat lease, for shared file systems whose locks are only per client (some
  FUSE mounts of object stores). The holder rewrites the lock file every ``LEASE_S / 6``
  seconds; a lease whose heartbeat is older than ``LEASE_S`` (or whose process is gone, when it
  ran on this host) is stale and taken over. After a node is lost, its workdir can be trained
  again ``LEASE_S`` seconds later.

Each process of a multi-process run locks its own file (``train.lock``, ``train.1.lock``, ...),
so one job's processes never block each other while a second job's are refused. Read-only
tools (`evaluate`, `sample`, `upscale`) never take the lock and work during training.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import threading
import time

from genres_jax import UserError

ENV = "GENRES_WORKDIR_LOCK"
MODES = ("auto", "lease")
LEASE_S = 60.0
# flock answers these where the file system keeps no locks.
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class WorkdirBusyError(UserError):
    """Another live trainer holds the workdir; the message names it."""


def lock_path(workdir: str, process_index: int = 0) -> str:
    name = "train.lock" if process_index == 0 else f"train.{process_index}.lock"
    return os.path.join(workdir, name)


def _mode() -> str:
    mode = os.environ.get(ENV, "auto") or "auto"
    if mode not in MODES:
        raise UserError(f"{ENV}={mode!r}: must be one of {', '.join(MODES)}")
    return mode


def _stamp(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _read(path: str) -> dict:
    try:
        with open(path) as f:
            record = json.loads(f.read() or "{}")
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def _pid_gone(record: dict) -> bool:
    """True when the holder ran on this host and its process no longer exists."""
    if record.get("host") != socket.gethostname() or not isinstance(record.get("pid"), int):
        return False
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _describe(record: dict, path: str) -> str:
    who = f"process {record.get('pid', '?')} on host {record.get('host', '?')}"
    if isinstance(record.get("since"), int | float):
        who += f" since {_stamp(record['since'])}"
    return f"{who} (lock {path})"


class WorkdirLock:
    """The workdir's writer lock; `acquire` once (idempotent), `release` at the end of the run."""

    def __init__(self, workdir: str, process_index: int = 0):
        self.path = lock_path(workdir, process_index)
        self.workdir = workdir
        self.mode: str | None = None  # "flock" or "lease" once held.
        self._fd: int | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._record: dict = {}

    @property
    def held(self) -> bool:
        return self.mode is not None

    def acquire(self) -> None:
        """Takes the lock or raises `WorkdirBusyError` naming the holder."""
        if self.held:
            return
        mode = _mode()
        self._record = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        if mode == "auto" and self._try_flock():
            return
        self._take_lease()

    def _busy(self, record: dict, extra: str = "") -> WorkdirBusyError:
        return WorkdirBusyError(
            f"workdir {self.workdir} is being trained by {_describe(record, self.path)}{extra}; "
            "stop that run or wait for it to end, or use another --workdir"
        )

    def _try_flock(self) -> bool:
        """True when the kernel lock is held now; False when the file system keeps no locks."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._busy(_read(self.path)) from None
        except OSError as e:
            os.close(fd)
            if e.errno in _NO_LOCKS:
                return False
            raise
        # The same file (inode) stays locked: rewrite it in place, never replace it.
        data = json.dumps({**self._record, "mode": "flock"}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        self._fd, self.mode = fd, "flock"
        return True

    def _write_lease(self) -> None:
        record = {**self._record, "mode": "lease", "heartbeat": time.time()}
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.replace(tmp, self.path)

    def _take_lease(self) -> None:
        held = _read(self.path)
        beat = held.get("heartbeat")
        if isinstance(beat, int | float) and held.get("mode") == "lease" and not _pid_gone(held):
            age = time.time() - beat
            if age < LEASE_S:
                raise self._busy(
                    held,
                    f", lease renewed {age:.0f} s ago (it goes stale {LEASE_S - age:.0f} s "
                    "from now if that run is gone)",
                )
        self._write_lease()
        # Two starts at the same moment: the last write wins and the other one stops here.
        time.sleep(0.05)
        mine = _read(self.path)
        if (mine.get("host"), mine.get("pid")) != (self._record["host"], self._record["pid"]):
            raise self._busy(mine)
        self.mode = "lease"
        self._heartbeat = threading.Thread(target=self._beat, name="workdir-lease", daemon=True)
        self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stop.wait(LEASE_S / 6):
            with contextlib.suppress(OSError):  # A full or flaky disk: the next beat retries.
                self._write_lease()

    def release(self) -> None:
        """Gives the lock up (a lease file is removed, so the next start need not wait)."""
        if self.mode == "flock" and self._fd is not None:
            os.close(self._fd)  # Closing the descriptor drops the kernel lock.
        elif self.mode == "lease":
            self._stop.set()
            if self._heartbeat is not None:
                self._heartbeat.join(timeout=5)
            mine = _read(self.path)
            if mine.get("pid") == os.getpid() and mine.get("host") == socket.gethostname():
                with contextlib.suppress(OSError):
                    os.remove(self.path)
        self._fd, self.mode = None, None
