"""The in-memory channel layer: one process, same semantics as the Redis layer.

Messages go through the same msgpack serializer as Redis, so a message that
would fail there fails here too, and senders cannot mutate what receivers get.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from channelapp.layer.base import BaseChannelLayer, ChannelFull, ChannelStatistics, Message
from channelapp.layer.capacity import CapacityPolicy
from channelapp.layer.names import validate_channel_name, validate_group_name
from channelapp.layer.serializers import MAX_MESSAGE_SIZE, Serializer
from channelapp.layer.stats import empty_stats, total

log = logging.getLogger("channelapp.layer")


class InMemoryChannelLayer(BaseChannelLayer):
    def __init__(
        self,
        capacity: int = 100,
        expiry: float = 60,
        group_expiry: float = 86400,
        channel_capacity: Mapping[str, int] | None = None,
        max_message_size: int = MAX_MESSAGE_SIZE,
    ) -> None:
        self.capacity = CapacityPolicy(capacity, channel_capacity)
        self.expiry = expiry
        self.group_expiry = group_expiry
        self._serializer = Serializer(max_size=max_message_size)
        self._channels: dict[str, deque[tuple[float, bytes]]] = {}
        self._groups: dict[str, dict[str, float]] = {}
        self._sent: dict[str, int] = {}
        self._full: dict[str, int] = {}
        self._waiters: set[asyncio.Future[None]] = set()
        self._process = secrets.token_hex(6)

    # --- channels -------------------------------------------------------------------------

    def _push(self, channel: str, body: bytes) -> bool:
        queue = self._channels.setdefault(channel, deque())
        self._expire(channel, queue)
        if len(queue) >= self.capacity(channel):
            self._full[channel] = self._full.get(channel, 0) + 1
            return False
        queue.append((time.time(), body))
        self._sent[channel] = self._sent.get(channel, 0) + 1
        return True

    def _wake(self) -> None:
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()

    def _expire(self, channel: str, queue: deque[tuple[float, bytes]]) -> None:
        cutoff = time.time() - self.expiry
        while queue and queue[0][0] < cutoff:
            queue.popleft()

    async def send(self, channel: str, message: Message) -> None:
        validate_channel_name(channel)
        body = self._serializer.dumps(message)
        if not self._push(channel, body):
            raise ChannelFull(f"channel {channel!r} is full ({self.capacity(channel)} messages)")
        self._wake()

    def _pop(self, channels: list[str], limit: int) -> list[tuple[str, Message]]:
        out: list[tuple[str, Message]] = []
        progress = True
        while len(out) < limit and progress:
            progress = False
            for channel in channels:
                queue = self._channels.get(channel)
                if not queue:
                    continue
                self._expire(channel, queue)
                if queue:
                    out.append((channel, self._serializer.loads(queue.popleft()[1])))
                    progress = True
                    if len(out) >= limit:
                        break
        return out

    async def _wait(self, timeout: float | None) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(fut)

    async def receive(self, channel: str) -> Message:
        validate_channel_name(channel, receive=True)
        while True:
            got = self._pop([channel], 1)
            if got:
                return got[0][1]
            await self._wait(None)

    async def receive_many(
        self, channels: Iterable[str], max_messages: int = 100, timeout: float | None = None
    ) -> list[tuple[str, Message]]:
        names = [validate_channel_name(c, receive=True) for c in channels]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            got = self._pop(names, max_messages)
            if got:
                return got
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return []
            await self._wait(remaining)

    async def new_channel(self, prefix: str = "specific") -> str:
        return validate_channel_name(f"{prefix}.{self._process}!{secrets.token_hex(8)}")

    # --- groups ---------------------------------------------------------------------------

    async def group_add(self, group: str, channel: str) -> None:
        validate_group_name(group)
        validate_channel_name(channel)
        self._groups.setdefault(group, {})[channel] = time.time()

    async def group_discard(self, group: str, channel: str) -> None:
        validate_group_name(group)
        validate_channel_name(channel)
        members = self._groups.get(group)
        if members is not None:
            members.pop(channel, None)
            if not members:
                del self._groups[group]

    async def group_send(self, group: str, message: Message) -> int:
        """Send to every live member; returns how many members were full (logged, counted)."""
        validate_group_name(group)
        body = self._serializer.dumps(message)
        members = self._groups.get(group, {})
        cutoff = time.time() - self.group_expiry
        for channel in [c for c, t in members.items() if t < cutoff]:
            del members[channel]
        full = [c for c in list(members) if not self._push(c, body)]
        if full:
            log.warning(
                "group_send to %r: %d member channel(s) full: %s", group, len(full), full[:5]
            )
        self._wake()
        return len(full)

    async def flush(self) -> None:
        self._channels.clear()
        self._groups.clear()
        self._sent.clear()
        self._full.clear()

    # --- statistics -----------------------------------------------------------------------

    def _stats(self, channel: str, now: float) -> ChannelStatistics:
        queue = self._channels.get(channel)
        if queue:
            self._expire(channel, queue)
        stats = empty_stats()
        stats["messages_pending"] = len(queue) if queue else 0
        stats["messages_max_age"] = max(0.0, now - queue[0][0]) if queue else 0.0
        stats["messages_count"] = self._sent.get(channel, 0)
        stats["channel_full_count"] = self._full.get(channel, 0)
        return stats

    async def channel_statistics(self, channel: str) -> ChannelStatistics:
        validate_channel_name(channel, receive=True)
        return self._stats(channel, time.time())

    async def channels_statistics(self, channels: Iterable[str]) -> dict[str, ChannelStatistics]:
        now = time.time()
        return {c: self._stats(validate_channel_name(c, receive=True), now) for c in channels}

    async def global_statistics(self) -> ChannelStatistics:
        now = time.time()
        names = set(self._channels) | set(self._sent) | set(self._full)
        return total(self._stats(c, now) for c in names)

    def debug_state(self) -> dict[str, Any]:
        return {"channels": len(self._channels), "groups": len(self._groups)}
