"""Per-socket ordering across worker processes (the ``order`` field of websocket messages).

A socket's messages may be popped by different workers at once. Before running
message *n*, a worker atomically checks that *n* is the next expected for that
socket; if not, the message is parked beside the socket's counter. When *n*
finishes, the worker that ran it advances the counter and takes the parked
*n+1*, if any, and runs it. A parked message whose predecessor never finishes
(lost, expired) is run anyway after ``park_timeout`` seconds, with a warning.
"""

from __future__ import annotations

import logging
import time
from importlib import resources
from typing import Any, Protocol

from channelapp.layer import BaseChannelLayer, RedisChannelLayer
from channelapp.layer.serializers import MessageCorrupt
from channelapp.layer.shard import Shard, register_script

log = logging.getLogger("channelapp.worker")

for _name in ("claim", "advance", "force"):
    register_script(
        f"order_{_name}",
        resources.files("channelapp.worker").joinpath(f"lua/{_name}.lua").read_text(),
    )


class OrderingStore(Protocol):
    async def claim(self, socket: str, order: int, message: dict[str, Any]) -> bool: ...
    async def advance(self, socket: str, order: int) -> dict[str, Any] | None: ...
    async def force(self, socket: str, order: int) -> dict[str, Any] | None: ...
    async def forget(self, socket: str) -> None: ...


class RedisOrderingStore:
    """Counters and parked messages in the layer's key space (parked messages sealed like
    channel messages: encrypted when the layer has encryption keys)."""

    def __init__(self, layer: RedisChannelLayer, ttl: float = 3600) -> None:
        self.keys = layer.keys
        self.ttl = int(ttl)

    def _where(self, socket: str) -> tuple[Shard, list[str]]:
        return self.keys.shard(socket), self.keys.ordering(socket)

    async def claim(self, socket: str, order: int, message: dict[str, Any]) -> bool:
        shard, keys = self._where(socket)
        sealed = self.keys.seal(message)
        return bool(await shard.eval("order_claim", keys, (order, sealed, self.ttl)))

    async def _take(self, name: str, socket: str, order: int) -> dict[str, Any] | None:
        shard, keys = self._where(socket)
        raw = await shard.eval(name, keys, (order, self.ttl))
        if not raw:
            return None
        try:
            return self.keys.unseal(raw)
        except MessageCorrupt as exc:
            log.error("parked message %d of %s cannot be read, dropped: %s", order, socket, exc)
            return None

    async def advance(self, socket: str, order: int) -> dict[str, Any] | None:
        return await self._take("order_advance", socket, order)

    async def force(self, socket: str, order: int) -> dict[str, Any] | None:
        return await self._take("order_force", socket, order)

    async def forget(self, socket: str) -> None:
        shard, keys = self._where(socket)
        await shard.execute("DEL", *keys)


class MemoryOrderingStore:
    """The same rules for one process (the in-memory layer)."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}
        self._parked: dict[str, dict[int, dict[str, Any]]] = {}
        self._touched: dict[str, float] = {}

    async def claim(self, socket: str, order: int, message: dict[str, Any]) -> bool:
        self._touched[socket] = time.monotonic()
        if order <= self._next.get(socket, 0):
            return True
        self._parked.setdefault(socket, {})[order] = message
        return False

    async def advance(self, socket: str, order: int) -> dict[str, Any] | None:
        nxt = max(order + 1, self._next.get(socket, 0))
        self._next[socket] = nxt
        parked = self._parked.get(socket, {})
        ready = [o for o in parked if o <= nxt]
        return parked.pop(min(ready)) if ready else None

    async def force(self, socket: str, order: int) -> dict[str, Any] | None:
        message = self._parked.get(socket, {}).pop(order, None)
        if message is not None:
            self._next[socket] = order
        return message

    async def forget(self, socket: str) -> None:
        self._next.pop(socket, None)
        self._parked.pop(socket, None)
        self._touched.pop(socket, None)


def ordering_store_for(layer: BaseChannelLayer, ttl: float) -> OrderingStore:
    if isinstance(layer, RedisChannelLayer):
        return RedisOrderingStore(layer, ttl)
    return MemoryOrderingStore()
