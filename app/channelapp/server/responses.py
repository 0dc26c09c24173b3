"""The plain-text answers the protocol server gives itself, each counted in the metrics.

The refusals that end a connection (413 mid-upload, 408) are here too: they must say
``Connection: close`` and stop reading what the client may still be sending.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from channelapp import metrics

log = logging.getLogger("channelapp.server")

CLOSE_AFTER_REFUSAL = 0.5  # seconds a connection refused mid-upload (413) lingers


def counted(response: web.StreamResponse) -> web.StreamResponse:
    metrics.HTTP_REQUESTS.labels(str(response.status)).inc()
    return response


def try_again(why: str) -> web.StreamResponse:
    """503 with ``Retry-After: 1``: the layer is full or unavailable for now."""
    return counted(
        web.Response(status=503, text=f"{why}, try again\n", headers={"Retry-After": "1"})
    )


def no_response() -> web.StreamResponse:
    return counted(web.Response(status=504, text="no response from the application\n"))


def malformed() -> web.StreamResponse:
    return counted(web.Response(status=500, text="malformed response from the application\n"))


async def too_large(request: web.Request, limit: int) -> web.StreamResponse:
    """413 for a body over ``limit`` bytes, declared or uploaded; the connection then closes."""
    refusal = web.Response(status=413, text=f"request body larger than {limit} bytes\n")
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
    return counted(refusal)


async def request_timeout(request: web.Request, timeout: float) -> web.StreamResponse:
    """408 for a body that stopped short of its length; the connection is closed at once."""
    log.info("%s %.200s: body not received within %gs", request.method, request.path, timeout)
    response = web.Response(status=408, text=f"request body not received within {timeout:g}s\n")
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    if request.transport is not None:
        request.transport.close()  # no lingering read of a body that is not coming
    return counted(response)
