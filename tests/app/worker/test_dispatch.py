"""One message to its consumer: every kind of consumer on every kind of route, the answers
for messages no route takes, and the answers after a consumer failed, over the in-memory
layer with a worker's sync runtime bound."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from channelapp import sync
from channelapp.application import App
from channelapp.consumers import HttpConsumer, Request, Response, WebsocketConsumer
from channelapp.consumers.context import Context
from channelapp.layer import InMemoryChannelLayer, ShardUnavailable
from channelapp.routing import channel, path
from channelapp.sessions import MemorySessionStore
from channelapp.settings import Settings
from channelapp.worker.dispatch import answer_failure, invoke

ran: list[tuple[str, Any]] = []


async def async_view(request: Request) -> Response:
    return Response.text(f"async {request.kwargs.get('n')}")


def sync_view(request: Request) -> Response:
    return Response.text(f"sync in {threading.current_thread().name.split('_')[0]}")


class ClassView(HttpConsumer):
    async def post(self, request: Request) -> Response:
        return Response.text(f"class got {len(request.body)} bytes")


class Raw:
    """Takes the message as it is (like an ASGI mount)."""

    async def consume(self, ctx: Context) -> None:
        ran.append(("raw", ctx.channel))
        if ctx.channel == "http.request":
            await ctx.reply({"type": "http.response.start", "status": 202, "headers": []})
            await ctx.reply({"type": "http.response.body", "body": b"raw", "more_body": False})


class Accepting(WebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()


async def job_async(message: dict[str, Any], ctx: Context) -> None:
    ran.append(("async", message["n"]))


def job_sync(message: dict[str, Any], ctx: Any) -> None:
    ran.append(("sync", (message["n"], threading.current_thread().name.split("_")[0])))


class JobClass:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def handle(self, message: dict[str, Any]) -> None:
        ran.append(("class", message["n"]))


APP = App(
    [
        path("/async/<int:n>/", async_view, protocol="http"),
        path("/sync/", sync_view, protocol="http"),
        path("/class/", ClassView, protocol="http"),
        path("/raw/", Raw(), protocol="http"),
        path("/ws/", Accepting, protocol="websocket"),
        path("/wsraw/", Raw(), protocol="websocket"),
        channel("jobs.async", job_async),
        channel("jobs.sync", job_sync),
        channel("jobs.class", JobClass),
        channel("jobs.raw", Raw()),
    ]
)


@pytest.fixture
async def layer() -> AsyncIterator[InMemoryChannelLayer]:
    layer = InMemoryChannelLayer(capacity=100)
    settings, store = Settings(), MemorySessionStore(60)
    pool = ThreadPoolExecutor(2, thread_name_prefix="channelapp-sync")
    runtime = sync.Runtime(asyncio.get_running_loop(), layer, settings, store, pool)
    sync.bind(runtime)
    ran.clear()
    try:
        yield layer
    finally:
        sync.unbind(runtime)
        pool.shutdown()
        await layer.close()


async def context(
    layer: InMemoryChannelLayer, channel_name: str, reply: bool = True, **message: Any
) -> Context:
    if reply:
        message["reply_channel"] = await layer.new_channel("reply")
    return Context(layer, Settings(), channel_name, message, MemorySessionStore(60))


async def replies(layer: InMemoryChannelLayer, ctx: Context) -> list[dict[str, Any]]:
    """Every reply sent so far (none wait for long: the consumer has returned)."""
    got = []
    while True:
        try:
            got.append(await asyncio.wait_for(layer.receive(ctx.reply_channel or ""), 0.2))
        except TimeoutError:
            return got


def response(got: list[dict[str, Any]]) -> tuple[int, bytes]:
    start, *bodies = got
    assert start["type"] == "http.response.start"
    assert bodies[-1]["more_body"] is False
    return start["status"], b"".join(b["body"] for b in bodies)


@pytest.mark.parametrize(
    ("method", "path_", "body", "want_outcome", "want"),
    [
        ("GET", "/async/7/", b"", "ok", (200, b"async 7")),
        ("GET", "/sync/", b"", "ok", (200, b"sync in channelapp-sync")),
        ("POST", "/class/", b"12345", "ok", (200, b"class got 5 bytes")),
        ("GET", "/class/", b"", "ok", (405, None)),
        ("GET", "/raw/", b"", "ok", (202, b"raw")),
        ("GET", "/nowhere/", b"", "no_route", (404, b"not found\n")),
        ("GET", "/ws/", b"", "no_route", (404, b"not found\n")),  # a websocket-only route
    ],
)
async def test_http(
    layer: InMemoryChannelLayer,
    method: str,
    path_: str,
    body: bytes,
    want_outcome: str,
    want: tuple[int, bytes | None],
) -> None:
    ctx = await context(layer, "http.request", method=method, path=path_, body=body, headers=[])
    assert await invoke(APP, ctx) == want_outcome
    status, got = response(await replies(layer, ctx))
    assert status == want[0]
    if want[1] is not None:
        assert got == want[1]


async def test_a_streamed_body_the_client_broke_off(layer: InMemoryChannelLayer) -> None:
    body_channel = await layer.new_channel("http.request.body")
    await layer.send(body_channel, {"type": "http.request.body", "body": b"b", "more_body": True})
    await layer.send(body_channel, {"type": "http.disconnect"})
    ctx = await context(
        layer, "http.request", method="POST", path="/class/", body=b"a", more_body=True,
        body_channel=body_channel, headers=[],
    )  # fmt: skip
    assert await invoke(APP, ctx) == "disconnected"
    assert await replies(layer, ctx) == []


async def test_a_streamed_body_is_drained_when_no_route_takes_it(
    layer: InMemoryChannelLayer,
) -> None:
    body_channel = await layer.new_channel("http.request.body")
    await layer.send(body_channel, {"type": "http.request.body", "body": b"b", "more_body": False})
    ctx = await context(
        layer, "http.request", method="POST", path="/none/", body=b"a", more_body=True,
        body_channel=body_channel, headers=[],
    )  # fmt: skip
    assert await invoke(APP, ctx) == "no_route"
    assert response(await replies(layer, ctx))[0] == 404
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(body_channel), 0.2)


@pytest.mark.parametrize(
    ("channel_name", "path_", "want_outcome", "want"),
    [
        ("websocket.connect", "/ws/", "ok", [{"type": "websocket.accept"}]),
        ("websocket.connect", "/nowhere/", "no_route",
         [{"type": "websocket.close", "code": 1000}]),
        ("websocket.receive", "/nowhere/", "no_route", []),  # nothing to close: never accepted
        ("websocket.disconnect", "/nowhere/", "no_route", []),
        ("websocket.connect", "/async/1/", "no_route",
         [{"type": "websocket.close", "code": 1000}]),  # an http-only route
        ("websocket.receive", "/wsraw/", "ok", []),
    ],
)  # fmt: skip
async def test_websocket(
    layer: InMemoryChannelLayer,
    channel_name: str,
    path_: str,
    want_outcome: str,
    want: list[dict[str, Any]],
) -> None:
    ctx = await context(layer, channel_name, type=channel_name, path=path_, order=0, text="t")
    assert await invoke(APP, ctx) == want_outcome
    got = await replies(layer, ctx)
    assert [{k: m[k] for k in w} for m, w in zip(got, want, strict=True)] == want
    if path_ == "/wsraw/":
        assert ran == [("raw", "websocket.receive")]


@pytest.mark.parametrize(
    ("channel_name", "want_outcome", "want"),
    [
        ("jobs.async", "ok", [("async", 3)]),
        ("jobs.sync", "ok", [("sync", (3, "channelapp-sync"))]),  # in the pool, not the loop
        ("jobs.class", "ok", [("class", 3)]),
        ("jobs.raw", "ok", [("raw", "jobs.raw")]),
        ("jobs.unknown", "no_route", []),
    ],
)
async def test_channel_routes(
    layer: InMemoryChannelLayer, channel_name: str, want_outcome: str, want: list[Any]
) -> None:
    ctx = await context(layer, channel_name, reply=False, n=3)
    assert await invoke(APP, ctx) == want_outcome
    assert ran == want


@pytest.mark.parametrize(
    ("channel_name", "started", "exc", "want"),
    [
        ("http.request", False, RuntimeError("bug"), ("http", 500, None)),
        ("http.request", False, None, ("http", 500, None)),
        ("http.request", False, ShardUnavailable("down"), ("http", 503, "1")),
        ("http.request", True, RuntimeError("bug"), ("abort",)),
        ("http.request", True, ShardUnavailable("down"), ("abort",)),
        ("websocket.connect", False, RuntimeError("bug"), ("close", 1011)),
        ("websocket.receive", False, RuntimeError("bug"), ("close", 1011)),
        ("websocket.receive", False, ShardUnavailable("down"), ("close", 1013)),
        ("websocket.disconnect", False, RuntimeError("bug"), ()),  # the socket is gone
        ("jobs.async", False, RuntimeError("bug"), ()),
    ],
)
async def test_answer_failure(
    layer: InMemoryChannelLayer,
    channel_name: str,
    started: bool,
    exc: BaseException | None,
    want: tuple[Any, ...],
) -> None:
    ctx = await context(layer, channel_name, path="/")
    ctx.response_started = started
    await answer_failure(ctx, exc)
    got = await replies(layer, ctx)
    if not want:
        assert got == []
    elif want[0] == "abort":
        assert got == [{"type": "http.response.abort"}]
    elif want[0] == "close":
        assert got == [{"type": "websocket.close", "code": want[1]}]
    else:
        status, _ = response(got)
        assert status == want[1]
        headers = {bytes(k).lower(): bytes(v) for k, v in got[0]["headers"]}
        assert headers.get(b"retry-after") == (want[2].encode() if want[2] else None)


async def test_answer_failure_without_a_reply_channel_sends_nothing(
    layer: InMemoryChannelLayer,
) -> None:
    probe = await layer.new_channel("probe")
    ctx = await context(layer, "http.request", reply=False, path="/")
    await answer_failure(ctx, RuntimeError("bug"))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(probe), 0.1)
