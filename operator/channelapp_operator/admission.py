"""Why a StatefulSet's pods are refused, from its controller's FailedCreate Events.

A Deployment carries the reason in its ReplicaFailure condition; a StatefulSet has
no such condition, so its controller's latest FailedCreate Event is the only place
that says "forbidden: violates PodSecurity" or "exceeded quota".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from channelapp_operator.kube import Kube

RECHECK = 10.0  # seconds between Event lookups for one StatefulSet
RECENT = 600.0  # an Event older than this is history, not the current reason


def latest_refusal(events: list[dict[str, Any]], now: datetime) -> str | None:
    """The message of the newest recent FailedCreate Event, or None."""
    best: tuple[datetime, str] | None = None
    for event in events:
        if event.get("reason") != "FailedCreate":
            continue
        stamp = event.get("lastTimestamp") or event.get("eventTime") or ""
        try:
            when = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            continue
        if (now - when).total_seconds() > RECENT:
            continue
        if best is None or when > best[0]:
            best = (when, str(event.get("message") or ""))
    return best[1] if best else None


class StatefulSetRefusals:
    """Looks the reason up at most every RECHECK seconds while the StatefulSet is not ready."""

    def __init__(self, kube: Kube, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.clock = clock
        self._cached: tuple[float, str | None] | None = None

    def reset(self) -> None:
        self._cached = None

    def lookup(self, namespace: str, name: str) -> str | None:
        now = self.clock()
        if self._cached is not None and now - self._cached[0] < RECHECK:
            return self._cached[1]
        events = self.kube.events_for(namespace, "StatefulSet", name)
        found = latest_refusal(events, datetime.now(UTC))
        self._cached = (now, found)
        return found
