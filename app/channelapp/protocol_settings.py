"""The app's protocol-side settings, published by its workers for its protocol servers.

A protocol server runs the channelapp runtime, not the app's image, and never imports the
app: an app deploy replaces the workers and leaves every socket open. What a protocol
server reads of the app's settings (``Settings.protocol_side()``) reaches it through the
app's own key space instead. Each worker, once it has loaded the app, publishes them,
stamped with a generation (the worker's start, on the Redis server's clock), and publishes
again every few seconds, so a Redis that lost them has them back within moments. A newer
generation replaces an older one, in one atomic step, and an older one replaces it only
once its publisher has stopped publishing (its lease, renewed by each publication, ran
out): the old workers still running during a rollout cannot put their settings back, and a
worker of an old deploy started late (a scale-up during a rollout) holds the record no
longer than it lives. The record itself has no expiry, so an app whose workers scaled to
zero keeps its settings.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol

from channelapp.layer import BaseChannelLayer, LayerMonitor
from channelapp.layer.shard import register_script
from channelapp.settings import PROTOCOL_FIELDS, Settings, check_values

log = logging.getLogger("channelapp.protocol_settings")

# Name of the record (``P:protocol-settings``) and of the shard it lives on.
RECORD = "protocol-settings"
REPUBLISH_SECONDS = 5.0  # a worker publishes again this often
LEASE_SECONDS = 3 * REPUBLISH_SECONDS  # a publication holds off older ones this long
WATCH_SECONDS = 1.0  # a protocol server reads the record this often

# Replace the record unless it holds a newer generation whose lease has not run out (on the
# server's clock, in microseconds); 1 when replaced, 0 when refused.
PUBLISH_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local current = redis.call('HMGET', KEYS[1], 'generation', 'lease')
if current[1] and tonumber(current[1]) > tonumber(ARGV[1])
    and current[2] and tonumber(current[2]) > now then
  return 0
end
redis.call('HSET', KEYS[1], 'generation', ARGV[1], 'settings', ARGV[2],
           'lease', tostring(now + tonumber(ARGV[3])))
return 1
"""
register_script("protocol_settings_publish", PUBLISH_LUA)


@dataclass(frozen=True)
class Published:
    """A publication: its generation (microseconds) and the settings as published (JSON)."""

    generation: int
    values: dict[str, Any]


class PublishedStore(Protocol):
    async def clock(self) -> int: ...
    async def publish(self, published: Published, lease: float = LEASE_SECONDS) -> bool: ...
    async def read(self) -> Published | None: ...


class RedisPublishedStore:
    """The record as a hash (generation, settings as JSON) on the shard of its name."""

    def __init__(self, monitor: LayerMonitor) -> None:
        self.keys = monitor.keys
        self.shard = self.keys.shard(RECORD)
        self.key = self.keys.key(RECORD)

    async def clock(self) -> int:
        seconds, micros = await self.shard.execute("TIME")
        return int(seconds) * 1_000_000 + int(micros)

    async def publish(self, published: Published, lease: float = LEASE_SECONDS) -> bool:
        encoded = json.dumps(published.values, separators=(",", ":"), sort_keys=True)
        replaced = await self.shard.eval(
            "protocol_settings_publish",
            [self.key],
            [str(published.generation), encoded, str(int(lease * 1_000_000))],
        )
        return bool(replaced)

    async def read(self) -> Published | None:
        generation, encoded = await self.shard.execute("HMGET", self.key, "generation", "settings")
        if generation is None or encoded is None:
            return None
        values = json.loads(encoded)
        if not isinstance(values, dict):
            raise ValueError(f"the published settings are not a JSON object: {encoded!r:.100}")
        return Published(int(generation), values)


# The in-memory layer's record and its lease, kept beside the layer (one process:
# `channelapp dev`).
_MEMORY: weakref.WeakKeyDictionary[BaseChannelLayer, tuple[Published, float]] = (
    weakref.WeakKeyDictionary()
)


