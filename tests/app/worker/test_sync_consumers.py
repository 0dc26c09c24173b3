"""Plain ``def`` consumers run in the worker's thread pool: in parallel, bounded by the
worker's concurrency, without blocking the event loop, with the same actions as async ones.

Protocol server and worker run in the test's loop over the in-memory layer (and over a
real redis-server where the layer's wire matters).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from channelapp import sync
from channelapp.application import App
from channelapp.consumers import (
    HttpConsumer,
    Request,
    Response,
    StreamingResponse,
    SyncJsonWebsocketConsumer,
    SyncWebsocketConsumer,
    WebsocketConsumer,
)
from channelapp.consumers.context import SyncContext
from channelapp.routing import channel, path

from devtools.redis import RedisServer
from tests.support.inprocess import serving


async def get_all(url: str, count: int) -> list[tuple[int, str]]:
    async with aiohttp.ClientSession() as client:

        async def one() -> tuple[int, str]:
            async with client.get(url) as response:
                return response.status, await response.text()

        return await asyncio.gather(*(one() for _ in range(count)))


async def test_sync_function_consumers_run_in_parallel_threads() -> None:
    """Eight blocking consumers meet at a barrier: only threads running at once can pass it
    (one serialising thread, or the event loop, would time out every one of them)."""
    barrier = threading.Barrier(8, timeout=10)
    threads: set[str] = set()

    def meet(request: Request) -> Response:
        threads.add(threading.current_thread().name)
        barrier.wait()
        return Response.text("met")

    app = App([path("/meet", meet, protocol="http")])
    async with serving(app, concurrency=8) as served:
        results = await get_all(served.url + "/meet", 8)
    assert results == [(200, "met")] * 8
    assert len(threads) == 8
    assert all(name.startswith("channelapp-sync") for name in threads)


async def test_the_pool_is_the_workers_concurrency() -> None:
    """With concurrency 3, never more than 3 sync consumers run at once, and the worker's
    report (what the autoscaler reads) says 3."""
    lock = threading.Lock()
    running = peak = 0

    def busy(request: Request) -> Response:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return Response.text("ok")

    app = App([path("/busy", busy, protocol="http")])
    async with serving(app, concurrency=3) as served:
        assert served.worker.report()["concurrency"] == 3
        assert served.worker.pool._max_workers == 3
        results = await get_all(served.url + "/busy", 12)
    assert [status for status, _ in results] == [200] * 12
    assert peak == 3


async def test_a_blocked_sync_consumer_leaves_async_consumers_served() -> None:
    release = threading.Event()

    def stuck(request: Request) -> Response:
        release.wait(20)
        return Response.text("released")

    async def quick(request: Request) -> Response:
        return Response.text("quick")

    app = App([path("/stuck", stuck, protocol="http"), path("/quick", quick, protocol="http")])
    async with serving(app, concurrency=4) as served, aiohttp.ClientSession() as client:
        pending = asyncio.ensure_future(client.get(served.url + "/stuck"))
        await asyncio.sleep(0.2)
        async with client.get(served.url + "/quick") as response:
            assert await response.text() == "quick"
        assert not pending.done()
        release.set()
        response = await pending
        assert await response.text() == "released"
        response.release()


class Items(HttpConsumer):
    def get(self, request: Request) -> Response:
        return Response.json({"thread": threading.current_thread().name, "kw": request.kwargs})

    def post(self, request: Request) -> Response:
        request.session["posted"] = request.json()
        return Response.text("saved", 201)


def countdown(request: Request) -> StreamingResponse:
    def chunks() -> Iterator[bytes]:
        for n in (3, 2, 1):
            yield f"{n}\n".encode()

    return StreamingResponse(chunks(), headers=[("Content-Type", "text/plain")])


async def test_sync_class_methods_and_sync_streaming() -> None:
    app = App(
        [
            path("/items/<int:pk>/", Items, protocol="http"),
            path("/countdown", countdown, protocol="http"),
        ]
    )
    async with serving(app) as served, aiohttp.ClientSession() as client:
        async with client.get(served.url + "/items/7/") as response:
            data = await response.json()
        assert data["kw"] == {"pk": 7}
        assert data["thread"].startswith("channelapp-sync")
        async with client.post(served.url + "/items/7/", json={"a": 1}) as response:
            assert response.status == 201
            assert "channelapp_session" in response.cookies
        async with client.get(served.url + "/countdown") as response:
            assert await response.text() == "3\n2\n1\n"


class Room(SyncJsonWebsocketConsumer):
    groups = ["room-{name}"]

    def connect(self) -> None:
        assert self.session is not None
        self.session["count"] = 0
        self.accept()

    def receive_json(self, content: Any) -> None:
        assert self.session is not None
        self.session["count"] += 1
        time.sleep(0.01)  # blocking code is fine here
        self.group_send_json(
            f"room-{self.kwargs['name']}",
            {"said": content["say"], "count": self.session["count"]},
        )


def relay(message: dict[str, Any], ctx: SyncContext) -> None:
    ctx.group_send("room-lobby", {"type": "websocket.send", "text": json.dumps(message["note"])})


async def check_room(url: str) -> None:
    async with aiohttp.ClientSession() as client:
        a = await client.ws_connect(url + "/ws/lobby/")
        b = await client.ws_connect(url + "/ws/lobby/")
        for n in range(1, 4):
            await a.send_json({"say": f"hi {n}"})
            for ws in (a, b):
                got = await asyncio.wait_for(ws.receive_json(), 10)
                assert got == {"said": f"hi {n}", "count": n}  # the session carried count
        await a.close()
        await b.close()


def room_app() -> App:
    return App([path("/ws/<name>/", Room, protocol="websocket"), channel("notes", relay)])


async def test_sync_websocket_consumer_with_session_and_groups() -> None:
    async with serving(room_app()) as served:
        await check_room(served.url)


@pytest.mark.redis
async def test_sync_websocket_consumer_over_redis(redis_server: RedisServer) -> None:
    async with serving(room_app(), redis_urls=[redis_server.url]) as served:
        await check_room(served.url)


async def test_sync_channel_consumer_gets_a_blocking_context() -> None:
    async with serving(room_app()) as served, aiohttp.ClientSession() as client:
        ws = await client.ws_connect(served.url + "/ws/lobby/")
        await asyncio.sleep(0.1)  # joined
        await served.layer.send("notes", {"type": "notes", "note": "from a sync consumer"})
        assert await asyncio.wait_for(ws.receive_json(), 10) == "from a sync consumer"
        await ws.close()


async def test_a_failing_sync_consumer_is_a_500() -> None:
    def broken(request: Request) -> Response:
        raise ValueError("boom")

    app = App([path("/broken", broken, protocol="http")])
    async with serving(app) as served:
        assert await get_all(served.url + "/broken", 1) == [(500, "internal server error\n")]


async def test_blocking_calls_refuse_the_event_loop_and_outside_a_worker() -> None:
    async def noop() -> None:
        return None

    with pytest.raises(sync.NotInWorker):
        sync.call(noop())

    seen: list[str] = []

    async def on_loop(request: Request) -> Response:
        try:
            sync.call(noop())
        except RuntimeError as exc:
            seen.append(str(exc))
        return Response.text("ok")

    app = App([path("/", on_loop, protocol="http")])
    async with serving(app) as served:
        await get_all(served.url + "/", 1)
    assert seen and "await the async form" in seen[0]


async def test_a_streamed_body_reaches_a_consumer_whole() -> None:
    """A body longer than one chunk streams from the protocol server; a consumer that takes
    ``request.body`` gets all of it, in order."""

    def size(request: Request) -> Response:
        return Response.json({"length": len(request.body), "tail": request.body[-4:].decode()})

    body = b"0123456789" * 50_000 + b"tail"
    async with serving(App([path("/size", size, protocol="http")])) as served:
        async with aiohttp.ClientSession() as client:
            async with client.post(served.url + "/size", data=body) as response:
                assert await response.json() == {"length": len(body), "tail": "tail"}


async def test_an_async_action_called_without_await_in_sync_code_raises() -> None:
    """``request.ctx.send(...)`` in a plain def would create a coroutine nobody awaits and
    send nothing; it raises naming the blocking form, and ``ctx.sync`` does the work."""
    said: list[str] = []

    def forgetful(request: Request) -> Response:
        try:
            request.ctx.send("notes", {"type": "notes", "note": "lost"})  # type: ignore[unused-coroutine]
        except RuntimeError as exc:
            said.append(str(exc))
            raise
        return Response.text("sent")

    def blocking(request: Request) -> Response:
        request.ctx.sync.send("notes", {"type": "notes", "note": "kept"})
        return Response.text("sent")

    app = App(
        [
            path("/forgetful", forgetful, protocol="http"),
            path("/blocking", blocking, protocol="http"),
        ]
    )
    async with serving(app) as served:
        assert await get_all(served.url + "/forgetful", 1) == [(500, "internal server error\n")]
        assert await get_all(served.url + "/blocking", 1) == [(200, "sent")]
        got = await asyncio.wait_for(served.layer.receive("notes"), 10)
    assert got["note"] == "kept"
    assert said and "ctx.sync.send(" in said[0]


class PlainDefInAsyncConsumer(WebsocketConsumer):
    def receive(self, text: str | None = None, bytes: bytes | None = None) -> None:  # type: ignore[override]
        self.send(text=text)  # type: ignore[unused-coroutine]


class AsyncDefInSyncConsumer(SyncWebsocketConsumer):
    async def receive(self, text: str | None = None, bytes: bytes | None = None) -> None:  # type: ignore[override]
        self.send(text=text)


@pytest.mark.parametrize("consumer", [PlainDefInAsyncConsumer, AsyncDefInSyncConsumer])
async def test_a_handler_of_the_other_kind_closes_the_socket_with_an_error(
    consumer: type[Any], caplog: pytest.LogCaptureFixture
) -> None:
    app = App([path("/ws/", consumer, protocol="websocket")])
    async with serving(app) as served, aiohttp.ClientSession() as client:
        ws = await client.ws_connect(served.url + "/ws/")
        await ws.send_str("echo?")
        closed = await asyncio.wait_for(ws.receive(), 10)
    assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, 1011)
    errors = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], TypeError)]
    assert errors and f"{consumer.__name__}.receive is" in str(errors[0].exc_info[1])


async def test_the_readmes_sync_consumers_example_runs() -> None:
    """The README's example, as written: a sync HTTP function sends with ``ctx.sync`` to a
    custom channel, whose sync consumer sends on."""
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    [example] = [b for b in blocks if "def thumbnail(message, ctx)" in b]
    namespace: dict[str, Any] = {}
    exec(compile(example, "README.md", "exec"), namespace)
    async with serving(namespace["app"]) as served:
        assert await get_all(served.url + "/report/", 1) == [(200, '{"rows": 3}')]
        done = await asyncio.wait_for(served.layer.receive("thumbnails.done"), 10)
    assert done == {"id": 3}
