"""ASGI 3 HTTP applications served by workers: ``mount("/", get_asgi_application())``.

Each ``http.request`` message under the mount becomes one ASGI ``http`` call:
``receive()`` yields the body as it streams in from the protocol server (see
:mod:`channelapp.consumers.body`), and every ``send()`` of the app is forwarded to
the request's reply channel at once, so responses stream too. Lifespan startup and
shutdown run once per worker process (:class:`Lifespan`); an app that does not
speak lifespan (Django's) is served without it, as uvicorn's ``lifespan=auto`` does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from channelapp.consumers.body import BodyStream, ClientDisconnected
from channelapp.consumers.context import Context
from channelapp.errors import StartupError

log = logging.getLogger("channelapp.asgi")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}


class LifespanFailed(StartupError):
    """An ASGI app's lifespan startup failed: the worker must not serve it."""


def _pair(value: Any) -> tuple[str, int] | None:
    if isinstance(value, list | tuple) and len(value) == 2 and value[0]:
        return str(value[0]), int(value[1])
    return None


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("latin-1")


def http_scope(message: dict[str, Any], root_path: str, state: dict[str, Any]) -> Scope:
    """The ASGI ``http`` scope of an ``http.request`` message (``path`` keeps the root path,
    as the ASGI spec asks)."""
    path = str(message.get("path", "/"))
    query = message.get("query_string", b"")
    return {
        "type": "http",
        "asgi": dict(ASGI_VERSION),
        "http_version": str(message.get("http_version", "1.1")),
        "method": str(message.get("method", "GET")).upper(),
        "scheme": str(message.get("scheme", "http")),
        "path": path,
        "raw_path": _bytes(message.get("raw_path") or path.encode("utf-8")),
        "query_string": _bytes(query),
        "root_path": root_path,
        "headers": [(_bytes(k).lower(), _bytes(v)) for k, v in message.get("headers", [])],
        "client": _pair(message.get("client")),
        "server": _pair(message.get("server")),
        "state": dict(state),
    }


class AsgiMount:
    """One mounted ASGI app; the routing's ``mount()`` makes it."""

    def __init__(self, application: ASGIApp, root_path: str = "") -> None:
        self.application = application
        self.root_path = root_path
        self.state: dict[str, Any] = {}  # filled by lifespan startup, copied into each scope

    async def consume(self, ctx: Context) -> None:
        body = BodyStream(ctx)
        response_done = asyncio.Event()
        disconnected = False
        started = finished = False

        async def receive() -> dict[str, Any]:
            nonlocal disconnected
            # ASGI: after the response, receive() says http.disconnect (the protocol server
            # stops forwarding a body the app did not read once its response is sent).
            if not disconnected and not body.complete and not finished:
                try:
                    chunk, more = await body.next_chunk()
                    return {"type": "http.request", "body": chunk, "more_body": more}
                except ClientDisconnected as exc:
                    log.info("%s: %s", ctx.message.get("path"), exc)
                    disconnected = True
            if not disconnected:
                await response_done.wait()  # ASGI: receive() blocks until the client leaves
            return {"type": "http.disconnect"}

        async def send(event: MutableMapping[str, Any]) -> None:
            nonlocal started, finished
            kind = event.get("type")
            if finished:
                raise RuntimeError(f"ASGI app sent {kind!r} after its response was complete")
            if kind == "http.response.start":
                if started:
                    raise RuntimeError("ASGI app sent http.response.start twice")
                started = True
                await ctx.reply(
                    {
                        "type": "http.response.start",
                        "status": event.get("status"),
                        "headers": [[_bytes(k), _bytes(v)] for k, v in event.get("headers", [])],
                    }
                )
            elif kind == "http.response.body":
                if not started:
                    raise RuntimeError("ASGI app sent a body before http.response.start")
                more = bool(event.get("more_body", False))
                await ctx.reply(
                    {
                        "type": "http.response.body",
                        "body": event.get("body", b""),
                        "more_body": more,
                    }
                )
                if not more:
                    finished = True
                    response_done.set()
            else:
                raise RuntimeError(f"ASGI app sent an unknown event {kind!r}")

        scope = http_scope(ctx.message, self.root_path, self.state)
        try:
            await self.application(scope, receive, send)
        finally:
            response_done.set()
        if not finished:
            if disconnected:
                return  # nobody to answer
            raise RuntimeError("ASGI app returned without completing its response")


class Lifespan:
    """Runs one ASGI app's lifespan protocol: startup before serving, shutdown after."""

    def __init__(self, mount: AsgiMount, timeout: float = 30.0) -> None:
        self.mount = mount
        self.timeout = timeout
        self.supported = True
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": dict(ASGI_VERSION), "state": self.mount.state}
        try:
            await self.mount.application(scope, self._to_app.get, self._from_app.put)
        except BaseException as exc:
            await self._from_app.put({"type": "channelapp.lifespan.error", "error": exc})
            if not isinstance(exc, Exception):
                raise
        else:
            await self._from_app.put({"type": "channelapp.lifespan.returned"})

    async def _step(self, event: str) -> None:
        await self._to_app.put({"type": f"lifespan.{event}"})
        async with asyncio.timeout(self.timeout):
            answer = await self._from_app.get()
        kind = answer.get("type")
        if kind == f"lifespan.{event}.complete":
            return
        if kind == f"lifespan.{event}.failed":
            raise LifespanFailed(f"lifespan {event} failed: {answer.get('message', '')}")
        if event == "startup" and kind in (
            "channelapp.lifespan.error",
            "channelapp.lifespan.returned",
        ):
            # The app refused the lifespan scope (Django: "can only handle ASGI/HTTP"):
            # it has no startup or shutdown to run.
            self.supported = False
            log.info(
                "%s does not support the ASGI lifespan protocol (%s); serving it without",
                type(self.mount.application).__name__,
                answer.get("error", "returned"),
            )
            return
        raise LifespanFailed(f"lifespan {event}: unexpected {kind!r} from the app")

    async def startup(self) -> None:
        self._task = asyncio.create_task(self._run())
        try:
            await self._step("startup")
        except TimeoutError:
            raise LifespanFailed(
                f"lifespan startup did not complete in {self.timeout:g}s"
            ) from None

    async def shutdown(self) -> None:
        if self._task is None:
            return
        try:
            if self.supported and not self._task.done():
                try:
                    await self._step("shutdown")
                except (LifespanFailed, TimeoutError) as exc:
                    log.error("lifespan shutdown: %s", exc or "timed out")
        finally:
            if not self._task.done():
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def mounts_of(routes: list[Any]) -> list[AsgiMount]:
    """Each ASGI app mounted in ``routes`` once (one lifespan per app per worker)."""
    seen: dict[int, AsgiMount] = {}
    for route in routes:
        consumer = getattr(route, "consumer", None)
        if isinstance(consumer, AsgiMount) and id(consumer.application) not in seen:
            seen[id(consumer.application)] = consumer
    return list(seen.values())
