"""Frames for many sockets gathered during one turn of the event loop, written at its end
with one ``write`` per socket.

A group message reaches a room's sockets in batches from the process's reply list; every
``write`` is a system call (on loopback most of a delivery's cost). Frames a socket is
given during one turn leave together at the start of the next, which costs a loop turn of
latency and saves a system call for each frame after a socket's first.
"""

from __future__ import annotations

import asyncio
import weakref

from aiohttp import web

_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TurnWrites] = (
    weakref.WeakKeyDictionary()
)


class _Pending:
    __slots__ = ("frames", "size", "ws")

    def __init__(self, ws: web.WebSocketResponse, frame: bytes) -> None:
        self.ws = ws
        self.frames = [frame]
        self.size = len(frame)


class TurnWrites:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: dict[asyncio.Transport, _Pending] = {}
        self._scheduled = False

    def waiting(self, transport: asyncio.Transport) -> tuple[int, int]:
        """Frames and bytes waiting for ``transport`` (a caller bounds them)."""
        pending = self._pending.get(transport)
        return (0, 0) if pending is None else (len(pending.frames), pending.size)

    def write(self, ws: web.WebSocketResponse, transport: asyncio.Transport, frame: bytes) -> None:
        """``frame`` for ``ws``, written at the end of this turn after the ones before it."""
        pending = self._pending.get(transport)
        if pending is None:
            self._pending[transport] = _Pending(ws, frame)
            if not self._scheduled:
                self._scheduled = True
                self._loop.call_soon(self.flush)
        else:
            pending.frames.append(frame)
            pending.size += len(frame)

    def flush_one(self, transport: asyncio.Transport) -> None:
        """Write what waits for ``transport`` now (something else is to follow it)."""
        pending = self._pending.pop(transport, None)
        if pending is not None:
            self._write(transport, pending)

    def flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for transport, frames in pending.items():
            self._write(transport, frames)

    @staticmethod
    def _write(transport: asyncio.Transport, pending: _Pending) -> None:
        # A socket closed meanwhile has sent its close frame: nothing may follow it.
        if pending.ws.closed or transport.is_closing():
            return
        frames = pending.frames
        transport.write(frames[0] if len(frames) == 1 else b"".join(frames))


def turn_writes() -> TurnWrites:
    """The running loop's :class:`TurnWrites`."""
    loop = asyncio.get_running_loop()
    writes = _writers.get(loop)
    if writes is None:
        writes = _writers[loop] = TurnWrites(loop)
    return writes
