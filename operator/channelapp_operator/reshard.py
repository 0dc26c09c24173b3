"""Changing the shard count: held while the shards the app's data lives on hold any.

A channel, group or session lives on the shard the hash ring picks among N shards; with
another N the ring picks another shard for most names, so whatever waits on the old set
would be stranded (and a managed shard scaled in would be deleted with it). The operator
cannot move that data safely while the app runs, so it refuses the change until the
shards are empty, and says why.

``status.dataShards`` records the Redis section the data lives on (``redis``, as JSON,
and its shard count). When the spec's shard URLs differ from it, the operator reads the
old shards through the layer's read-only monitor: messages queued in any channel, groups
with members, sessions and parked (ordering) messages are the app's data; the workers',
servers' and statistics' bookkeeping is not. Anything there holds the change: the
children are applied with the old Redis section (the StatefulSet's replicas and every
pod's ``CHANNELAPP_REDIS_URLS`` stay), ``status.dataShards.waiting`` says why
(``Progressing`` is False, reason ``ReshardWaiting``), a Warning Event is posted once,
and the shards are read again until they are empty. Then the new set is applied.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from channelapp.layer import RedisMonitor
from channelapp.layer.keyspace import app_prefix

from channelapp_operator import builders, reshard_sweep
from channelapp_operator import names as n
from channelapp_operator.api_errors import describe
from channelapp_operator.kube import Kube
from channelapp_operator.redis_urls import redact_text

log = logging.getLogger("channelapp.operator")

RESHARD_WAITING = "ReshardWaiting"
READ_TIMEOUT = 20.0  # seconds one read of every old shard may take


@dataclass(frozen=True)
class ShardContents:
    """What one shard holds of the app's data."""

    index: int
    queued: int = 0  # messages waiting in channel lists
    groups: int = 0  # groups with at least one member
    sessions: int = 0
    parked: int = 0  # sockets' messages parked for ordering

    @property
    def empty(self) -> bool:
        return not (self.queued or self.groups or self.sessions or self.parked)


@dataclass(frozen=True)
class Change:
    """A change of the shard set: from the one the data lives on to the spec's."""

    old_redis: dict[str, Any]
    old_urls: list[str]
    new_urls: list[str]


@dataclass(frozen=True)
class Decision:
    hold: bool
    message: str


