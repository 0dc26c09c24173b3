"""Shutting the protocol server down, in the stages uvicorn's ``Server.shutdown`` names:

1. :func:`stop_accepting` ("Shutting down"): readiness fails, the listening socket closes.
2. :func:`close_connections`: every open WebSocket is asked to close with 1012 (service
   restart), evenly spread over ``drain_seconds`` so its clients come back over that
   window rather than all at once.
3. :func:`wait_for_connections` ("Waiting for connections to close"): until those closes
   are done, and HTTP responses in flight are answered for at most ``HTTP_GRACE`` seconds
   (or ``shutdown_timeout`` when shorter).
4. :func:`lifespan_shutdown`: aiohttp's application shutdown (idle keep-alive connections
   closed, its cleanup run).

The sockets' spread takes ``drain_seconds`` whatever ``shutdown_timeout`` is: the pod's
grace period (set by the operator, after its preStop wait) covers both.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from aiohttp import web

from channelapp.settings import Settings
from channelapp.spec import SERVICE_RESTART

log = logging.getLogger("channelapp.server")

HTTP_GRACE = 10.0  # seconds, at most, that HTTP responses in flight are waited for


class ProtocolServer(Protocol):
    """What a shutdown uses of a server: the split protocol server
    (:class:`~channelapp.server.protocol_server.ProtocolServer`) and the in-process ASGI
    server (:class:`~channelapp.server.asgi_host.AsgiHost`) alike."""

    settings: Settings
    draining: bool

    @property
    def sockets(self) -> Mapping[web.WebSocketResponse, Any]: ...

    @property
    def http_in_flight(self) -> int: ...

    async def close_socket(self, ws: web.WebSocketResponse, code: int, why: str) -> None: ...

    async def http_settled(self, timeout: float) -> bool: ...


async def shutdown(server: ProtocolServer, site: web.BaseSite, runner: web.AppRunner) -> None:
    settings = server.settings  # the settings in force now, not those the server started with
    await stop_accepting(server, site)
    closing = close_connections(server, spread=settings.drain_seconds)
    await wait_for_connections(server, closing, grace=min(HTTP_GRACE, settings.shutdown_timeout))
    await lifespan_shutdown(runner)


async def stop_accepting(server: ProtocolServer, site: web.BaseSite) -> None:
    log.info("Shutting down: stop accepting connections")
    server.draining = True
    await site.stop()


def close_connections(server: ProtocolServer, spread: float) -> asyncio.Task[None]:
    """Start closing every open WebSocket with 1012, socket ``i`` of ``n`` at
    ``spread * i / n`` seconds from now; the task ends when all of them are closed."""
    sockets = list(server.sockets)
    log.info("draining: closing %d websocket(s) with 1012 over %gs", len(sockets), spread)
    return asyncio.create_task(_close_spread(server, sockets, spread))


async def _close_spread(
    server: ProtocolServer, sockets: list[web.WebSocketResponse], spread: float
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    closing: list[asyncio.Task[None]] = []
    for i, ws in enumerate(sockets):
        wait = start + spread * i / len(sockets) - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        closing.append(  # each within CLOSE_GRACE: a client that reads nothing is cut off
            asyncio.create_task(server.close_socket(ws, SERVICE_RESTART, "server restarting"))
        )
    await asyncio.gather(*closing, return_exceptions=True)


async def wait_for_connections(
    server: ProtocolServer, closing: asyncio.Task[None], grace: float
) -> None:
    """Wait for the WebSockets' closes and, up to ``grace`` seconds, for HTTP in flight."""
    log.info(
        "Waiting for connections to close (%d websocket(s), %d HTTP request(s))",
        len(server.sockets),
        server.http_in_flight,
    )
    settled, _ = await asyncio.gather(server.http_settled(grace), closing)
    if not settled:
        log.warning(
            "draining: %d HTTP request(s) still in flight after %.0fs",
            server.http_in_flight,
            grace,
        )


async def lifespan_shutdown(runner: web.AppRunner) -> None:
    """aiohttp's application shutdown: its on_shutdown and on_cleanup, connections closed."""
    await runner.cleanup()
    log.info("protocol server stopped")
