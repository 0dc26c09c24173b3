"""One ChannelApp's loop: read the load from every shard, scale workers, keep status true.

A kopf daemon runs :meth:`AppSupervisor.tick` every ``pollIntervalSeconds``.
Each tick costs one pipelined round trip per shard (the layer's ``load`` call:
depth, oldest age and sent counters per channel, and the workers' reports), one
apply of ``spec.replicas`` when the decision changes the count, and one status
patch when the status changed. A failed read never scales: the app is marked
``Degraded`` and its replicas are left alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from channelapp.autoscale.policy import ScalingPolicy, ScalingState, decide
from channelapp.autoscale.signals import Load, LoadTracker, Sample
from channelapp.layer import RedisChannelLayer
from channelapp.layer.keyspace import app_prefix
from channelapp.settings import PROTOCOL_CHANNELS

from channelapp_operator import apply_failures, builders, metrics
from channelapp_operator import names as n
from channelapp_operator.admission import StatefulSetRefusals
from channelapp_operator.children_status import Workload
from channelapp_operator.conditions import now_iso, set_condition
from channelapp_operator.dial_manners import DialManners, SharedDialBudget
from channelapp_operator.kube import Kube, SecretMissing, SecretRefused
from channelapp_operator.ownership import CHILD_EXISTS
from channelapp_operator.redis_urls import (
    classify,
    describe_failure,
    redact_text,
    redact_url,
    shard_index,
)

log = logging.getLogger("channelapp.operator")

EventPoster = Callable[[str, str, str], None]  # (type, reason, message)
PASSWORD_TTL = 30.0  # seconds a shard password read from its Secret is reused
# A Secret not found (or refused) is looked up again on the next tick: a new app's
# Secret is being created, and must not read as missing for a whole PASSWORD_TTL.
LOAD_STATUS_EVERY = 10.0  # seconds between status refreshes of the load figures alone
# Status fields that change on every tick while messages wait: a change of those alone
# is written at most this often (anything else, and depth reaching or leaving 0, at once).
VOLATILE_STATUS_INTERVAL = 5.0
VOLATILE_STATUS = ("queueDepth", "queue", "oldestMessageAgeSeconds")


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
    extra = (spec.get("workers") or {}).get("channels") or []
    return list(dict.fromkeys([*PROTOCOL_CHANNELS, *extra]))


def progressing(apply_failure: tuple[str, str] | None, pending: list[str]) -> tuple[bool, str, str]:
    """Progressing as (status, reason, message): RolloutComplete only when the latest spec
    was applied and every child runs it, never next to a failed apply."""
    if apply_failure is not None:
        reason, message = apply_failure
        return (False, reason, f"the spec is not applied: {message}"[:1000])
    if pending:
        return (True, "RollingOut", f"rolling out {', '.join(pending)}")
    return (False, "RolloutComplete", "every child runs the latest spec")


@dataclass
class DepthReading:
    depth: int = 0
    oldest_age: float = 0.0
    unreachable: list[str] = field(default_factory=list)
    error: str | None = None
    sent: int = 0
    workers: dict[str, Any] = field(default_factory=dict)
    # Shards dialled without success (None: the read failed as a whole, every shard).
    failed_urls: list[str] | None = None
    reason: str = "ShardUnreachable"  # the Degraded reason when the read failed
    # Not a shard's fault: the app's own Secret is still being created, the shards wait
    # for the shared dial budget, or the spec is refused and they are not dialled.
    pending: bool = False
    # The class each shard of a read that failed as a whole is listed with in status.
    error_class: str = "unreachable"

    @property
    def ok(self) -> bool:
        return self.error is None and not self.unreachable


@dataclass
class AppSupervisor:
    namespace: str
    name: str
    kube: Kube
    post_event: EventPoster
    clock: Callable[[], float] = time.monotonic
    _layer: RedisChannelLayer | None = None
    _layer_key: tuple[tuple[str, ...], str | None] | None = None
    _state: ScalingState | None = None
    _written: tuple[int, float] | None = None  # (replicas, when) of our last scale write
    _last_status: dict[str, Any] | None = None
    _last_scale: tuple[str, str] | None = None  # (time, reason)
    _tracker: LoadTracker = field(default_factory=LoadTracker)
    _load: Load | None = None
    _reason: str = ""
    _load_status: dict[str, Any] | None = None
    _load_status_at: float = float("-inf")
    _load_status_scale: tuple[str, str] | None = None
    # (secret name, key) -> (password, read at): re-read every PASSWORD_TTL, not every tick.
    _passwords: dict[tuple[str, str, str | None], tuple[str, float]] = field(default_factory=dict)
    _manners: DialManners | None = None
    # The connection attempts all apps share (the operator passes dial_manners.SHARED).
    shared_dials: SharedDialBudget | None = None
    _held: DepthReading | None = None  # the last failed reading, shown while backing off
    _status_written_at: float = float("-inf")
    _sts_refusals: StatefulSetRefusals | None = None
    _unreachable_posted: str | None = None

    # --- queue depth ------------------------------------------------------------------------

    async def _layer_for(self, spec: Mapping[str, Any], uid: str | None) -> RedisChannelLayer:
        urls = tuple(builders.shard_urls(self.name, self.namespace, dict(spec)))
        ref = builders.password_ref(self.name, dict(spec))
        # The managed Secret must be the app's own: a foreign one of that name is not used.
        owner = uid if "managed" in (spec.get("redis") or {}) else None
        password = None if ref is None else await self._password(ref["name"], ref["key"], owner)
        key = (urls, password)
        if self._layer is None or self._layer_key != key:
            if self._layer is not None:
                await self._layer.close()
            # Short timeouts: a dead host fails one tick fast instead of stalling the loop.
            self._layer = RedisChannelLayer(
                list(urls), prefix=app_prefix(self.namespace, self.name), password=password,
                max_connections=4, connect_timeout=1.0, socket_timeout=2.0,
            )  # fmt: skip
            self._layer_key = key
        return self._layer

    async def _password(self, secret: str, key: str, owner: str | None) -> str:
        """The password, re-read every PASSWORD_TTL; a miss or refusal is never cached."""
        cached = self._passwords.get((secret, key, owner))
        now = self.clock()
        if cached is None or now - cached[1] >= PASSWORD_TTL:
            self._passwords.pop((secret, key, owner), None)
            value = await asyncio.to_thread(
                self.kube.secret_value, self.namespace, secret, key, owner_uid=owner
            )
            cached = (value, now)
            self._passwords[(secret, key, owner)] = cached
        return cached[0]

    async def read_depth(self, spec: Mapping[str, Any], uid: str | None = None) -> DepthReading:
        """One reading of every shard, unless a shard is backing off or the app's budget of
        connection attempts is spent: then the last failed reading stands."""
        urls = builders.shard_urls(self.name, self.namespace, dict(spec))
        refused = apply_failures.failure(self.namespace, self.name)
        if refused is not None and refused[0] not in (apply_failures.APPLY_FAILED, CHILD_EXISTS):
            # The operator refused the spec (a password in a URL...): its shards are not dialled.
            return DepthReading(
                error=f"shards not dialled while the spec is refused ({refused[0]})",
                failed_urls=[],
                pending=True,
                error_class="not dialled, spec refused",
            )
        if self._manners is None:
            self._manners = DialManners(clock=self.clock, shared=self.shared_dials)
        self._manners.forget_others(urls)
        if not self._manners.may_read(urls):
            if self._held is not None:
                return self._held
            return DepthReading(
                error="waiting to dial the shards (connection attempts are rate-limited)",
                failed_urls=[],
                pending=True,
                error_class="not dialled yet",
            )
        reading = await self._read(spec, uid, urls)
        if reading.error is not None and reading.failed_urls is None:
            self._manners.record_all_failed(urls)
        else:
            self._manners.record(urls, reading.failed_urls or [])
        self._held = None if reading.ok else reading
        return reading

    async def _read(
        self, spec: Mapping[str, Any], uid: str | None, urls: list[str]
    ) -> DepthReading:
        started = time.perf_counter()
        try:
            layer = await self._layer_for(spec, uid)
        except SecretRefused as exc:
            return DepthReading(
                error=redact_text(str(exc)),
                failed_urls=[],
                reason="SecretRefused",
                error_class="password Secret refused",
            )
        except SecretMissing as exc:
            # Nothing was dialled: no backoff, the Secret is looked up again next tick.
            if "managed" in (spec.get("redis") or {}):
                # The app's own Secret is created by the reconcile handler: wait for it.
                return DepthReading(
                    error=f"waiting for the app's Secret: {exc}",
                    failed_urls=[],
                    pending=True,
                    error_class="waiting for the app's Secret",
                )
            return DepthReading(
                error=redact_text(str(exc)), failed_urls=[], error_class="password Secret missing"
            )
        except Exception as exc:
            return DepthReading(
                error=redact_text(f"{type(exc).__name__}: {exc}"),
                failed_urls=[],
                error_class=classify(f"{type(exc).__name__}: {exc}"),
            )
        try:
            reading = await asyncio.wait_for(layer.load(counted_channels(spec)), timeout=5)
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"
            if len(urls) == 1:
                return DepthReading(
                    error=describe_failure(urls[0], text), error_class=classify(text)
                )
            return DepthReading(
                error=f"{len(urls)} shards: {classify(text)}", error_class=classify(text)
            )
        finally:
            metrics.DEPTH_READ_SECONDS.observe(time.perf_counter() - started)
        failed: list[str] = []
        unreachable: list[str] = []
        for failure in reading.failures:
            text = str(failure)
            index = shard_index(text)
            url = urls[index] if index is not None and 0 <= index < len(urls) else None
            if url is None:
                unreachable.append(f"a shard: {classify(text)}")
                failed.extend(urls)
            else:
                unreachable.append(describe_failure(url, text))
                failed.append(url)
            log.debug("%s/%s: %s", self.namespace, self.name, unreachable[-1])
        stats = reading.channels.values()
        return DepthReading(
            depth=sum(s["messages_pending"] for s in stats),
            oldest_age=max((s["messages_max_age"] for s in stats), default=0.0),
            unreachable=unreachable,
            sent=sum(s["messages_count"] + s["channel_full_count"] for s in stats),
            workers=dict(reading.workers),
            failed_urls=failed,
        )

    # --- one tick ---------------------------------------------------------------------------

    async def tick(self, body: Mapping[str, Any], workloads: Mapping[str, Workload]) -> None:
        spec = body.get("spec") or {}
        meta = body.get("metadata") or {}
        status = dict(body.get("status") or {})
        reading = await self.read_depth(spec, meta.get("uid"))
        labels = (self.namespace, self.name)
        worker = workloads.get(n.WORKER)
        desired = self._current(worker)
        if reading.ok:
            metrics.QUEUE_DEPTH.labels(*labels).set(reading.depth)
            if worker is not None:
                desired = await self._scale(spec, reading, desired)
        else:
            metrics.DEPTH_READ_FAILURES.labels(*labels).inc()
            if worker is not None:
                desired = await self._clamp(spec, desired)
        if desired is not None:
            metrics.DESIRED_WORKERS.labels(*labels).set(desired)
        if worker is not None:
            metrics.READY_WORKERS.labels(*labels).set(worker.ready)
        workloads = await self._with_redis_refusal(workloads)
        new_status = self._status(spec, meta, status, workloads, reading, desired)
        self._report_unreachable(reading)
        if self._status_due(new_status):
            await asyncio.to_thread(self.kube.patch_status, self.namespace, self.name, new_status)
            metrics.STATUS_WRITES.labels(*labels).inc()
            self._last_status = new_status
            self._status_written_at = self.clock()

    async def _with_redis_refusal(
        self, workloads: Mapping[str, Workload]
    ) -> Mapping[str, Workload]:
        """The Redis StatefulSet's refused pods, looked up while it is not ready."""
        redis = workloads.get(n.REDIS)
        if self._sts_refusals is None:
            self._sts_refusals = StatefulSetRefusals(self.kube)
        if redis is None or redis.rolled_out:
            self._sts_refusals.reset()
            return workloads
        try:
            refused = await asyncio.to_thread(
                self._sts_refusals.lookup, self.namespace, n.redis_name(self.name)
            )
        except Exception as exc:  # no permission, API hiccup: the status says less, no more
            log.debug("%s/%s: events not read: %s", self.namespace, self.name, exc)
            return workloads
        if refused is None:
            return workloads
        return {**workloads, n.REDIS: dataclasses.replace(redis, refused=refused)}

    def _status_due(self, new: dict[str, Any]) -> bool:
        """Write a changed status, but a change of the waiting messages' depth and age alone
        only every VOLATILE_STATUS_INTERVAL, so a busy app's status is not rewritten per tick."""
        old = self._last_status
        if old is None:
            return True
        if new == old:
            return False
        if any(
            new.get(k) != old.get(k) for k in new.keys() | old.keys() if k not in VOLATILE_STATUS
        ):
            return True
        if (new.get("queueDepth") == 0) != (old.get("queueDepth") == 0):
            return True
        return self.clock() - self._status_written_at >= VOLATILE_STATUS_INTERVAL

    def _report_unreachable(self, reading: DepthReading) -> None:
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

    def _current(self, worker: Workload | None) -> int | None:
        """Replicas the worker Deployment has, or the count just written while the index lags."""
        if worker is None:
            return None
        if self._written is not None:
            replicas, when = self._written
            if worker.desired != replicas and self.clock() - when < 10:
                return replicas
        return worker.desired

    async def _clamp(self, spec: Mapping[str, Any], current: int | None) -> int | None:
        """Without a depth reading only the spec's bounds are enforced (a changed min or max)."""
        if current is None:
            return None
        policy = policy_from_spec(spec)
        bounded = max(policy.min_replicas, min(policy.max_replicas, current))
        if bounded != current:
            why = f"replicas outside {policy.min_replicas}..{policy.max_replicas}"
            await self._write(current, bounded, why)
        return bounded

    async def _write(self, current: int, replicas: int, why: str) -> None:
        await asyncio.to_thread(
            self.kube.scale_workers, self.namespace, n.worker_name(self.name), replicas
        )
        self._written = (replicas, self.clock())
        direction = "up" if replicas > current else "down"
        metrics.SCALE_DECISIONS.labels(self.namespace, self.name, direction).inc()
        message = f"workers {current} -> {replicas}: {why}"
        if direction == "up":
            reason = "ScaledUp"
        else:
            reason = "ScaledToZero" if replicas == 0 else "ScaledDown"
        log.info("%s/%s %s", self.namespace, self.name, message)
        self.post_event("Normal", reason, message)
        self._last_scale = (now_iso(), message)

    async def _scale(
        self, spec: Mapping[str, Any], reading: DepthReading, current: int | None
    ) -> int | None:
        if current is None:
            return None
        policy = policy_from_spec(spec)
        now = self.clock()
        if self._state is None:
            self._state = ScalingState.starting_at(current, now)
        sample = Sample(now, reading.depth, reading.oldest_age, reading.sent, reading.workers)
        self._load = self._tracker.observe(sample)
        decision = decide(policy, self._state, self._load, current, now)
        self._reason = decision.reason
        if not decision.changes(current):
            return current
        await self._write(current, decision.replicas, decision.reason)
        return decision.replicas

    # --- status -----------------------------------------------------------------------------

    def _status(
        self,
        spec: Mapping[str, Any],
        meta: Mapping[str, Any],
        status: dict[str, Any],
        workloads: Mapping[str, Workload],
        reading: DepthReading,
        desired: int | None,
    ) -> dict[str, Any]:
        generation = int(meta.get("generation") or 0)
        proto = workloads.get(n.PROTOCOL)
        worker = workloads.get(n.WORKER)
        managed = "managed" in (spec.get("redis") or {})
        redis = workloads.get(n.REDIS) if managed else None
        total_shards = len(builders.shard_urls(self.name, self.namespace, dict(spec)))
        reachable = total_shards - len(reading.unreachable) if reading.error is None else 0

        parts = [("protocol servers", proto), ("workers", worker)]
        if managed:
            parts.append(("redis shards", redis))
        missing = [label for label, w in parts if w is None]
        rolling = [label for label, w in parts if w is not None and not w.rolled_out]
        ready = not missing and not rolling
        conditions = list(status.get("conditions") or [])
        apply_failure = apply_failures.failure(self.namespace, self.name)
        no_servers = proto is not None and proto.desired == 0
        if apply_failure is not None:
            # The reconcile handler's reason stands until an apply succeeds.
            degraded: tuple[bool, str, str] = (True, *apply_failure)
        elif reading.ok:
            degraded = (False, "AsExpected", f"queue depth read from {total_shards} shard(s)")
        elif reading.pending:
            degraded = (False, "Starting", reading.error or "starting")
        else:
            detail = reading.error or "; ".join(reading.unreachable)
            degraded = (
                True,
                reading.reason,
                f"queue depth unreadable, replicas left alone: {detail}"[:1000],
            )
        if apply_failure is not None:
            # The children are not what the spec asks for: never Ready, whatever runs.
            conditions = set_condition(conditions, "Ready", False, *apply_failure, generation)
        elif no_servers:
            conditions = set_condition(
                conditions,
                "Ready",
                False,
                "NoProtocolServers",
                "protocol replicas are 0: no server accepts connections "
                "(scale the app, or set spec.protocol.replicas)",
                generation,
            )
        elif ready and degraded[0]:
            # READY is never True next to Degraded: the reason says what is wrong.
            conditions = set_condition(
                conditions,
                "Ready",
                False,
                degraded[1],
                f"children ready, but {degraded[2]}"[:1000],
                generation,
            )
        elif ready:
            conditions = set_condition(
                conditions,
                "Ready",
                True,
                "AllReplicasReady",
                "protocol servers, workers and shards are ready",
                generation,
            )
        else:
            refused = [f"{label}: {w.refused}" for label, w in parts if w and w.refused]
            what = ", ".join(missing + rolling)
            if refused:
                # Admission (Pod Security, a quota, a webhook) refuses the pods: say why.
                reason, message = "PodsRefused", "; ".join(refused)[:1000]
            elif missing:
                reason, message = "ChildrenMissing", f"waiting for {what}"
            else:
                reason, message = "ReplicasNotReady", f"waiting for {what}"
            conditions = set_condition(conditions, "Ready", False, reason, message, generation)
        conditions = set_condition(
            conditions, "Progressing", *progressing(apply_failure, missing + rolling), generation
        )
        conditions = set_condition(conditions, "Degraded", *degraded, generation)
        if reading.pending:
            conditions = set_condition(
                conditions, "Scaling", False, "Starting", reading.error or "starting", generation
            )
        elif not reading.ok:
            conditions = set_condition(
                conditions,
                "Scaling",
                False,
                "DepthUnreadable",
                "autoscaling paused until every shard answers",
                generation,
            )
        elif worker is not None and desired is not None and worker.ready != desired:
            conditions = set_condition(
                conditions,
                "Scaling",
                True,
                "ReplicasChanging",
                f"{worker.ready} of {desired} workers ready",
                generation,
            )
        else:
            conditions = set_condition(
                conditions,
                "Scaling",
                False,
                "Stable",
                "workers match the queue depth",
                generation,
            )

        out: dict[str, Any] = {
            "conditions": conditions,
            "protocol": {
                "ready": proto.ready if proto else 0,
                "desired": proto.desired if proto else 0,
                "summary": f"{proto.ready if proto else 0}/{proto.desired if proto else 0}",
                # For the /scale subresource (kubectl scale, an HPA on the protocol servers).
                "selector": ",".join(
                    f"{k}={v}" for k, v in n.selector(self.name, n.PROTOCOL).items()
                ),
            },
            "workers": {
                "ready": worker.ready if worker else 0,
                "desired": desired if desired is not None else 0,
                "summary": f"{worker.ready if worker else 0}/{desired if desired is not None else 0}",
            },
            "shards": {
                "ready": reachable,
                "total": total_shards,
                "summary": f"{reachable}/{total_shards}",
                # A read that failed as a whole (DNS, a missing Secret) reached no shard.
                "unreachable": (
                    [
                        f"{redact_url(u)}: {reading.error_class}"
                        for u in builders.shard_urls(self.name, self.namespace, dict(spec))
                    ]
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
        load = self._load_figures(status)
        if load:
            out["load"] = load
        if self._last_scale is not None:
            out["lastScaleTime"], out["lastScaleReason"] = self._last_scale
        elif status.get("lastScaleTime"):
            out["lastScaleTime"] = status["lastScaleTime"]
            out["lastScaleReason"] = status.get("lastScaleReason", "")
        return out

    def _load_figures(self, status: Mapping[str, Any]) -> dict[str, Any] | None:
        """The load behind the last decision, refreshed at most every LOAD_STATUS_EVERY seconds.

        The figures move on every tick; writing them each time would patch the status
        every poll interval while messages flow. A scale decision refreshes them at once.
        """
        if self._load is None:
            return status.get("load")
        now = self.clock()
        fresh = now - self._load_status_at < LOAD_STATUS_EVERY
        if self._load_status is not None and fresh and self._load_status_scale == self._last_scale:
            return self._load_status
        load = self._load
        figures: dict[str, Any] = {
            "inFlight": load.in_flight,
            "liveWorkers": load.workers,
            "reason": self._reason[:1000],
        }
        if load.arrival_rate is not None:
            figures["arrivalRate"] = round(load.arrival_rate, 2)
        if load.handling_time is not None:
            figures["handlingTimeSeconds"] = round(load.handling_time, 4)
        self._load_status, self._load_status_at = figures, now
        self._load_status_scale = self._last_scale
        return figures

    async def close(self) -> None:
        if self._layer is not None:
            await self._layer.close()
            self._layer = None
