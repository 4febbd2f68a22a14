"""Preemption: `PreemptionHandler` turns the first SIGTERM or SIGINT into a request to stop after
the current step (the trainer then saves a checkpoint and exits normally); a second signal ends
the process at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any


class PreemptionHandler:
    """Context manager: SIGTERM/SIGINT set `requested`; a second signal exits immediately.

    Installed only in the main thread (Python delivers signals there); elsewhere it is inert.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):
        del frame
        if self.requested is not None:
            print(f"\nSecond signal ({signal.Signals(signum).name}): exiting now.", file=sys.stderr)
            os._exit(128 + signum)
        self.requested = signum
        print(
            f"\n{signal.Signals(signum).name} received: stopping after the current step with a "
            "checkpoint (send it again to exit at once).",
            file=sys.stderr,
        )

    def __enter__(self) -> PreemptionHandler:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
