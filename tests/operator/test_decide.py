"""The poll loop's pure decisions: bounds without a reading, the count the index lags
behind, Event reasons, the channels counted."""

from __future__ import annotations

import pytest
from channelapp_operator.children_status import Workload
from channelapp_operator.decide import (
    clamp,
    counted_channels,
    current_replicas,
    policy_from_spec,
    scale_reason,
)


def worker(desired: int) -> Workload:
    return Workload(desired, desired, desired, desired, 1, 1)


@pytest.mark.parametrize(
    ("workload", "written", "now", "want"),
    [
        (None, (3, 0.0), 1.0, None),
        (worker(2), None, 1.0, 2),
        (worker(2), (5, 0.0), 9.9, 5),  # just written: the index has not caught up
        (worker(2), (5, 0.0), 10.0, 2),  # long enough: the Deployment's count stands
        (worker(5), (5, 0.0), 1.0, 5),
    ],
)
def test_current_replicas(
    workload: Workload | None, written: tuple[int, float] | None, now: float, want: int | None
) -> None:
    assert current_replicas(workload, written, now) == want


@pytest.mark.parametrize(("current", "want"), [(0, 1), (1, 1), (4, 4), (10, 10), (12, 10)])
def test_clamp_holds_the_spec_bounds(current: int, want: int) -> None:
    spec = {"workers": {"minReplicas": 1, "maxReplicas": 10}}
    assert clamp(spec, current) == (want, "replicas outside 1..10")


@pytest.mark.parametrize(
    ("current", "replicas", "want"),
    [(1, 2, "ScaledUp"), (0, 1, "ScaledUp"), (3, 2, "ScaledDown"), (2, 0, "ScaledToZero")],
)
def test_scale_reason(current: int, replicas: int, want: str) -> None:
    assert scale_reason(current, replicas) == want


def test_policy_defaults_and_spec_values() -> None:
    default = policy_from_spec({})
    assert (default.min_replicas, default.max_replicas, default.target_depth) == (1, 10, 10)
    policy = policy_from_spec({"workers": {"minReplicas": 0, "maxReplicas": 3, "concurrency": 8}})
    assert (policy.min_replicas, policy.max_replicas, policy.concurrency) == (0, 3, 8)


def test_counted_channels_add_the_specs_own_once() -> None:
    base = counted_channels({})
    assert base and len(set(base)) == len(base)
    extra = counted_channels({"workers": {"channels": ["jobs", base[0], "jobs"]}})
    assert extra == [*base, "jobs"]
