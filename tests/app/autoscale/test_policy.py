"""The scaling policy: worked examples and properties (pure, no I/O)."""

from __future__ import annotations

import math

import pytest
from channelapp.autoscale.policy import (
    SCALE_IN_TOLERANCE,
    ScalingPolicy,
    ScalingState,
    decide,
    raw_desired,
)
from channelapp.autoscale.signals import Load, LoadTracker, Sample
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st


def run(policy: ScalingPolicy, trace: list[tuple[float, int]], start: int) -> list[int]:
    state = ScalingState.starting_at(start, trace[0][0] - policy.scale_down_window - 1)
    current = start
    out = []
    for now, depth in trace:
        current = decide(policy, state, depth, current, now).replicas
        out.append(current)
    return out


def test_raw_is_ceil_of_depth_over_target_clamped() -> None:
    p = ScalingPolicy(min_replicas=1, max_replicas=10, target_depth=10)
    assert [raw_desired(p, d) for d in (0, 1, 10, 11, 95, 5000)] == [1, 1, 1, 2, 10, 10]


def test_scale_up_is_immediate_and_jumps_straight_to_the_need() -> None:
    p = ScalingPolicy(min_replicas=1, max_replicas=40, target_depth=10, scale_down_window=300)
    d = decide(p, ScalingState.starting_at(1, 0.0), 400, current=1, now=0.5)
    assert d.replicas == 40
    assert "queue depth 400 needs 40" in d.reason


def test_scale_up_step_bounds_each_decision() -> None:
    p = ScalingPolicy(min_replicas=1, max_replicas=40, target_depth=10, max_scale_up_step=5)
    assert run(p, [(1, 400), (2, 400), (3, 400)], start=1) == [6, 11, 16]


def test_scale_down_waits_for_the_window() -> None:
    p = ScalingPolicy(min_replicas=1, max_replicas=10, target_depth=10, scale_down_window=30)
    state = ScalingState()
    assert decide(p, state, 100, 1, now=0).replicas == 10
    assert decide(p, state, 0, 10, now=1).replicas == 10
    assert decide(p, state, 0, 10, now=29).replicas == 10
    d = decide(p, state, 0, 10, now=31)
    assert d.replicas == 1
    assert "highest need in the last 30s" in d.reason


def test_scale_down_step_bounds_each_decision() -> None:
    p = ScalingPolicy(min_replicas=1, max_replicas=10, scale_down_window=0, max_scale_down_step=3)
    assert run(p, [(1, 0), (2, 0), (3, 0), (4, 0)], start=10) == [7, 4, 1, 1]


def test_scale_to_zero_and_wake_on_first_message() -> None:
    p = ScalingPolicy(min_replicas=0, max_replicas=5, target_depth=10, scale_down_window=10)
    state = ScalingState.starting_at(2, 0.0)
    assert decide(p, state, 0, 2, now=5).replicas == 2
    d = decide(p, state, 0, 2, now=11)
    assert d.replicas == 0 and "scale to zero" in d.reason
    assert decide(p, state, 0, 0, now=12).replicas == 0
    assert decide(p, state, 1, 0, now=13).replicas == 1


def test_activation_threshold_keeps_a_sleeping_app_asleep() -> None:
    p = ScalingPolicy(min_replicas=0, max_replicas=5, target_depth=10, activation_depth=5)
    state = ScalingState()
    assert decide(p, state, 5, 0, now=0).replicas == 0
    assert decide(p, state, 6, 0, now=1).replicas == 1


def test_restart_waits_a_full_window_before_scaling_in() -> None:
    p = ScalingPolicy(min_replicas=1, max_replicas=10, scale_down_window=30)
    state = ScalingState.starting_at(8, now=100.0)
    assert decide(p, state, 0, 8, now=101).replicas == 8
    assert decide(p, state, 0, 8, now=131).replicas == 1


