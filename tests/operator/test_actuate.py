"""When the poll loop writes the status: a change that matters at once, a change of the
volatile figures alone (depth, age, load, ready counts) at most every status interval,
whatever the depth does; scale writes are never held back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channelapp.autoscale.signals import Load
from channelapp_operator.actuate import VOLATILE_STATUS_INTERVAL, Actuator, status_due


def cond(type_: str, status: str, reason: str, message: str = "", gen: int = 1) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": gen,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


LOAD = {"inFlight": 3, "liveWorkers": 2, "arrivalRate": 12.5, "reason": "busy"}
OLD: dict[str, Any] = {
    "queueDepth": 5,
    "queue": "5",
    "oldestMessageAgeSeconds": 1.0,
    "load": LOAD,
    "workers": {"ready": 2, "desired": 4, "summary": "2/4"},
    "protocol": {"ready": 1, "desired": 1, "summary": "1/1", "selector": "a=b"},
    "conditions": [
        cond("Ready", "False", "ReplicasNotReady", "waiting for workers"),
        cond("Scaling", "True", "ReplicasChanging", "2 of 4 workers ready"),
    ],
}
SOON = VOLATILE_STATUS_INTERVAL / 10


def depth(d: int, age: float = 1.0) -> dict[str, Any]:
    return {**OLD, "queueDepth": d, "queue": str(d), "oldestMessageAgeSeconds": age}


def with_conditions(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {**OLD, "conditions": list(conditions)}


READY_2_OF_4 = {"ready": 3, "desired": 4, "summary": "3/4"}


@pytest.mark.parametrize(
    ("old", "new", "since", "want"),
    [
        (None, OLD, 0.0, True),  # never written
        (OLD, dict(OLD), 100.0, False),  # unchanged, however long ago
        # volatile figures alone: not before the interval, then yes
        (OLD, depth(6), SOON, False),
        (OLD, depth(6), VOLATILE_STATUS_INTERVAL - 0.01, False),
        (OLD, depth(6), VOLATILE_STATUS_INTERVAL, True),
        (OLD, depth(5, age=7.5), SOON, False),  # the oldest message aged
        (OLD, depth(0), SOON, False),  # reaching 0: no bypass
        ({**OLD, **depth(0)}, depth(9), SOON, False),  # leaving 0: no bypass
        (OLD, {**OLD, "load": {**LOAD, "arrivalRate": 13.1}}, SOON, False),  # load alone
        (OLD, {**OLD, "load": {**LOAD, "reason": "idle"}}, SOON, False),
        (OLD, {k: v for k, v in OLD.items() if k != "load"}, SOON, False),
        (OLD, {**OLD, "workers": READY_2_OF_4}, SOON, False),  # a pod became ready
        (OLD, {**OLD, "queueDepth": None, "queue": "unknown"}, SOON, False),  # alone: volatile
        # a condition message that carries counts: volatile
        (
            OLD,
            with_conditions(
                OLD["conditions"][0], cond("Scaling", "True", "ReplicasChanging", "3 of 4")
            ),
            SOON,
            False,
        ),
        # a condition's status, reason or generation: at once
        (
            OLD,
            with_conditions(cond("Ready", "True", "AllReplicasReady"), OLD["conditions"][1]),
            SOON,
            True,
        ),
        (
            OLD,
            with_conditions(OLD["conditions"][0], cond("Scaling", "False", "Stable")),
            0.0,
            True,
        ),
        (
            OLD,
            with_conditions(
                cond("Ready", "False", "ChildrenMissing", "waiting for workers"),
                OLD["conditions"][1],
            ),
            SOON,
            True,
        ),
        (
            OLD,
            with_conditions(
                OLD["conditions"][0],
                cond("Scaling", "True", "ReplicasChanging", "2 of 4 workers ready", gen=2),
            ),
            SOON,
            True,
        ),
        (OLD, {**OLD, "conditions": OLD["conditions"][:1]}, SOON, True),  # one went away
        # a scale, the desired replicas, the shards: at once, whatever else moved
        (OLD, {**depth(40), "lastScaleTime": "t", "lastScaleReason": "up"}, 0.0, True),
        (OLD, {**OLD, "workers": {"ready": 2, "desired": 8, "summary": "2/8"}}, 0.0, True),
        (OLD, {**OLD, "shards": {"ready": 0, "total": 1, "unreachable": ["x"]}}, 0.0, True),
    ],
)
def test_status_due(
    old: dict[str, Any] | None, new: dict[str, Any], since: float, want: bool
) -> None:
    assert status_due(old, new, since) is want


def test_status_due_honours_its_interval() -> None:
    assert status_due(OLD, depth(6), 2.0, interval=2.0) is True
    assert status_due(OLD, depth(6), 2.0, interval=30.0) is False


class FakeKube:
    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []
        self.scales: list[int] = []

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.patches.append(status)

    def scale_workers(self, namespace: str, name: str, replicas: int) -> None:
        self.scales.append(replicas)


def test_a_busy_app_is_written_once_per_interval_and_scaled_at_once() -> None:
    """One tick a second for 60 s, the depth jumping between 0 and a surge every tick: the
    status is written about every interval, every scale at once."""
    now = [0.0]
    kube = FakeKube()
    actuator = Actuator("ns", "app", kube, lambda *_: None, lambda: now[0])  # type: ignore[arg-type]

    async def run() -> None:
        replicas = 1
        for second in range(60):
            now[0] = float(second)
            d = 0 if second % 2 else 50 + second
            if second % 20 == 5:  # a surge needs more workers: written on this very tick
                await actuator.scale(replicas, replicas + 4, "surge")
                replicas += 4
            status = {**depth(d, age=second / 3), "workers": {"desired": replicas}}
            if actuator.last_scale is not None:
                status["lastScaleTime"], status["lastScaleReason"] = actuator.last_scale
            status["load"] = actuator.shown_load(Load(depth=d, in_flight=second), "busy")
            await actuator.write_status(status)

    asyncio.run(run())
    assert kube.scales == [5, 9, 13]
    # 6 interval refreshes plus the first write; a scale adds one at most.
    assert 6 <= len(kube.patches) <= 60 / VOLATILE_STATUS_INTERVAL + 1 + 3, len(kube.patches)
    assert any(p.get("lastScaleReason", "").endswith("surge") for p in kube.patches)
