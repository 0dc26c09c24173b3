"""WebSocket handshakes: what is refused before the workers hear of it (origin, version,
a malformed handshake, too many subprotocols), then ``websocket.connect``, the
application's accept or refusal, and the accepted socket's session.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from aiohttp import WSCloseCode, web

from channelapp import health, metrics
from channelapp.layer import ShardUnavailable
from channelapp.security import origin_allowed
from channelapp.server import edges, lost_state, responses
from channelapp.server.frames import MaskedWebSocketResponse
from channelapp.server.host import SocketHost
from channelapp.server.messages import BadReply, check_websocket_reply, scope
from channelapp.server.outbox import reply_size
from channelapp.server.websocket import SocketSession, refusal_reason
from channelapp.settings import Settings
from channelapp.spec import TRY_AGAIN_LATER, WEBSOCKET_CONNECT

log = logging.getLogger("channelapp.server")

MAX_SUBPROTOCOLS = 16  # offered in one handshake; more is refused with 400
HEARTBEAT = 30.0  # seconds between pings to an open socket

BAD_HANDSHAKE = (
    "invalid websocket handshake: Connection: Upgrade, Sec-WebSocket-Version: 13 "
    "and a Sec-WebSocket-Key are required\n"
)


class _DeclinedSubprotocols(logging.Filter):
    """An app choosing none of the offered subprotocols is normal, not worth aiohttp's warning
    (which prints the whole offered list on every connection)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Client protocols" not in str(record.msg)


logging.getLogger("aiohttp.websocket").addFilter(_DeclinedSubprotocols())


class HandshakeHost(SocketHost, Protocol):
    """The protocol server seen from a handshake: a socket's host, with the registry of
    open sockets the accepted one joins, and the layer's readiness probe."""

    @property
    def sockets(self) -> dict[web.WebSocketResponse, SocketSession]: ...

    @property
    def layer_probe(self) -> health.LayerProbe: ...


def is_upgrade(request: web.Request) -> bool:
    return request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket"


def subprotocols(request: web.Request) -> list[str]:
    header = request.headers.get("Sec-WebSocket-Protocol", "")
    return [p.strip() for p in header.split(",") if p.strip()]


def refusal(request: web.Request, settings: Settings) -> web.Response | None:
    """403 for an origin not allowed, 426 for another WebSocket version, 400 for a handshake
    aiohttp would refuse or too many subprotocols; None for a handshake to pass on."""
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, settings.allowed_origins, settings.allowed_hosts):
        log.info("websocket from origin %.200r refused", origin)
        return web.Response(status=403, text=f"origin {origin!r} is not allowed\n")
    version_refusal = edges.websocket_version_refusal(request)
    if version_refusal is not None:
        return version_refusal
    # A handshake aiohttp would refuse must not reach the application: connect would
    # run (groups, session, order keys) for a socket that never opens.
    if not web.WebSocketResponse().can_prepare(request).ok:
        log.info("websocket %s: invalid handshake refused", request.path)
        return web.Response(status=400, text=BAD_HANDSHAKE)
    if len(subprotocols(request)) > MAX_SUBPROTOCOLS:
        return web.Response(
            status=400, text=f"more than {MAX_SUBPROTOCOLS} WebSocket subprotocols offered\n"
        )
    return None


