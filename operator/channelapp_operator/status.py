"""A ChannelApp's status from what one tick observed and decided (pure functions).

:func:`compute_status` holds every rule of the conditions (``Ready``,
``Progressing``, ``Degraded``, ``Scaling``) and of the figures beside them; the poll
loop gathers its inputs and writes the result. Nothing here reads the cluster, the
shards or the clock (unless ``now`` is left out).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from channelapp.autoscale.signals import Load

from channelapp_operator import builders, migrate, reshard
from channelapp_operator import names as n
from channelapp_operator.children_status import Workload
from channelapp_operator.conditions import Condition, set_condition
from channelapp_operator.depth_reading import DepthReading
from channelapp_operator.redis_urls import redact_url


@dataclass(frozen=True)
class StatusInputs:
    name: str
    namespace: str
    spec: Mapping[str, Any]
    generation: int
    previous: Mapping[str, Any]  # the status as read with the app
    workloads: Mapping[str, Workload]
    reading: DepthReading
    desired: int | None  # the worker replicas decided (None: no worker Deployment)
    apply_failure: tuple[str, str] | None = None  # (reason, message) of a failed apply
    load: Mapping[str, Any] | None = None  # the load figures; None: keep the previous ones
    last_scale: tuple[str, str] | None = None  # (time, reason) of this loop's last scale
    now: str | None = None  # lastTransitionTime of a condition that flips


def progressing(
    apply_failure: tuple[str, str] | None,
    pending: list[str],
    held: tuple[str, str] | None = None,
) -> tuple[bool, str, str]:
    """Progressing as (status, reason, message): RolloutComplete only when the latest spec
    was applied and every child runs it, never next to a failed apply. ``held`` is what
    holds part of the spec back (Migrating, MigrationFailed, ReshardWaiting)."""
    if apply_failure is not None:
        reason, message = apply_failure
        return (False, reason, f"the spec is not applied: {message}"[:1000])
    if held is not None:
        reason, message = held
        if reason == migrate.MIGRATING:
            return (True, reason, message)
        return (False, reason, f"the spec is not fully applied: {message}"[:1000])
    if pending:
        return (True, "RollingOut", f"rolling out {', '.join(pending)}")
    return (False, "RolloutComplete", "every child runs the latest spec")


def load_figures(load: Load, reason: str) -> dict[str, Any]:
    """The load behind a scaling decision, as status shows it."""
    figures: dict[str, Any] = {
        "inFlight": load.in_flight,
        "liveWorkers": load.workers,
        "reason": reason[:1000],
    }
    if load.arrival_rate is not None:
        figures["arrivalRate"] = round(load.arrival_rate, 2)
    if load.handling_time is not None:
        figures["handlingTimeSeconds"] = round(load.handling_time, 4)
    return figures


def degraded(
    reading: DepthReading,
    apply_failure: tuple[str, str] | None,
    total_shards: int,
    held: tuple[str, str] | None = None,
) -> tuple[bool, str, str]:
    """Degraded as (status, reason, message)."""
    if apply_failure is not None:
        # The reconcile handler's reason stands until an apply succeeds.
        return (True, *apply_failure)
    if held is not None and held[0] == migrate.MIGRATION_FAILED:
        # The old workers serve; the new spec's stay off until the spec changes.
        return (True, *held)
    if reading.ok:
        return (False, "AsExpected", f"queue depth read from {total_shards} shard(s)")
    if reading.pending:
        return (False, "Starting", reading.error or "starting")
    detail = reading.error or "; ".join(reading.unreachable)
    return (True, reading.reason, f"queue depth unreadable, replicas left alone: {detail}"[:1000])


def not_ready(parts: list[tuple[str, Workload | None]]) -> tuple[list[str], list[str]]:
    """The labels of the children missing, and of those not rolled out."""
    missing = [label for label, w in parts if w is None]
    rolling = [label for label, w in parts if w is not None and not w.rolled_out]
    return missing, rolling


def ready(
    parts: list[tuple[str, Workload | None]],
    apply_failure: tuple[str, str] | None,
    degraded_: tuple[bool, str, str],
) -> tuple[bool, str, str]:
    """Ready as (status, reason, message), from the children as (label, workload or None),
    the protocol servers first."""
    missing, rolling = not_ready(parts)
    proto = parts[0][1]
    if apply_failure is not None:
        # The children are not what the spec asks for: never Ready, whatever runs.
        return (False, *apply_failure)
    if proto is not None and proto.desired == 0:
        return (
            False,
            "NoProtocolServers",
            "protocol replicas are 0: no server accepts connections "
            "(scale the app, or set spec.protocol.replicas)",
        )
    if not missing and not rolling:
        if degraded_[0]:
            # READY is never True next to Degraded: the reason says what is wrong.
            return (False, degraded_[1], f"children ready, but {degraded_[2]}"[:1000])
        return (True, "AllReplicasReady", "protocol servers, workers and shards are ready")
    refused = [f"{label}: {w.refused}" for label, w in parts if w and w.refused]
    what = ", ".join(missing + rolling)
    if refused:
        # Admission (Pod Security, a quota, a webhook) refuses the pods: say why.
        return (False, "PodsRefused", "; ".join(refused)[:1000])
    if missing:
        return (False, "ChildrenMissing", f"waiting for {what}")
    return (False, "ReplicasNotReady", f"waiting for {what}")


def scaling(
    reading: DepthReading, worker: Workload | None, desired: int | None
) -> tuple[bool, str, str]:
    """Scaling as (status, reason, message)."""
    if reading.pending:
        return (False, "Starting", reading.error or "starting")
    if not reading.ok:
        return (False, "DepthUnreadable", "autoscaling paused until every shard answers")
    if worker is not None and desired is not None and worker.ready != desired:
        return (True, "ReplicasChanging", f"{worker.ready} of {desired} workers ready")
    return (False, "Stable", "workers match the queue depth")


def held_back(spec: Mapping[str, Any], previous: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) of what the reconcile handler recorded as holding the spec back:
    the migration (``status.migration``), else a change of shard set
    (``status.dataShards.waiting``)."""
    held = migrate.conditions_for(previous.get("migration"), spec)
    if held is not None:
        return held
    waiting = (previous.get("dataShards") or {}).get("waiting")
    if waiting:
        return (reshard.RESHARD_WAITING, str(waiting)[:1000])
    return None


