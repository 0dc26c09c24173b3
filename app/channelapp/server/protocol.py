"""The protocol server: HTTP and WebSocket connections in, channel messages out, replies back.

Paths ``/healthz``, ``/readyz`` and ``/metrics`` are served by the server itself
(probes and Prometheus need no worker); every other path goes to the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import WSCloseCode, web
from aiohttp.web_urldispatcher import _default_expect_handler

from channelapp import health, metrics
from channelapp.layer import BaseChannelLayer, ChannelFull, MessageTooLarge, ShardUnavailable
from channelapp.security import host_allowed, origin_allowed
from channelapp.server import edges, lost_state, request_body
from channelapp.server.frames import MaskedWebSocketResponse
from channelapp.server.messages import (
    BadReply,
    check_response_body,
    check_response_start,
    check_websocket_reply,
    scope,
)
from channelapp.server.outbox import reply_size
from channelapp.server.websocket import SocketSession, refusal_reason
from channelapp.settings import Settings
from channelapp.spec import (
    HTTP_REQUEST,
    SERVICE_RESTART,
    TRY_AGAIN_LATER,
    WEBSOCKET_CONNECT,
    WEBSOCKET_DISCONNECT,
    WebSocketDisconnect,
)
from channelapp.startup import listen_error, settings_for, split_layer

log = logging.getLogger("channelapp.server")

MAX_SUBPROTOCOLS = 16  # offered in one handshake; more is refused with 400
CLOSE_AFTER_REFUSAL = 0.5  # seconds a connection refused mid-upload (413) lingers


class _DeclinedSubprotocols(logging.Filter):
    """An app choosing none of the offered subprotocols is normal, not worth aiohttp's warning
    (which prints the whole offered list on every connection)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Client protocols" not in str(record.msg)


logging.getLogger("aiohttp.websocket").addFilter(_DeclinedSubprotocols())

BAD_HANDSHAKE = (
    "invalid websocket handshake: Connection: Upgrade, Sec-WebSocket-Version: 13 "
    "and a Sec-WebSocket-Key are required\n"
)


