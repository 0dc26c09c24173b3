"""Readiness of a ChannelApp's children, from the Deployment and StatefulSet indexes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Workload:
    """The parts of a Deployment's or StatefulSet's state the operator reads."""

    desired: int
    ready: int
    updated: int
    available: int
    generation: int
    observed_generation: int
    # Why the controller cannot create pods (a Deployment's ReplicaFailure condition:
    # Pod Security, a quota, a webhook), or None.
    refused: str | None = None

    @classmethod
    def from_object(
        cls, spec: dict[str, Any], status: dict[str, Any], meta: dict[str, Any]
    ) -> Workload:
        return cls(
            desired=int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1),
            ready=int(status.get("readyReplicas") or 0),
            updated=int(status.get("updatedReplicas") or 0),
            available=int(status.get("availableReplicas") or 0),
            generation=int(meta.get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            refused=_replica_failure(status),
        )

    @property
    def rolled_out(self) -> bool:
        """The controller saw the latest spec and every replica is updated and ready."""
        return (
            self.observed_generation >= self.generation
            and self.updated >= self.desired
            and self.ready >= self.desired
            and self.available >= self.desired
        )


def _replica_failure(status: dict[str, Any]) -> str | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return str(cond.get("message") or cond.get("reason") or "pods refused")
    return None
