"""What the protocol server answers to clients that break HTTP or the WebSocket handshake.

- A request aiohttp cannot parse (or whose body breaks off or cannot be decoded) is the
  client's fault: one INFO line, not an ERROR with a traceback per request.
- A request line of another HTTP version than 1.0 or 1.1 (``HTTP/0.9``, ``HTTP/2.0``) gets
  505 in an HTTP/1.1 status line, not a status line of the version it claimed.
- A handshake of another WebSocket version than 13 gets 426 with
  ``Sec-WebSocket-Version: 13`` (RFC 6455 4.2.2).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from aiohttp import HttpVersion11, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

log = logging.getLogger("channelapp.server")

WEBSOCKET_VERSION = "13"
_CLIENT_FAULTS = (HttpProcessingError, RequestPayloadError, ConnectionError)


def _first_line(exc: BaseException) -> str:
    """What went wrong, in a line (aiohttp's texts say "400, message:" first, and may quote
    the client's bytes on later lines)."""
    text = exc.message if isinstance(exc, HttpProcessingError) else str(exc)
    for line in str(text).splitlines():
        line = line.strip().rstrip(":")
        if line and not re.fullmatch(r"\d{3}, message", line):
            return line[:200]
    return type(exc).__name__


class ClientErrorsInOneLine(logging.Filter):
    """aiohttp logs each malformed request as an ERROR with a traceback ("Error handling
    request"), and a body that breaks off once more ("Unhandled exception"): one INFO line
    instead, for what a client did; other errors stay as they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, _CLIENT_FAULTS):
            return True
        if not str(record.msg).startswith("Error handling request"):
            return False  # the same request, reported again
        said = record.getMessage().replace("Error handling request", "bad request", 1)
        record.msg = "%s: %s"
        record.args = (said, _first_line(exc))
        record.exc_info = None
        record.exc_text = None
        record.levelno = logging.INFO
        record.levelname = logging.getLevelName(logging.INFO)
        return True


logging.getLogger("aiohttp.server").addFilter(ClientErrorsInOneLine())


@web.middleware
async def client_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """505 for another HTTP version; 400 (not 500) for a body that cannot be decoded."""
    version = request.version
    if (version.major == 1 and version.minor > 1) or version.major != 1:
        # The status line says the version the server speaks, whatever the request claimed
        # (a later HTTP/1.x is served as HTTP/1.1, RFC 9110 2.5).
        request._version = HttpVersion11
        request._cache.pop("version", None)  # read once, then kept
    if version.major != 1:
        claimed = f"HTTP/{version.major}.{version.minor}"
        refusal = web.Response(status=505, text=f"{claimed} is not supported: use HTTP/1.1\n")
        refusal.force_close()
        return refusal
    try:
        return await handler(request)
    except RequestPayloadError as exc:
        log.info("%s %.200s: bad request body: %s", request.method, request.path, _first_line(exc))
        refusal = web.Response(status=400, text=f"bad request body: {_first_line(exc)}\n")
        refusal.force_close()
        return refusal


def websocket_version_refusal(request: web.Request) -> web.Response | None:
    """426 for a handshake that asks for another WebSocket version than 13 (a handshake
    without the header is refused as malformed, 400, by the caller)."""
    version = request.headers.get("Sec-WebSocket-Version")
    if version is None or version.strip() == WEBSOCKET_VERSION:
        return None
    log.info("websocket %.200s: version %.20r refused", request.path, version)
    return web.Response(
        status=426,
        text=f"WebSocket version {WEBSOCKET_VERSION} is required\n",
        headers={"Sec-WebSocket-Version": WEBSOCKET_VERSION},
    )
