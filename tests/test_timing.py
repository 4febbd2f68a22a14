"""The loop's time accounting, on a fake clock: evaluation is taken out of the step rates."""

from __future__ import annotations

import jax.numpy as jnp
import pytest

from genres_jax.train import timing


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(timing.time, "perf_counter", fake)
    return fake


def test_windows_leave_evaluation_out_and_the_summary_counts_the_rest(clock):
    timer = timing.LoopTimer(step=10)  # A resumed run: 10 steps were done before.
    clock.now += 5.0  # 50 steps in 5 s.
    assert timer.window(60) == pytest.approx(10.0)
    clock.now += 2.0  # 20 steps in 2 s, then a 30 s evaluation, then 30 steps in 3 s.
    with timer.evaluation(jnp.zeros(3)) as seconds:
        clock.now += 30.0
    assert seconds == [30.0]
    clock.now += 3.0
    assert timer.window(110) == pytest.approx(10.0)
    clock.now += 6.0  # A window with a 1 s checkpoint save: 50 steps in 6 s.
    assert timer.window(160) == pytest.approx(50 / 6)
    summary = timer.summary(160)
    assert summary["steps"] == 150
    assert summary["train_seconds"] == pytest.approx(16.0)
    assert summary["steps_per_sec"] == pytest.approx(150 / 16)
    assert summary["median_window_steps_per_sec"] == pytest.approx(10.0)
    assert summary["overhead_fraction"] == pytest.approx(1 - (150 / 16) / 10)
    assert summary["evaluations"] == 1 and summary["eval_seconds"] == pytest.approx(30.0)
    line = timing.describe(summary)
    assert line.startswith("9.4 steps/s over 150 steps (median logging window 10.0: 6.2% ")
    assert line.endswith("; evaluation 1 x 30.0 s")


def test_an_evaluation_that_raises_is_still_timed(clock):
    timer = timing.LoopTimer(step=0)
    with pytest.raises(RuntimeError), timer.evaluation(jnp.zeros(())):
        clock.now += 4.0
        raise RuntimeError("interrupted")
    assert timer.eval_seconds == [4.0]
    clock.now += 1.0
    assert timer.window(10) == pytest.approx(10.0)
    assert "evaluation" not in timing.describe({**timer.summary(10), "evaluations": 0})
