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
    """Drop the per-app series of a deleted app."""
    for gauge in (QUEUE_DEPTH, DESIRED_WORKERS, READY_WORKERS):
        try:
            gauge.remove(namespace, app)
        except KeyError:
            pass


class Heartbeat:
    """Liveness: the operator's loops beat; /healthz fails when they stop for too long."""

    def __init__(self, max_silence: float = 60.0) -> None:
        self.max_silence = max_silence
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self.last < self.max_silence
