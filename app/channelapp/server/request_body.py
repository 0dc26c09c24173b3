"""Request bodies from the client to the worker as they are uploaded.

The first chunk (up to ``BODY_CHUNK_SIZE``) is read before the request is sent to the
workers: a body that ends there travels inside the ``http.request`` message, as
before. A longer one goes on in messages on the request's own ``body_channel``
(:mod:`channelapp.consumers.body` has the format), sent by :func:`pump` while the
worker already runs; ``max_body_size`` and ``read_timeout`` still hold for the whole
body, and breaking either (or the client leaving) sends ``http.disconnect`` so the
worker stops waiting.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any, Literal

from aiohttp import web

from channelapp import metrics
from channelapp.consumers.body import BODY_CHUNK_SIZE
from channelapp.layer import BaseChannelLayer, ChannelFull, ShardUnavailable

log = logging.getLogger("channelapp.server")

BodyOutcome = Literal["complete", "too_large", "timeout", "gone"]


class BodyTooLarge(Exception):
    pass


def new_body_channel() -> str:
    return f"http.request.body?{secrets.token_hex(8)}"


async def _chunk(request: web.Request, first: bool) -> bytes:
    """Up to BODY_CHUNK_SIZE bytes: waits for some, then takes what is already buffered."""
    content = request.content
    if first:  # the first chunk is read whole when it can be: small bodies stay one message
        body = bytearray()
        while len(body) < BODY_CHUNK_SIZE:
            piece = await content.read(BODY_CHUNK_SIZE - len(body))
            if not piece:
                break
            body += piece
        return bytes(body)
    chunk = bytearray(await content.read(BODY_CHUNK_SIZE))
    while chunk and len(chunk) < BODY_CHUNK_SIZE:
        more = content.read_nowait(BODY_CHUNK_SIZE - len(chunk))
        if not more:
            break
        chunk += more
    return bytes(chunk)


async def read_first(request: web.Request, limit: int) -> tuple[bytes, bool]:
    """The first chunk and whether the body ends with it; BodyTooLarge past ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge
    first = await _chunk(request, first=True)
    if len(first) > limit:
        raise BodyTooLarge
    return first, request.content.at_eof() or len(first) < BODY_CHUNK_SIZE


async def _send(layer: BaseChannelLayer, channel: str, message: dict[str, Any]) -> None:
    """Send one body message, waiting while the worker is behind (the channel is full)."""
    while True:
        try:
            await layer.send(channel, message)
            return
        except ChannelFull:
            metrics.LAYER_SEND_FAILURES.labels("http.request.body", "full").inc()
            await asyncio.sleep(0.05)


async def pump(
    request: web.Request,
    layer: BaseChannelLayer,
    channel: str,
    sent: int,
    limit: int,
    timeout: float,
) -> BodyOutcome:
    """Forward the rest of the body to ``channel``; the outcome says how it ended."""
    outcome: BodyOutcome = "complete"
    try:
        async with asyncio.timeout(timeout):
            while True:
                chunk = await _chunk(request, first=False)
                if not chunk:
                    await _send(
                        layer,
                        channel,
                        {"type": "http.request.body", "body": b"", "more_body": False},
                    )
                    return "complete"
                sent += len(chunk)
                if sent > limit:
                    outcome = "too_large"
                    break
                await _send(
                    layer, channel, {"type": "http.request.body", "body": chunk, "more_body": True}
                )
    except TimeoutError:
        outcome = "timeout"
    except ShardUnavailable as exc:
        log.error("%s %s: body not forwarded: %s", request.method, request.path, exc)
        return "gone"
    except Exception as exc:  # the client broke the body off (reset, bad chunked encoding)
        log.info("%s %.200s: body broken off: %r", request.method, request.path, exc)
        outcome = "gone"
    try:
        await layer.send(channel, {"type": "http.disconnect"})
    except (ChannelFull, ShardUnavailable):
        pass  # the worker's own read timeout ends its wait
    return outcome
