"""``channelapp asgi``'s server (channelapp.server.asgi_host) around plain ASGI 3 apps, on a real
port: the split protocol server's admission and limits hold for an application served
in-process, and its lifespan runs around the serving."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from channelapp.server.asgi_host import serve_asgi
from channelapp.settings import Settings

from devtools.procs import free_port

Scope = dict[str, Any]


class App:
    """An ASGI app: /echo and /slow HTTP, /raise, a WebSocket echo that can also flood the
    client, refuse, or raise; lifespan recorded."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.disconnects: list[int] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                self.events.append(event["type"])
                await send({"type": event["type"] + ".complete"})
                if event["type"] == "lifespan.shutdown":
                    return
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        else:
            await self.websocket(scope, receive, send)

    async def http(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope["path"]
        if path == "/raise":
            raise RuntimeError("boom")
        if path == "/slow":
            await asyncio.sleep(5)
        body = b""
        while True:
            event = await receive()
            if event["type"] == "http.disconnect":
                return
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        head = [(b"content-type", b"text/plain"), (b"x-path", path.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        if path == "/stream":
            for part in (b"one ", b"two ", b"three"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.body", "body": b"got " + body})

    async def websocket(self, scope: Scope, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        if scope["path"] == "/refuse":
            await send({"type": "websocket.close", "code": 4000})
            return
        await send(
            {"type": "websocket.accept", "subprotocol": (scope["subprotocols"] or [None])[0]}
        )
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                self.disconnects.append(event["code"])
                return
            text = event.get("text")
            if text == "flood":
                for i in range(5000):
                    await send({"type": "websocket.send", "text": f"{i:04d}" + "x" * 1000})
            elif text == "raise":
                raise RuntimeError("boom")
            else:
                await send({"type": "websocket.send", "text": f"echo {text}"})


@contextlib.asynccontextmanager
async def serving(app: App, **settings: Any) -> AsyncIterator[str]:
    values: dict[str, Any] = {"response_timeout": 1.0, "read_timeout": 2.0, **settings}
    port = free_port()
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        serve_asgi(app, Settings(**values), "127.0.0.1", port, ready=ready, stop=stop)
    )
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_http_bodies_streams_and_lifespan() -> None:
    app = App()
    async with serving(app) as url, aiohttp.ClientSession() as http:
        assert app.events == ["lifespan.startup"]
        async with http.post(f"{url}/echo", data=b"hello") as r:
            assert (r.status, await r.read(), r.headers["x-path"]) == (200, b"got hello", "/echo")
        big = b"y" * 300_000  # more than one chunk
        async with http.post(f"{url}/echo", data=big) as r:
            assert await r.read() == b"got " + big
        async with http.get(f"{url}/stream") as r:
            assert await r.read() == b"one two three"
        async with http.get(f"{url}/readyz") as r:
            assert r.status == 200
    assert app.events == ["lifespan.startup", "lifespan.shutdown"]


async def test_http_limits_and_failures() -> None:
    async with serving(App(), max_body_size=1000, allowed_hosts=["good.example"]) as url:
        async with aiohttp.ClientSession() as http:
            ok = {"Host": "good.example"}
            async with http.post(f"{url}/echo", data=b"z" * 5000, headers=ok) as r:
                assert r.status == 413
            async with http.get(f"{url}/echo", headers={"Host": "bad.example"}) as r:
                assert r.status == 400
            async with http.get(f"{url}/slow", headers=ok) as r:
                assert r.status == 504  # response_timeout
            async with http.get(f"{url}/raise", headers=ok) as r:
                assert r.status == 500


async def test_websocket_admission_echo_refusal_and_errors() -> None:
    app = App()
    async with serving(app, max_frame_size=100) as url, aiohttp.ClientSession() as http:
        ws_url = url.replace("http", "ws")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{ws_url}/echo", headers={"Origin": "http://evil.example"})
        assert refused.value.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as rejected:
            await http.ws_connect(f"{ws_url}/refuse")
        assert rejected.value.status == 403
        async with http.ws_connect(f"{ws_url}/echo", protocols=["chat"]) as ws:
            assert ws.protocol == "chat"
            await ws.send_str("hi")
            assert await ws.receive_str(timeout=5) == "echo hi"
            await ws.send_str("x" * 500)  # over max_frame_size
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1009
        async with http.ws_connect(f"{ws_url}/echo") as ws:
            await ws.send_str("raise")
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1011
    assert len(app.disconnects) == 1  # the socket closed for its frame (the other raised)


async def test_a_client_that_reads_nothing_is_closed_as_too_slow() -> None:
    app = App()
    async with serving(app, send_buffer_size=64 * 1024, channel_capacity=50) as url:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url.replace("http", "ws") + "/echo")
            await ws.send_str("flood")  # 5 MB for a client that reads nothing
            await asyncio.sleep(2)
            messages = []
            while True:
                msg = await ws.receive(timeout=5)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                messages.append(msg.data)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1008
            assert len(messages) < 5000
    assert app.disconnects == [1008]


async def test_stop_closes_sockets_with_1012_and_the_app_hears_it() -> None:
    app = App()
    async with aiohttp.ClientSession() as http:
        async with serving(app) as url:
            ws = await http.ws_connect(url.replace("http", "ws") + "/echo")
            await ws.send_str("hi")
            assert await ws.receive_str(timeout=5) == "echo hi"
            closing = asyncio.create_task(ws.receive(timeout=15))
            # leaving the block stops the server while the socket is open
        msg = await closing
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1012
    assert len(app.disconnects) == 1  # the application heard the socket go
