"""The scaling policy: worked examples and properties (pure, no I/O)."""

from __future__ import annotations

import pytest
from channelapp.autoscale.policy import ScalingPolicy, ScalingState, decide, raw_desired
from hypothesis import assume, given, settings
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
    d = decide(p, ScalingState.starting_at(1, 0.0), depth=400, current=1, now=0.5)
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
