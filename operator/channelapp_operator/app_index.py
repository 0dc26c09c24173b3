"""Reading kopf's indexes of ChannelApps and of their Deployments and StatefulSets."""

from __future__ import annotations

import dataclasses
from typing import Any

import kopf

from channelapp_operator.children_status import Workload


@dataclasses.dataclass(frozen=True)
class AppEntry:
    """An app as the index last saw it."""

    uid: str
    spec: dict[str, Any]
    generation: int = 0
    observed: int | None = None  # status.observedGeneration: the spec last applied

    @property
    def applied(self) -> bool:
        """The children were applied from this spec (no reconcile pending or failing)."""
        return self.observed == self.generation


def app_entry(index: kopf.Index[Any, Any], namespace: str, name: str) -> AppEntry | None:
    entries = list(index.get((namespace, name), []))
    return entries[-1] if entries else None


def workloads_of(namespace: str, name: str, *indexes: kopf.Index[Any, Any]) -> dict[str, Workload]:
    """The app's children by component (protocol, worker, redis), from the workload indexes."""
    found: dict[str, Workload] = {}
    for index in indexes:
        for component, workload in index.get((namespace, name), []):
            found[component] = workload
    return found
