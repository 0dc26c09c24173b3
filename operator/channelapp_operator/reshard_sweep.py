"""After a change of shard set: what pods still on the old set wrote meanwhile, moved to where
the new set keeps it.

A change is applied only once the old shards hold none of the app's data (reshard.py), but
pods roll one at a time: until every pod runs with the new set, the old ones keep sending,
joining groups and saving sessions where the old hash ring puts them, and the new pods never
look there. Once every pod uses the new set nothing writes to those places any more, so the
operator moves each such key to its shard in the new set:

- a channel's queued messages go ahead of whatever the new pods queued since (they are older;
  the channel stays first in, first out);
- a group's members are merged, the later join time kept;
- a session, an ordering counter or parked messages only where the new place has none (the
  new pods' record is the newer one); the old record is then dropped and counted.

Values move as stored (sealed, possibly encrypted): the operator never decodes them. Each key
is read and deleted in one transaction, then written to its shard: a failure between the two
loses that key (at most once, like every channel), and the sweep says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from channelapp.layer import RedisMonitor
from channelapp.layer.sharding import HashRing

SWEEP_TIMEOUT = 60.0  # seconds one sweep over every shard may take
KINDS = ("ch", "group", "session", "order", "parked")


@dataclass
class Swept:
    """What a sweep moved (and what it dropped because the new place held a newer one)."""

    messages: int = 0
    members: int = 0
    sessions: int = 0
    other: int = 0
    superseded: int = 0
    failed: list[str] = field(default_factory=list)

    @property
    def moved_anything(self) -> bool:
        return bool(self.messages or self.members or self.sessions or self.other)

    def describe(self) -> str:
        parts = [
            f"{self.messages} queued message(s)",
            f"{self.members} group member(s)",
            f"{self.sessions} session(s)",
        ]
        if self.other:
            parts.append(f"{self.other} ordering record(s)")
        text = "moved " + ", ".join(parts) + " that pods on the old shard set wrote meanwhile"
        if self.superseded:
            text += f"; {self.superseded} older record(s) dropped, the new place held a newer one"
        if self.failed:
            text += f"; {len(self.failed)} key(s) lost moving: {', '.join(self.failed[:5])}"
        return text


def routing_name(prefix: str, key: str) -> tuple[str, str] | None:
    """``(kind, name)`` for a key of the app's data (the name the ring places it by), or None
    for bookkeeping (statistics, registries, markers), which every shard keeps for itself."""
    if not key.startswith(f"{prefix}:"):
        return None
    kind, sep, name = key[len(prefix) + 1 :].partition(":")
    if not sep or not name or kind not in KINDS:
        return None
    return kind, name


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _take(client: Any, key: str, type_: str) -> Any:
    """The key's value and its remaining milliseconds, deleted in the same transaction."""
    pipe = client.pipeline(transaction=True)
    if type_ == "list":
        pipe.lrange(key, 0, -1)
    elif type_ == "zset":
        pipe.zrange(key, 0, -1, withscores=True)
    elif type_ == "set":
        pipe.smembers(key)
    elif type_ == "hash":
        pipe.hgetall(key)
    else:
        pipe.get(key)
    pipe.pttl(key)
    pipe.delete(key)
    value, pttl, _ = await pipe.execute()
    return value, int(pttl)


