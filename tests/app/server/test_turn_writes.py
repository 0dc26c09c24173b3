"""Frames given to sockets during one loop turn leave with one write per socket, in order,
over real loopback connections; a socket closed meanwhile gets nothing after its close."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from channelapp.server.frames import TEXT, server_frame
from channelapp.server.turn_writes import turn_writes


@dataclass
class Socket:
    """What TurnWrites asks of a WebSocket: whether it is closed."""

    closed: bool = False


class Counted:
    """A real transport whose writes are counted."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer  # kept: a StreamWriter collected closes its transport
        self.transport: asyncio.Transport = writer.transport  # type: ignore[assignment]
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.transport.write(data)

    def is_closing(self) -> bool:
        return self.transport.is_closing()


async def connections(count: int) -> tuple[list[Counted], list[asyncio.StreamReader], Any]:
    readers: asyncio.Queue[asyncio.StreamReader] = asyncio.Queue()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await readers.put(reader)

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ends = []
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        ends.append(Counted(writer))
    return ends, [await readers.get() for _ in range(count)], server


async def test_one_write_per_socket_per_turn_in_order() -> None:
    (a, b), (read_a, read_b), server = await connections(2)
    try:
        writes = turn_writes()
        frames_a = [server_frame(f"a{i}".encode(), TEXT) for i in range(3)]
        frames_b = [server_frame(f"b{i}".encode(), TEXT) for i in range(2)]
        for frame in frames_a:
            writes.write(Socket(), a, frame)  # type: ignore[arg-type]
        for frame in frames_b:
            writes.write(Socket(), b, frame)  # type: ignore[arg-type]
        assert writes.waiting(a) == (3, sum(map(len, frames_a)))  # type: ignore[arg-type]
        assert (a.writes, b.writes) == (0, 0)  # not before the turn ends
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert (a.writes, b.writes) == (1, 1)
        assert await read_a.readexactly(sum(map(len, frames_a))) == b"".join(frames_a)
        assert await read_b.readexactly(sum(map(len, frames_b))) == b"".join(frames_b)
    finally:
        server.close()
        for end in (a, b):
            end.transport.close()


async def test_flush_one_writes_at_once_and_a_closed_socket_gets_nothing() -> None:
    (a, b), (read_a, _), server = await connections(2)
    try:
        writes = turn_writes()
        closed = Socket()
        writes.write(Socket(), a, server_frame(b"first", TEXT))  # type: ignore[arg-type]
        writes.write(closed, b, server_frame(b"late", TEXT))  # type: ignore[arg-type]
        writes.flush_one(a)  # type: ignore[arg-type]
        assert a.writes == 1
        closed.closed = True  # its close frame went out meanwhile
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert b.writes == 0
        assert await read_a.readexactly(7) == server_frame(b"first", TEXT)
    finally:
        server.close()
        for end in (a, b):
            end.transport.close()


def test_frames_of_every_length_class() -> None:
    for n, head in ((0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)):
        frame = server_frame(b"x" * n, TEXT)
        assert len(frame) == head + n and frame[0] == 0x81
        assert frame[1] == (n if n < 126 else 126 if n < 65536 else 127)
