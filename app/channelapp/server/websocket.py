"""One accepted WebSocket: frames in as ``websocket.receive``, replies out through its outbox.

Two tasks per socket: the reader sends the client's frames to the workers, the writer
writes the outbox out. Replies come from the layer's subscription (``layer.subscribe``:
the layer calls :meth:`SocketSession._deliver` as it receives them, no task waits per
socket). A reply that finds nothing ahead of it (an empty outbox, nothing unsent in the
transport, no compression) is framed at once and written with the socket's other frames
of this loop turn (:mod:`~channelapp.server.turn_writes`); the others wait in the bounded
outbox for the writer, which waits for the client. A client too slow for its
outbox is closed with 1008 (and cut off if it does not take the close frame within
``CLOSE_GRACE``). However the socket ends, the application gets its
``websocket.disconnect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from channelapp import metrics
from channelapp.server.frames import BINARY, TEXT, close_code_allowed_on_the_wire, server_frame
from channelapp.server.host import SocketHost
from channelapp.server.messages import BadReply, check_websocket_reply
from channelapp.server.outbox import Outbox, frame_over, reply_over
from channelapp.server.turn_writes import TurnWrites, turn_writes
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
        self._writer: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None  # closing because of what it was sent
        self._ended: asyncio.Future[None] | None = None  # the replies stopped: closing, layer gone
        self._turn: TurnWrites | None = None  # the loop's writes at the end of its turn

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        ended = self._ended = loop.create_future()
        self._turn = turn_writes()
        writer = self._writer = asyncio.create_task(self._write())
        reader = asyncio.create_task(self._read())
        subscription = None
        code: int = WSCloseCode.ABNORMAL_CLOSURE
        if self.early_overflow:
            log.warning(
                "websocket %s: more sent before the accept than its outbox holds; closing with %d",
                self.path,
                TOO_SLOW,
            )
            metrics.WEBSOCKETS_TOO_SLOW.inc()
            self._close_for(TOO_SLOW, "client too slow")
        else:
            subscription = self.server.layer.subscribe(self.reply, self._deliver, self._layer_ended)
        try:
            # The replies end first only when the socket is closed for what it was sent (too
            # slow, bad reply), or when the layer stopped.
            await asyncio.wait([reader, ended], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if subscription is not None:
                subscription.cancel()
            writer.cancel()
            reader.cancel()
            closing = self._closing  # closing the socket, within CLOSE_GRACE: let it
            for task in (closing, reader, writer):
                if task is not None:
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

    def _deliver(self, message: dict[str, Any]) -> None:
        """A reply from the layer, into the outbox (the layer calls it as replies arrive)."""
        if self.closed_with is not None:
            return  # closing for an earlier reply: nothing more is taken
        try:
            check_websocket_reply(message)
        except BadReply as exc:
            log.error("websocket %s: malformed message from the application: %s", self.path, exc)
            self._close_for(WSCloseCode.INTERNAL_ERROR, "application error")
            return
        if self._written_now(message):
            return
        if self._turn is not None and self.request.transport is not None:
            self._turn.flush_one(self.request.transport)  # what waits for the turn's end goes first
        if reply_over(message, self.server.settings.max_frame_size):
            log.error(
                "websocket %s: the application sent a frame larger than max_frame_size "
                "(%d bytes); closing with %d",
                self.path,
                self.server.settings.max_frame_size,
                MESSAGE_TOO_BIG,
            )
            self._close_for(MESSAGE_TOO_BIG, "message too big")
            return
        if not self.outbox.put(message):
            log.warning(
                "websocket %s: client too slow (%d message(s), %d bytes waiting); closing with %d",
                self.path,
                len(self.outbox),
                self.outbox.bytes,
                TOO_SLOW,
            )
            metrics.WEBSOCKETS_TOO_SLOW.inc()
            self._close_for(TOO_SLOW, "client too slow")

    def _written_now(self, message: dict[str, Any]) -> bool:
        """Write a ``websocket.send`` reply at once when nothing waits ahead of it: no reply in
        the outbox, nothing unsent in the transport (the client keeps up), no
        permessage-deflate (aiohttp's writer compresses), the socket open. Saves waking the
        writer for each reply; a frame past ``max_frame_size`` is left to the checks."""
        if self.outbox or message.get("type") != "websocket.send":
            return False
        ws, transport = self.ws, self.request.transport
        if ws.closed or ws.compress or transport is None or transport.is_closing():
            return False
        if transport.get_write_buffer_size():
            return False
        text = message.get("text")
        if text is not None:
            try:
                payload, opcode = text.encode("utf-8"), TEXT
            except UnicodeEncodeError:  # a lone surrogate: the writer's path says what failed
                return False
        else:
            payload, opcode = message["bytes"], BINARY
        if len(payload) > self.server.settings.max_frame_size:
            return False
        assert self._turn is not None
        # What waits for the end of the turn is bounded like the outbox: past that, replies
        # go to the outbox behind it, where a client that reads nothing is found too slow.
        frames, size = self._turn.waiting(transport)
        if frames >= self.outbox.max_messages or size + len(payload) > self.outbox.max_bytes:
            return False
        self._turn.write(ws, transport, server_frame(payload, opcode))
        return True

    def _layer_ended(self, exc: BaseException) -> None:
        log.info("websocket %s: replies ended: %s", self.path, exc)
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    def _close_for(self, code: int, why: str) -> None:
        """Close the socket for what it was sent: nothing more is delivered, the writer stops
        (it may be stuck writing to a client that reads nothing), the close takes at most
        ``CLOSE_GRACE``; then the session ends."""
        self.closed_with = code
        if self._writer is not None:
            self._writer.cancel()
        self._closing = asyncio.get_running_loop().create_task(self.close(code, why))
        ended = self._ended
        if ended is not None:
            self._closing.add_done_callback(
                lambda _: None if ended.done() else ended.set_result(None)
            )

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
