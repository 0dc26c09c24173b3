"""A WebSocket client cheap enough to count 100,000 frames a second in one Python process.

aiohttp's client builds a message object and wakes a task per frame: about 20 µs each, so a
benchmark client of a 1,000-socket room saturates before the server does. Here a socket is
an asyncio Protocol that parses only frame headers as bytes arrive and counts the text
frames (the server's frames are unmasked, RFC 6455 5.1); no task waits on a socket.

Used by bench.fanout for every server it compares, so they are measured by the same client.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time

TEXT, CLOSE = 0x1, 0x8


def masked_text(text: str) -> bytes:
    """One client text frame (FIN, masked)."""
    return masked(text.encode(), TEXT)


def masked(payload: bytes, opcode: int) -> bytes:
    """One client frame (FIN, masked)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


class CountingSocket(asyncio.Protocol):
    """One client WebSocket: the upgrade, then text frames counted as they arrive."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.texts = 0
        self.last_text_at = 0.0  # perf_counter() of the last read that brought a text frame
        self.closed_with: str | None = None  # why the socket ended, if it did
        self._buffer = bytearray()
        self._upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def upgrade(self, host: str, path: str) -> None:
        assert self.transport is not None
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: http://{host}\r\n\r\n".encode()
        )

    def send_text(self, text: str) -> None:
        assert self.transport is not None
        self.transport.write(masked_text(text))

    def data_received(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            del buf[: end + 4]
            if b" 101 " not in status + b" ":
                self._end(status.decode(errors="replace"))
                return
            self._upgraded = True
            self.opened.set_result(None)
        pos, size, texts = 0, len(buf), self.texts
        while size - pos >= 2:
            opcode, n = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n, head = int.from_bytes(buf[pos + 2 : pos + 4]), 4
            elif n == 127:
                if size - pos < 10:
                    break
                n, head = int.from_bytes(buf[pos + 2 : pos + 10]), 10
            if size - pos < head + n:
                break
            if opcode == TEXT:
                self.texts += 1
            elif opcode == CLOSE:
                code = int.from_bytes(buf[pos + head : pos + head + 2]) if n >= 2 else 1005
                self._end(f"close {code}")
            pos += head + n
        del buf[:pos]
        if self.texts != texts:
            self.last_text_at = time.perf_counter()

    def close(self) -> None:
        """The closing handshake (1000): the server answers and closes the connection."""
        if self.transport is not None and not self.transport.is_closing():
            if self._upgraded and self.closed_with is None:
                self.transport.write(masked((1000).to_bytes(2, "big"), CLOSE))
            else:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        if self.closed_with is None and self._upgraded:
            self.closed_with = f"connection lost: {exc}"
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed before the upgrade: {exc}"))

    def _end(self, why: str) -> None:
        if self.closed_with is None:
            self.closed_with = why
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.close()


async def open_sockets(
    host: str, port: int, path: str, count: int
) -> tuple[list[CountingSocket], list[str]]:
    """``count`` upgraded sockets (200 handshakes at a time), and why the others failed."""
    loop = asyncio.get_running_loop()
    sockets: list[CountingSocket] = []
    refused: list[str] = []

    async def one() -> CountingSocket:
        _, sock = await loop.create_connection(lambda: CountingSocket(), host, port)
        sock.upgrade(f"{host}:{port}", path)
        await asyncio.wait_for(sock.opened, 30)
        return sock

    for start in range(0, count, 200):
        opened = await asyncio.gather(
            *(one() for _ in range(min(200, count - start))), return_exceptions=True
        )
        for sock in opened:
            if isinstance(sock, BaseException):
                refused.append(repr(sock)[:120])
            else:
                sockets.append(sock)
    return sockets, refused
