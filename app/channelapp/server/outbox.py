"""The replies waiting to be written to one WebSocket, bounded in messages and bytes.

Replies are taken from the layer as soon as they arrive and wait here, so a socket
whose client reads slowly can only hold its own outbox, never the process's reply
list or the other sockets' replies. A full outbox means the client is too slow:
the protocol server closes it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


def reply_size(message: dict[str, Any]) -> int:
    payload = message.get("text")
    if payload is None:
        payload = message.get("bytes") or b""
    return len(payload)


def frame_over(data: object, limit: int) -> bool:
    """Is a frame's payload (text counted in UTF-8 bytes) larger than ``limit`` bytes? Text
    is encoded only when its length alone cannot tell (a UTF-8 character is 1 to 4 bytes)."""
    if isinstance(data, str):
        if len(data) > limit:
            return True
        if 4 * len(data) <= limit or data.isascii():
            return False
        return len(data.encode("utf-8", "surrogatepass")) > limit
    return isinstance(data, (bytes, bytearray)) and len(data) > limit


def reply_over(message: dict[str, Any], limit: int) -> bool:
    """Does a ``websocket.send`` reply carry a frame larger than ``limit`` bytes?"""
    text = message.get("text")
    return frame_over(text if text is not None else message.get("bytes"), limit)


class Outbox:
    """Idle, an outbox holds no queue and no waiter: a protocol server keeps one per socket,
    and most sockets are idle most of the time (a deque's first block alone is 624 bytes)."""

    __slots__ = ("_items", "_waiter", "bytes", "closed_with", "max_bytes", "max_messages")

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.bytes = 0
        # The close code when the server closed the socket because of what it was sent.
        self.closed_with: int | None = None
        self._items: deque[tuple[dict[str, Any], int]] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items) if self._items else 0

    def put(self, message: dict[str, Any]) -> bool:
        """Queue ``message``; False (and nothing queued) when that would pass a bound.

        One message is always accepted into an empty outbox, whatever its size.
        """
        size = reply_size(message)
        items = self._items
        if items is None:
            items = self._items = deque()
        elif items and (len(items) >= self.max_messages or self.bytes + size > self.max_bytes):
            return False
        items.append((message, size))
        self.bytes += size
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    async def get(self) -> dict[str, Any]:
        while not self._items:
            self._items = None  # drained: an idle socket keeps no queue
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message, size = self._items.popleft()
        self.bytes -= size
        return message
