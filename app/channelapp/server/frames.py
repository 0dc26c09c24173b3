"""WebSocket frames from clients must be masked (RFC 6455 5.1); aiohttp's reader accepts both.

:class:`MaskedWebSocketResponse` puts :class:`MaskedFramesOnly` in front of the
frame reader: it follows frame boundaries (header lengths only, payloads are
skipped, not copied) and fails the socket with 1002 at the first unmasked frame.
"""

from __future__ import annotations

import struct
from typing import Any

from aiohttp import WebSocketError, WSCloseCode, WSMessage, WSMsgType, web

_MASK_BIT = 0x80
_EXTENDED = {126: 2, 127: 8}  # 7-bit length marker -> bytes of extended length


class MaskedFramesOnly:
    """Wraps a WebSocket frame reader; refuses the stream at the first unmasked frame."""

    def __init__(self, reader: Any, queue: Any) -> None:
        self._reader = reader
        self._queue = queue
        self._head = bytearray()  # header bytes of the frame being read
        self._skip = 0  # payload bytes of the current frame still to come
        self._failed = False

    def _header_size(self) -> int:
        size = 2 + _EXTENDED.get(self._head[1] & 0x7F, 0)
        return size + 4  # the mask key (checked to be there before this is called)

    def _all_masked(self, data: bytes | bytearray | memoryview) -> bool:
        view = memoryview(data)
        i, n = 0, len(view)
        while i < n:
            if self._skip:
                step = min(self._skip, n - i)
                self._skip -= step
                i += step
                continue
            want = 2 if len(self._head) < 2 else self._header_size()
            take = min(want - len(self._head), n - i)
            self._head += view[i : i + take]
            i += take
            if len(self._head) == 2 and not self._head[1] & _MASK_BIT:
                return False
            if len(self._head) >= 2 and len(self._head) == self._header_size():
                marker = self._head[1] & 0x7F
                extended = _EXTENDED.get(marker, 0)
                length = int.from_bytes(self._head[2 : 2 + extended]) if extended else marker
                self._skip = length
                self._head.clear()
        return True

    def feed_data(self, data: bytes | bytearray | memoryview) -> tuple[bool, bytes]:
        if self._failed:
            return False, b""
        if not self._all_masked(data):
            self._failed = True
            self._queue.set_exception(
                WebSocketError(WSCloseCode.PROTOCOL_ERROR, "client frames must be masked")
            )
            return False, b""
        result: tuple[bool, bytes] = self._reader.feed_data(data)
        return result

    def feed_eof(self) -> None:
        self._reader.feed_eof()


TEXT, BINARY = 0x1, 0x2
_LEN7, _LEN16, _LEN64 = struct.Struct("!BB"), struct.Struct("!BBH"), struct.Struct("!BBQ")


def server_frame(payload: bytes, opcode: int) -> bytes:
    """One whole unmasked frame, as a server sends it (RFC 6455 5.2), uncompressed."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        return _LEN7.pack(first, n) + payload
    if n < 1 << 16:
        return _LEN16.pack(first, 126, n) + payload
    return _LEN64.pack(first, 127, n) + payload


def close_code_allowed_on_the_wire(code: int) -> bool:
    """May a close frame carry ``code`` (RFC 6455 7.4)? 1004, 1005, 1006 and 1015 are
    reserved for reporting, never sent; 1016-2999 are unassigned; 5000 and up do not exist."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


class MaskedWebSocketResponse(web.WebSocketResponse):
    """A server-side WebSocket that closes with 1002 on an unmasked client frame, and on a
    client's close frame carrying a code no endpoint may send (answered 1000 otherwise)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(autoclose=False, **kwargs)

    async def receive(self, timeout: float | None = None) -> WSMessage:
        msg: WSMessage = await super().receive(timeout)
        if msg.type is WSMsgType.CLOSE and not self.closed:
            # The closing handshake, answered here rather than by aiohttp (which echoes 1000
            # whatever the client sent). A close frame without a code reads as 0.
            code = WSCloseCode.OK
            if msg.data and not close_code_allowed_on_the_wire(msg.data):
                code = WSCloseCode.PROTOCOL_ERROR
                self._close_code = code  # what the application's disconnect says
            await self.close(code=code, drain=False)
        return msg

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        # Bytes that came with the handshake go through the check too, not around it.
        handler: Any = request.protocol
        tail, handler._message_tail = handler._message_tail, b""
        super()._post_start(request, protocol, writer)
        guard = MaskedFramesOnly(handler._payload_parser, self._reader)
        handler._payload_parser = guard
        if tail:
            guard.feed_data(tail)
