"""One accepted WebSocket: frames in as ``websocket.receive``, replies out through its outbox.

Three tasks per socket: the reader sends the client's frames to the workers, the
feeder moves replies from the layer into the socket's bounded outbox as they arrive,
the writer writes them out. A client too slow for its outbox is closed with 1008
(and cut off if it does not take the close frame within ``CLOSE_GRACE``). However
the socket ends, the application gets its ``websocket.disconnect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from channelapp import metrics
from channelapp.layer import ShardUnavailable
from channelapp.server.frames import close_code_allowed_on_the_wire
from channelapp.server.host import SocketHost
from channelapp.server.messages import BadReply, check_websocket_reply
from channelapp.server.outbox import Outbox, frame_over, reply_over
from channelapp.spec import (
    INTERNAL_ERROR,
    MESSAGE_TOO_BIG,
    TOO_SLOW,
    TRY_AGAIN_LATER,
    WEBSOCKET_RECEIVE,
    WebSocketReceive,
)

log = logging.getLogger("channelapp.server")


def refusal_reason(refused: str) -> str:
    """The close reason for a message the layer refused ("full", "unavailable", "too_large")."""
    if refused == "too_large":
        return "message too big"
    return "channel layer unavailable" if refused == "unavailable" else "server busy"


def refusal_code(refused: str) -> int:
    return MESSAGE_TOO_BIG if refused == "too_large" else TRY_AGAIN_LATER


def wire_code(code: int) -> int:
    """``code`` as it may be sent in a close frame: one that only reports a closure locally
    (1005, 1006, 1015) or is not assigned becomes 1011."""
    return code if close_code_allowed_on_the_wire(code) else INTERNAL_ERROR


CLOSE_GRACE = 2.0  # seconds a closing handshake may take before the connection is cut


class SocketSession:
    def __init__(
        self,
        server: SocketHost,
        ws: web.WebSocketResponse,
        request: web.Request,
        reply: str,
        early: Sequence[dict[str, Any]] = (),
    ) -> None:
        self.server = server
        self.ws = ws
        self.request = request
        self.reply = reply
        self.path = request.path
        self.order = 0
        settings = server.settings
        self.outbox = Outbox(settings.channel_capacity, settings.send_buffer_size)
        # Sent before the accept: delivered first, in order (or the socket is too slow).
        self.early_overflow = not all(self.outbox.put(message) for message in early)
        # The code the server closed the socket with because of what it was sent.
        self.closed_with: int | None = None

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        feeder = asyncio.create_task(self._feed(writer))
        reader = asyncio.create_task(self._read())
        code: int = WSCloseCode.ABNORMAL_CLOSURE
        if self.early_overflow:
            log.warning(
                "websocket %s: more sent before the accept than its outbox holds; closing with %d",
                self.path,
                TOO_SLOW,
            )
            metrics.WEBSOCKETS_TOO_SLOW.inc()
            feeder.cancel()
            await self._close_for(writer, TOO_SLOW, "client too slow")
        try:
            # The feeder ends first only when it closed the socket (too slow, bad reply).
            await asyncio.wait([reader, feeder], return_when=asyncio.FIRST_COMPLETED)
        finally:
            writer.cancel()
            reader.cancel()
            if self.closed_with is None:
                feeder.cancel()  # else it is closing the socket, within CLOSE_GRACE
            for task in (feeder, reader, writer):
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await task
            if reader.done() and not reader.cancelled() and reader.exception() is None:
                code = reader.result()
            code = self.closed_with or code
            if self.ws.close_code is None and not self.ws.closed:
                await self.close(code, "")
            await self.server.disconnect(self.reply, self.path, int(code), self.order + 1)

    async def _read(self) -> int:
        """Send the client's frames on; returns the close code."""
        ws = self.ws
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            if frame_over(msg.data, self.server.settings.max_frame_size):
                await ws.close(code=MESSAGE_TOO_BIG, message=b"message too big")
                return MESSAGE_TOO_BIG
            event: WebSocketReceive = {
                "type": WEBSOCKET_RECEIVE,
                "reply_channel": self.reply,
                "path": self.path,
                "order": self.order + 1,
            }
            if msg.type == WSMsgType.TEXT:
                event["text"] = msg.data
            else:
                event["bytes"] = msg.data
            refused = await self.server.send(WEBSOCKET_RECEIVE, event)
            if refused:  # not queued: its order number goes to the disconnect, leaving no gap
                code = refusal_code(refused)
                await ws.close(code=code, message=refusal_reason(refused).encode())
                return code
            self.order += 1
        if ws.close_code is not None:
            return ws.close_code
        if isinstance(ws.exception(), Exception):
            return WSCloseCode.ABNORMAL_CLOSURE
        return WSCloseCode.OK

    async def _feed(self, writer: asyncio.Task[None]) -> None:
        """Move replies from the layer to the outbox as soon as they arrive."""
        while not self.ws.closed:
            try:
                message = await self.server.layer.receive(self.reply)
                check_websocket_reply(message)
            except BadReply as exc:
                log.error(
                    "websocket %s: malformed message from the application: %s", self.path, exc
                )
                await self._close_for(writer, WSCloseCode.INTERNAL_ERROR, "application error")
                return
            except ShardUnavailable as exc:
                log.error("websocket %s: %s", self.path, exc)
                await asyncio.sleep(0.5)
                continue
            if reply_over(message, self.server.settings.max_frame_size):
                log.error(
                    "websocket %s: the application sent a frame larger than max_frame_size "
                    "(%d bytes); closing with %d",
                    self.path,
                    self.server.settings.max_frame_size,
                    MESSAGE_TOO_BIG,
                )
                await self._close_for(writer, MESSAGE_TOO_BIG, "message too big")
                return
            if not self.outbox.put(message):
                log.warning(
                    "websocket %s: client too slow (%d message(s), %d bytes waiting); "
                    "closing with %d",
                    self.path,
                    len(self.outbox),
                    self.outbox.bytes,
                    TOO_SLOW,
                )
                metrics.WEBSOCKETS_TOO_SLOW.inc()
                await self._close_for(writer, TOO_SLOW, "client too slow")
                return

    async def _close_for(self, writer: asyncio.Task[None], code: int, why: str) -> None:
        self.closed_with = code
        writer.cancel()  # it may be stuck writing to a client that reads nothing
        await self.close(code, why)

    async def close(self, code: int, why: str) -> None:
        """Close within ``CLOSE_GRACE`` seconds; a client that takes nothing is cut off."""
        code = wire_code(code)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_GRACE):
                await self.ws.close(code=code, message=why.encode())
        transport = self.request.transport
        if transport is not None and self.ws.close_code != code:
            transport.abort()

    async def _write(self) -> None:
        ws = self.ws
        try:
            while not ws.closed:
                message = await self.outbox.get()
                kind = message["type"]
                if kind == "websocket.send":
                    if message.get("text") is not None:
                        await ws.send_str(message["text"])
                    else:
                        await ws.send_bytes(message["bytes"])
                elif kind == "websocket.close":
                    await ws.close(code=wire_code(message.get("code", 1000)))
                    return
        except ConnectionError as exc:  # the client went away; the reader sees it too
            log.info("websocket %s: write failed: %s", self.path, exc)
