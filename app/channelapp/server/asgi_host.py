"""An ASGI 3 application served in-process, as daphne and uvicorn serve one: ``channelapp asgi``.

The application's ``http`` and ``websocket`` scopes run in this process, behind the
admission of the split protocol server, from the same modules: the ``Host`` check and the
refusal while shutting down (:mod:`~channelapp.server.admission`), the WebSocket checks
(origin, version, malformed handshakes, subprotocols: :func:`~channelapp.server.handshake.refusal`),
masked client frames, ``max_frame_size``, ``max_body_size``, ``read_timeout``, the
``response_timeout`` for a response to start or a socket to be accepted, a bounded outbox per
socket that closes a slow reader with 1008 (:class:`~channelapp.server.websocket.SocketSession`),
and the shutdown's stages (:mod:`~channelapp.server.shutdown`): readiness fails, sockets are
closed with 1012 spread over ``drain_seconds``, HTTP in flight is answered. The lifespan
protocol runs before the first request and after the last; an application that does not
speak it (Django's) is served without it.

A socket's session is the split server's: what it would send to the workers goes to the
application's ``receive()`` here, and what the application ``send()``s waits on the
socket's own in-process reply queue (:class:`InProcessReplies`), from which the session's
subscription (a receive loop) moves it into the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any

from aiohttp import WSCloseCode, web

from channelapp import health, metrics
from channelapp.consumers.asgi import ASGIApp, AsgiMount, Lifespan, http_scope
from channelapp.consumers.body import BODY_CHUNK_SIZE
from channelapp.layer import BaseChannelLayer, layer_from_settings
from channelapp.layer.base import ChannelStatistics, Message
from channelapp.server import admission, edges, handshake, request_body, responses
from channelapp.server.frames import MaskedWebSocketResponse
from channelapp.server.messages import (
    BadReply,
    check_response_body,
    check_response_start,
    check_websocket_reply,
    scope,
)
from channelapp.server.outbox import reply_size
from channelapp.server.shutdown import shutdown
from channelapp.server.websocket import SocketSession
from channelapp.settings import Settings
from channelapp.spec import INTERNAL_ERROR, WEBSOCKET_DISCONNECT, WEBSOCKET_RECEIVE
from channelapp.startup import listen_error

log = logging.getLogger("channelapp.server")

APP_FAILED = "channelapp.asgi.failed"  # on a socket's reply queue: its application raised
APP_GRACE = 5.0  # seconds, at most, applications get to end after their sockets closed


class InProcessReplies(BaseChannelLayer):
    """The replies of this process's sockets: one unbounded queue per socket, drained at once
    by the socket's session into its bounded outbox (which is what limits a slow reader)."""

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[Message]] = {}

    async def new_channel(self, prefix: str = "specific") -> str:
        name = f"{prefix}.inprocess!{secrets.token_hex(8)}"
        self._queues[name] = asyncio.Queue()
        return name

    def put(self, channel: str, message: Message) -> None:
        queue = self._queues.get(channel)
        if queue is not None:  # a socket that is gone takes nothing more
            queue.put_nowait(message)

    def forget(self, channel: str) -> None:
        self._queues.pop(channel, None)

    async def send(self, channel: str, message: Message) -> None:
        self.put(channel, message)

    async def receive(self, channel: str) -> Message:
        return await self._queues[channel].get()

    async def receive_many(
        self, channels: Iterable[str], max_messages: int = 100, timeout: float | None = None
    ) -> list[tuple[str, Message]]:
        raise NotImplementedError("in-process replies are received one socket at a time")

    async def group_add(self, group: str, channel: str) -> None:
        raise NotImplementedError("in-process replies have no groups")

    async def group_discard(self, group: str, channel: str) -> None:
        raise NotImplementedError("in-process replies have no groups")

    async def group_send(self, group: str, message: Message) -> int:
        raise NotImplementedError("in-process replies have no groups")

    async def flush(self) -> None:
        self._queues.clear()

    async def channel_statistics(self, channel: str) -> ChannelStatistics:
        raise NotImplementedError

    async def channels_statistics(self, channels: Iterable[str]) -> dict[str, ChannelStatistics]:
        raise NotImplementedError

    async def global_statistics(self) -> ChannelStatistics:
        raise NotImplementedError


