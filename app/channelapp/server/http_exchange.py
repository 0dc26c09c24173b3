"""One HTTP request and its answer: the body read from the client, the ``http.request``
sent to the workers, their reply awaited on the request's own reply channel and written
back, whole or streamed.

The request's limits are read from the server's settings as the exchange runs:
``max_body_size`` and ``read_timeout`` (one for the whole body) for the upload,
``response_timeout`` for each reply.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

from aiohttp import web

from channelapp import health, metrics
from channelapp.layer import BaseChannelLayer, ShardUnavailable
from channelapp.server import request_body, responses
from channelapp.server.messages import BadReply, check_response_body, check_response_start, scope
from channelapp.settings import Settings
from channelapp.spec import HTTP_REQUEST

log = logging.getLogger("channelapp.server")


class ExchangeHost(Protocol):
    """The protocol server seen from one of its HTTP exchanges."""

    @property
    def settings(self) -> Settings: ...

    @property
    def layer(self) -> BaseChannelLayer: ...

    @property
    def layer_probe(self) -> health.LayerProbe: ...

    async def send(self, channel: str, message: Mapping[str, Any]) -> str | None:
        """Send to the layer; on refusal the reason ("full", "unavailable", "too_large")."""
        ...


class HttpExchange:
    """The request/response cycle of one HTTP request; :meth:`run` returns the answer."""

    def __init__(self, host: ExchangeHost, request: web.Request) -> None:
        self.host = host
        self.request = request
        self.reply: str | None = None  # the reply channel, once the request is sent
        self.body_channel: str | None = None  # where a body longer than one chunk goes on
        self.status: int | None = None  # the application's status, once it started to answer
        self._pump: asyncio.Task[request_body.BodyOutcome] | None = None
        self._started = time.perf_counter()
        self._body_deadline = 0.0  # loop time by which the whole body must be in

    @property
    def settings(self) -> Settings:
        return self.host.settings

    async def run(self) -> web.StreamResponse:
        try:
            return await self._cycle()
        finally:
            await self._stop_pump()

    async def _stop_pump(self) -> None:
        """A body the application did not wait for is not forwarded any more."""
        pump = self._pump
        if pump is None:
            return
        if not pump.done():
            pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)

    async def _cycle(self) -> web.StreamResponse:
        request = self.request
        read_timeout = self.settings.read_timeout
        # One READ_TIMEOUT for the whole body, its first chunk and the streamed rest alike.
        self._body_deadline = asyncio.get_running_loop().time() + read_timeout
        try:
            async with asyncio.timeout(read_timeout):
                first, complete = await request_body.read_first(
                    request, self.settings.max_body_size
                )
        except TimeoutError:
            return await responses.request_timeout(request, self.settings.read_timeout)
        except request_body.BodyTooLarge:
            return await responses.too_large(request, self.settings.max_body_size)
        refused = await self._send_request(first, complete)
        if refused:
            return responses.try_again(
                "server busy" if refused == "full" else "channel layer unavailable"
            )
        timeout = self.settings.response_timeout
        try:
            start = await self._response_start(len(first), timeout)
            if isinstance(start, web.StreamResponse):
                return start
            status, headers = check_response_start(start)
            self.status = status
            chunk, more = check_response_body(await self._next_reply(timeout))
        except TimeoutError:
            log.warning(
                "%s %s: no response from a worker within %.1fs",
                request.method,
                request.path,
                timeout,
            )
            return responses.no_response()
        except BadReply as exc:
            log.error(
                "%s %s: malformed response from the application: %s",
                request.method,
                request.path,
                exc,
            )
            return responses.malformed()
        except ShardUnavailable as exc:
            log.error("%s %s: %s", request.method, request.path, exc)
            self.host.layer_probe.failed(exc)
            return responses.try_again("channel layer unavailable")
        metrics.HTTP_LATENCY.observe(time.perf_counter() - self._started)
        if not more:
            response = web.Response(status=status, body=chunk)
            for name, value in headers:
                response.headers.add(name, value)
            return responses.counted(response)
        return await self._stream(status, headers, chunk, timeout)

    async def _send_request(self, first: bytes, complete: bool) -> str | None:
        """Send ``http.request``; the layer's refusal reason, or None once it is queued."""
        self.reply = await self.host.layer.new_channel("http.response")
        message: dict[str, Any] = {
            "type": HTTP_REQUEST,
            "method": self.request.method,
            "body": first,
            **scope(self.request, self.reply),
        }
        if not complete:  # the rest streams on the request's own channel
            self.body_channel = request_body.new_body_channel()
            message.update(more_body=True, body_channel=self.body_channel)
        return await self.host.send(HTTP_REQUEST, message)

    async def _next_reply(self, timeout: float) -> Any:
        assert self.reply is not None
        async with asyncio.timeout(timeout):
            return await self.host.layer.receive(self.reply)

    async def _response_start(self, sent: int, timeout: float) -> Any:
        """The first reply; or, when the rest of the body failed first (too large, too slow,
        broken off), the refusal to answer with."""
        if self.body_channel is None:
            return await self._next_reply(timeout)
        self._pump = pump = asyncio.create_task(
            request_body.pump(
                self.request,
                self.host.layer,
                self.body_channel,
                sent,
                self.settings.max_body_size,
                max(0.0, self._body_deadline - asyncio.get_running_loop().time()),
            )
        )
        receive = asyncio.create_task(self._next_reply(timeout))
        await asyncio.wait({receive, pump}, return_when=asyncio.FIRST_COMPLETED)
        if receive.done() or pump.result() == "complete":
            return await receive
        receive.cancel()
        await asyncio.gather(receive, return_exceptions=True)
        outcome = pump.result()
        if outcome == "too_large":
            return await responses.too_large(self.request, self.settings.max_body_size)
        if outcome == "timeout":
            return await responses.request_timeout(self.request, self.settings.read_timeout)
        return responses.counted(web.Response(status=400, text="request body broken off\n"))

    async def _stream(
        self, status: int, headers: list[tuple[str, str]], chunk: bytes, timeout: float
    ) -> web.StreamResponse:
        """Write the answer as its body arrives in more than one reply."""
        request = self.request
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
        more = True
        try:
            while more:
                chunk, more = check_response_body(await self._next_reply(timeout))
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
