"""A child's readiness from its spec, status and metadata, as the API server reports them."""

from __future__ import annotations

from typing import Any

import pytest
from channelapp_operator.children_status import Workload

ROLLED = {"readyReplicas": 3, "updatedReplicas": 3, "availableReplicas": 3,
          "observedGeneration": 2}  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "status", "meta", "want"),
    [
        ({}, {}, {}, Workload(1, 0, 0, 0, 0, 0)),  # no replicas field: the API's default 1
        ({"replicas": None}, {}, {}, Workload(1, 0, 0, 0, 0, 0)),
        ({"replicas": 0}, {}, {}, Workload(0, 0, 0, 0, 0, 0)),
        ({"replicas": 3}, ROLLED, {"generation": 2}, Workload(3, 3, 3, 3, 2, 2)),
        (
            {"replicas": 2},
            {"readyReplicas": None, "observedGeneration": None},
            {"generation": None},
            Workload(2, 0, 0, 0, 0, 0),
        ),
    ],
)
def test_from_object(
    spec: dict[str, Any], status: dict[str, Any], meta: dict[str, Any], want: Workload
) -> None:
    assert Workload.from_object(spec, status, meta) == want


@pytest.mark.parametrize(
    ("workload", "want"),
    [
        (Workload(3, 3, 3, 3, 2, 2), True),
        (Workload(0, 0, 0, 0, 1, 1), True),  # scaled to zero
        (Workload(3, 3, 3, 3, 3, 2), False),  # the controller has not seen the latest spec
        (Workload(3, 3, 2, 3, 2, 2), False),  # an old pod left
        (Workload(3, 2, 3, 3, 2, 2), False),  # not ready
        (Workload(3, 3, 3, 2, 2, 2), False),  # not available yet
        (Workload(2, 3, 3, 3, 2, 3), True),  # surplus during a scale-in
    ],
)
def test_rolled_out(workload: Workload, want: bool) -> None:
    assert workload.rolled_out is want


def failure(status: str, **fields: str) -> dict[str, Any]:
    return {"conditions": [{"type": "ReplicaFailure", "status": status, **fields}]}


@pytest.mark.parametrize(
    ("status", "want"),
    [
        ({}, None),
        ({"conditions": None}, None),
        (failure("False", message="quota"), None),
        (failure("True", reason="FailedCreate", message='pods "x" is forbidden'),
         'pods "x" is forbidden'),
        (failure("True", reason="FailedCreate"), "FailedCreate"),
        (failure("True"), "pods refused"),
        ({"conditions": [{"type": "Progressing", "status": "True", "message": "fine"}]}, None),
    ],
)  # fmt: skip
def test_refused_names_the_replica_failure(status: dict[str, Any], want: str | None) -> None:
    assert Workload.from_object({"replicas": 1}, status, {}).refused == want
