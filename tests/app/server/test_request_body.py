"""Request bodies as the protocol server reads them: the first chunk, then the rest pumped to
the request's body channel, with the size limit, the read timeout and clients that leave,
over a real aiohttp server and real client connections."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from channelapp.consumers.body import BODY_CHUNK_SIZE
from channelapp.layer import InMemoryChannelLayer
from channelapp.layer.names import validate_channel_name
from channelapp.server.request_body import BodyTooLarge, new_body_channel, pump, read_first

CHUNK = BODY_CHUNK_SIZE
LIMIT = 3 * CHUNK + 100


def pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


class Upload:
    """An aiohttp server whose one handler reads the body as the protocol server does."""

    def __init__(self, limit: int = LIMIT, timeout: float = 10.0) -> None:
        self.limit, self.timeout = limit, timeout
        self.layer = InMemoryChannelLayer(capacity=1000)
        self.channel = new_body_channel()
        self.result: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def handle(self, request: web.Request) -> web.Response:
        try:
            first, complete = await read_first(request, self.limit)
        except BodyTooLarge:
            self.result.set_result({"first": "too_large"})
            return web.Response(status=413)
        outcome = "complete"
        if not complete:
            outcome = await pump(
                request, self.layer, self.channel, len(first), self.limit, self.timeout
            )
        messages = []
        if not complete:
            while True:
                message = await asyncio.wait_for(self.layer.receive(self.channel), 5)
                messages.append(message)
                if message["type"] == "http.disconnect" or not message.get("more_body"):
                    break
        self.result.set_result(
            {"first": first, "complete": complete, "outcome": outcome, "messages": messages}
        )
        return web.Response(text=outcome)

    async def serve(self) -> AsyncIterator[str]:
        app = web.Application(client_max_size=LIMIT * 4)
        app.router.add_post("/", self.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            yield f"127.0.0.1:{port}"
        finally:
            await runner.cleanup()
            await self.layer.close()


@pytest.fixture
async def upload() -> AsyncIterator[Callable[..., Awaitable[tuple[Upload, str]]]]:
    servers: list[AsyncIterator[str]] = []

    async def start(**kwargs: Any) -> tuple[Upload, str]:
        up = Upload(**kwargs)
        it = up.serve()
        servers.append(it)
        return up, await it.__anext__()

    yield start
    for it in servers:
        with pytest.raises(StopAsyncIteration):
            await it.__anext__()


def body_of(result: dict[str, Any]) -> bytes:
    return result["first"] + b"".join(m.get("body", b"") for m in result["messages"])


async def chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize(
    ("length", "chunked", "in_first_message"),
    [
        (0, False, True),
        (1, False, True),
        (CHUNK - 1, False, True),
        (CHUNK, False, True),  # exactly one chunk: nothing left to pump
        (CHUNK + 1, False, False),
        (3 * CHUNK + 5, False, False),
        (LIMIT, False, False),  # the limit itself is allowed
        (10, True, True),
        (CHUNK + 1, True, False),
        (LIMIT, True, False),
    ],
)
async def test_good_bodies_arrive_whole(
    upload: Callable[..., Awaitable[tuple[Upload, str]]],
    length: int,
    chunked: bool,
    in_first_message: bool,
) -> None:
    up, host = await upload()
    data = pattern(length)
    async with aiohttp.ClientSession() as http:
        body: Any = chunks(data, 7000) if chunked else data
        async with http.post(f"http://{host}/", data=body) as r:
            assert r.status == 200 and await r.text() == "complete"
    got = await asyncio.wait_for(up.result, 5)
    assert got["complete"] is in_first_message
    assert len(got["first"]) <= CHUNK
    assert body_of(got) == data
    if not in_first_message:
        *middle, last = got["messages"]
        assert all(m["more_body"] and 0 < len(m["body"]) <= CHUNK for m in middle)
        assert last == {"type": "http.request.body", "body": b"", "more_body": False}


@pytest.mark.parametrize(
    ("length", "chunked", "want"),
    [
        (LIMIT + 1, False, "too_large"),  # refused from Content-Length before any read
        (10 * CHUNK, False, "too_large"),
        (LIMIT + 1, True, "too_large_while_pumping"),  # no length: found while reading
        (10 * CHUNK, True, "too_large_while_pumping"),
    ],
)
async def test_bodies_over_the_limit(
    upload: Callable[..., Awaitable[tuple[Upload, str]]], length: int, chunked: bool, want: str
) -> None:
    up, host = await upload()
    data = pattern(length)
    async with aiohttp.ClientSession() as http:
        body: Any = chunks(data, 7000) if chunked else data
        try:
            async with http.post(f"http://{host}/", data=body) as r:
                await r.read()
        except aiohttp.ClientError:
            pass  # the server may answer before the client has sent it all
    got = await asyncio.wait_for(up.result, 5)
    if want == "too_large":
        assert got == {"first": "too_large"}
        return
    assert got["outcome"] == "too_large" and not got["complete"]
    assert got["messages"][-1] == {"type": "http.disconnect"}
    forwarded = body_of(got)
    assert len(forwarded) <= LIMIT and data.startswith(forwarded)


@pytest.mark.parametrize("small_limit", [0, 5, CHUNK - 1])
async def test_a_first_chunk_over_a_small_limit_is_refused(
    upload: Callable[..., Awaitable[tuple[Upload, str]]], small_limit: int
) -> None:
    up, host = await upload(limit=small_limit)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://{host}/", data=chunks(pattern(CHUNK), 1000)) as r:
            assert r.status == 413
    assert (await asyncio.wait_for(up.result, 5)) == {"first": "too_large"}


async def raw_post(host: str, head_length: int, sent: bytes) -> socket.socket:
    addr, port = host.split(":")
    sock = socket.create_connection((addr, int(port)))
    sock.sendall(
        f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {head_length}\r\n\r\n".encode() + sent
    )
    return sock


async def test_a_client_that_stops_sending_times_out(
    upload: Callable[..., Awaitable[tuple[Upload, str]]],
) -> None:
    up, host = await upload(timeout=0.5)
    sent = pattern(CHUNK + 10)
    sock = await raw_post(host, 3 * CHUNK, sent)
    try:
        got = await asyncio.wait_for(up.result, 10)
    finally:
        sock.close()
    assert got["outcome"] == "timeout" and not got["complete"]
    assert got["messages"][-1] == {"type": "http.disconnect"}
    assert sent.startswith(body_of(got))


async def test_a_client_that_leaves_mid_body_is_gone(
    upload: Callable[..., Awaitable[tuple[Upload, str]]],
) -> None:
    up, host = await upload()
    sent = pattern(CHUNK + 10)
    sock = await raw_post(host, 3 * CHUNK, sent)
    await asyncio.sleep(0)
    sock.close()
    got = await asyncio.wait_for(up.result, 10)
    assert got["outcome"] == "gone" and not got["complete"]
    assert got["messages"][-1] == {"type": "http.disconnect"}
    assert sent.startswith(body_of(got))


def test_body_channels_are_fresh_and_valid() -> None:
    names = {new_body_channel() for _ in range(100)}
    assert len(names) == 100
    for name in names:
        assert name.startswith("http.request.body?")
        validate_channel_name(name)
