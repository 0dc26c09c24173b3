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
    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.bytes = 0
        # The close code when the server closed the socket because of what it was sent.
        self.closed_with: int | None = None
        self._items: deque[tuple[dict[str, Any], int]] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: dict[str, Any]) -> bool:
        """Queue ``message``; False (and nothing queued) when that would pass a bound.

        One message is always accepted into an empty outbox, whatever its size.
        """
        size = reply_size(message)
        if self._items and (
            len(self._items) >= self.max_messages or self.bytes + size > self.max_bytes
        ):
            return False
        self._items.append((message, size))
        self.bytes += size
        self._ready.set()
        return True

    async def get(self) -> dict[str, Any]:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        message, size = self._items.popleft()
        self.bytes -= size
        return message