async def close_at_once(request: web.Request, code: int, why: str) -> web.StreamResponse:
    """Open the socket only to close it with ``code`` (the client reads why, not a 5xx)."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.close(code=code, message=why.encode())
    return ws


class WebSocketHandshake:
    """One handshake, from the upgrade request to the socket's end (:meth:`run`)."""

    def __init__(self, host: HandshakeHost, request: web.Request) -> None:
        self.host = host
        self.request = request
        self.reply: str | None = None  # the socket's reply channel, once connect is sent
        # Sent to the socket before its accept, delivered first once it is open.
        self.early: list[dict[str, Any]] = []

    async def run(self) -> web.StreamResponse:
        request, host = self.request, self.host
        refused_handshake = refusal(request, host.settings)
        if refused_handshake is not None:
            return responses.counted(refused_handshake)
        self.reply = reply = await host.layer.new_channel("websocket.send")
        connect = {
            "type": WEBSOCKET_CONNECT,
            "subprotocols": subprotocols(request),
            "order": 0,
            **scope(request, reply),
        }
        await lost_state.settle(host)  # a shard that may have restarted is checked first
        refused = await host.send(WEBSOCKET_CONNECT, connect)
        if refused:  # connect never queued: nothing to undo
            return await close_at_once(request, TRY_AGAIN_LATER, refusal_reason(refused))
        # From here on connect may have run, so every way out sends the disconnect.
        try:
            first, kind = await self._answer()
        except TimeoutError:
            log.warning("websocket %s: no accept from a worker in time", request.path)
            await self._disconnect(WSCloseCode.ABNORMAL_CLOSURE)
            return responses.no_response()
        except ShardUnavailable as exc:  # this server's replies live on a shard that is down
            log.error("websocket %s: %s", request.path, exc)
            host.layer_probe.failed(exc)
            await self._disconnect(WSCloseCode.ABNORMAL_CLOSURE)
            return await close_at_once(request, TRY_AGAIN_LATER, refusal_reason("unavailable"))
        except BadReply as exc:
            log.error("websocket %s: %s", request.path, exc)
            await self._disconnect(WSCloseCode.ABNORMAL_CLOSURE)
            return responses.malformed()
        if kind == "websocket.close" and first.get("code") == TRY_AGAIN_LATER:
            # Refused for now (the application could not reach the channel layer): 503.
            await self._disconnect(TRY_AGAIN_LATER)
            return responses.counted(
                web.Response(status=503, text="try again later\n", headers={"Retry-After": "1"})
            )
        if kind != "websocket.accept":
            await self._disconnect(int(first.get("code", 1000)))
            return responses.counted(web.Response(status=403, text="connection rejected\n"))
        subprotocol = first.get("subprotocol")
        # This frame lives as long as the socket: it keeps neither the scope nor the accept.
        del connect, first
        return await self._open(subprotocol)

    async def _disconnect(self, code: int) -> None:
        assert self.reply is not None
        await self.host.disconnect(self.reply, self.request.path, code, 1)

    async def _answer(self) -> tuple[dict[str, Any], str]:
        """The application's accept or close. Messages sent to the socket before it (a group
        broadcast reaching a member whose connect is still running) are kept in ``early``,
        in order, for delivery after the accept; more than its outbox would hold
        (``channel_capacity`` messages, ``send_buffer_size`` bytes) is BadReply."""
        assert self.reply is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.host.settings.response_timeout
        size = 0
        while True:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                message = await self.host.layer.receive(self.reply)
            kind = check_websocket_reply(message)
            if kind != "websocket.send":
                return message, kind
            self.early.append(message)
            size += reply_size(message)
            settings = self.host.settings
            if len(self.early) > settings.channel_capacity or (
                len(self.early) > 1 and size > settings.send_buffer_size
            ):
                raise BadReply(
                    f"{len(self.early)} messages ({size} bytes) sent to the socket before its "
                    "connect was answered"
                )

    async def _open(self, subprotocol: object) -> web.StreamResponse:
        """Complete the handshake and serve the socket until it closes."""
        assert self.reply is not None
        ws = MaskedWebSocketResponse(
            protocols=[subprotocol] if isinstance(subprotocol, str) else (),
            # aiohttp refuses an uncompressed frame of exactly max_msg_size: one more here, and
            # the session refuses what is past max_frame_size (SocketSession._read).
            max_msg_size=self.host.settings.max_frame_size + 1,
            heartbeat=HEARTBEAT,
        )
        try:
            await ws.prepare(self.request)
        except Exception:
            await self._disconnect(WSCloseCode.ABNORMAL_CLOSURE)
            raise
        metrics.HTTP_REQUESTS.labels("101").inc()
        session = SocketSession(self.host, ws, self.request, self.reply, self.early)
        self.host.sockets[ws] = session
        metrics.WEBSOCKETS_OPEN.inc()
        try:
            await session.run()
        finally:
            self.host.sockets.pop(ws, None)
            metrics.WEBSOCKETS_OPEN.dec()
        return ws