class MemoryPublishedStore:
    def __init__(self, layer: BaseChannelLayer) -> None:
        self.layer = layer

    async def clock(self) -> int:
        return time.time_ns() // 1000

    async def publish(self, published: Published, lease: float = LEASE_SECONDS) -> bool:
        now = time.monotonic()
        current = _MEMORY.get(self.layer)
        if (
            current is not None
            and current[0].generation > published.generation
            and current[1] > now
        ):
            return False
        _MEMORY[self.layer] = (Published(published.generation, dict(published.values)), now + lease)
        return True

    async def read(self) -> Published | None:
        current = _MEMORY.get(self.layer)
        return None if current is None else current[0]


def store_for(layer: BaseChannelLayer) -> PublishedStore:
    """The record in the layer's key space; beside the layer when it keeps nothing outside
    its process (the in-memory layer)."""
    if (monitor := layer.monitor()) is not None:
        return RedisPublishedStore(monitor)
    return MemoryPublishedStore(layer)


async def generation_now(layer: BaseChannelLayer) -> int:
    """A generation for a worker starting now: the Redis server's clock (one clock for every
    worker of the app), the local one when Redis does not answer."""
    try:
        return await store_for(layer).clock()
    except Exception as exc:
        log.warning("reading the Redis clock failed, the local one stamps the settings: %s", exc)
        return time.time_ns() // 1000


async def publish(
    layer: BaseChannelLayer, settings: Settings, generation: int, lease: float = LEASE_SECONDS
) -> bool:
    """Publish ``settings``' protocol side as ``generation``, holding off older generations
    for ``lease`` seconds; False when a newer one is there, its lease still running."""
    published = Published(generation, settings.protocol_side())
    return await store_for(layer).publish(published, lease)


async def read(layer: BaseChannelLayer) -> Published | None:
    return await store_for(layer).read()


async def publish_forever(
    layer: BaseChannelLayer, settings: Settings, interval: float = REPUBLISH_SECONDS
) -> None:
    """A worker's publisher: stamp a generation now, publish, and again every ``interval``
    seconds until cancelled. A failure is said once and retried."""
    generation = await generation_now(layer)
    warned = False
    superseded = False
    while True:
        try:
            replaced = await publish(layer, settings, generation, lease=3 * interval)
            if warned:
                log.info("publishing the app's protocol settings again")
            warned = False
            if not replaced and not superseded:
                log.info("a newer worker's protocol settings are published; keeping those")
            superseded = not replaced
        except Exception as exc:
            if not warned:
                log.warning("could not publish the app's protocol settings: %s", exc)
            warned = True
        await asyncio.sleep(interval)


def applied(base: Settings, published: Mapping[str, Any], from_env: frozenset[str]) -> Settings:
    """``base`` with the published protocol fields applied, except those set in the
    environment (``from_env``), which win. A published value of the wrong type is skipped,
    a field this runtime does not know is ignored; ValueError when the result is a setting
    nothing can run with (``check_values``)."""
    values = {f.name: getattr(base, f.name) for f in fields(Settings)}
    for name in PROTOCOL_FIELDS:
        if name in from_env or name not in published:
            continue
        try:
            checked = Settings.from_mapping({name: published[name]}, name="published settings")
        except ValueError as exc:
            log.warning("%s; keeping %s=%r", exc, name, values[name])
            continue
        values[name] = getattr(checked, name)
    result = Settings(**values)
    check_values(result)
    return result


def changed_fields(old: Settings, new: Settings) -> list[str]:
    return [f.name for f in fields(Settings) if getattr(old, f.name) != getattr(new, f.name)]


async def watch(
    layer: BaseChannelLayer,
    on_change: Callable[[Published], Awaitable[None] | None],
    interval: float = WATCH_SECONDS,
) -> None:
    """Read the record now and every ``interval`` seconds until cancelled; call
    ``on_change`` with each publication that differs from the last one seen. A failed read
    is said once and retried; what was seen last stays in force meanwhile."""
    seen: Published | None = None
    warned = False
    while True:
        try:
            current = await read(layer)
            if warned:
                log.info("reading the app's protocol settings again")
            warned = False
            if current is not None and current != seen:
                seen = current
                outcome = on_change(current)
                if outcome is not None:
                    await outcome
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not warned:
                log.warning(
                    "could not read the app's protocol settings (kept as they are): %s", exc
                )
            warned = True
        await asyncio.sleep(interval)
