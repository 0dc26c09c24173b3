"""compute_status as a table: given what one tick observed and decided, the status it writes.

Each case names its inputs and the conditions (type -> (status, reason, message)) and
figures it wants; no cluster, no shards, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from channelapp.autoscale.signals import Load
from channelapp_operator.children_status import Workload
from channelapp_operator.depth_reading import DepthReading
from channelapp_operator.status import StatusInputs, compute_status, load_figures, progressing

NOW = "2030-01-02T03:04:05Z"
BEFORE = "2029-12-31T00:00:00Z"
ONE_SHARD = {"redis": {"external": {"urls": ["redis://h0:6379/0"]}}}
TWO_SHARDS = {"redis": {"external": {"urls": ["redis://:pw@h0:6379/0", "redis://h1:6379/0"]}}}
MANAGED = {"redis": {"managed": {"shards": 2}}}


def rolled(replicas: int) -> Workload:
    return Workload(replicas, replicas, replicas, replicas, 1, 1)


def rolling(desired: int, ready: int, refused: str | None = None) -> Workload:
    return Workload(desired, ready, ready, ready, 2, 2, refused=refused)


ALL_READY = {"protocol": rolled(2), "worker": rolled(3)}
MANAGED_READY = {**ALL_READY, "redis": rolled(2)}
OK = DepthReading(depth=7, oldest_age=1.23456)

Conditions = dict[str, tuple[str, str, str]]


@dataclass
class Case:
    name: str
    workloads: dict[str, Workload] = field(default_factory=lambda: dict(ALL_READY))
    reading: DepthReading = field(default_factory=lambda: OK)
    spec: dict[str, Any] = field(default_factory=lambda: ONE_SHARD)
    desired: int | None = 3
    apply_failure: tuple[str, str] | None = None
    want: Conditions = field(default_factory=dict)  # only the conditions named are checked


UNREACHABLE = DepthReading(unreachable=["redis://h1:6379/0: connection refused"])
WHOLE = DepthReading(error="2 shards: timeout", error_class="timeout")
PENDING = DepthReading(
    error="waiting for the app's Secret: not found",
    failed_urls=[],
    pending=True,
    error_class="waiting for the app's Secret",
)
READY = ("True", "AllReplicasReady", "protocol servers, workers and shards are ready")
COMPLETE = ("False", "RolloutComplete", "every child runs the latest spec")
STABLE = ("False", "Stable", "workers match the queue depth")
UNREADABLE = "queue depth unreadable, replicas left alone: redis://h1:6379/0: connection refused"

CASES = [
    Case(
        "everything ready, depth read",
        want={
            "Ready": READY,
            "Progressing": COMPLETE,
            "Degraded": ("False", "AsExpected", "queue depth read from 1 shard(s)"),
            "Scaling": STABLE,
        },
    ),
    Case(
        "child name taken: ChildExists on Ready, Degraded and Progressing",
        apply_failure=("ChildExists", "Deployment chat exists and is not this app's"),
        want={
            "Ready": ("False", "ChildExists", "Deployment chat exists and is not this app's"),
            "Degraded": ("True", "ChildExists", "Deployment chat exists and is not this app's"),
            "Progressing": (
                "False",
                "ChildExists",
                "the spec is not applied: Deployment chat exists and is not this app's",
            ),
        },
    ),
    Case(
        "a failed apply wins over children still rolling out",
        workloads={"protocol": rolling(2, 1)},
        apply_failure=("ApplyFailed", "applying Service/chat: 422"),
        want={
            "Ready": ("False", "ApplyFailed", "applying Service/chat: 422"),
            "Progressing": (
                "False",
                "ApplyFailed",
                "the spec is not applied: applying Service/chat: 422",
            ),
        },
    ),
    Case(
        "protocol replicas 0",
        workloads={"protocol": rolled(0), "worker": rolled(3)},
        want={
            "Ready": (
                "False",
                "NoProtocolServers",
                "protocol replicas are 0: no server accepts connections "
                "(scale the app, or set spec.protocol.replicas)",
            ),
            "Progressing": COMPLETE,
        },
    ),
    Case(
        "children ready but one shard unreachable: never Ready next to Degraded",
        spec=TWO_SHARDS,
        reading=UNREACHABLE,
        want={
            "Ready": ("False", "ShardUnreachable", f"children ready, but {UNREADABLE}"),
            "Degraded": ("True", "ShardUnreachable", UNREADABLE),
            "Scaling": ("False", "DepthUnreadable", "autoscaling paused until every shard answers"),
            "Progressing": COMPLETE,
        },
    ),
    Case(
        "the app's Secret is being created: starting, not degraded",
        reading=PENDING,
        want={
            "Degraded": ("False", "Starting", "waiting for the app's Secret: not found"),
            "Scaling": ("False", "Starting", "waiting for the app's Secret: not found"),
            "Ready": READY,
        },
    ),
    Case(
        "a refused password Secret",
        reading=DepthReading(error="secret s refused", failed_urls=[], reason="SecretRefused"),
        want={
            "Degraded": (
                "True",
                "SecretRefused",
                "queue depth unreadable, replicas left alone: secret s refused",
            ),
            "Ready": (
                "False",
                "SecretRefused",
                "children ready, but queue depth unreadable, replicas left alone: secret s refused",
            ),
        },
    ),
    Case(
        "workers missing",
        workloads={"protocol": rolled(2)},
        desired=None,
        want={
            "Ready": ("False", "ChildrenMissing", "waiting for workers"),
            "Progressing": ("True", "RollingOut", "rolling out workers"),
            "Scaling": STABLE,
        },
    ),
    Case(
        "missing children are named before the ones rolling out",
        workloads={"protocol": rolling(2, 1)},
        desired=None,
        want={
            "Ready": ("False", "ChildrenMissing", "waiting for workers, protocol servers"),
            "Progressing": ("True", "RollingOut", "rolling out workers, protocol servers"),
        },
    ),
    Case(
        "replicas not ready",
        workloads={"protocol": rolling(2, 1), "worker": rolled(3)},
        want={
            "Ready": ("False", "ReplicasNotReady", "waiting for protocol servers"),
            "Progressing": ("True", "RollingOut", "rolling out protocol servers"),
        },
    ),
    Case(
        "admission refuses the pods: the reason is said",
        workloads={"protocol": rolling(2, 0, refused="exceeded quota"), "worker": rolled(3)},
        want={"Ready": ("False", "PodsRefused", "protocol servers: exceeded quota")},
    ),
    Case(
        "managed Redis: its StatefulSet counts",
        spec=MANAGED,
        workloads=dict(ALL_READY),
        want={
            "Ready": ("False", "ChildrenMissing", "waiting for redis shards"),
            "Progressing": ("True", "RollingOut", "rolling out redis shards"),
        },
    ),
    Case("managed Redis ready", spec=MANAGED, workloads=dict(MANAGED_READY), want={"Ready": READY}),
    Case(
        "external Redis: a leftover StatefulSet does not count",
        workloads={**ALL_READY, "redis": rolling(2, 0)},
        want={"Ready": READY, "Progressing": COMPLETE},
    ),
    Case(
        "workers changing",
        desired=5,
        want={"Scaling": ("True", "ReplicasChanging", "3 of 5 workers ready"), "Ready": READY},
    ),
]


def inputs(case: Case, **changes: Any) -> StatusInputs:
    base = StatusInputs(
        name="chat",
        namespace="ns",
        spec=case.spec,
        generation=4,
        previous={},
        workloads=case.workloads,
        reading=case.reading,
        desired=case.desired,
        apply_failure=case.apply_failure,
        now=NOW,
    )
    return replace(base, **changes)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_conditions(case: Case) -> None:
    got = compute_status(inputs(case))
    conditions = {c["type"]: c for c in got["conditions"]}
    assert [c["type"] for c in got["conditions"]] == ["Ready", "Progressing", "Degraded", "Scaling"]
    for type_, want in case.want.items():
        c = conditions[type_]
        assert (c["status"], c["reason"], c["message"]) == want, type_
        assert c["observedGeneration"] == 4
        assert c["lastTransitionTime"] == NOW


@dataclass
class ShardCase:
    name: str
    spec: dict[str, Any]
    reading: DepthReading
    want_shards: dict[str, Any]
    want_queue: tuple[Any, Any, Any]  # queueDepth, queue, oldestMessageAgeSeconds


SHARD_CASES = [
    ShardCase(
        "every shard answers",
        TWO_SHARDS,
        OK,
        {"ready": 2, "total": 2, "summary": "2/2", "unreachable": []},
        (7, "7", 1.235),
    ),
    ShardCase(
        "one shard unreachable",
        TWO_SHARDS,
        UNREACHABLE,
        {
            "ready": 1,
            "total": 2,
            "summary": "1/2",
            "unreachable": ["redis://h1:6379/0: connection refused"],
        },
        (None, "unknown", None),
    ),
    ShardCase(
        "a read failed as a whole lists every shard, password hidden, with the class",
        TWO_SHARDS,
        WHOLE,
        {
            "ready": 0,
            "total": 2,
            "summary": "0/2",
            "unreachable": ["redis://:***@h0:6379/0: timeout", "redis://h1:6379/0: timeout"],
        },
        (None, "unknown", None),
    ),
    ShardCase(
        "managed shards are counted from the spec",
        MANAGED,
        DepthReading(depth=0),
        {"ready": 2, "total": 2, "summary": "2/2", "unreachable": []},
        (0, "0", 0.0),
    ),
]


@pytest.mark.parametrize("case", SHARD_CASES, ids=[c.name for c in SHARD_CASES])
def test_shards_and_queue(case: ShardCase) -> None:
    got = compute_status(
        inputs(Case("", spec=case.spec, reading=case.reading, workloads=dict(MANAGED_READY)))
    )
    assert got["shards"] == case.want_shards
    assert (got["queueDepth"], got["queue"], got["oldestMessageAgeSeconds"]) == case.want_queue


@pytest.mark.parametrize(
    ("workloads", "desired", "want_protocol", "want_workers"),
    [
        (ALL_READY, 3, (2, 2, "2/2"), {"ready": 3, "desired": 3, "summary": "3/3"}),
        ({"protocol": rolling(4, 1), "worker": rolled(1)}, 6, (1, 4, "1/4"),
         {"ready": 1, "desired": 6, "summary": "1/6"}),
        ({}, None, (0, 0, "0/0"), {"ready": 0, "desired": 0, "summary": "0/0"}),
    ],
)  # fmt: skip
def test_replica_figures(
    workloads: dict[str, Workload],
    desired: int | None,
    want_protocol: tuple[int, int, str],
    want_workers: dict[str, Any],
) -> None:
    got = compute_status(inputs(Case("", workloads=dict(workloads), desired=desired)))
    assert got["protocol"] == {
        "ready": want_protocol[0],
        "desired": want_protocol[1],
        "summary": want_protocol[2],
        "selector": "app.kubernetes.io/instance=chat,app.kubernetes.io/component=protocol",
    }
    assert got["workers"] == want_workers


FIGURES = {"inFlight": 3, "liveWorkers": 2, "reason": "depth 7"}


@pytest.mark.parametrize(
    ("load", "previous", "want"),
    [
        (FIGURES, {}, FIGURES),
        (FIGURES, {"load": {"inFlight": 1}}, FIGURES),
        (None, {"load": {"inFlight": 1}}, {"inFlight": 1}),  # no decision yet: kept
        (None, {}, None),
    ],
)
def test_load_figures_in_status(
    load: dict[str, Any] | None, previous: dict[str, Any], want: dict[str, Any] | None
) -> None:
    got = compute_status(inputs(Case(""), load=load, previous=previous))
    assert got.get("load") == want


@pytest.mark.parametrize(
    ("last_scale", "previous", "want"),
    [
        (("t1", "workers 1 -> 2"), {}, ("t1", "workers 1 -> 2")),
        (("t1", "workers 1 -> 2"), {"lastScaleTime": "t0", "lastScaleReason": "x"},
         ("t1", "workers 1 -> 2")),
        (None, {"lastScaleTime": "t0", "lastScaleReason": "x"}, ("t0", "x")),
        (None, {"lastScaleTime": "t0"}, ("t0", "")),
        (None, {}, (None, None)),
    ],
)  # fmt: skip
def test_last_scale(
    last_scale: tuple[str, str] | None, previous: dict[str, Any], want: tuple[Any, Any]
) -> None:
    got = compute_status(inputs(Case(""), last_scale=last_scale, previous=previous))
    assert (got.get("lastScaleTime"), got.get("lastScaleReason")) == want


def test_transition_time_moves_only_when_a_condition_flips() -> None:
    previous = {
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "AllReplicasReady",
             "message": "m", "lastTransitionTime": BEFORE},
            {"type": "Degraded", "status": "True", "reason": "ShardUnreachable",
             "message": "m", "lastTransitionTime": BEFORE},
            {"type": "Custom", "status": "True", "lastTransitionTime": BEFORE},
        ]
    }  # fmt: skip
    got = compute_status(inputs(Case(""), previous=previous))
    times = {c["type"]: c["lastTransitionTime"] for c in got["conditions"]}
    # Ready stays True; Degraded flips to False; Progressing and Scaling are new.
    assert times == {
        "Ready": BEFORE,
        "Degraded": NOW,
        "Custom": BEFORE,
        "Progressing": NOW,
        "Scaling": NOW,
    }
    assert [c["type"] for c in got["conditions"]][:3] == ["Ready", "Degraded", "Custom"]


@pytest.mark.parametrize(
    ("failure", "pending", "want"),
    [
        (None, [], (False, "RolloutComplete", "every child runs the latest spec")),
        (None, ["workers"], (True, "RollingOut", "rolling out workers")),
        (("SpecRefused", "x" * 2000), ["workers"],
         (False, "SpecRefused", ("the spec is not applied: " + "x" * 2000)[:1000])),
    ],
)  # fmt: skip
def test_progressing(
    failure: tuple[str, str] | None, pending: list[str], want: tuple[bool, str, str]
) -> None:
    assert progressing(failure, pending) == want


@pytest.mark.parametrize(
    ("load", "reason", "want"),
    [
        (Load(in_flight=3, workers=2), "r", {"inFlight": 3, "liveWorkers": 2, "reason": "r"}),
        (Load(in_flight=0, workers=1, arrival_rate=12.3456, handling_time=0.123456), "r" * 1200,
         {"inFlight": 0, "liveWorkers": 1, "reason": "r" * 1000, "arrivalRate": 12.35,
          "handlingTimeSeconds": 0.1235}),
    ],
)  # fmt: skip
def test_load_figures(load: Load, reason: str, want: dict[str, Any]) -> None:
    assert load_figures(load, reason) == want