async def _put(client: Any, key: str, type_: str, value: Any, pttl: int) -> tuple[int, bool]:
    """Write a taken value at its new place; (items written, whether an older record was
    dropped for the newer one there)."""
    existed = bool(await client.exists(key))
    count, superseded = 0, False
    if type_ == "list":
        if value:
            # Oldest first: LPUSH of the reversed list puts them ahead, in their order.
            await client.lpush(key, *reversed(value))
        count = len(value)
    elif type_ == "zset":
        current = dict(await client.zrange(key, 0, -1, withscores=True)) if existed else {}
        later = {m: s for m, s in value if s > current.get(m, float("-inf"))}
        if later:
            await client.zadd(key, later)
        count = len(value)
    elif type_ == "set":
        if value:
            await client.sadd(key, *value)
        count = len(value)
    elif type_ == "hash":
        if existed:
            superseded = True
        elif value:
            await client.hset(key, mapping=value)
        count = 0 if existed else 1
    else:
        if existed or value is None:
            superseded = existed
        else:
            await client.set(key, value, px=pttl if pttl > 0 else None)
        count = 0 if existed else 1
    if pttl > 0 and type_ in ("list", "zset", "set", "hash") and count:
        now = int(await client.pttl(key))
        if (now == -1 and not existed) or (now > 0 and pttl > now):
            await client.pexpire(key, pttl)
    return count, superseded


def _distinct(urls: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(urls))


def _monitor(urls: Sequence[str], prefix: str, password: str | None) -> RedisMonitor:
    return RedisMonitor(
        list(urls), prefix=prefix, password=password, max_connections=2,
        connect_timeout=2.0, socket_timeout=10.0,
    )  # fmt: skip


async def _find(
    monitor: RedisMonitor, urls: Sequence[str], servers: Sequence[str], placed_by: Sequence[str]
) -> list[tuple[str, str, str, str]]:
    """``(server, key, kind, name)`` of the data keys on ``servers`` that ``placed_by`` puts
    elsewhere; ``urls`` are the monitor's shards' URLs, in its order."""
    prefix = monitor.keys.prefix
    ring = HashRing(len(placed_by))
    out = []
    for url, shard in zip(urls, monitor.every_shard(), strict=True):
        if url not in servers:
            continue
        async for raw in shard.client.scan_iter(match=monitor.keys.pattern(), count=1000):
            key = _text(raw)
            found = routing_name(prefix, key)
            if found is None or placed_by[ring.shard_for(found[1])] == url:
                continue
            if found[0] == "ch" and _text(await shard.client.type(key)) != "list":
                continue  # a channel's own markers, not its queue
            out.append((url, key, *found))
    return out


async def misplaced(
    servers: Sequence[str], placed_by: Sequence[str], prefix: str, password: str | None
) -> list[tuple[str, str]]:
    """``(server, key)`` for every key of the app's data on ``servers`` that the shard set
    ``placed_by`` does not put there: what a sweep to ``placed_by`` would move (none once a
    change is done)."""
    urls = _distinct([*placed_by, *servers])
    monitor = _monitor(urls, prefix, password)
    try:
        return [(url, key) for url, key, _, _ in await _find(monitor, urls, servers, placed_by)]
    finally:
        await monitor.close()


async def sweep(
    old_urls: Sequence[str], new_urls: Sequence[str], prefix: str, password: str | None
) -> Swept:
    """Move every key of the app's data on the old and new shards that is not where the new
    set's ring puts it. Run only once no pod uses the old set (nothing writes there then)."""
    urls = _distinct([*new_urls, *old_urls])
    monitor = _monitor(urls, prefix, password)
    clients = {url: shard.client for url, shard in zip(urls, monitor.every_shard(), strict=True)}
    ring = HashRing(len(new_urls))
    swept = Swept()

    async def move_all() -> None:
        for url, key, kind, name in await _find(monitor, urls, urls, new_urls):
            src = clients[url]
            type_ = _text(await src.type(key))
            if type_ == "none":
                continue  # expired meanwhile
            dst = clients[new_urls[ring.shard_for(name)]]
            value, pttl = await _take(src, key, type_)
            try:
                count, superseded = await _put(dst, key, type_, value, pttl)
            except Exception:
                swept.failed.append(key)
                continue
            swept.superseded += int(superseded)
            if kind == "ch":
                swept.messages += count
            elif kind == "group":
                swept.members += count
            elif kind == "session":
                swept.sessions += count
            else:
                swept.other += count

    try:
        await asyncio.wait_for(move_all(), timeout=SWEEP_TIMEOUT)
    finally:
        await monitor.close()
    return swept
