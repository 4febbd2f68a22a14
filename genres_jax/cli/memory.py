"""Memory budgets: a request larger than this machine's free memory is refused before it runs.

Asking numpy or XLA for 300 GiB ends in a traceback, or in a native abort; `check_fits` turns
the same request into one `UserError` naming what was asked, its size and the memory free.
Free memory is the kernel's ``MemAvailable`` (capped by a cgroup limit where one is set).
"""

from __future__ import annotations

import os

from genres_jax import UserError


class MemoryBudgetError(UserError):
    """A request that cannot fit in this machine's memory."""


def _cgroup_free() -> int | None:
    for limit_path, used_path in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            with open(limit_path) as f:
                limit = f.read().strip()
            with open(used_path) as f:
                used = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            return max(0, int(limit) - used)
    return None


def available_bytes() -> int:
    """Bytes this process can still allocate without swapping, as well as the kernel can tell."""
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return 1 << 62  # Unknown: do not refuse.
    cgroup = _cgroup_free()
    return min(free, cgroup) if cgroup is not None else free


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GiB" if nbytes < 2**50 else f"{nbytes / 2**50:.3g} PiB"


def check_fits(nbytes: float, what: str, hint: str = "") -> None:
    """`MemoryBudgetError` if ``nbytes`` exceed the memory free now."""
    free = available_bytes()
    if nbytes > free:
        raise MemoryBudgetError(
            f"{what} needs about {gib(nbytes)} of memory and {gib(free)} are free"
            + (f"; {hint}" if hint else "")
        )