class _Inbox:
    """What one socket's application ``receive()``s: bounded by ``channel_capacity`` for
    the client's frames (a client faster than its application is closed with 1013, as a
    full channel closes it in the split mode); the disconnect always fits."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def offer(self, event: dict[str, Any]) -> bool:
        if self.queue.qsize() >= self.capacity:
            return False
        self.queue.put_nowait(event)
        return True


def _websocket_scope(request: web.Request, state: dict[str, Any]) -> MutableMapping[str, Any]:
    message = scope(request, "")
    message["method"] = "GET"
    out = http_scope(message, "", state)
    del out["method"]
    out["type"] = "websocket"
    out["scheme"] = "wss" if request.scheme == "https" else "ws"
    out["subprotocols"] = handshake.subprotocols(request)
    return out


def _http_scope(request: web.Request, state: dict[str, Any]) -> MutableMapping[str, Any]:
    message = scope(request, "")
    message["method"] = request.method
    return http_scope(message, "", state)


class _HttpCall:
    """One HTTP request served by the application: its ``receive`` and ``send``."""

    def __init__(self, host: AsgiHost, request: web.Request) -> None:
        self.host = host
        self.request = request
        self.settings = host.settings
        self.received = 0  # body bytes read so far
        self.read_any = False
        self.body_done = False
        self.finished = False  # the response's end is written
        self.failure: str | None = None  # "too_large" or "timeout": the body broke a limit
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.response: web.StreamResponse | None = None
        self.started = asyncio.Event()
        self.complete = asyncio.Event()
        loop = asyncio.get_running_loop()
        self.body_deadline = loop.time() + self.settings.read_timeout

    async def receive(self) -> dict[str, Any]:
        if self.body_done:
            await self.complete.wait()
            return {"type": "http.disconnect"}
        remaining = max(0.0, self.body_deadline - asyncio.get_running_loop().time())
        limit = self.settings.max_body_size
        try:
            async with asyncio.timeout(remaining):
                if not self.read_any:
                    chunk, last = await request_body.read_first(self.request, limit)
                else:
                    chunk = await self.request.content.read(BODY_CHUNK_SIZE)
                    last = not chunk or self.request.content.at_eof()
        except TimeoutError:
            return self._fail("timeout")
        except request_body.BodyTooLarge:
            return self._fail("too_large")
        self.read_any = True
        self.received += len(chunk)
        if self.received > limit:
            return self._fail("too_large")
        self.body_done = last
        return {"type": "http.request", "body": chunk, "more_body": not last}

    def _fail(self, why: str) -> dict[str, Any]:
        self.failure = why
        self.body_done = True
        self.complete.set()
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if self.complete.is_set():
            return  # the client is gone or the response is complete: nothing more is written
        kind = message.get("type")
        if kind == "http.response.start" and self.status is None:
            self.status, self.headers = check_response_start(dict(message))
            self.started.set()
            return
        if self.status is None:
            raise BadReply(f'expected "http.response.start", got {kind!r}')
        chunk, more = check_response_body(dict(message))
        request = self.request
        if self.response is None:
            response = web.StreamResponse(status=self.status)
            for name, value in self.headers:
                response.headers.add(name, value)
            if not more and "Content-Length" not in response.headers:
                response.content_length = len(chunk)
            await response.prepare(request)
            metrics.HTTP_REQUESTS.labels(str(self.status)).inc()
            self.response = response
        bodiless = request.method == "HEAD" or self.status in (204, 304)
        if chunk and not bodiless:
            await self.response.write(chunk)
        if not more:
            await self.response.write_eof()
            self.finished = True
            self.complete.set()


class AsgiHost:
    """The in-process server: an aiohttp application around one ASGI application."""

    def __init__(
        self,
        application: ASGIApp,
        settings: Settings,
        *,
        probe_layer: BaseChannelLayer | None = None,
    ) -> None:
        self.mount = AsgiMount(application)
        self.application = application
        self.settings = settings
        self.draining = False
        self.layer = InProcessReplies()
        self.sockets: dict[web.WebSocketResponse, SocketSession] = {}
        self._inboxes: dict[str, _Inbox] = {}
        self._accepted: set[str] = set()  # sockets accepted whose application still runs
        self.app_tasks: set[asyncio.Task[None]] = set()
        self._http_in_flight = 0
        self._http_idle = asyncio.Event()
        self._http_idle.set()
        self.app = web.Application(
            client_max_size=settings.max_body_size, middlewares=[edges.client_errors]
        )
        # Ready while not draining and, with a channel layer, while it answers.
        self.layer_probe = health.LayerProbe(probe_layer) if probe_layer is not None else None
        health.add_health_routes(
            self.app,
            lambda: (
                not self.draining and (self.layer_probe is None or self.layer_probe.problem is None)
            ),
            why_not_ready=lambda: "shutting down" if self.draining else "redis unavailable",
        )
        self.app.router.add_route("*", "/{tail:.*}", self.handle, expect_handler=self._expect)

    # --- what a socket's session calls -------------------------------------------------------

    async def send(self, channel: str, message: Mapping[str, Any]) -> str | None:
        """A client's frame for its application; "full" when the application is that far behind."""
        inbox = self._inboxes.get(str(message.get("reply_channel")))
        if inbox is None:
            return None
        event: dict[str, Any] = {"type": WEBSOCKET_RECEIVE}
        if message.get("text") is not None:
            event["text"] = message["text"]
        else:
            event["bytes"] = message.get("bytes")
        return None if inbox.offer(event) else "full"

    async def disconnect(self, reply: str, path: str, code: int, order: int) -> None:
        inbox = self._inboxes.pop(reply, None)
        self.layer.forget(reply)
        if inbox is not None:
            inbox.queue.put_nowait({"type": WEBSOCKET_DISCONNECT, "code": code})

    async def close_socket(self, ws: web.WebSocketResponse, code: int, why: str) -> None:
        session = self.sockets.get(ws)
        if session is not None:
            await session.close(code, why)

    # --- dispatch ------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        refusal = admission.refusal(request, self.settings, self.draining)
        if refusal is not None:
            return responses.counted(refusal)
        if handshake.is_upgrade(request):
            return await self._websocket(request)
        with self._http_request():
            return await self._http(request)

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        return await admission.expect(request, self.settings.max_body_size)

    def _start(
        self, scope: MutableMapping[str, Any], receive: Any, send: Any
    ) -> asyncio.Task[None]:
        async def call() -> None:
            await self.application(scope, receive, send)

        task = asyncio.create_task(call())
        self.app_tasks.add(task)
        task.add_done_callback(self.app_tasks.discard)
        return task

    # --- HTTP -----------------------------------------------------------------------------------

    async def _http(self, request: web.Request) -> web.StreamResponse:
        call = _HttpCall(self, request)
        app = self._start(_http_scope(request, self.mount.state), call.receive, call.send)
        started = asyncio.create_task(call.started.wait())
        try:
            await asyncio.wait(
                {app, started},
                timeout=self.settings.response_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not started.done() and not app.done():
                log.warning(
                    "%s %s: no response from the application within %.1fs",
                    request.method,
                    request.path,
                    self.settings.response_timeout,
                )
                return responses.no_response()
            if not app.done():
                complete = asyncio.create_task(call.complete.wait())
                try:
                    await asyncio.wait({app, complete}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    complete.cancel()
        finally:
            started.cancel()
            call.complete.set()  # the application's receive() says http.disconnect from here
            if not app.done():
                app.cancel()
            await asyncio.gather(app, return_exceptions=True)
        return await self._answer(call, app)

    async def _answer(self, call: _HttpCall, app: asyncio.Task[None]) -> web.StreamResponse:
        request = call.request
        error = None if app.cancelled() else app.exception()
        if call.response is not None:
            if error is not None or not call.response.prepared or call.status is None:
                log.error("%s %s: response broken off: %r", request.method, request.path, error)
            if not call.finished and request.transport is not None:
                request.transport.close()  # headers are out: all that can be done is cut it
            return call.response
        if call.failure == "too_large":
            return await responses.too_large(request, self.settings.max_body_size)
        if call.failure == "timeout":
            return await responses.request_timeout(request, self.settings.read_timeout)
        if error is not None:
            log.error(
                "%s %s: the application raised",
                request.method,
                request.path,
                exc_info=error,
            )
        else:
            log.error(
                "%s %s: the application returned without a response", request.method, request.path
            )
        return responses.malformed()

    # --- WebSockets -------------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        refused = handshake.refusal(request, self.settings)
        if refused is not None:
            return responses.counted(refused)
        reply = await self.layer.new_channel("websocket.send")
        inbox = _Inbox(self.settings.channel_capacity)
        self._inboxes[reply] = inbox
        inbox.queue.put_nowait({"type": "websocket.connect"})

        async def send(message: MutableMapping[str, Any]) -> None:
            self.layer.put(reply, dict(message))

        app = self._start(_websocket_scope(request, self.mount.state), inbox.queue.get, send)
        app.add_done_callback(lambda task: self._ended(reply, task))
        try:
            first, early = await self._answer_socket(reply)
        except TimeoutError:
            log.warning("websocket %s: no accept from the application in time", request.path)
            await self.disconnect(reply, request.path, WSCloseCode.ABNORMAL_CLOSURE, 1)
            return responses.no_response()
        except BadReply as exc:
            log.error("websocket %s: %s", request.path, exc)
            await self.disconnect(reply, request.path, WSCloseCode.ABNORMAL_CLOSURE, 1)
            return responses.malformed()
        if first["type"] != "websocket.accept":
            await self.disconnect(reply, request.path, int(first.get("code", 1000)), 1)
            return responses.counted(web.Response(status=403, text="connection rejected\n"))
        if not app.done():
            self._accepted.add(reply)
        subprotocol = first.get("subprotocol")
        ws = MaskedWebSocketResponse(
            protocols=[subprotocol] if isinstance(subprotocol, str) else (),
            max_msg_size=self.settings.max_frame_size + 1,
            heartbeat=handshake.HEARTBEAT,
        )
        for name, value in first.get("headers") or ():
            name = name.decode("latin-1") if isinstance(name, bytes) else str(name)
            value = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            if name.lower() != "sec-websocket-protocol":
                ws.headers.add(name, value)
        try:
            await ws.prepare(request)
        except Exception:
            await self.disconnect(reply, request.path, WSCloseCode.ABNORMAL_CLOSURE, 1)
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

    async def _answer_socket(self, reply: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The application's accept or close, and what it sent before it (kept, bounded, for
        delivery after the accept, as the split server keeps it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.response_timeout
        early: list[dict[str, Any]] = []
        size = 0
        while True:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                message = await self.layer.receive(reply)
            if message.get("type") == APP_FAILED:
                raise BadReply(f"the application raised before accepting: {message['error']!r}")
            kind = check_websocket_reply(message)
            if kind != "websocket.send":
                return message, early
            early.append(message)
            size += reply_size(message)
            if len(early) > self.settings.channel_capacity or (
                len(early) > 1 and size > self.settings.send_buffer_size
            ):
                raise BadReply(f"{len(early)} messages sent to the socket before its accept")

    def _ended(self, reply: str, task: asyncio.Task[None]) -> None:
        """The application of a socket returned or raised: the socket closes (1000 or 1011)."""
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.error("websocket application raised", exc_info=error)
            if reply not in self._accepted:  # the handshake answers 500
                self.layer.put(reply, {"type": APP_FAILED, "error": error})
        self._accepted.discard(reply)
        if reply in self._inboxes:  # still open
            code = INTERNAL_ERROR if error is not None else 1000
            self.layer.put(reply, {"type": "websocket.close", "code": code})

    # --- HTTP in flight ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _http_request(self) -> Iterator[None]:
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
        return self._http_in_flight

    async def http_settled(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._http_idle.wait(), timeout)
        return not self._http_in_flight

    async def applications_ended(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the applications of closed sockets to return,
        then cancel what is left."""
        tasks = set(self.app_tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def serve_asgi(
    application: ASGIApp,
    settings: Settings,
    host: str,
    port: int,
    *,
    probe_layer: BaseChannelLayer | None = None,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``application`` until ``stop`` is set, with its lifespan around it."""
    server = AsgiHost(application, settings, probe_layer=probe_layer)
    lifespan = Lifespan(server.mount, timeout=settings.response_timeout)
    await lifespan.startup()  # LifespanFailed (a StartupError): nothing is served
    runner = web.AppRunner(
        server.app, handle_signals=False, access_log=None, keepalive_timeout=settings.read_timeout
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        await lifespan.shutdown()
        raise listen_error("HTTP", host, port, exc) from None
    log.info("serving the ASGI application on http://%s:%d", host, port)
    probe = (
        asyncio.create_task(server.layer_probe.run()) if server.layer_probe is not None else None
    )
    if ready is not None:
        ready.set()
    stop = stop or asyncio.Event()
    try:
        await stop.wait()
    finally:
        if probe is not None:
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe
        await shutdown(server, site, runner)
        await server.applications_ended(min(APP_GRACE, settings.shutdown_timeout))
        await lifespan.shutdown()


async def run_asgi_async(application: ASGIApp, settings: Settings, host: str, port: int) -> None:
    """``channelapp asgi``: serve until SIGTERM or SIGINT; with ``redis_urls`` set, readiness
    follows the shards."""
    probe_layer = layer_from_settings(settings) if settings.redis_urls else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await serve_asgi(application, settings, host, port, probe_layer=probe_layer, stop=stop)
    finally:
        if probe_layer is not None:
            await probe_layer.close()
