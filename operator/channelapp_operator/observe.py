"""What the poll loop reads each tick: the queue depth of an app's shards, and why the
pods of its Redis StatefulSet are refused.

A depth read costs one pipelined round trip per shard (the layer's ``load`` call:
depth, oldest age and sent counters per channel, and the workers' reports). Shards
are dialled under :mod:`dial_manners` (backoff per shard, budgets shared by every app);
while a shard backs off the last failed reading stands.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from channelapp.layer import RedisMonitor
from channelapp.layer.keyspace import app_prefix

from channelapp_operator import builders, metrics
from channelapp_operator import names as n
from channelapp_operator.admission import StatefulSetRefusals
from channelapp_operator.app_state import APPLY_FAILED
from channelapp_operator.children_status import Workload
from channelapp_operator.decide import counted_channels
from channelapp_operator.depth_reading import DepthReading
from channelapp_operator.dial_manners import DialManners, SharedDialBudget
from channelapp_operator.kube import Kube, SecretMissing, SecretRefused
from channelapp_operator.ownership import CHILD_EXISTS
from channelapp_operator.redis_urls import classify, describe_failure, redact_text, shard_index

log = logging.getLogger("channelapp.operator")

PASSWORD_TTL = 30.0  # seconds a shard password read from its Secret is reused
# A Secret not found (or refused) is looked up again on the next tick: a new app's
# Secret is being created, and must not read as missing for a whole PASSWORD_TTL.


@dataclass
class ShardReader:
    """Reads one app's queue depth from its shards, through one layer kept across ticks."""

    namespace: str
    name: str
    kube: Kube
    clock: Callable[[], float] = time.monotonic
    # The connection attempts all apps share (None: this reader's own budget only).
    shared_dials: SharedDialBudget | None = None
    _layer: RedisMonitor | None = None
    _layer_key: tuple[tuple[str, ...], str | None] | None = None
    # (secret name, key) -> (password, read at): re-read every PASSWORD_TTL, not every tick.
    _passwords: dict[tuple[str, str, str | None], tuple[str, float]] = field(default_factory=dict)
    _manners: DialManners | None = None
    _held: DepthReading | None = None  # the last failed reading, shown while backing off

    async def _layer_for(self, spec: Mapping[str, Any], uid: str | None) -> RedisMonitor:
        urls = tuple(builders.shard_urls(self.name, self.namespace, dict(spec)))
        ref = builders.password_ref(self.name, dict(spec))
        # The managed Secret must be the app's own: a foreign one of that name is not used.
        owner = uid if "managed" in (spec.get("redis") or {}) else None
        password = None if ref is None else await self._password(ref["name"], ref["key"], owner)
        key = (urls, password)
        if self._layer is None or self._layer_key != key:
            if self._layer is not None:
                await self._layer.close()
            # Read-only, no receive machinery. Short timeouts: a dead host fails one tick fast
            # instead of stalling the loop.
            self._layer = RedisMonitor(
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

    async def read_depth(
        self,
        spec: Mapping[str, Any],
        uid: str | None = None,
        refused: tuple[str, str] | None = None,
    ) -> DepthReading:
        """One reading of every shard, unless a shard is backing off or the app's budget of
        connection attempts is spent: then the last failed reading stands. ``refused`` is
        the app's failed apply (reason, message), if any."""
        urls = builders.shard_urls(self.name, self.namespace, dict(spec))
        if refused is not None and refused[0] not in (APPLY_FAILED, CHILD_EXISTS):
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

    async def close(self) -> None:
        """Close the layer (its connections to the shards)."""
        if self._layer is not None:
            await self._layer.close()
            self._layer = None


@dataclass
class RedisRefusals:
    """Why the managed Redis StatefulSet's pods are refused, looked up while it is not ready."""

    namespace: str
    name: str
    kube: Kube
    _sts_refusals: StatefulSetRefusals | None = None

    async def with_redis_refusal(self, workloads: Mapping[str, Workload]) -> Mapping[str, Workload]:
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
