"""Preemption: `PreemptionHandler` turns the first SIGTERM or SIGINT into a request to stop (the
trainer then saves a checkpoint of the last completed step and exits 0); a second signal ends
the process at once.

Work that can be redone is given up rather than finished: inside `PreemptionHandler.abandonable`
(an evaluation, a sample grid, the start of a run before its first step) the signal raises
`Abandoned` at once, so a preempted run exits within its grace period however long the
evaluation would have taken. A train step and a checkpoint save always run to their end.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any


class Abandoned(Exception):  # noqa: N818 - it is a request, not a failure.
    """Raised inside `PreemptionHandler.abandonable` when a stop was requested."""


class PreemptionHandler:
    """Context manager: SIGTERM/SIGINT set `requested`; a second signal exits immediately.

    Installed only in the main thread (Python delivers signals there); elsewhere it is inert.
    With ``abandon`` False (multi-process runs, whose processes must stop at the same step)
    `abandonable` blocks never raise and the work in progress finishes.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, *, abandon: bool = True, grace_s: float = 0.0):
        self.requested: int | None = None
        # After the first signal the process ends within grace_s seconds (0 = no bound): if it
        # has not stopped by then, it exits anyway (the newest complete checkpoint stays).
        self.grace_s = grace_s
        self._deadline: threading.Timer | None = None
        self._abandon = abandon
        self._depth = 0
        self._retry = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):
        del frame
        if self._retry:  # Sent again by `_insist` below, not by anyone else.
            self._retry = False
            if self._abandon and self._depth > 0:
                raise Abandoned(signal.Signals(signum).name)
            return
        if self.requested is not None:
            print(f"\nSecond signal ({signal.Signals(signum).name}): exiting now.", file=sys.stderr)
            os._exit(128 + signum)
        self.requested = signum
        if self.grace_s > 0:
            self._deadline = threading.Timer(self.grace_s, self._overdue, args=(signum,))
            self._deadline.daemon = True
            self._deadline.start()
        now = self._abandon and self._depth > 0
        print(
            f"\n{signal.Signals(signum).name} received: stopping "
            + ("now" if now else "after the current step")
            + " with a checkpoint of the last completed step (send it again to exit at once).",
            file=sys.stderr,
        )
        if now:
            threading.Thread(target=self._insist, args=(signum,), daemon=True).start()
            raise Abandoned(signal.Signals(signum).name)

    def _insist(self, signum: int) -> None:
        """Raises `Abandoned` again while the given-up work still runs.

        An exception raised by a signal handler lands wherever the main thread is, and there it
        may be swallowed: in a garbage-collection callback or a ``__del__``, whose errors Python
        only prints. So until the work has left its `abandonable` block, the handler is called
        again (`_thread.interrupt_main`) every 0.2 s.
        """
        while self._depth > 0 and self._previous:
            time.sleep(0.2)
            if self._depth > 0:
                self._retry = True
                _thread.interrupt_main(signum)

    def _overdue(self, signum: int) -> None:
        print(
            f"\nerror: still running {self.grace_s:g} s after {signal.Signals(signum).name} "
            "(preemption_grace_s); exiting now, the newest complete checkpoint is kept",
            file=sys.stderr,
            flush=True,
        )
        os._exit(128 + signum)

    def given_up(self) -> None:
        """Called where `Abandoned` was caught: the work is left, no more `Abandoned`."""
        self._depth = 0
        self._retry = False

    @contextlib.contextmanager
    def abandonable(self) -> Iterator[None]:
        """Work that a signal gives up: `Abandoned` is raised at once (also on entry, when a
        signal came before)."""
        if self._abandon and self.requested is not None:
            raise Abandoned(signal.Signals(self.requested).name)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    def __enter__(self) -> PreemptionHandler:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