def recorded_redis(status: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Redis section the data lives on, as ``status.dataShards`` records it."""
    return _section(status, "redis")


def _section(status: Mapping[str, Any], field: str) -> dict[str, Any] | None:
    raw = (status.get("dataShards") or {}).get(field)
    if not raw:
        return None
    try:
        value = json.loads(str(raw))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def record(
    redis: Mapping[str, Any],
    app: str,
    namespace: str,
    waiting: str | None,
    retiring: int | None = None,
    moving: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``status.dataShards`` for the Redis section the children were applied with;
    ``retiring``: the managed shard count kept until the shards beyond the new count are
    empty; ``moving``: the Redis section the pods leave, until what they wrote there meanwhile
    is moved (None removes either, and ``waiting``, in a merge patch)."""
    count = len(builders.shard_urls(app, namespace, {"redis": dict(redis)}))
    return {
        "redis": _json(redis),
        "shards": count,
        "waiting": waiting,
        "retiring": retiring,
        "moving": _json(moving) if moving is not None else None,
    }


def _json(redis: Mapping[str, Any]) -> str:
    return json.dumps(dict(redis), sort_keys=True, separators=(",", ":"))


def moving_from(status: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Redis section the pods are leaving, while what they wrote there is not yet moved."""
    return _section(status, "moving")


def retiring(status: Mapping[str, Any], spec: Mapping[str, Any]) -> int | None:
    """The managed shard count kept while shards beyond the spec's are drained (pure)."""
    kept = (status.get("dataShards") or {}).get("retiring")
    managed = (spec.get("redis") or {}).get("managed")
    if not kept or managed is None:
        return None
    return int(kept) if int(kept) > int(managed.get("shards", 1)) else None


def change(
    app: str, namespace: str, spec: Mapping[str, Any], status: Mapping[str, Any]
) -> Change | None:
    """The change of shard set the spec asks for (pure); None when there is none, or when no
    set was recorded yet (a new app: the spec's set is the first)."""
    old = recorded_redis(status)
    if old is None:
        return None
    old_urls = builders.shard_urls(app, namespace, {"redis": old})
    new_urls = builders.shard_urls(app, namespace, dict(spec))
    if old_urls == new_urls:
        return None
    return Change(old, old_urls, new_urls)


def with_redis(spec: Mapping[str, Any], redis: Mapping[str, Any]) -> dict[str, Any]:
    """``spec`` with another Redis section (the one the data lives on, while held)."""
    return {**dict(spec), "redis": dict(redis)}


def effective_spec(spec: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
    """The spec as applied: with the recorded Redis section while a change waits."""
    waiting = (status.get("dataShards") or {}).get("waiting")
    old = recorded_redis(status)
    if waiting and old is not None:
        return with_redis(spec, old)
    return dict(spec)


def _span(indexes: Sequence[int]) -> str:
    if len(indexes) == 1:
        return f"shard {indexes[0]}"
    if list(indexes) == list(range(indexes[0], indexes[-1] + 1)):
        return f"shards {indexes[0]}-{indexes[-1]}"
    return "shards " + ", ".join(str(i) for i in indexes)


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _pods_move(count: int) -> str:
    return f"the app's pods move to {_count(count, 'shard', 'shards')}"


def _pronoun(indexes: Sequence[int]) -> str:
    return "it" if len(indexes) == 1 else "them"


def _removed_later(indexes: Sequence[int]) -> str:
    it, is_, they_are = ("it", "is", "it is") if len(indexes) == 1 else ("them", "are", "they are")
    return f"{_span(indexes)} {is_} removed once no pod uses {it} and {they_are} empty"


def decide(
    contents: Sequence[ShardContents], old: int, new: int, error: str | None = None
) -> Decision:
    """Hold or apply a change from ``old`` to ``new`` shards (pure)."""
    target = f"resharding from {old} to {_count(new, 'shard', 'shards')}"
    if error is not None:
        return Decision(True, f"the shards could not be read ({error}); {target} waits until "
                              "they answer and are empty")  # fmt: skip
    busy = [c for c in contents if not c.empty]
    if not busy:
        return Decision(False, f"{target}: the shards hold no messages, groups or sessions")
    parts = []
    queued = sum(c.queued for c in busy)
    groups = sum(c.groups for c in busy)
    sessions = sum(c.sessions for c in busy)
    parked = sum(c.parked for c in busy)
    if queued:
        parts.append(_count(queued, "message queued", "messages queued"))
    if groups:
        parts.append(_count(groups, "group with members", "groups with members"))
    if sessions:
        parts.append(_count(sessions, "session", "sessions"))
    if parked:
        parts.append(_count(parked, "socket with parked messages", "sockets with parked messages"))
    what = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
    where = _span(sorted(c.index for c in busy))
    return Decision(True, f"{what} on {where}; {target} waits until they are empty")


def classify(prefix: str, key: str) -> str | None:
    """Which kind of the app's data a key is: queued (a channel's list), group, session,
    parked; None for bookkeeping (statistics, registries, markers, ordering counters)."""
    if not key.startswith(f"{prefix}:"):
        return None
    rest = key[len(prefix) + 1 :]
    if rest.startswith("ch:"):
        return "queued"
    if rest.startswith("group:"):
        return "group"
    if rest.startswith("session:"):
        return "session"
    if rest.startswith("parked:"):
        return "parked"
    return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _read_shard(monitor: RedisMonitor, index: int) -> ShardContents:
    shard = monitor.every_shard()[index]
    prefix = monitor.keys.prefix
    found: dict[str, list[str]] = {"queued": [], "group": [], "session": [], "parked": []}
    async with shard.guard("reading what the shard holds"):
        async for raw in shard.client.scan_iter(match=monitor.keys.pattern(), count=1000):
            key = _text(raw)
            kind = classify(prefix, key)
            if kind is not None:
                found[kind].append(key)
        queued = groups = 0
        # Channel lists hold messages (other types under ch: are a channel's own records).
        checks = [*found["queued"], *found["group"]]
        if checks:
            pipe = shard.client.pipeline(transaction=False)
            for key in checks:
                pipe.type(key)
            types = [_text(t) for t in await pipe.execute()]
            pipe = shard.client.pipeline(transaction=False)
            sized = []
            for key, type_ in zip(checks, types, strict=True):
                if type_ == "list":
                    pipe.llen(key)
                    sized.append("queued")
                elif type_ == "zset":
                    pipe.zcard(key)
                    sized.append("group" if key in found["group"] else "other")
                elif type_ == "set":
                    pipe.scard(key)
                    sized.append("group" if key in found["group"] else "other")
            for kind, size in zip(sized, await pipe.execute(), strict=True):
                if kind == "queued":
                    queued += int(size)
                elif kind == "group" and int(size) > 0:
                    groups += 1
    return ShardContents(index, queued, groups, len(found["session"]), len(found["parked"]))


async def read_contents(
    urls: Sequence[str], prefix: str, password: str | None
) -> list[ShardContents]:
    """What each shard holds of the app's data (read-only: SCAN, TYPE, LLEN, ZCARD)."""
    monitor = RedisMonitor(
        list(urls), prefix=prefix, password=password, max_connections=2,
        connect_timeout=2.0, socket_timeout=5.0,
    )  # fmt: skip
    try:
        return list(
            await asyncio.wait_for(
                asyncio.gather(*(_read_shard(monitor, i) for i in range(len(urls)))),
                timeout=READ_TIMEOUT,
            )
        )
    finally:
        await monitor.close()


@dataclass(frozen=True)
class Plan:
    """What the reconcile applies for the app's Redis."""

    spec: dict[str, Any]  # the spec to apply (the old Redis section while the change waits)
    keep_shards: int | None  # managed shards kept running beyond the spec's (being drained)
    waiting: str | None  # why (part of) the change waits; None: nothing does
    record: dict[str, Any]  # status.dataShards
    done: str | None = None  # what changed now, for a Normal Event


def _uses(deployment: Mapping[str, Any] | None, urls: Sequence[str]) -> bool:
    """Every pod of the Deployment runs with ``urls`` (its rollout is complete)."""
    if deployment is None:
        return True
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    meta = deployment.get("metadata") or {}
    for container in ((spec.get("template") or {}).get("spec") or {}).get("containers") or []:
        for env in container.get("env") or []:
            if env.get("name") == "CHANNELAPP_REDIS_URLS" and env.get("value") != ",".join(urls):
                return False
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return False
    replicas = int(status.get("replicas") or 0)
    return int(status.get("updatedReplicas") or 0) >= replicas


def pods_use(kube: Kube, app: str, namespace: str, urls: Sequence[str]) -> bool:
    """The protocol servers and workers all run with ``urls``."""
    return all(
        _uses(kube.get("Deployment", namespace, name), urls)
        for name in (n.protocol_name(app), n.worker_name(app))
    )


async def _contents(
    kube: Kube, app: str, namespace: str, uid: str, redis: Mapping[str, Any], urls: Sequence[str]
) -> tuple[list[ShardContents], str | None]:
    """What the shards ``urls`` (of the Redis section ``redis``) hold, or why unread."""
    spec = {"redis": dict(redis)}
    ref = builders.password_ref(app, spec)
    try:
        password = None
        if ref is not None:
            owner = uid if "managed" in redis else None
            password = await asyncio.to_thread(
                kube.secret_value, namespace, ref["name"], ref["key"], owner_uid=owner
            )
        return await read_contents(urls, app_prefix(namespace, app), password), None
    except Exception as exc:
        return [], redact_text(describe(exc) if not isinstance(exc, TimeoutError) else "timeout")


async def plan(
    kube: Kube, app: str, namespace: str, uid: str, spec: Mapping[str, Any],
    status: Mapping[str, Any],
) -> Plan:  # fmt: skip
    """The Redis section to apply, from the spec and the set the data lives on."""
    swept: str | None = None
    leaving, current = moving_from(status), recorded_redis(status)
    if leaving is not None and current is not None:
        # A change was applied: once every pod runs with it, what the pods on the old set
        # wrote there meanwhile moves to the new set; until then the change is not done.
        applied = with_redis(spec, current)
        count = len(builders.shard_urls(app, namespace, applied))
        old_urls = builders.shard_urls(app, namespace, with_redis(spec, leaving))
        urls = builders.shard_urls(app, namespace, applied)
        waiting = (f"{_pods_move(count)}; what they write to the old ones meanwhile is moved "
                   "once they all have")  # fmt: skip
        if not await asyncio.to_thread(pods_use, kube, app, namespace, urls):
            return Plan(applied, None, waiting, record(current, app, namespace, waiting, None,
                                                       leaving))  # fmt: skip
        result, error = await _sweep(kube, app, namespace, uid, current, old_urls, urls)
        if error is not None:
            waiting = f"{waiting} (the shards could not be read: {error})"
            return Plan(applied, None, waiting, record(current, app, namespace, waiting, None,
                                                       leaving))  # fmt: skip
        assert result is not None
        swept = result.describe() if result.moved_anything or result.superseded else None
        status = {**status, "dataShards": record(current, app, namespace, None)}
    planned = await _plan(kube, app, namespace, uid, spec, status)
    if swept is not None:
        done = f"{planned.done}; {swept}" if planned.done else swept
        planned = Plan(planned.spec, planned.keep_shards, planned.waiting, planned.record, done)
    return planned


async def _sweep(
    kube: Kube, app: str, namespace: str, uid: str, redis: Mapping[str, Any],
    old_urls: Sequence[str], urls: Sequence[str],
) -> tuple[reshard_sweep.Swept | None, str | None]:  # fmt: skip
    """Move what is misplaced for the set ``urls`` (of the Redis section ``redis``)."""
    spec = {"redis": dict(redis)}
    ref = builders.password_ref(app, spec)
    try:
        password = None
        if ref is not None:
            owner = uid if "managed" in redis else None
            password = await asyncio.to_thread(
                kube.secret_value, namespace, ref["name"], ref["key"], owner_uid=owner
            )
        swept = await reshard_sweep.sweep(old_urls, urls, app_prefix(namespace, app), password)
    except Exception as exc:
        return None, redact_text(describe(exc) if not isinstance(exc, TimeoutError) else "timeout")
    if swept.failed:
        log.warning("%s/%s: %s", namespace, app, swept.describe())
    return swept, None


async def _plan(
    kube: Kube, app: str, namespace: str, uid: str, spec: Mapping[str, Any],
    status: Mapping[str, Any],
) -> Plan:  # fmt: skip
    redis = dict(spec.get("redis") or {})
    kept = retiring(status, spec)
    if kept is not None:
        # The pods move to the smaller set; the shards beyond it go once nothing uses them.
        count = int(redis["managed"].get("shards", 1))
        old_redis = {**redis, "managed": {**redis["managed"], "shards": kept}}
        urls = builders.shard_urls(app, namespace, with_redis(spec, old_redis))
        new_urls = builders.shard_urls(app, namespace, dict(spec))
        if not await asyncio.to_thread(pods_use, kube, app, namespace, new_urls):
            waiting = f"{_pods_move(count)}; {_removed_later(range(count, kept))}"
            return Plan(dict(spec), kept, waiting, record(redis, app, namespace, waiting, kept))
        # What the pods wrote on the retiring shards (and the old places) goes to the new set.
        result, error = await _sweep(kube, app, namespace, uid, redis, urls, new_urls)
        swept = result.describe() if result is not None and result.moved_anything else None
        contents, error = await _contents(kube, app, namespace, uid, old_redis, urls)
        decision = decide([c for c in contents if c.index >= count], kept, count, error)
        if decision.hold:
            return Plan(dict(spec), kept, decision.message,
                        record(redis, app, namespace, decision.message, kept))  # fmt: skip
        going = range(count, kept)
        done = f"{_span(going)} removed: empty, and no pod uses {_pronoun(going)}"
        if swept is not None:
            done = f"{swept}; {done}"
        return Plan(dict(spec), None, None, record(redis, app, namespace, None), done)
    moving = change(app, namespace, spec, status)
    if moving is None:
        return Plan(dict(spec), None, None, record(redis, app, namespace, None))
    old, new = len(moving.old_urls), len(moving.new_urls)
    contents, error = await _contents(kube, app, namespace, uid, moving.old_redis, moving.old_urls)
    decision = decide(contents, old, new, error)
    if decision.hold:
        held = with_redis(spec, moving.old_redis)
        return Plan(held, None, decision.message,
                    record(moving.old_redis, app, namespace, decision.message))  # fmt: skip
    if "managed" in moving.old_redis and "managed" in redis and new < old:
        # Scale-in: the pods move first; the StatefulSet keeps the old shards until then.
        waiting = f"{_pods_move(new)}; {_removed_later(range(new, old))}"
        return Plan(dict(spec), old, waiting, record(redis, app, namespace, waiting, old),
                    decision.message)  # fmt: skip
    waiting = (f"{_pods_move(new)}; what they write to the old ones meanwhile is moved once "
               "they all have")  # fmt: skip
    return Plan(dict(spec), None, waiting,
                record(redis, app, namespace, waiting, None, moving.old_redis),
                decision.message)  # fmt: skip
