"""Output paths: checked before any work starts, written atomically and exclusively.

`check_file` and `check_folder` run first in every command, so a bad ``--out`` costs nothing:
a folder given for a file (or a file for a folder), a missing or read-only parent, an existing
file without ``--overwrite`` and an output that is also the input are each one clear error.
Writability is probed by creating (and removing) a file, since permission bits say nothing to
root or to a read-only mount.

`write_file` writes to a temporary file beside the target and then publishes it: without
``overwrite`` by a hard link, which the kernel refuses if the name exists, so of two commands
racing for one output exactly one wins and the other reports it; with ``overwrite`` by
``os.replace``. Either way a reader never sees a half-written file, and a failed or interrupted
write leaves nothing behind.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Sequence

from genres_jax import UserError


class OutputError(UserError):
    """An output location that cannot be used, or an output that someone else wrote first."""


def _probe_writable(folder: str, shown: str) -> None:
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".genres_jax_probe_")
    except OSError as e:
        raise OutputError(f"cannot write in {shown} ({e.strerror or e})") from None
    os.close(fd)
    os.remove(probe)


def _nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_file(
    path: str, *, overwrite: bool, flag: str = "OUTPUT", inputs: Sequence[str] = ()
) -> None:
    """`OutputError` unless a new file can be written at ``path`` (module docstring)."""
    if not path:
        raise OutputError(f"{flag} is empty; name a file")
    if os.path.isdir(path):
        raise OutputError(f"{flag} {path} is a folder; name a file in it")
    for source in inputs:
        if source and os.path.exists(source) and os.path.realpath(source) == os.path.realpath(path):
            raise OutputError(f"{flag} {path} is also an input; write to another file")
    if os.path.lexists(path) and not overwrite:
        raise OutputError(f"{path} exists; pass --overwrite to replace it")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        what = "is not a folder" if os.path.exists(parent) else "does not exist"
        raise OutputError(f"{flag} {path}: its folder {parent} {what}")
    _probe_writable(parent, parent)


def check_folder(path: str, *, flag: str = "--out") -> None:
    """`OutputError` unless ``path`` is a folder, or one that can be created, that is writable."""
    if not path:
        raise OutputError(f"{flag} is empty; name a folder")
    if os.path.lexists(path) and not os.path.isdir(path):
        raise OutputError(f"{flag} {path} is a file, not a folder")
    existing = _nearest_existing(path)
    if not os.path.isdir(existing):
        raise OutputError(f"{flag} {path}: {existing} is a file, not a folder")
    _probe_writable(existing, existing)


def check_new_files(paths: Sequence[str], *, overwrite: bool, flag: str) -> None:
    """`OutputError` if any of the files a command will write into a ``flag`` folder is a
    folder, or (without ``overwrite``) already exists; the folder itself may not exist yet."""
    for path in paths:
        if os.path.isdir(path):
            raise OutputError(f"{flag}: {path} is a folder; a file of this command goes there")
        if os.path.lexists(path) and not overwrite:
            raise OutputError(f"{path} exists; pass --overwrite to replace it")


def _mode_for_new_files() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _publish_exclusively(tmp: str, path: str) -> None:
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in (
            errno.EPERM,
            errno.ENOTSUP,
            errno.EOPNOTSUPP,
            errno.EMLINK,
            errno.ENOSYS,
        ):
            raise
    # A file system without hard links: reserve the name exclusively, then move into it.
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    os.replace(tmp, path)


def write_file(path: str, write: Callable[[str], None], *, overwrite: bool) -> None:
    """Calls ``write(tmp)`` for a temporary path beside ``path``, then publishes it there.

    Without ``overwrite``, an output that appeared meanwhile is an `OutputError` and stays as it
    was; the temporary file is removed whatever happens.
    """
    parent = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{base}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"cannot write {path} ({e.strerror or e})") from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _mode_for_new_files())
        if overwrite:
            if os.path.isdir(path):
                raise OutputError(f"{path} is a folder; not replacing it")
            os.replace(tmp, path)
        else:
            _publish_exclusively(tmp, path)
    except FileExistsError:
        raise OutputError(
            f"{path} was created by someone else while this command ran; it was kept, and "
            "this result was not written (pass --overwrite to replace it)"
        ) from None
    except OSError as e:
        raise OutputError(f"cannot write {path} ({e.strerror or e})") from None
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


def write_text(path: str, text: str, *, overwrite: bool) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    write_file(path, write, overwrite=overwrite)
