"""Per-socket ordering across worker processes (the ``order`` field of websocket messages).

A socket's messages may be popped by different workers at once. Before running
message *n*, a worker atomically checks that *n* is the next expected for that
socket; if so it is recorded as running it, else the message is parked beside the
socket's counter. When *n* finishes, the worker that ran it advances the counter and
takes the parked *n+1*, if any, and runs it.

Parked messages whose predecessor will never finish are swept (every worker checks
the sockets with parked messages a few times a second): at once when the worker
recorded as running the predecessor is dead (SIGKILL, OOM: its liveness key is
gone), else after ``park_timeout`` seconds (the predecessor was lost or expired).
The lowest parked message is then run, with a warning, and the rest follow in order.
"""

from __future__ import annotations

import logging
import time
from importlib import resources
from typing import Any, Protocol

from channelapp.layer import BaseChannelLayer, LayerMonitor, ShardUnavailable
from channelapp.layer.serializers import MessageCorrupt
from channelapp.layer.shard import Shard, register_script

log = logging.getLogger("channelapp.worker")

for _name in ("claim", "advance", "sweep"):
    register_script(
        f"order_{_name}",
        resources.files("channelapp.worker").joinpath(f"lua/{_name}.lua").read_text(),
    )

# (socket, message, why: "dead" or "timeout")
Swept = tuple[str, dict[str, Any], str]


class OrderingStore(Protocol):
    async def claim(self, socket: str, order: int, message: dict[str, Any]) -> bool: ...
    async def advance(self, socket: str, order: int) -> dict[str, Any] | None: ...
    async def sweep(self, park_timeout: float) -> list[Swept]: ...
    async def forget(self, socket: str) -> None: ...


class RedisOrderingStore:
    """Counters and parked messages in the layer's key space (parked messages sealed like
    channel messages: encrypted when the layer has encryption keys)."""

    def __init__(self, layer: LayerMonitor, worker_id: str, ttl: float = 3600) -> None:
        self.layer = layer
        self.keys = layer.keys
        self.worker_id = worker_id
        self.ttl = int(ttl)

    @property
    def liveness_prefix(self) -> str:
        return self.keys.key("worker", "")

    def _parking_key(self) -> str:
        return self.keys.key("parking")

    def _keys(self, socket: str) -> list[str]:
        return [*self.keys.ordering(socket), self._parking_key()]

    def _shard(self, socket: str) -> Shard:
        return self.keys.shard(socket)

    def _unseal(self, raw: bytes, socket: str) -> dict[str, Any] | None:
        try:
            return self.keys.unseal(raw)
        except MessageCorrupt as exc:
            log.error("a parked message of %s cannot be read, dropped: %s", socket, exc)
            return None

    async def claim(self, socket: str, order: int, message: dict[str, Any]) -> bool:
        sealed = self.keys.seal(message)
        return bool(
            await self._shard(socket).eval(
                "order_claim",
                self._keys(socket),
                (order, sealed, self.ttl, self.worker_id, socket),
            )
        )

    async def advance(self, socket: str, order: int) -> dict[str, Any] | None:
        raw = await self._shard(socket).eval(
            "order_advance", self._keys(socket), (order, self.ttl, self.worker_id, socket)
        )
        return self._unseal(raw, socket) if raw else None

    async def sweep(self, park_timeout: float) -> list[Swept]:
        out: list[Swept] = []
        for shard in self.layer.every_shard():
            try:
                sockets = await shard.execute("SMEMBERS", self._parking_key())
            except ShardUnavailable:
                continue
            for raw_socket in sockets:
                socket = raw_socket.decode() if isinstance(raw_socket, bytes) else raw_socket
                got = await shard.eval(
                    "order_sweep",
                    self._keys(socket),
                    (
                        socket,
                        self.worker_id,
                        int(park_timeout * 1000),
                        self.liveness_prefix,
                        self.ttl,
                    ),
                )
                if got:
                    why = got[1].decode() if isinstance(got[1], bytes) else got[1]
                    message = self._unseal(got[0], socket)
                    if message is not None:
                        out.append((socket, message, why))
        return out

    async def forget(self, socket: str) -> None:
        shard = self._shard(socket)
        order, parked, parking = self._keys(socket)
        await shard.execute("DEL", order, parked)
        await shard.execute("SREM", parking, socket)


class MemoryOrderingStore:
    """The same rules for one process (the in-memory layer): no worker can die alone."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}
        self._parked: dict[str, dict[int, dict[str, Any]]] = {}
        self._parked_at: dict[str, float] = {}

    async def claim(self, socket: str, order: int, message: dict[str, Any]) -> bool:
        if order <= self._next.get(socket, 0):
            return True
        parked = self._parked.setdefault(socket, {})
        if not parked:
            self._parked_at[socket] = time.monotonic()
        parked[order] = message
        return False

    async def advance(self, socket: str, order: int) -> dict[str, Any] | None:
        nxt = max(order + 1, self._next.get(socket, 0))
        self._next[socket] = nxt
        parked = self._parked.get(socket, {})
        ready = [o for o in parked if o <= nxt]
        message = parked.pop(min(ready)) if ready else None
        self._parked_at[socket] = time.monotonic()
        return message

    async def sweep(self, park_timeout: float) -> list[Swept]:
        out: list[Swept] = []
        now = time.monotonic()
        for socket, parked in list(self._parked.items()):
            if parked and now - self._parked_at.get(socket, now) >= park_timeout:
                lowest = min(parked)
                self._next[socket] = lowest
                self._parked_at[socket] = now
                out.append((socket, parked.pop(lowest), "timeout"))
        return out

    async def forget(self, socket: str) -> None:
        self._next.pop(socket, None)
        self._parked.pop(socket, None)
        self._parked_at.pop(socket, None)


# Longest a socket's order keys outlive its last message: after a fault (its disconnect never
# handled) they are gone within this (a dead protocol server's sockets sooner: the sweep after
# it expires their keys), and a live socket idle for longer resumes at its next message (see
# claim.lua). A day: a socket idle that long is rare, and a resumed socket's messages may run
# out of order while the ones sent before its keys expired are still queued.
MAX_ORDER_TTL = 86400.0


def ordering_store_for(layer: BaseChannelLayer, worker_id: str, ttl: float) -> OrderingStore:
    if (monitor := layer.monitor()) is not None:
        return RedisOrderingStore(monitor, worker_id, min(ttl, MAX_ORDER_TTL))
    return MemoryOrderingStore()
