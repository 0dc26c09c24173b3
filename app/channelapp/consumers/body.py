"""Request bodies that stream from the protocol server to the worker.

A body that fits in one chunk travels inside the ``http.request`` message. A larger
one starts there (``body``, ``more_body: True``) and goes on in messages on the
request's own ``body_channel``, sent while the client uploads it::

    {"type": "http.request.body", "body": b"...", "more_body": True}
    {"type": "http.request.body", "body": b"", "more_body": False}
    {"type": "http.disconnect"}    # the client went away, or broke a limit

so a worker (and an ASGI app's ``receive()``) sees the first bytes before the last
are uploaded, and neither side holds the whole body unless it asks to.
"""

from __future__ import annotations

import asyncio
import logging

from channelapp.consumers.context import Context

log = logging.getLogger("channelapp.worker")

BODY_CHUNK_SIZE = 64 * 1024  # bytes the protocol server puts in one body message


class ClientDisconnected(Exception):
    """The client went away (or was refused) before its body was complete."""


class BodyStream:
    """The chunks of one request's body, in order, as they arrive."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        message = ctx.message
        self._first: bytes | None = message.get("body", b"") or b""
        self._more = bool(message.get("more_body")) and bool(message.get("body_channel"))
        self._channel: str | None = message.get("body_channel")
        # The protocol server gives the client read_timeout for the whole body; past that
        # (and a margin), a chunk that has not come never will (its server died).
        self.timeout = ctx.settings.read_timeout + 5.0

    @property
    def complete(self) -> bool:
        return self._first is None and not self._more

    async def next_chunk(self) -> tuple[bytes, bool]:
        """The next chunk and whether more follow; ClientDisconnected when it never comes."""
        if self._first is not None:
            first, self._first = self._first, None
            return first, self._more
        if not self._more or self._channel is None:
            return b"", False
        try:
            async with asyncio.timeout(self.timeout):
                message = await self.ctx.layer.receive(self._channel)
        except TimeoutError:
            self._more = False
            raise ClientDisconnected(
                f"no body chunk on {self._channel} within {self.timeout:g}s"
            ) from None
        if message.get("type") != "http.request.body":
            self._more = False
            raise ClientDisconnected("the client went away before its body was complete")
        chunk = message.get("body", b"")
        self._more = bool(message.get("more_body"))
        return (chunk if isinstance(chunk, bytes) else b""), self._more

    async def read(self) -> bytes:
        parts = []
        while True:
            chunk, more = await self.next_chunk()
            parts.append(chunk)
            if not more:
                return b"".join(parts)


async def read_whole_body(ctx: Context) -> bytes | None:
    """The whole body (for consumers that take it at once); None if the client went away."""
    try:
        return await BodyStream(ctx).read()
    except ClientDisconnected as exc:
        log.info("%s %s: %s", ctx.message.get("method"), ctx.message.get("path"), exc)
        return None
