"""One HTTP exchange, driven directly: an aiohttp test server whose only handler runs an
``HttpExchange`` for a small host over the in-memory layer; the test plays the worker."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from channelapp import health
from channelapp.consumers.body import BODY_CHUNK_SIZE
from channelapp.layer import ChannelFull, InMemoryChannelLayer
from channelapp.server.http_exchange import HttpExchange
from channelapp.settings import Settings


@dataclass
class Host:
    settings: Settings
    layer: InMemoryChannelLayer = field(default_factory=InMemoryChannelLayer)
    exchanges: list[HttpExchange] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.layer_probe = health.LayerProbe(self.layer)

    async def send(self, channel: str, message: Any) -> str | None:
        try:
            await self.layer.send(channel, dict(message))
        except ChannelFull:
            return "full"
        return None


def host(**settings: Any) -> Host:
    return Host(dataclasses.replace(Settings(), **settings))


@asynccontextmanager
async def client(of: Host) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        exchange = HttpExchange(of, request)
        of.exchanges.append(exchange)
        return await exchange.run()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def worker(layer: InMemoryChannelLayer, *replies: Any) -> dict[str, Any]:
    """Take one http.request and answer it with ``replies``."""
    request: dict[str, Any] = await asyncio.wait_for(layer.receive("http.request"), 5)
    for reply in replies:
        await layer.send(request["reply_channel"], reply)
    return request


def start(status: int = 200, headers: Any = None) -> dict[str, Any]:
    return {"type": "http.response.start", "status": status, "headers": headers or []}


def body(data: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


async def raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection; everything read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        async with asyncio.timeout(timeout):
            return await reader.read(-1)
    finally:
        writer.close()


async def test_a_short_body_travels_in_the_request_and_the_answer_comes_back_whole() -> None:
    h = host()
    async with client(h) as http:
        answering = asyncio.create_task(
            worker(h.layer, start(201, [[b"x-made", b"yes"]]), body(b"made"))
        )
        async with http.post("/things/?a=1", data=b"hello") as resp:
            assert (resp.status, resp.headers["x-made"], await resp.read()) == (201, "yes", b"made")
        sent = await answering
    exchange = h.exchanges[0]
    assert (sent["method"], sent["body"], sent["path"], sent["query_string"]) == (
        "POST",
        b"hello",
        "/things/",
        b"a=1",
    )
    assert "more_body" not in sent and exchange.body_channel is None
    assert sent["reply_channel"] == exchange.reply
    assert exchange.status == 201


async def test_an_answer_in_several_replies_is_streamed() -> None:
    h = host()
    async with client(h) as http:
        replies = (start(), body(b"one", True), body(b"two", True), body(b"three"))
        answering = asyncio.create_task(worker(h.layer, *replies))
        async with http.get("/") as resp:
            assert (resp.status, await resp.read()) == (200, b"onetwothree")
        await answering


async def test_a_streamed_answer_to_head_puts_no_body_on_the_wire() -> None:
    h = host()
    async with client(h) as http:
        for _ in range(2):  # the connection is still usable: no stray bytes were written
            replies = (start(), body(b"not", True), body(b" sent"))
            answering = asyncio.create_task(worker(h.layer, *replies))
            async with http.head("/") as resp:
                assert (resp.status, await resp.read()) == (200, b"")
            await answering


async def test_a_body_longer_than_one_chunk_streams_on_its_own_channel() -> None:
    h = host()
    upload = bytes(range(256)) * (BODY_CHUNK_SIZE // 128 + 1)
    async with client(h) as http:
        posting = asyncio.create_task(http.post("/", data=upload))
        sent = await asyncio.wait_for(h.layer.receive("http.request"), 5)
        assert sent["more_body"] is True and sent["body_channel"] == h.exchanges[0].body_channel
        received, more = bytearray(sent["body"]), True
        while more:
            chunk = await asyncio.wait_for(h.layer.receive(sent["body_channel"]), 5)
            received += chunk["body"]
            more = chunk["more_body"]
        await h.layer.send(sent["reply_channel"], start(204))
        await h.layer.send(sent["reply_channel"], body(b""))
        resp = await posting
        assert resp.status == 204
        resp.release()
    assert bytes(received) == upload


async def test_no_reply_in_time_is_504() -> None:
    h = host(response_timeout=0.2)
    async with client(h) as http, http.get("/") as resp:
        assert resp.status == 504
    assert h.exchanges[0].status is None


@pytest.mark.parametrize(
    "replies",
    [
        [body(b"no start")],
        [start(99)],
        [start(200, "x-a: b")],
        [start(200, [["x-a", "b\r\nx-injected: 1"]])],
        [start(), {"type": "http.response.body", "body": 12}],
    ],
    ids=["body-first", "status", "headers", "header-line-break", "body-type"],
)
async def test_malformed_replies_are_500(replies: list[Any]) -> None:
    h = host()
    async with client(h) as http:
        answering = asyncio.create_task(worker(h.layer, *replies))
        async with http.get("/") as resp:
            assert resp.status == 500
            assert await resp.text() == "malformed response from the application\n"
        await answering


async def test_a_full_request_channel_is_503_with_retry_after() -> None:
    h = host()
    h.layer = InMemoryChannelLayer(capacity=1)
    await h.layer.send("http.request", {"type": "http.request"})
    async with client(h) as http, http.get("/") as resp:
        assert (resp.status, resp.headers["Retry-After"]) == (503, "1")
        assert await resp.text() == "server busy, try again\n"


async def test_a_declared_body_over_the_limit_is_413_and_never_sent() -> None:
    h = host(max_body_size=10)
    async with client(h) as http:
        async with http.post("/", data=b"x" * 11) as resp:
            assert resp.status == 413
            assert resp.headers["Connection"] == "close"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(h.layer.receive("http.request"), 0.2)


async def test_a_body_that_stops_short_is_408() -> None:
    h = host(read_timeout=0.3)
    async with client(h) as http:
        port = http.server.port
        assert port is not None
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
        answer = await raw(port, head + b"only ten b")
    assert answer.startswith(b"HTTP/1.1 408 "), answer


async def test_an_upload_growing_past_the_limit_is_413_and_the_worker_hears_of_it() -> None:
    h = host(max_body_size=BODY_CHUNK_SIZE + 100)
    async with client(h) as http:
        port = http.server.port
        assert port is not None
        piece = b"y" * BODY_CHUNK_SIZE
        chunk = b"%x\r\n%s\r\n" % (len(piece), piece)
        head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        answering = asyncio.create_task(raw(port, head + chunk * 3))
        sent = await asyncio.wait_for(h.layer.receive("http.request"), 5)
        messages = []
        while not messages or messages[-1]["type"] != "http.disconnect":
            messages.append(await asyncio.wait_for(h.layer.receive(sent["body_channel"]), 5))
        answer = await answering
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:100]
    assert b"Connection: close" in answer


async def test_settings_are_read_from_the_host_as_the_exchange_runs() -> None:
    h = host(response_timeout=60.0)
    async with client(h) as http:
        h.settings = dataclasses.replace(h.settings, response_timeout=0.2)
        async with asyncio.timeout(5), http.get("/") as resp:
            assert resp.status == 504