def compute_status(inputs: StatusInputs) -> dict[str, Any]:
    """The status to write: conditions, children's replicas, shards, queue and load."""
    spec, reading, desired = inputs.spec, inputs.reading, inputs.desired
    proto = inputs.workloads.get(n.PROTOCOL)
    worker = inputs.workloads.get(n.WORKER)
    # The shards the data lives on: the recorded set while a change of it waits.
    applied = reshard.effective_spec(spec, inputs.previous)
    managed = "managed" in (applied.get("redis") or {})
    urls = builders.shard_urls(inputs.name, inputs.namespace, applied)
    total_shards = len(urls)
    reachable = total_shards - len(reading.unreachable) if reading.error is None else 0

    parts = [("protocol servers", proto)]
    if builders.wants_workers(spec):  # an ASGI project without background channels has none
        parts.append(("workers", worker))
    if managed:
        parts.append(("redis shards", inputs.workloads.get(n.REDIS)))
    missing, rolling = not_ready(parts)
    held = held_back(spec, inputs.previous)
    degraded_ = degraded(reading, inputs.apply_failure, total_shards, held)
    conditions: list[Condition] = list(inputs.previous.get("conditions") or [])
    for type_, value in (
        ("Ready", ready(parts, inputs.apply_failure, degraded_)),
        ("Progressing", progressing(inputs.apply_failure, missing + rolling, held)),
        ("Degraded", degraded_),
        ("Scaling", scaling(reading, worker, desired)),
    ):
        conditions = set_condition(conditions, type_, *value, inputs.generation, now=inputs.now)

    proto_ready, proto_desired = (proto.ready, proto.desired) if proto else (0, 0)
    worker_ready = worker.ready if worker else 0
    worker_desired = desired if desired is not None else 0
    out: dict[str, Any] = {
        "conditions": conditions,
        "protocol": {
            "ready": proto_ready,
            "desired": proto_desired,
            "summary": f"{proto_ready}/{proto_desired}",
            # For the /scale subresource (kubectl scale, an HPA on the protocol servers).
            "selector": ",".join(
                f"{k}={v}" for k, v in n.selector(inputs.name, n.PROTOCOL).items()
            ),
        },
        "workers": {
            "ready": worker_ready,
            "desired": worker_desired,
            "summary": f"{worker_ready}/{worker_desired}",
        },
        "shards": {
            "ready": reachable,
            "total": total_shards,
            "summary": f"{reachable}/{total_shards}",
            # A read that failed as a whole (DNS, a missing Secret) reached no shard.
            "unreachable": (
                [f"{redact_url(u)}: {reading.error_class}" for u in urls]
                if reading.error is not None
                else list(reading.unreachable)
            ),
        },
    }
    if reading.ok:
        out["queueDepth"] = reading.depth
        out["queue"] = str(reading.depth)
        out["oldestMessageAgeSeconds"] = round(reading.oldest_age, 3)
    else:
        # Unknown, not the last value read: null removes the numbers, the column says so.
        out["queueDepth"] = None
        out["queue"] = "unknown"
        out["oldestMessageAgeSeconds"] = None
    load = inputs.load if inputs.load is not None else inputs.previous.get("load")
    if load:
        out["load"] = load
    if inputs.last_scale is not None:
        out["lastScaleTime"], out["lastScaleReason"] = inputs.last_scale
    elif inputs.previous.get("lastScaleTime"):
        out["lastScaleTime"] = inputs.previous["lastScaleTime"]
        out["lastScaleReason"] = inputs.previous.get("lastScaleReason", "")
    return out
