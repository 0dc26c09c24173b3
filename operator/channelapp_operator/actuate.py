"""What the poll loop writes: the worker replicas, the status, and Events.

A scale is written as soon as the decision changes the count, never held back. The
status is written when it changed in a way that matters at once (a condition's status
or reason, a scale, the desired replicas, the shards); a change of its volatile figures
alone (the waiting messages' depth and age, the load figures, the children's ready
counts and the condition messages carrying them) at most every ``status_interval``
seconds (``--status-interval``), whatever the depth does. An unreadable depth is posted
once per distinct cause.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from channelapp.autoscale.signals import Load

from channelapp_operator import metrics
from channelapp_operator import names as n
from channelapp_operator.api_threads import ApiThreads
from channelapp_operator.conditions import now_iso
from channelapp_operator.decide import scale_reason
from channelapp_operator.depth_reading import DepthReading
from channelapp_operator.kube import Kube
from channelapp_operator.status import load_figures

log = logging.getLogger("channelapp.operator")

EventPoster = Callable[[str, str, str], None]  # (type, reason, message)
# Seconds between status writes whose only change is a volatile figure (the default of
# ``--status-interval``).
VOLATILE_STATUS_INTERVAL = 10.0
# Top-level status fields that move on every tick while messages flow.
VOLATILE_STATUS = ("queueDepth", "queue", "oldestMessageAgeSeconds", "load")
# Fields of status.protocol and status.workers that move while pods come and go: the final
# count is written at once with the Ready or Scaling condition that changes with it.
VOLATILE_CHILD_FIELDS = ("ready", "summary")
# What of a condition is written at once when it changes (not its message).
CONDITION_KEY = ("type", "status", "reason", "observedGeneration")


def settled(status: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a status whose change is written at once: everything but the volatile
    figures, and each condition by its type, status, reason and generation."""
    out = {k: v for k, v in status.items() if k not in VOLATILE_STATUS}
    conditions = out.get("conditions")
    if isinstance(conditions, list):
        out["conditions"] = [
            tuple(c.get(k) for k in CONDITION_KEY) if isinstance(c, Mapping) else c
            for c in conditions
        ]
    for child in ("protocol", "workers"):
        part = out.get(child)
        if isinstance(part, Mapping):
            out[child] = {k: v for k, v in part.items() if k not in VOLATILE_CHILD_FIELDS}
    return out


def status_due(
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    since_written: float,
    interval: float = VOLATILE_STATUS_INTERVAL,
) -> bool:
    """Whether to write ``new`` over ``old`` (the status last written ``since_written``
    seconds ago): a change that matters at once, or any change once ``interval`` has
    passed. A busy app's status is thus written at most every ``interval`` seconds
    however its depth moves (0 included), and the load figures are not rewritten alone
    within the interval."""
    if old is None:
        return True
    if new == old:
        return False
    if settled(new) != settled(old):
        return True
    return since_written >= interval


@dataclass
class Actuator:
    namespace: str
    name: str
    kube: Kube
    post_event: EventPoster
    clock: Callable[[], float] = time.monotonic
    # The threads the writes run on (None: the event loop's default executor).
    api: ApiThreads | None = None
    status_interval: float = VOLATILE_STATUS_INTERVAL
    written: tuple[int, float] | None = None  # (replicas, when) of the last scale write
    last_scale: tuple[str, str] | None = None  # (time, reason)
    _last_status: dict[str, Any] | None = None
    _status_written_at: float = float("-inf")
    _unreachable_posted: str | None = None

    async def scale(self, current: int, replicas: int, why: str) -> None:
        """Set the worker Deployment's replicas, with a metric, a log line and an Event.
        Never throttled: a surge reaches the replicas on the tick that reads it."""
        worker = n.worker_name(self.name)
        if self.api is None:
            await asyncio.to_thread(self.kube.scale_workers, self.namespace, worker, replicas)
        else:
            await self.api.scale(self.kube.scale_workers, self.namespace, worker, replicas)
        self.written = (replicas, self.clock())
        direction = "up" if replicas > current else "down"
        metrics.SCALE_DECISIONS.labels(self.namespace, self.name, direction).inc()
        message = f"workers {current} -> {replicas}: {why}"
        log.info("%s/%s %s", self.namespace, self.name, message)
        self.post_event("Normal", scale_reason(current, replicas), message)
        self.last_scale = (now_iso(), message)

    async def write_status(self, new: dict[str, Any]) -> None:
        """Patch the status when :func:`status_due` says so."""
        since = self.clock() - self._status_written_at
        if not status_due(self._last_status, new, since, self.status_interval):
            return
        if self.api is None:
            await asyncio.to_thread(self.kube.patch_status, self.namespace, self.name, new)
        else:
            await self.api.call(self.kube.patch_status, self.namespace, self.name, new)
        metrics.STATUS_WRITES.labels(self.namespace, self.name).inc()
        self._last_status = new
        self._status_written_at = self.clock()

    def report_unreachable(self, reading: DepthReading) -> None:
        """A Warning Event when the depth becomes unreadable (once per distinct cause)."""
        if reading.ok or reading.pending:
            self._unreachable_posted = None
            return
        detail = reading.error or "; ".join(reading.unreachable)
        if detail != self._unreachable_posted:
            self._unreachable_posted = detail
            self.post_event(
                "Warning",
                reading.reason,
                f"queue depth unreadable, replicas left alone: {detail}"[:1000],
            )

    def shown_load(self, load: Load | None, reason: str) -> dict[str, Any] | None:
        """The load figures for status (None before any decision). They move on every
        tick; :func:`status_due` keeps a change of them alone from being written more
        often than every ``status_interval``."""
        if load is None:
            return None
        return load_figures(load, reason)