def test_count_outside_bounds_is_brought_back() -> None:
    p = ScalingPolicy(min_replicas=2, max_replicas=4)
    assert decide(p, ScalingState.starting_at(9, 0.0), 0, 9, now=1).replicas == 4
    assert decide(p, ScalingState(), 0, 0, now=0).replicas == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_replicas": -1},
        {"min_replicas": 5, "max_replicas": 4},
        {"max_replicas": 0, "min_replicas": 0},
        {"target_depth": 0},
        {"activation_depth": -1},
        {"scale_down_window": -1},
        {"max_scale_up_step": 0},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ScalingPolicy(**kwargs)


policies = st.builds(
    lambda lo, span, target, act, window, up, down: ScalingPolicy(
        min_replicas=lo,
        max_replicas=max(lo, 1) + span,
        target_depth=target,
        activation_depth=act,
        scale_down_window=window,
        max_scale_up_step=up,
        max_scale_down_step=down,
    ),
    st.integers(0, 5),
    st.integers(0, 50),
    st.integers(1, 100),
    st.integers(0, 20),
    st.floats(0, 120),
    st.none() | st.integers(1, 10),
    st.none() | st.integers(1, 10),
)


@settings(max_examples=300, deadline=None)
@given(
    policies,
    st.lists(st.tuples(st.floats(0, 5), st.integers(0, 10_000)), min_size=1, max_size=60),
    st.integers(0, 100),
)
def test_never_outside_min_max(
    policy: ScalingPolicy, steps: list[tuple[float, int]], start: int
) -> None:
    state, now, current = ScalingState(), 0.0, start
    for dt, depth in steps:
        now += dt
        current = decide(policy, state, depth, current, now).replicas
        assert policy.min_replicas <= current <= policy.max_replicas


@settings(max_examples=200, deadline=None)
@given(policies, st.integers(0, 5_000), st.integers(0, 30))
def test_noisy_constant_depth_does_not_flap(policy: ScalingPolicy, level: int, noise: int) -> None:
    """Depth wobbling around a level: after the first window the count only ever settles.

    Holds whenever the window spans more than one sample (here 0.5 s); a zero
    window asks for no damping and gets none.
    """
    assume(policy.scale_down_window >= 1.0)
    state, current = ScalingState(), policy.min_replicas
    changes = []
    for i in range(400):
        now = i * 0.5
        depth = max(0, level + (noise if i % 2 else -noise))
        new = decide(policy, state, depth, current, now).replicas
        if new != current and now > policy.scale_down_window + 1:
            changes.append((now, current, new))
        current = new
    ups = [c for c in changes if c[2] > c[1]]
    downs = [c for c in changes if c[2] < c[1]]
    # Steps may still be climbing or descending towards the level, but never both ways.
    assert not (ups and downs), changes


# --- sizing from demand -----------------------------------------------------------------------


