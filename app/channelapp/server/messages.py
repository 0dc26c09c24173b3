"""Turning aiohttp requests into channel messages, and checking the replies that come back.

Replies come from application code in another process; anything malformed is
refused with :class:`BadReply` so the server answers 500 / closes 1011 instead
of crashing.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from channelapp.spec import WEBSOCKET_REPLIES


class BadReply(ValueError):
    """A worker's reply does not follow the message format."""


def _peer(request: web.Request) -> list[Any]:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return [peer[0], peer[1]] if peer else ["", 0]


def _sock(request: web.Request) -> list[Any]:
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    return [sock[0], sock[1]] if sock else ["", 0]


def scope(request: web.Request, reply_channel: str) -> dict[str, Any]:
    """The fields shared by http.request and websocket.connect."""
    return {
        "reply_channel": reply_channel,
        "http_version": f"{request.version.major}.{request.version.minor}",
        "scheme": request.scheme,
        "path": request.path,
        # Still percent-encoded (``%2F`` is not ``/``), for ASGI's ``raw_path``.
        "raw_path": request.rel_url.raw_path.encode("utf-8", "surrogateescape"),
        "query_string": request.query_string.encode("latin-1"),
        "root_path": "",
        "headers": [[k.lower(), v] for k, v in request.raw_headers],
        "client": _peer(request),
        "server": _sock(request),
    }


def check_headers(headers: Any) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if not isinstance(headers, list | tuple):
        raise BadReply(
            f"headers must be a list of [name, value] pairs, got {type(headers).__name__}"
        )
    out = []
    for pair in headers:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise BadReply(f"each header must be a [name, value] pair, got {pair!r:.80}")
        name, value = pair
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if not isinstance(name, str) or not isinstance(value, str):
            raise BadReply("header names and values must be bytes or str")
        if "\n" in name or "\r" in name or "\n" in value or "\r" in value:
            raise BadReply(f"header {name!r} contains a line break")
        out.append((name, value))
    return out


def check_response_start(message: Any) -> tuple[int, list[tuple[str, str]]]:
    if not isinstance(message, dict) or message.get("type") != "http.response.start":
        got = message.get("type") if isinstance(message, dict) else type(message).__name__
        raise BadReply(f'expected "http.response.start", got {got!r}')
    status = message.get("status")
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise BadReply(f"status must be an int in 100..599, got {status!r}")
    return status, check_headers(message.get("headers"))


def check_response_body(message: Any) -> tuple[bytes, bool]:
    if not isinstance(message, dict) or message.get("type") != "http.response.body":
        got = message.get("type") if isinstance(message, dict) else type(message).__name__
        raise BadReply(f'expected "http.response.body", got {got!r}')
    body = message.get("body", b"")
    if isinstance(body, str):
        body = body.encode()
    if not isinstance(body, bytes):
        raise BadReply(f"body must be bytes, got {type(body).__name__}")
    return body, bool(message.get("more_body", False))


def check_websocket_reply(message: Any) -> str:
    kind = message.get("type") if isinstance(message, dict) else None
    if kind not in WEBSOCKET_REPLIES:
        raise BadReply(f"expected one of {', '.join(WEBSOCKET_REPLIES)}, got {kind!r}")
    if kind == "websocket.send":
        text, data = message.get("text"), message.get("bytes")
        if (text is None) == (data is None):
            raise BadReply("websocket.send needs exactly one of 'text' or 'bytes'")
        if text is not None and not isinstance(text, str):
            raise BadReply("websocket.send 'text' must be str")
        if data is not None and not isinstance(data, bytes):
            raise BadReply("websocket.send 'bytes' must be bytes")
    if kind == "websocket.close":
        code = message.get("code", 1000)
        if not isinstance(code, int) or not (
            code == 1000 or 3000 <= code <= 4999 or 1001 <= code <= 1014
        ):
            raise BadReply(f"websocket.close code {code!r} is not a valid close code")
    return str(kind)
