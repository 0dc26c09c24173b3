"""The poll loop's cadence: one tick per interval however long a tick takes (up to the
interval), missed ticks skipped rather than bunched, apps spread over the interval."""

from __future__ import annotations

import asyncio

import pytest
from channelapp_operator.supervisor import PHASE_SLOTS, Cadence, app_phase, paced


class FakeTime:
    """A clock that moves only when the loop's tick works or the loop sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.ticks: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


def run_loop(
    interval: float, tick_seconds: list[float] | float, until: float, phase: float = 0.0
) -> tuple[FakeTime, Cadence]:
    """Run the loop's real scheduling (``paced``) on a fake clock until ``until``."""
    time_ = FakeTime()
    cadence = Cadence(phase, time_.clock)
    durations = iter(tick_seconds) if isinstance(tick_seconds, list) else None

    async def step() -> bool:
        time_.ticks.append(time_.now)
        took = next(durations, 0.0) if durations is not None else tick_seconds
        time_.now += float(took)  # type: ignore[arg-type]
        return True

    asyncio.run(paced(step, lambda: interval, time_.sleep, lambda: time_.now >= until, cadence))
    return time_, cadence


@pytest.mark.parametrize("interval", [0.25, 1.0, 5.0])
@pytest.mark.parametrize("share", [0.0, 0.3, 0.9])
def test_n_ticks_in_n_intervals_whatever_a_tick_takes(interval: float, share: float) -> None:
    n = 100
    time_, cadence = run_loop(interval, interval * share, n * interval)
    assert len(time_.ticks) == n
    # after the first, ticks start exactly one interval apart
    gaps = [b - a for a, b in zip(time_.ticks, time_.ticks[1:], strict=False)]
    assert all(g == pytest.approx(interval) for g in gaps), gaps[:5]
    assert cadence.missed == 0


def test_an_overrunning_tick_skips_the_ticks_it_missed() -> None:
    # ticks of 0.3 s, one of 2.5 s: the loop resumes on the grid, not three ticks in a row
    durations = [0.3, 0.3, 2.5, 0.3, 0.3, 0.3, 0.3]
    time_, cadence = run_loop(1.0, durations, 8.0)
    assert time_.ticks == pytest.approx([0.0, 1.0, 2.0, 5.0, 6.0, 7.0])
    assert cadence.missed == 2


def test_the_first_tick_is_at_once_then_the_app_phase_sets_the_grid() -> None:
    time_, _ = run_loop(1.0, 0.3, 4.0, phase=0.6)
    # the grid starts 0.6 of an interval after the first tick started
    assert time_.ticks == pytest.approx([0.0, 0.6, 1.6, 2.6, 3.6])


def test_a_new_interval_starts_a_new_grid() -> None:
    time_ = FakeTime()
    cadence = Cadence(0.0, time_.clock)
    assert cadence.delay(1.0) == pytest.approx(1.0)
    time_.now = 1.2
    assert cadence.delay(5.0, started=1.0) == pytest.approx(4.8)
    time_.now = 6.5
    assert cadence.delay(5.0) == pytest.approx(4.5)  # the grid of 5 s from 1.0: 11.0


def test_the_loop_ends_when_its_step_says_so() -> None:
    steps = []

    async def step() -> bool:
        steps.append(1)
        return len(steps) < 3

    async def sleep(_: float) -> None:
        return None

    asyncio.run(paced(step, lambda: 1.0, sleep, lambda: False, Cadence()))
    assert len(steps) == 3


def test_apps_are_spread_over_the_interval() -> None:
    phases = [app_phase("ns", f"app-{i}") for i in range(1000)]
    assert all(0.0 <= p < 1.0 for p in phases)
    assert set(phases) == {k / PHASE_SLOTS for k in range(PHASE_SLOTS)}  # apps share slots
    assert app_phase("ns", "app-1") == app_phase("ns", "app-1")  # stable across restarts
    # every tenth of the interval holds roughly a tenth of the apps
    counts = [sum(1 for p in phases if k / 10 <= p < (k + 1) / 10) for k in range(10)]
    assert min(counts) >= 60 and max(counts) <= 140, counts
