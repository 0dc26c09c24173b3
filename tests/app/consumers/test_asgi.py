"""ASGI 3 HTTP apps mounted on workers: Starlette and raw ASGI apps, with request and
response bodies that stream, lifespan once per worker, and failures that say so.

Protocol server and worker run in the test's loop (in-memory layer; one test over a
real redis-server).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import aiohttp
import pytest
from channelapp.application import App
from channelapp.consumers.asgi import LifespanFailed
from channelapp.consumers.body import BODY_CHUNK_SIZE
from channelapp.routing import mount, path
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from devtools.redis import RedisServer
from tests.support.inprocess import serving

Scope = MutableMapping[str, Any]


def starlette_app(events: list[str]) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        events.append("startup")
        yield {"greeting": "hello from lifespan"}
        events.append("shutdown")

    async def home(request: StarletteRequest) -> PlainTextResponse:
        return PlainTextResponse(f"{request.state.greeting} at {request.url.path}")

    async def echo(request: StarletteRequest) -> JSONResponse:
        body = await request.body()
        return JSONResponse(
            {
                "length": len(body),
                "type": request.headers["content-type"],
                "q": request.query_params["q"],
            }
        )

    async def numbers(request: StarletteRequest) -> StreamingResponse:
        async def gen() -> AsyncIterator[bytes]:
            for n in range(3):
                yield f"{n}\n".encode()

        return StreamingResponse(gen(), media_type="text/plain")

    return Starlette(
        routes=[
            Route("/", home),
            Route("/echo", echo, methods=["POST"]),
            Route("/numbers", numbers),
        ],
        lifespan=lifespan,
    )


@pytest.mark.redis
async def test_starlette_app_with_lifespan_state(redis_server: RedisServer) -> None:
    events: list[str] = []
    app = App([mount("/", starlette_app(events))])
    async with (
        serving(app, redis_urls=[redis_server.url]) as served,
        aiohttp.ClientSession() as client,
    ):
        assert events == ["startup"]
        async with client.get(served.url + "/") as response:
            assert response.status == 200
            assert await response.text() == "hello from lifespan at /"
        big = b"x" * (3 * BODY_CHUNK_SIZE + 5)
        async with client.post(
            served.url + "/echo?q=1", data=big, headers={"Content-Type": "application/x-test"}
        ) as response:
            assert await response.json() == {
                "length": len(big),
                "type": "application/x-test",
                "q": "1",
            }
        async with client.get(served.url + "/numbers") as response:
            assert await response.text() == "0\n1\n2\n"
        async with client.get(served.url + "/nowhere") as response:
            assert response.status == 404  # Starlette's own 404
    assert events == ["startup", "shutdown"]


async def test_mount_prefix_is_the_root_path() -> None:
    events: list[str] = []

    async def native(request: Any) -> Any:
        from channelapp.consumers import Response

        return Response.text("native")

    app = App([path("/native", native, protocol="http"), mount("/api", starlette_app(events))])
    async with serving(app) as served, aiohttp.ClientSession() as client:
        async with client.get(served.url + "/api/") as response:
            assert await response.text() == "hello from lifespan at /api/"
        async with client.get(served.url + "/native") as response:
            assert await response.text() == "native"
        async with client.get(served.url + "/apix") as response:
            assert response.status == 404  # not under /api


class Gate:
    """A raw ASGI app whose request reading and response writing the test steps through."""

    def __init__(self) -> None:
        self.first_chunk = asyncio.Event()
        self.go_on = asyncio.Event()
        self.chunks: list[int] = []
        self.events: list[str] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            raise ValueError("no lifespan here")  # like Django: served without it
        total = 0
        while True:
            event = await receive()
            self.events.append(event["type"])
            if event["type"] == "http.disconnect":
                return
            total += len(event["body"])
            self.chunks.append(len(event["body"]))
            self.first_chunk.set()
            if not event.get("more_body"):
                break
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"x-total", str(total).encode())],
            }
        )
        await send({"type": "http.response.body", "body": b"first ", "more_body": True})
        await self.go_on.wait()
        await send({"type": "http.response.body", "body": b"last", "more_body": False})


async def test_request_body_reaches_the_app_while_it_is_uploaded() -> None:
    """The client sends the rest of its body only once the app has the first chunk: a server
    that read the whole body first would never deliver it."""
    gate = Gate()
    gate.go_on.set()
    app = App([mount("/", gate)])

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * (BODY_CHUNK_SIZE + 10)
        await asyncio.wait_for(gate.first_chunk.wait(), 10)
        yield b"b" * 30_000

    async with serving(app) as served, aiohttp.ClientSession() as client:
        async with client.post(served.url + "/up", data=body()) as response:
            assert response.status == 200
            assert response.headers["x-total"] == str(BODY_CHUNK_SIZE + 10 + 30_000)
            assert await response.text() == "first last"
    assert len(gate.chunks) >= 2


async def test_response_body_reaches_the_client_while_the_app_writes_it() -> None:
    gate = Gate()
    app = App([mount("/", gate)])
    async with serving(app) as served, aiohttp.ClientSession() as client:
        async with client.get(served.url + "/down") as response:
            assert await asyncio.wait_for(response.content.readexactly(6), 10) == b"first "
            gate.go_on.set()
            assert await response.content.read() == b"last"


async def test_body_over_the_limit_midstream_is_413_and_the_app_sees_a_disconnect() -> None:
    gate = Gate()
    app = App([mount("/", gate)])

    async def body() -> AsyncIterator[bytes]:
        for _ in range(6):
            yield b"z" * BODY_CHUNK_SIZE

    async with (
        serving(app, max_body_size=4 * BODY_CHUNK_SIZE) as served,
        aiohttp.ClientSession() as client,
    ):
        async with client.post(served.url + "/up", data=body()) as response:
            assert response.status == 413
        for _ in range(100):
            if "http.disconnect" in gate.events:
                break
            await asyncio.sleep(0.05)
    assert gate.events[-1] == "http.disconnect"


async def test_app_failing_before_its_response_is_a_500_after_it_a_cut_stream() -> None:
    async def before(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            raise RuntimeError("broken before")

    async def after(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise RuntimeError("broken after")

    app = App([mount("/before", before), mount("/after", after)])
    async with serving(app) as served, aiohttp.ClientSession() as client:
        async with client.get(served.url + "/before") as response:
            assert response.status == 500
        async with client.get(served.url + "/after") as response:
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()  # cut short, never a complete-looking body


async def test_failed_lifespan_startup_stops_the_worker() -> None:
    async def refuses(scope: Scope, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})

    with pytest.raises(LifespanFailed, match="database unreachable"):
        async with serving(App([mount("/", refuses)])):
            pass


async def _raw_upload(url: str, declared: int, sent: int, *, close: bool) -> bytes:
    """Declare ``declared`` body bytes, send ``sent``, then close (or wait for the answer)."""
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /up HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {declared}\r\n\r\n".encode()
        + b"k" * sent
    )
    await writer.drain()
    if close:
        writer.close()
        return b""
    head = await asyncio.wait_for(reader.readline(), 15)
    writer.close()
    return head


async def wait_for_event(gate: Gate, kind: str) -> None:
    for _ in range(200):
        if kind in gate.events:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the app never saw {kind}: {gate.events}")


async def test_client_leaving_midway_is_a_disconnect_for_the_app() -> None:
    gate = Gate()
    async with serving(App([mount("/", gate)])) as served:
        await _raw_upload(served.url, 10 * BODY_CHUNK_SIZE, 2 * BODY_CHUNK_SIZE, close=True)
        await wait_for_event(gate, "http.disconnect")
    assert gate.chunks and gate.chunks[0] == BODY_CHUNK_SIZE


async def test_body_stalling_midway_is_408_and_a_disconnect_for_the_app() -> None:
    gate = Gate()
    async with serving(App([mount("/", gate)]), read_timeout=1.0) as served:
        head = await _raw_upload(served.url, 10 * BODY_CHUNK_SIZE, 2 * BODY_CHUNK_SIZE, close=False)
        assert head.startswith(b"HTTP/1.1 408"), head
        await wait_for_event(gate, "http.disconnect")


@pytest.mark.redis
async def test_streamed_bodies_leave_nothing_behind_in_the_workers_layer(
    redis_server: RedisServer,
) -> None:
    """Every streamed body has a channel (a Redis list) of its own: once read, the layer
    keeps no reader, stash entry or waiter for it."""
    gate = Gate()
    gate.go_on.set()
    async with (
        serving(App([mount("/", gate)]), redis_urls=[redis_server.url]) as served,
        aiohttp.ClientSession() as client,
    ):
        for _ in range(20):
            async with client.post(served.url + "/up", data=b"u" * (2 * BODY_CHUNK_SIZE)) as r:
                assert await r.text() == "first last"
        layer: Any = served.layer

        def body_state() -> list[str]:
            held = [*layer._readers, *layer._stash, *layer._key_waiting, *layer._name_waiters]
            return [name for name in held if "http.request.body" in name]

        for _ in range(100):
            if not body_state():
                break
            await asyncio.sleep(0.05)
        assert body_state() == []


async def test_receive_after_the_response_is_a_disconnect_even_with_a_body_unread() -> None:
    """ASGI: receive() after the response says http.disconnect at once (an app that refused
    an upload early must not wait for a body that no one forwards any more)."""
    seen: list[tuple[str, float]] = []

    async def refuses_early(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError("no lifespan here")
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b"no"})
        t0 = asyncio.get_running_loop().time()
        event = await receive()
        seen.append((event["type"], asyncio.get_running_loop().time() - t0))

    async with serving(App([mount("/", refuses_early)])) as served:
        head = await _raw_upload(served.url, 10 * BODY_CHUNK_SIZE, 2 * BODY_CHUNK_SIZE, close=False)
        assert head.startswith(b"HTTP/1.1 401"), head
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.05)
    assert seen and seen[0][0] == "http.disconnect", seen
    assert seen[0][1] < 1.0, seen


async def test_raw_path_keeps_the_percent_encoding() -> None:
    scopes: list[Scope] = []

    async def records(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError("no lifespan here")
        scopes.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with serving(App([mount("/files", records)])) as served:
        async with aiohttp.ClientSession() as client:
            url = served.url + "/files/caf%C3%A9/a%2Fb?x=%26y"
            async with client.get(url) as response:
                assert response.status == 204
    (scope,) = scopes
    assert scope["path"] == "/files/café/a/b"
    assert scope["raw_path"] == b"/files/caf%C3%A9/a%2Fb"
    assert scope["root_path"] == "/files"
    assert scope["query_string"] == b"x=%26y"


async def test_head_of_a_streamed_response_sends_no_body_and_keeps_the_connection_usable() -> None:
    """A streamed response (Django's FileResponse, Starlette's StreamingResponse) to HEAD, or
    with status 204: the app's chunks never reach the wire, where the client would read them
    as the start of the next response on the connection."""

    async def streams(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError("no lifespan here")
        status = 204 if scope["path"] == "/empty" else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"def"})

    async with serving(App([mount("/", streams)])) as served:
        port = int(served.url.rsplit(":", 1)[1])
        for first in (b"HEAD /file HTTP/1.1", b"GET /empty HTTP/1.1"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(first + b"\r\nHost: a\r\n\r\nGET /file HTTP/1.1\r\nHost: a\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.split(b" ")[1] in (b"200", b"204"), head
            second = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            writer.close()
            assert second.startswith(b"HTTP/1.1 200 "), (first, second)


async def test_expect_100_continue_with_a_body_over_the_limit_is_refused_before_the_upload() -> (
    None
):
    """The point of ``Expect: 100-continue``: a declared body over ``max_body_size`` gets its
    413 at once, not a 100 Continue that has the client upload it for nothing."""
    async with serving(App([mount("/", Gate())]), max_body_size=1000) as served:
        port = int(served.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"
        )
        status_line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 413 "), status_line