def steady(rate: float, handling: float, concurrency: int = 1, **kw: float) -> Load:
    return Load(
        arrival_rate=rate,
        handling_time=handling,
        concurrency=concurrency,
        workers=kw.pop("workers", 1),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def test_worked_example_little_law() -> None:
    # 100 jobs/s of 50 ms on workers running one at a time: 5 busy, 6 workers at 90 %.
    p = ScalingPolicy(min_replicas=1, max_replicas=10, target_utilization=0.9)
    d = decide(p, ScalingState.starting_at(1, 0.0), steady(100, 0.05), 1, now=1)
    assert d.replicas == 6
    assert "arrivals 100.0/s x 50 ms = 5.00 busy: 6 worker(s) of 1 at 90%" in d.reason


def test_an_empty_queue_does_not_scale_in_workers_that_are_busy() -> None:
    """The sawtooth: depth 0 while workers keep up must not read as 'no work'."""
    p = ScalingPolicy(min_replicas=1, max_replicas=10, scale_down_window=5)
    state = ScalingState.starting_at(6, 0.0)
    for t in range(1, 120):
        assert decide(p, state, steady(100, 0.05, workers=6), 6, now=float(t)).replicas == 6


def test_a_backlog_older_than_the_target_adds_workers_to_drain_it() -> None:
    p = ScalingPolicy(min_replicas=1, max_replicas=50, target_queue_wait=0.5)
    load = steady(100, 0.05, depth=400, oldest_age=1.0, workers=6)
    d = decide(p, ScalingState.starting_at(6, 0.0), load, 6, now=1)
    assert d.replicas == 45  # 5 busy + 400 x 0.05 / 0.5 = 45 slots
    assert "400 waiting (oldest 1.0s) drained within 0.5s by 45" in d.reason


def test_a_fresh_burst_is_left_to_the_headroom() -> None:
    p = ScalingPolicy(min_replicas=1, max_replicas=50, target_queue_wait=0.5)
    load = steady(100, 0.05, depth=20, oldest_age=0.05, workers=6)
    assert decide(p, ScalingState.starting_at(6, 0.0), load, 6, now=1).replicas == 6


def test_workers_still_starting_are_kept_and_not_asked_for_twice() -> None:
    """Pods that take longer than the backlog hold to start are neither removed nor doubled."""
    p = ScalingPolicy(min_replicas=1, max_replicas=50)
    state = ScalingState.starting_at(3, -100.0)
    first = steady(100, 0.05, depth=400, oldest_age=2.0, workers=3)
    assert decide(p, state, first, 3, now=0).replicas == 45
    for t in range(1, 30):  # 30 s of pods not ready, the backlog still there
        load = steady(100, 0.05, depth=400, oldest_age=2.0 + t, workers=3)
        d = decide(p, state, load, 45, now=t)
        assert d.replicas == 45, (t, d)
    assert "42 worker(s) still starting" in d.reason


def test_a_worker_that_never_reports_stops_blocking_the_backlog_after_the_grace() -> None:
    p = ScalingPolicy(min_replicas=1, max_replicas=50, startup_grace=60)
    state = ScalingState.starting_at(4, -100.0)
    assert decide(p, state, steady(60, 0.05, workers=4), 4, now=0).replicas == 4
    state.raised_at = 0.0  # one of five asked for crash-loops: 4 report
    stuck = steady(60, 0.05, depth=500, oldest_age=5.0, workers=4)
    assert decide(p, state, stuck, 5, now=30).replicas == 5
    assert decide(p, state, stuck, 5, now=61).replicas == 50  # 3 + 500 x 0.05 / 0.5 = 53


def test_messages_in_flight_hold_their_workers_when_arrivals_stop() -> None:
    p = ScalingPolicy(min_replicas=1, max_replicas=50, scale_down_window=0)
    load = Load(arrival_rate=0.0, handling_time=60.0, in_flight=200, concurrency=8, workers=30)
    d = decide(p, ScalingState.starting_at(30, -100.0), load, 30, now=0)
    assert d.replicas == 25 and "200 in flight hold 25" in d.reason
    gone = Load(arrival_rate=0.0, handling_time=60.0, in_flight=0, concurrency=8, workers=30)
    assert decide(p, ScalingState.starting_at(25, -100.0), gone, 25, now=10).replicas == 1


def test_old_messages_add_one_worker_per_decision_when_the_estimate_is_off() -> None:
    p = ScalingPolicy(min_replicas=1, max_replicas=10, target_queue_wait=0.5)
    load = steady(10, 0.05, depth=3, oldest_age=5.0, workers=2)  # estimate says 1 is plenty
    assert decide(p, ScalingState.starting_at(2, 0.0), load, 2, now=1).replicas == 3


def test_without_a_handling_time_the_depth_rule_stands_in() -> None:
    p = ScalingPolicy(min_replicas=0, max_replicas=40, target_depth=10)
    d = decide(p, ScalingState(), Load(depth=400, arrival_rate=0.0), 0, now=0)
    assert d.replicas == 40 and "queue depth 400 needs 40" in d.reason


def test_an_idle_app_sleeps_only_when_nothing_arrives_or_runs() -> None:
    p = ScalingPolicy(min_replicas=0, max_replicas=5, scale_down_window=0)
    assert raw_desired(p, Load(arrival_rate=0.0, handling_time=0.05)) == 0
    assert raw_desired(p, Load(arrival_rate=0.5, handling_time=0.05)) == 1
    assert raw_desired(p, Load(in_flight=1, handling_time=0.05)) == 1


loads = st.builds(
    Load,
    depth=st.integers(0, 10_000),
    oldest_age=st.floats(0, 600),
    arrival_rate=st.none() | st.floats(0, 50_000),
    handling_time=st.none() | st.floats(0.0001, 60),
    in_flight=st.integers(0, 5000),
    concurrency=st.none() | st.integers(1, 256),
    workers=st.integers(0, 100),
)


@given(
    load=loads,
    current=st.integers(0, 60),
    lo=st.integers(0, 20),
    span=st.integers(0, 40),
    util=st.floats(0.05, 1.0),
    wait=st.floats(0.01, 60),
)
@settings(max_examples=400, deadline=None)
def test_demand_decisions_stay_within_bounds(
    load: Load, current: int, lo: int, span: int, util: float, wait: float
) -> None:
    p = ScalingPolicy(
        min_replicas=lo,
        max_replicas=max(1, lo + span),
        target_utilization=util,
        target_queue_wait=wait,
    )
    d = decide(p, ScalingState.starting_at(current, 0.0), load, current, now=1.0)
    assert p.min_replicas <= d.replicas <= p.max_replicas
    assert d.reason


@given(
    rate=st.floats(0.1, 2000),
    handling=st.floats(0.001, 5),
    concurrency=st.integers(1, 64),
    start=st.integers(1, 30),
)
@example(rate=1026.0, handling=1.0, concurrency=46, start=27)  # kept by the hysteresis band
@settings(max_examples=300, deadline=None)
def test_a_constant_load_settles_once_and_stays(
    rate: float, handling: float, concurrency: int, start: int
) -> None:
    """Whatever it starts from, a steady load changes the count at most twice, then never."""
    p = ScalingPolicy(min_replicas=1, max_replicas=200, scale_down_window=10)
    state = ScalingState.starting_at(start, 0.0)
    current, changes = start, []
    for i in range(1, 121):
        load = steady(rate, handling, concurrency, workers=current)
        d = decide(p, state, load, current, now=i * 0.5)
        if d.replicas != current:
            changes.append(i)
        current = d.replicas
    assert len(changes) <= 2
    assert not changes or changes[-1] <= 25  # settled within the 10 s window + one poll
    busy = rate * handling / concurrency
    assert current >= min(200, busy)  # never below the capacity the demand uses
    # At most one above the count the demand asks, or (scaling in) what the hysteresis
    # band keeps: a count that still fits SCALE_IN_TOLERANCE more demand is not cut.
    kept = math.ceil(busy * (1 + SCALE_IN_TOLERANCE) / 0.9 - 1e-9)
    assert current <= max(1, min(200, max(-(-busy // 0.9) + 1, kept)))


@given(a=st.floats(0, 5000), b=st.floats(0, 5000), handling=st.floats(0.001, 2))
@settings(max_examples=200, deadline=None)
def test_more_arrivals_never_mean_fewer_workers(a: float, b: float, handling: float) -> None:
    p = ScalingPolicy(min_replicas=1, max_replicas=1000)
    lo, hi = sorted((a, b))
    assert raw_desired(p, steady(lo, handling)) <= raw_desired(p, steady(hi, handling))


def test_the_readme_worked_example() -> None:
    """The README's table, through the real tracker: 100 jobs/s of 50 ms, a burst at 61 s."""
    p = ScalingPolicy(min_replicas=1, max_replicas=10, scale_down_window=30)
    state, tracker = ScalingState.starting_at(1, -31.0), LoadTracker()
    current, sent, changes = 1, 0, {}
    for t in range(130):
        depth, age = 0, 0.0
        if t >= 1:
            sent += 100
        if t == 1:
            depth, age = 40, 0.3
        if t == 61:
            sent += 400
        if 61 <= t <= 63:
            depth, age = 400 - 150 * (t - 61), 0.6 + (t - 61)
        handled = sent - depth
        workers = {
            f"w{i}": {
                "in_flight": 0,
                "handled": handled // current,
                "busy_seconds": handled // current * 0.05,
                "concurrency": 1,
            }
            for i in range(current)
        }
        load = tracker.observe(Sample(float(t), depth, age, sent, workers))  # type: ignore[arg-type]
        d = decide(p, state, load, current, float(t))
        if d.replicas != current:
            changes[t] = d.replicas
        current = d.replicas
    assert changes == {1: 6, 61: 10, 69: 7, 121: 6}, changes
