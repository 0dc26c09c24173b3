"""Prometheus metrics of the operator, and its liveness heartbeat (served by channelapp.health)."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "channelapp_operator_reconciles_total", "Reconciliations of ChannelApps", ["result"]
)
SCALE_DECISIONS = Counter(
    "channelapp_operator_scale_decisions_total",
    "Worker replica changes written",
    ["namespace", "app", "direction"],
)
DEPTH_READ_FAILURES = Counter(
    "channelapp_operator_depth_read_failures_total",
    "Queue-depth reads that failed (no scaling on those ticks)",
    ["namespace", "app"],
)
DEPTH_READ_SECONDS = Histogram(
    "channelapp_operator_depth_read_seconds",
    "Time to read queue depth from every shard of an app",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
DRIFT_CORRECTIONS = Counter(
    "channelapp_operator_drift_corrections_total",
    "Children changed or deleted outside the operator and put back",
    ["namespace", "app", "kind"],
)
STATUS_WRITES = Counter(
    "channelapp_operator_status_writes_total",
    "Status patches written by an app's poll loop",
    ["namespace", "app"],
)
QUEUE_DEPTH = Gauge(
    "channelapp_operator_queue_depth", "Messages waiting in an app's channels", ["namespace", "app"]
)
DESIRED_WORKERS = Gauge(
    "channelapp_operator_desired_workers",
    "Worker replicas the operator wants",
    ["namespace", "app"],
)
READY_WORKERS = Gauge(
    "channelapp_operator_ready_workers", "Worker replicas ready", ["namespace", "app"]
)


def forget(namespace: str, app: str) -> None:
    """Drop every per-app series of an app that went away."""
    series: list[tuple[Counter | Gauge, tuple[str, ...]]] = [
        (QUEUE_DEPTH, ()),
        (DESIRED_WORKERS, ()),
        (READY_WORKERS, ()),
        (DEPTH_READ_FAILURES, ()),
        (STATUS_WRITES, ()),
        *((SCALE_DECISIONS, (d,)) for d in ("up", "down")),
        *((DRIFT_CORRECTIONS, (k,)) for k in ("Deployment", "StatefulSet", "Service")),
    ]
    for metric, extra in series:
        try:
            metric.remove(namespace, app, *extra)
        except KeyError:
            pass


class Heartbeat:
    """Liveness: each running loop beats; /healthz fails when one stops beating for too long.

    Loops register by beating under their own key and leave with :meth:`done`. An
    operator with no loops (no ChannelApps yet) has nothing that can stall, so it is
    alive: a freshly installed operator is not restarted by its liveness probe.
    """

    def __init__(self, max_silence: float = 60.0) -> None:
        self.max_silence = max_silence
        self.beats: dict[str, float] = {}

    def beat(self, loop: str) -> None:
        self.beats[loop] = time.monotonic()

    def done(self, loop: str) -> None:
        self.beats.pop(loop, None)

    def stalled(self) -> list[str]:
        """Loops silent for longer than ``max_silence``."""
        now = time.monotonic()
        return [loop for loop, last in self.beats.items() if now - last >= self.max_silence]

    def alive(self) -> bool:
        return not self.stalled()
