"""HTTP consumers: a request object in, a response (or a stream of chunks) out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from channelapp.consumers.context import Context
from channelapp.sessions import COOKIE_NAME, dump_cookie_session, load_cookie_session
from channelapp.sync import is_sync_callable, run_sync


class Request:
    def __init__(self, message: dict[str, Any], ctx: Context) -> None:
        self.message = message
        self.ctx = ctx
        self.method: str = message.get("method", "GET")
        self.path: str = message.get("path", "/")
        self.query_string: bytes = message.get("query_string", b"")
        self.body: bytes = message.get("body", b"")
        self.kwargs = ctx.kwargs
        self.headers: dict[str, str] = {}
        for name, value in message.get("headers", []):
            key = name.decode("latin-1") if isinstance(name, bytes) else name
            val = value.decode("latin-1") if isinstance(value, bytes) else value
            self.headers[key.lower()] = val
        self._session: dict[str, Any] | None = None

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.query_string.decode("latin-1"))

    @property
    def cookies(self) -> dict[str, str]:
        jar: SimpleCookie = SimpleCookie()
        jar.load(self.headers.get("cookie", ""))
        return {k: m.value for k, m in jar.items()}

    @property
    def session(self) -> dict[str, Any]:
        """The signed-cookie session (HMAC with ``secret_key``); changes are sent back as a cookie."""
        if self._session is None:
            settings = self.ctx.settings
            self._session = load_cookie_session(
                self.cookies.get(COOKIE_NAME), settings.secret_key, settings.session_ttl
            )
        return self._session

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not JSON or nests too deep to decode."""
        try:
            return json.loads(self.body or b"null")
        except RecursionError:
            raise ValueError("JSON body nests too deep") from None


@dataclass
class Response:
    body: bytes = b""
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain") -> Response:
        return cls(text.encode(), status, [("Content-Type", f"{content_type}; charset=utf-8")])

    @classmethod
    def html(cls, html: str, status: int = 200) -> Response:
        return cls.text(html, status, "text/html")

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        return cls(json.dumps(data).encode(), status, [("Content-Type", "application/json")])


@dataclass
class StreamingResponse:
    """Chunks sent as they come: an async iterator, or a plain iterable (a generator of a sync
    consumer, advanced in the worker's thread pool)."""

    chunks: AsyncIterator[bytes] | Iterable[bytes]
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)


class HttpConsumer:
    """Subclass and define ``get``/``post``/... (or ``handle`` for every method), each either
    ``async def`` or a plain ``def`` (run in the worker's thread pool)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def handle(self, request: Request) -> Response | StreamingResponse:
        method = getattr(self, request.method.lower(), None)
        if method is None:
            allowed = [
                m.upper() for m in ("get", "post", "put", "patch", "delete") if hasattr(self, m)
            ]
            return Response(b"method not allowed\n", 405, [("Allow", ", ".join(allowed))])
        response: Response | StreamingResponse
        if is_sync_callable(method):
            response = await run_sync(method, request)
        else:
            response = await method(request)
        return response


_DONE = object()


def _next_chunk(chunks: Iterator[bytes]) -> Any:
    return next(chunks, _DONE)


async def send_response(
    ctx: Context, response: Response | StreamingResponse, request: Request | None = None
) -> None:
    headers = [[k.encode("latin-1"), v.encode("latin-1")] for k, v in response.headers]
    if request is not None and request._session is not None:
        settings = ctx.settings
        cookie = dump_cookie_session(request._session, settings.secret_key)
        secure = "; Secure" if settings.session_cookie_secure else ""
        headers.append(
            [
                b"set-cookie",
                f"{COOKIE_NAME}={cookie}; Max-Age={int(settings.session_ttl)}; Path=/; "
                f"HttpOnly; SameSite={settings.session_cookie_samesite}{secure}".encode(),
            ]
        )
    await ctx.reply({"type": "http.response.start", "status": response.status, "headers": headers})
    if isinstance(response, StreamingResponse):
        chunks = response.chunks
        if isinstance(chunks, AsyncIterator):
            async for chunk in chunks:
                await ctx.reply({"type": "http.response.body", "body": chunk, "more_body": True})
        else:
            sync_chunks = iter(chunks)
            while (piece := await run_sync(_next_chunk, sync_chunks)) is not _DONE:
                await ctx.reply({"type": "http.response.body", "body": piece, "more_body": True})
        await ctx.reply({"type": "http.response.body", "body": b"", "more_body": False})
    else:
        await ctx.reply({"type": "http.response.body", "body": response.body, "more_body": False})
