"""What every request passes before the server does anything for it: an allowed ``Host``,
a server not shutting down, and an ``Expect: 100-continue`` whose declared body fits.

WebSocket handshakes pass more checks after these (:mod:`channelapp.server.handshake`).
"""

from __future__ import annotations

from aiohttp import HttpVersion11, web

from channelapp.security import host_allowed
from channelapp.server import responses
from channelapp.settings import Settings


def refusal(request: web.Request, settings: Settings, draining: bool) -> web.Response | None:
    """400 for a host not allowed, 503 while shutting down; None when the request may go on."""
    if not host_allowed(request.host, settings.allowed_hosts):
        return web.Response(status=400, text=f"host {request.host!r} is not allowed\n")
    if draining:
        return web.Response(
            status=503, text="server is shutting down\n", headers={"Connection": "close"}
        )
    return None


async def expect(request: web.Request, max_body_size: int) -> web.StreamResponse | None:
    """``Expect: 100-continue``: a declared body over ``max_body_size`` is refused (413)
    before the client uploads it; otherwise ``100 Continue`` is said on HTTP/1.1 (any
    other expectation is 417), as aiohttp does by default. None lets the request go on."""
    length = request.content_length
    if length is not None and length > max_body_size:
        return await responses.too_large(request, max_body_size)
    if request.version != HttpVersion11:
        return None
    expectation = request.headers.get("Expect", "")
    if expectation.lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expectation}")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the answer's own head and body are counted from here
    return None
