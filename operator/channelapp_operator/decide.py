"""What the poll loop wants: the scaling policy of a spec and the worker replicas it asks
for. Nothing here writes or reads the cluster or the shards."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from channelapp.autoscale.policy import Decision, ScalingPolicy, ScalingState, decide
from channelapp.autoscale.signals import Load, LoadTracker, Sample
from channelapp.settings import PROTOCOL_CHANNELS

from channelapp_operator.children_status import Workload
from channelapp_operator.depth_reading import DepthReading

MIN_POLL_INTERVAL = 0.1
MAX_POLL_INTERVAL = 60.0
# Seconds the count the loop wrote stands for the worker's replicas while the index lags.
WRITTEN_TRUSTED_FOR = 10.0


def policy_from_spec(spec: Mapping[str, Any]) -> ScalingPolicy:
    w = spec.get("workers") or {}
    return ScalingPolicy(
        min_replicas=int(w.get("minReplicas", 1)),
        max_replicas=int(w.get("maxReplicas", 10)),
        target_depth=int(w.get("targetQueueDepth", 10)),
        activation_depth=int(w.get("activationQueueDepth", 0)),
        scale_down_window=float(w.get("scaleDownStabilizationSeconds", 30)),
        max_scale_up_step=w.get("maxScaleUpStep"),
        max_scale_down_step=w.get("maxScaleDownStep"),
        target_utilization=float(w.get("targetUtilization", 0.9)),
        target_queue_wait=float(w.get("targetQueueWaitSeconds", 0.5)),
        concurrency=int(w.get("concurrency", 64)),
    )


def counted_channels(spec: Mapping[str, Any]) -> list[str]:
    """The channels whose depth drives scaling: the protocol's and the spec's own."""
    extra = (spec.get("workers") or {}).get("channels") or []
    return list(dict.fromkeys([*PROTOCOL_CHANNELS, *extra]))


def poll_interval(spec: Any) -> float:
    """The spec's poll interval, clamped: the CRD refuses out-of-range values, but an object
    stored before that rule (or with validation off) must not make the loop spin."""
    raw = (spec.get("workers") or {}).get("pollIntervalSeconds", 1)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = 1.0
    if value != value:  # NaN
        value = 1.0
    return max(MIN_POLL_INTERVAL, min(MAX_POLL_INTERVAL, value))


def current_replicas(
    worker: Workload | None, written: tuple[int, float] | None, now: float
) -> int | None:
    """Replicas the worker Deployment has, or the count just ``written`` (replicas, when)
    while the index lags."""
    if worker is None:
        return None
    if written is not None:
        replicas, when = written
        if worker.desired != replicas and now - when < WRITTEN_TRUSTED_FOR:
            return replicas
    return worker.desired


def clamp(spec: Mapping[str, Any], current: int) -> tuple[int, str]:
    """Without a depth reading only the spec's bounds hold: (replicas, why)."""
    policy = policy_from_spec(spec)
    bounded = max(policy.min_replicas, min(policy.max_replicas, current))
    return bounded, f"replicas outside {policy.min_replicas}..{policy.max_replicas}"


def scale_reason(current: int, replicas: int) -> str:
    """The Event reason of a change of the worker replicas."""
    if replicas > current:
        return "ScaledUp"
    return "ScaledToZero" if replicas == 0 else "ScaledDown"


@dataclass
class Decider:
    """The scaling decision across ticks: the policy's state and the load tracked so far."""

    state: ScalingState | None = None
    tracker: LoadTracker = field(default_factory=LoadTracker)
    load: Load | None = None  # the load behind the last decision
    reason: str = ""  # the last decision's reason

    def decide(
        self, spec: Mapping[str, Any], reading: DepthReading, current: int, now: float
    ) -> Decision:
        if self.state is None:
            self.state = ScalingState.starting_at(current, now)
        sample = Sample(now, reading.depth, reading.oldest_age, reading.sent, reading.workers)
        self.load = self.tracker.observe(sample)
        decision = decide(policy_from_spec(spec), self.state, self.load, current, now)
        self.reason = decision.reason
        return decision
