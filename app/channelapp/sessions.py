"""Sessions: per-socket state kept in the layer's store with a TTL, and signed-cookie HTTP sessions.

A WebSocket's consumers run as separate messages, possibly on different
workers; the per-socket session (keyed by the socket's reply channel) is what
carries state from ``connect`` to ``receive`` to ``disconnect``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Protocol

import msgpack

from channelapp.layer import BaseChannelLayer, InMemoryChannelLayer, LayerMonitor
from channelapp.layer.serializers import MessageCorrupt
from channelapp.security import BadSignature, sign, unsign

log = logging.getLogger("channelapp.sessions")

COOKIE_NAME = "channelapp_session"


class Session(dict[str, Any]):
    """A dict that knows whether it changed, so unchanged sessions are not written back."""

    def __init__(self, key: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(data or {})
        self.key = key
        self.modified = False

    def __setitem__(self, k: str, v: Any) -> None:
        self.modified = True
        super().__setitem__(k, v)

    def __delitem__(self, k: str) -> None:
        self.modified = True
        super().__delitem__(k)

    def clear(self) -> None:
        self.modified = True
        super().clear()

    def pop(self, *args: Any) -> Any:
        self.modified = True
        return super().pop(*args)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.modified = True
        super().update(*args, **kwargs)

    def setdefault(self, k: str, default: Any = None) -> Any:
        if k not in self:
            self.modified = True
        return super().setdefault(k, default)

    def popitem(self) -> tuple[str, Any]:
        self.modified = True
        return super().popitem()

    def __ior__(self, other: Any) -> Session:  # type: ignore[override,misc]
        self.modified = True
        return super().__ior__(other)


class SessionStore(Protocol):
    async def load(self, key: str) -> Session: ...
    async def save(self, session: Session) -> None: ...
    async def delete(self, key: str) -> None: ...


class MemorySessionStore:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._data: dict[str, tuple[float, bytes]] = {}

    async def load(self, key: str) -> Session:
        hit = self._data.get(key)
        if hit is None or hit[0] < time.monotonic():
            self._data.pop(key, None)
            return Session(key)
        return Session(key, msgpack.unpackb(hit[1], raw=False))

    async def save(self, session: Session) -> None:
        self._data[session.key] = (
            time.monotonic() + self.ttl,
            msgpack.packb(dict(session), use_bin_type=True),
        )
        session.modified = False
        if len(self._data) > 10_000:
            now = time.monotonic()
            for k in [k for k, (exp, _) in self._data.items() if exp < now]:
                del self._data[k]

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)


class RedisSessionStore:
    """Sessions on the shard of their socket's reply channel, with a TTL refreshed on save.

    Keys, shard and encoding come from the layer's key space: with encryption keys
    set, sessions are encrypted like messages.
    """

    def __init__(self, layer: LayerMonitor, ttl: float) -> None:
        self.keys = layer.keys
        self.ttl = max(1, int(ttl))

    async def load(self, key: str) -> Session:
        raw = await self.keys.shard(key).execute("GET", self.keys.session(key))
        if not raw:
            return Session(key)
        try:
            return Session(key, self.keys.unseal(raw))
        except MessageCorrupt as exc:
            log.error("session of %s cannot be read, starting an empty one: %s", key, exc)
            return Session(key)

    async def save(self, session: Session) -> None:
        sealed = self.keys.seal(dict(session))
        await self.keys.shard(session.key).execute(
            "SET", self.keys.session(session.key), sealed, "EX", self.ttl
        )
        session.modified = False

    async def delete(self, key: str) -> None:
        await self.keys.shard(key).execute("DEL", self.keys.session(key))


def session_store_for(layer: BaseChannelLayer, ttl: float) -> SessionStore:
    if (monitor := layer.monitor()) is not None:
        return RedisSessionStore(monitor, ttl)
    if isinstance(layer, InMemoryChannelLayer):
        return MemorySessionStore(ttl)
    return MemorySessionStore(ttl)


def load_cookie_session(cookie_value: str | None, secret: str, max_age: float) -> dict[str, Any]:
    """The signed-cookie session's data; a tampered, foreign or expired cookie gives ``{}``."""
    if not cookie_value:
        return {}
    try:
        data = json.loads(unsign(cookie_value, secret, max_age=max_age))
    except (BadSignature, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def dump_cookie_session(data: dict[str, Any], secret: str) -> str:
    return sign(json.dumps(data, separators=(",", ":")).encode(), secret)
