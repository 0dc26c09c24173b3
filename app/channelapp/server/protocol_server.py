"""The protocol server: HTTP and WebSocket connections in, channel messages out, replies back.

Paths ``/healthz``, ``/readyz`` and ``/metrics`` are served by the server itself
(probes and Prometheus need no worker); every other path goes to the workers: a
WebSocket upgrade as a :class:`~channelapp.server.handshake.WebSocketHandshake`, any
other request as an :class:`~channelapp.server.http_exchange.HttpExchange`.

``settings`` is read on every use, never copied, so that it may be replaced while serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from aiohttp import web

from channelapp import health, metrics
from channelapp.layer import BaseChannelLayer, ChannelFull, MessageTooLarge, ShardUnavailable
from channelapp.server import admission, edges, handshake, responses
from channelapp.server.http_exchange import HttpExchange
from channelapp.server.websocket import SocketSession
from channelapp.settings import Settings
from channelapp.spec import WEBSOCKET_DISCONNECT, WebSocketDisconnect

log = logging.getLogger("channelapp.server")


class ProtocolServer:
    def __init__(self, settings: Settings, layer: BaseChannelLayer) -> None:
        self.settings = settings
        self.layer = layer
        self.draining = False
        self.sockets: dict[web.WebSocketResponse, SocketSession] = {}
        self._http_in_flight = 0
        self._http_idle = asyncio.Event()
        self._http_idle.set()
        # aiohttp's client_max_size only bounds request.read(), which nothing here calls:
        # bodies are read by HttpExchange against settings.max_body_size.
        self.app = web.Application(
            client_max_size=settings.max_body_size, middlewares=[edges.client_errors]
        )
        # Ready while not draining and the layer answers: without it no request can be served.
        # The answer is public (the app's port): which shard failed, and why, is only logged.
        self.layer_probe = health.LayerProbe(layer)
        health.add_health_routes(
            self.app,
            lambda: not self.draining and self.layer_probe.problem is None,
            why_not_ready=lambda: (
                "shutting down"
                if self.draining
                else "redis unavailable"
                if self.layer_probe.checked
                else "starting"
            ),
        )
        self.app.router.add_route("*", "/{tail:.*}", self.handle, expect_handler=self._expect)

    # --- sending to the layer ---------------------------------------------------------------

    async def send(self, channel: str, message: Mapping[str, Any]) -> str | None:
        """Send; on refusal return the reason ("full", "unavailable" or "too_large") instead
        of raising."""
        try:
            await self.layer.send(channel, message if isinstance(message, dict) else dict(message))
        except ChannelFull:
            metrics.LAYER_SEND_FAILURES.labels(channel, "full").inc()
            return "full"
        except MessageTooLarge as exc:
            metrics.LAYER_SEND_FAILURES.labels(channel, "too_large").inc()
            log.error("cannot send to %s: %s", channel, exc)
            return "too_large"
        except ShardUnavailable as exc:
            metrics.LAYER_SEND_FAILURES.labels(channel, "unavailable").inc()
            log.error("cannot send to %s: %s", channel, exc)
            self.layer_probe.failed(exc)
            return "unavailable"
        metrics.LAYER_SENDS.labels(channel).inc()
        return None

    # --- dispatch ---------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        refusal = admission.refusal(request, self.settings, self.draining)
        if refusal is not None:
            return responses.counted(refusal)
        if handshake.is_upgrade(request):
            return await handshake.WebSocketHandshake(self, request).run()
        with self.http_request():
            return await HttpExchange(self, request).run()

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        return await admission.expect(request, self.settings.max_body_size)

    # --- sockets ----------------------------------------------------------------------------

    async def disconnect(self, reply: str, path: str, code: int, order: int) -> None:
        """Tell the application the socket is gone (after every connect that was queued)."""
        message: WebSocketDisconnect = {
            "type": WEBSOCKET_DISCONNECT,
            "reply_channel": reply,
            "path": path,
            "code": code,
            "order": order,
        }
        refused = await self.send(WEBSOCKET_DISCONNECT, message)
        if refused:
            log.error("websocket %s: disconnect of %s not queued (%s)", path, reply, refused)

    async def close_socket(self, ws: web.WebSocketResponse, code: int, why: str) -> None:
        """Close one open socket from outside its session, within the session's grace."""
        session = self.sockets.get(ws)
        if session is not None:
            await session.close(code, why)

    # --- HTTP in flight ---------------------------------------------------------------------

    @contextlib.contextmanager
    def http_request(self) -> Iterator[None]:
        """Counts an HTTP request as in flight while it is answered."""
        self._http_in_flight += 1
        self._http_idle.clear()
        try:
            yield
        finally:
            self._http_in_flight -= 1
            if not self._http_in_flight:
                self._http_idle.set()

    @property
    def http_in_flight(self) -> int:
        """HTTP requests (not WebSockets) being answered now."""
        return self._http_in_flight

    async def http_settled(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for no HTTP request to be in flight; did that happen?"""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._http_idle.wait(), timeout)
        return not self._http_in_flight
