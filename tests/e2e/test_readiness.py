"""A protocol server's readiness follows its channel layer: not ready while Redis is down, ready
again when it is back; requests meanwhile are told the backend is unavailable."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from devtools.processes import AppProcess, running
from devtools.redis import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

ECHO = "channelapp.examples.echo:app"


async def readyz(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(f"{url}/readyz") as r:
        return r.status, await r.text()


async def until(http: aiohttp.ClientSession, url: str, status: int, within: float) -> str:
    deadline = time.monotonic() + within
    while True:
        got, text = await readyz(http, url)
        if got == status:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz still {got} {text!r} after {within}s")
        await asyncio.sleep(0.1)


async def test_readiness_follows_redis_and_503_names_no_address(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """/readyz is public (the app's port): it says Redis is unavailable, and the log says
    which shard, at which address, and why."""
    env = {"CHANNELAPP_REDIS_URLS": redis_server.url}
    proto = AppProcess("protocol", ECHO, env, tmp_path)
    with running(proto, AppProcess("worker", ECHO, env, tmp_path)):
        async with aiohttp.ClientSession() as http:
            assert (await readyz(http, proto.url))[0] == 200
            redis_server.stop()
            text = await until(http, proto.url, 503, within=10)
            assert text == "not ready: redis unavailable\n", text
            assert str(redis_server.port) not in text
            async with http.get(f"{proto.url}/work/1/") as r:
                body = await r.text()
                assert r.status == 503 and r.headers.get("Retry-After") == "1"
                assert "channel layer unavailable" in body and "busy" not in body, body
            redis_server.start()
            await until(http, proto.url, 200, within=20)
            for _ in range(50):
                async with http.get(f"{proto.url}/work/2/") as r:
                    if r.status == 200:
                        break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("no request served after Redis came back")
    assert "channel layer unavailable" in proto.log()
    assert f"redis shard 0 ({redis_server.url})" in proto.log()


async def test_websockets_are_told_the_backend_is_unavailable(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A frame or a handshake the layer cannot take: 1013 naming the backend, not "busy"."""
    env = {"CHANNELAPP_REDIS_URLS": redis_server.url}
    proto = AppProcess("protocol", ECHO, env, tmp_path)
    with running(proto, AppProcess("worker", ECHO, env, tmp_path)):
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(f"{proto.url.replace('http', 'ws')}/ws/echo/") as ws:
                await ws.send_str("hello")
                assert (await ws.receive(timeout=10)).data == "hello"
                redis_server.stop()
                await ws.send_str("anyone?")
                closed = await ws.receive(timeout=15)
            assert closed.type == aiohttp.WSMsgType.CLOSE, closed
            assert (closed.data, closed.extra) == (1013, "channel layer unavailable"), closed
            async with http.ws_connect(f"{proto.url.replace('http', 'ws')}/ws/echo/") as ws:
                refused = await ws.receive(timeout=15)
            assert refused.type == aiohttp.WSMsgType.CLOSE, refused
            assert (refused.data, refused.extra) == (1013, "channel layer unavailable"), refused
            redis_server.start()