class ProtocolServer:
    def __init__(self, settings: Settings, layer: BaseChannelLayer) -> None:
        self.settings = settings
        self.layer = layer
        self.draining = False
        self.sockets: dict[web.WebSocketResponse, SocketSession] = {}
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
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

    async def _reply(self, channel: str, timeout: float) -> Any:
        async with asyncio.timeout(timeout):
            return await self.layer.receive(channel)

    # --- dispatch ---------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not host_allowed(request.host, self.settings.allowed_hosts):
            return self._answer(
                web.Response(status=400, text=f"host {request.host!r} is not allowed\n")
            )
        if self.draining:
            return self._answer(
                web.Response(
                    status=503, text="server is shutting down\n", headers={"Connection": "close"}
                )
            )
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if upgrade and request.method == "GET":
            return await self.handle_websocket(request)
        self._inflight += 1
        self._idle.clear()
        try:
            return await self.handle_http(request)
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()

    def _answer(self, response: web.StreamResponse) -> web.StreamResponse:
        metrics.HTTP_REQUESTS.labels(str(response.status)).inc()
        return response

    # --- HTTP -------------------------------------------------------------------------------

    async def _too_large(self, request: web.Request) -> web.StreamResponse:
        refusal = web.Response(
            status=413, text=f"request body larger than {self.settings.max_body_size} bytes\n"
        )
        refusal.force_close()  # says Connection: close
        await refusal.prepare(request)
        await refusal.write_eof()
        transport = request.transport
        if transport is not None:
            # The client may still be sending the body: the end of the answer is said now
            # (FIN), and the connection dropped a moment later instead of reading the rest
            # until READ_TIMEOUT, as aiohttp would. Closing at once while bytes still arrive
            # could reset the connection before the client reads the 413.
            if transport.can_write_eof():
                transport.write_eof()
            asyncio.get_running_loop().call_later(CLOSE_AFTER_REFUSAL, transport.close)
        return self._answer(refusal)

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        """``Expect: 100-continue``: a declared body over ``max_body_size`` is refused before
        the client uploads it; otherwise aiohttp's own handling (100 Continue)."""
        length = request.content_length
        if length is not None and length > self.settings.max_body_size:
            return await self._too_large(request)
        await _default_expect_handler(request)
        return None

    async def handle_http(self, request: web.Request) -> web.StreamResponse:
        pumps: list[asyncio.Task[request_body.BodyOutcome]] = []
        try:
            return await self._handle_http(request, pumps)
        finally:
            for task in pumps:  # a body the app did not wait for is not forwarded any more
                if not task.done():
                    task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _reply_or_body_refusal(
        self, reply: str, timeout: float, pump: asyncio.Task[request_body.BodyOutcome]
    ) -> Any:
        """The first reply, or the body's outcome (a str) when the body failed first."""
        receive = asyncio.create_task(self._reply(reply, timeout))
        await asyncio.wait({receive, pump}, return_when=asyncio.FIRST_COMPLETED)
        if not receive.done() and pump.result() != "complete":
            receive.cancel()
            await asyncio.gather(receive, return_exceptions=True)
            return pump.result()
        return await receive

    async def _handle_http(
        self, request: web.Request, pumps: list[asyncio.Task[request_body.BodyOutcome]]
    ) -> web.StreamResponse:
        t0 = time.perf_counter()
        limit = self.settings.max_body_size
        # One READ_TIMEOUT for the whole body, its first chunk and the streamed rest alike.
        body_deadline = asyncio.get_running_loop().time() + self.settings.read_timeout
        try:
            async with asyncio.timeout(self.settings.read_timeout):
                first, complete = await request_body.read_first(request, limit)
        except TimeoutError:
            return await self._request_timeout(request)
        except request_body.BodyTooLarge:
            return await self._too_large(request)
        reply = await self.layer.new_channel("http.response")
        message: dict[str, Any] = {
            "type": HTTP_REQUEST,
            "method": request.method,
            "body": first,
            **scope(request, reply),
        }
        body_channel = None
        if not complete:  # the rest streams on the request's own channel
            body_channel = request_body.new_body_channel()
            message.update(more_body=True, body_channel=body_channel)
        refused = await self.send(HTTP_REQUEST, message)
        if refused:
            why = "server busy" if refused == "full" else "channel layer unavailable"
            return self._answer(
                web.Response(status=503, text=f"{why}, try again\n", headers={"Retry-After": "1"})
            )
        timeout = self.settings.response_timeout
        try:
            if body_channel is not None:
                pump = asyncio.create_task(
                    request_body.pump(
                        request,
                        self.layer,
                        body_channel,
                        len(first),
                        limit,
                        max(0.0, body_deadline - asyncio.get_running_loop().time()),
                    )
                )
                pumps.append(pump)
                start = await self._reply_or_body_refusal(reply, timeout, pump)
                if start == "too_large":
                    return await self._too_large(request)
                if start == "timeout":
                    return await self._request_timeout(request)
                if start == "gone":
                    return self._answer(web.Response(status=400, text="request body broken off\n"))
            else:
                start = await self._reply(reply, timeout)
            status, headers = check_response_start(start)
            first = await self._reply(reply, timeout)
            chunk, more = check_response_body(first)
        except TimeoutError:
            log.warning(
                "%s %s: no response from a worker within %.1fs",
                request.method,
                request.path,
                timeout,
            )
            return self._answer(web.Response(status=504, text="no response from the application\n"))
        except BadReply as exc:
            log.error(
                "%s %s: malformed response from the application: %s",
                request.method,
                request.path,
                exc,
            )
            return self._answer(
                web.Response(status=500, text="malformed response from the application\n")
            )
        except ShardUnavailable as exc:
            log.error("%s %s: %s", request.method, request.path, exc)
            self.layer_probe.failed(exc)
            return self._answer(
                web.Response(
                    status=503,
                    text="channel layer unavailable, try again\n",
                    headers={"Retry-After": "1"},
                )
            )
        metrics.HTTP_LATENCY.observe(time.perf_counter() - t0)
        if not more:
            response = web.Response(status=status, body=chunk)
            for name, value in headers:
                response.headers.add(name, value)
            return self._answer(response)
        stream = web.StreamResponse(status=status)
        for name, value in headers:
            stream.headers.add(name, value)
        await stream.prepare(request)
        metrics.HTTP_REQUESTS.labels(str(status)).inc()
        # No body on the wire for these: aiohttp would write the app's chunks unframed, and
        # the client would read them as the start of the next response. They are still taken.
        bodiless = request.method == "HEAD" or status in (204, 304)
        if not bodiless:
            await stream.write(chunk)
        try:
            while more:
                chunk, more = check_response_body(await self._reply(reply, timeout))
                if not bodiless:
                    await stream.write(chunk)
        except (TimeoutError, BadReply, ShardUnavailable) as exc:
            # Headers are out; all that can be done is to cut the stream short.
            log.error("%s %s: response stream broken: %r", request.method, request.path, exc)
            if request.transport is not None:
                request.transport.close()
            return stream
        await stream.write_eof()
        return stream

    async def _request_timeout(self, request: web.Request) -> web.StreamResponse:
        """408 for a body that stopped short of its length; the connection is closed at once."""
        timeout = self.settings.read_timeout
        log.info("%s %.200s: body not received within %gs", request.method, request.path, timeout)
        response = web.Response(
            status=408, text=f"request body not received within {self.settings.read_timeout:g}s\n"
        )
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        if request.transport is not None:
            request.transport.close()  # no lingering read of a body that is not coming
        return self._answer(response)

    # --- WebSocket --------------------------------------------------------------------------

    async def handle_websocket(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        settings = self.settings
        if not origin_allowed(origin, settings.allowed_origins, settings.allowed_hosts):
            log.info("websocket from origin %.200r refused", origin)
            return self._answer(
                web.Response(status=403, text=f"origin {origin!r} is not allowed\n")
            )
        version_refusal = edges.websocket_version_refusal(request)
        if version_refusal is not None:
            return self._answer(version_refusal)
        # A handshake aiohttp would refuse must not reach the application: connect would
        # run (groups, session, order keys) for a socket that never opens.
        if not web.WebSocketResponse().can_prepare(request).ok:
            log.info("websocket %s: invalid handshake refused", request.path)
            return self._answer(web.Response(status=400, text=BAD_HANDSHAKE))
        reply = await self.layer.new_channel("websocket.send")
        base = scope(request, reply)
        protocols = [
            p.strip()
            for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        if len(protocols) > MAX_SUBPROTOCOLS:
            return self._answer(
                web.Response(
                    status=400,
                    text=f"more than {MAX_SUBPROTOCOLS} WebSocket subprotocols offered\n",
                )
            )
        connect = {"type": WEBSOCKET_CONNECT, "subprotocols": protocols, "order": 0, **base}
        await lost_state.settle(self)  # a shard that may have restarted is checked first
        refused = await self.send(WEBSOCKET_CONNECT, connect)
        if refused:  # connect never queued: nothing to undo
            return await self._close_at_once(request, TRY_AGAIN_LATER, refusal_reason(refused))
        # From here on connect may have run, so every way out sends the disconnect.
        code: int = WSCloseCode.ABNORMAL_CLOSURE
        early: list[dict[str, Any]] = []
        try:
            first, kind = await self._handshake_answer(reply, early)
        except TimeoutError:
            log.warning("websocket %s: no accept from a worker in time", request.path)
            await self.disconnect(reply, request.path, code, 1)
            return self._answer(web.Response(status=504, text="no response from the application\n"))
        except ShardUnavailable as exc:  # this server's replies live on a shard that is down
            log.error("websocket %s: %s", request.path, exc)
            self.layer_probe.failed(exc)
            await self.disconnect(reply, request.path, code, 1)
            return await self._close_at_once(
                request, TRY_AGAIN_LATER, refusal_reason("unavailable")
            )
        except BadReply as exc:
            log.error("websocket %s: %s", request.path, exc)
            await self.disconnect(reply, request.path, code, 1)
            return self._answer(
                web.Response(status=500, text="malformed response from the application\n")
            )
        if kind == "websocket.close" and first.get("code") == TRY_AGAIN_LATER:
            # Refused for now (the application could not reach the channel layer): 503.
            await self.disconnect(reply, request.path, TRY_AGAIN_LATER, 1)
            return self._answer(
                web.Response(status=503, text="try again later\n", headers={"Retry-After": "1"})
            )
        if kind != "websocket.accept":
            await self.disconnect(reply, request.path, int(first.get("code", 1000)), 1)
            return self._answer(web.Response(status=403, text="connection rejected\n"))
        subprotocol = first.get("subprotocol")
        ws = MaskedWebSocketResponse(
            protocols=[subprotocol] if isinstance(subprotocol, str) else (),
            # aiohttp refuses an uncompressed frame of exactly max_msg_size: one more here, and
            # the session refuses what is past max_frame_size (SocketSession._read).
            max_msg_size=self.settings.max_frame_size + 1,
            heartbeat=30,
        )
        try:
            await ws.prepare(request)
        except Exception:
            await self.disconnect(reply, request.path, code, 1)
            raise
        metrics.HTTP_REQUESTS.labels("101").inc()
        session = SocketSession(self, ws, request, reply, early)
        self.sockets[ws] = session
        metrics.WEBSOCKETS_OPEN.inc()
        try:
            await session.run()
        finally:
            self.sockets.pop(ws, None)
            metrics.WEBSOCKETS_OPEN.dec()
        return ws

    async def _handshake_answer(
        self, reply: str, early: list[dict[str, Any]]
    ) -> tuple[dict[str, Any], str]:
        """The application's accept or close. Messages sent to the socket before it (a group
        broadcast reaching a member whose connect is still running) are kept in ``early``,
        in order, for delivery after the accept; more than its outbox would hold
        (``channel_capacity`` messages, ``send_buffer_size`` bytes) is BadReply."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.response_timeout
        size = 0
        while True:
            message = await self._reply(reply, max(0.0, deadline - loop.time()))
            kind = check_websocket_reply(message)
            if kind != "websocket.send":
                return message, kind
            early.append(message)
            size += reply_size(message)
            if len(early) > self.settings.channel_capacity or (
                len(early) > 1 and size > self.settings.send_buffer_size
            ):
                raise BadReply(
                    f"{len(early)} messages ({size} bytes) sent to the socket before its "
                    "connect was answered"
                )

    async def _close_at_once(self, request: web.Request, code: int, why: str) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close(code=code, message=why.encode())
        return ws

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

    # --- lifecycle --------------------------------------------------------------------------

    async def close_socket(self, ws: web.WebSocketResponse, code: int, why: str) -> None:
        """Close one open socket from outside its session, within the session's grace."""
        session = self.sockets.get(ws)
        if session is not None:
            await session.close(code, why)

    async def drain(self, grace: float = 10.0, spread: float = 0.0) -> None:
        """Stop being ready; close every WebSocket with 1012 (service restart), evenly spread
        over ``spread`` seconds so their clients come back over that window rather than all
        at once; meanwhile wait up to ``grace`` seconds for HTTP responses in flight."""
        self.draining = True
        sockets = list(self.sockets)
        log.info("draining: closing %d websocket(s) with 1012 over %gs", len(sockets), spread)
        await asyncio.gather(self._close_spread(sockets, spread), self._http_settled(grace))

    async def _close_spread(self, sockets: list[web.WebSocketResponse], spread: float) -> None:
        """Socket ``i`` of ``n`` is closed ``spread * i / n`` seconds from now."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        closing: list[asyncio.Task[None]] = []
        for i, ws in enumerate(sockets):
            wait = start + spread * i / len(sockets) - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            closing.append(  # each within CLOSE_GRACE: a client that reads nothing is cut off
                asyncio.create_task(self.close_socket(ws, SERVICE_RESTART, "server restarting"))
            )
        await asyncio.gather(*closing, return_exceptions=True)

    async def _http_settled(self, grace: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        if self._inflight:
            log.warning(
                "draining: %d HTTP request(s) still in flight after %.0fs", self._inflight, grace
            )


async def serve_protocol(
    settings: Settings,
    layer: BaseChannelLayer,
    host: str,
    port: int,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set (or the task is cancelled), then shut down in stages."""
    server = ProtocolServer(settings, layer)
    # keepalive_timeout closes a connection that sends no complete request head in time, new or
    # idle (aiohttp arms it from connection_made): slow-header clients cannot hold sockets.
    runner = web.AppRunner(
        server.app, handle_signals=False, access_log=None, keepalive_timeout=settings.read_timeout
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise listen_error("HTTP", host, port, exc) from None
    log.info("protocol server listening on http://%s:%d", host, port)
    probe = asyncio.create_task(server.layer_probe.run())
    if ready is not None:
        ready.set()
    stop = stop or asyncio.Event()
    try:
        async with lost_state.watching(server):
            await stop.wait()
    finally:
        probe.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probe
        log.info("shutting down: stop accepting connections")
        server.draining = True
        await site.stop()
        # The sockets' drain takes drain_seconds whatever shutdown_timeout is: the pod's
        # grace period (set by the operator) covers both.
        await server.drain(
            grace=min(10.0, settings.shutdown_timeout), spread=settings.drain_seconds
        )
        await runner.cleanup()
        log.info("protocol server stopped")


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def run_protocol_async(app: Any, host: str, port: int) -> None:
    settings = settings_for(app)
    layer = split_layer(settings, "protocol server")
    stop = asyncio.Event()
    install_stop_signals(stop)
    try:
        await serve_protocol(settings, layer, host, port, stop=stop)
    finally:
        await layer.close()
