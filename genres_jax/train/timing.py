"""Where a training run's wall time goes: train steps, evaluation, and everything else.

The trainer syncs with the devices at every logging step (to average the metrics), so a logging
window's wall time is what its steps cost, plus whatever else ran in it: logging itself,
checkpoint saves, sample grids, and evaluation, which is timed on its own (after a sync, so
that queued train steps are not counted as evaluation) and taken out. The median window rate is
the loop's steady speed; the overall rate (all steps over all wall time except evaluation)
falls below it by what logging, checkpoints and sample grids cost.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from typing import Any

import jax


class LoopTimer:
    def __init__(self, step: int):
        self._start = self._window_start = time.perf_counter()
        self._first_step = self._window_step = step
        self._eval_in_window = 0.0
        self.eval_seconds: list[float] = []
        self.window_rates: list[float] = []

    def window(self, step: int) -> float:
        """Called at a logging step after the sync: steps/s of the window, evaluation excluded."""
        now = time.perf_counter()
        seconds = now - self._window_start - self._eval_in_window
        rate = (step - self._window_step) / max(seconds, 1e-9)
        self.window_rates.append(rate)
        self._window_start, self._window_step, self._eval_in_window = now, step, 0.0
        return rate

    @contextlib.contextmanager
    def evaluation(self, state: Any) -> Iterator[list[float]]:
        """Times the block as evaluation; yields a list that receives its seconds."""
        jax.block_until_ready(state)  # Train steps still queued are training time.
        start = time.perf_counter()
        seconds: list[float] = []
        try:
            yield seconds
        finally:
            elapsed = time.perf_counter() - start
            seconds.append(elapsed)
            self.eval_seconds.append(elapsed)
            self._eval_in_window += elapsed

    def summary(self, step: int) -> dict[str, float]:
        """Steps/s overall and in the median window, the share of training time outside the
        steps (logging, checkpoints, sample grids), and evaluation's count and seconds."""
        wall = time.perf_counter() - self._start
        train = max(wall - sum(self.eval_seconds), 1e-9)
        overall = (step - self._first_step) / train
        steady = statistics.median(self.window_rates) if self.window_rates else overall
        return {
            "steps": step - self._first_step,
            "train_seconds": train,
            "steps_per_sec": overall,
            "median_window_steps_per_sec": steady,
            "overhead_fraction": max(0.0, 1.0 - overall / steady) if steady else 0.0,
            "evaluations": len(self.eval_seconds),
            "eval_seconds": sum(self.eval_seconds),
        }


def describe(summary: dict[str, float]) -> str:
    """One line for the end of a run."""
    line = (
        f"{summary['steps_per_sec']:.1f} steps/s over {summary['steps']} steps "
        f"(median logging window {summary['median_window_steps_per_sec']:.1f}: "
        f"{100 * summary['overhead_fraction']:.1f}% of training time went to logging, "
        f"checkpoints and sample grids)"
    )
    if summary["evaluations"]:
        mean = summary["eval_seconds"] / summary["evaluations"]
        line += f"; evaluation {summary['evaluations']} x {mean:.1f} s"
    return line
