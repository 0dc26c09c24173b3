"""Large bodies and frames through a protocol server and a worker over two real Redis shards:
no 1 MiB wall (the layer's own item size) anywhere a user can reach. Responses of any size
stream; request bodies are bounded by ``max_body_size`` and frames by ``max_frame_size``
(413 and 1009 one byte past them, never a 500, a 1011 or a lost frame)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from devtools.processes import AppProcess, running
from devtools.redis import RedisServer, redis_servers
from tests.support.apps import pattern

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

APP = "tests.support.apps:large"
MiB = 1024 * 1024
LIMIT = 4 * MiB  # max_body_size and max_frame_size of the "configured" processes


def start(shards: list[RedisServer], tmp_path: Path, **settings: int) -> Iterator[AppProcess]:
    env = {"CHANNELAPP_REDIS_URLS": ",".join(s.url for s in shards)}
    env.update({f"CHANNELAPP_{k.upper()}": str(v) for k, v in settings.items()})
    with running(
        AppProcess("protocol", APP, env, tmp_path), AppProcess("worker", APP, env, tmp_path)
    ) as (
        proto,
        _,
    ):
        yield proto


@pytest.fixture(scope="module")
def shards() -> Iterator[list[RedisServer]]:
    with redis_servers(2) as servers:
        yield servers


@pytest.fixture
def configured(shards: list[RedisServer], tmp_path: Path) -> Iterator[AppProcess]:
    yield from start(shards, tmp_path, max_body_size=LIMIT, max_frame_size=LIMIT)


@pytest.fixture
def defaults(shards: list[RedisServer], tmp_path: Path) -> Iterator[AppProcess]:
    yield from start(shards, tmp_path)


async def test_8_mib_responses_native_and_mounted(defaults: AppProcess) -> None:
    async with aiohttp.ClientSession() as http:
        for url in (f"{defaults.url}/big/{8 * MiB}/", f"{defaults.url}/asgi/big/{8 * MiB}"):
            async with http.get(url) as r:
                body = await r.read()
                assert r.status == 200, (url, r.status, body[:200])
                assert body == pattern(8 * MiB), url
        async with http.get(f"{defaults.url}/big/{2 * MiB + 1}/") as r:
            assert (r.status, await r.read()) == (200, pattern(2 * MiB + 1))


async def test_request_bodies_up_to_the_limit(configured: AppProcess) -> None:
    async with aiohttp.ClientSession() as http:
        for size in (LIMIT - 1, LIMIT):
            body = pattern(size)
            async with http.post(f"{configured.url}/big/1/", data=body) as r:
                assert r.status == 200, (size, await r.text())
                assert await r.json() == {
                    "length": size,
                    "sha256": hashlib.sha256(body).hexdigest(),
                }
        async with http.post(f"{configured.url}/big/1/", data=pattern(LIMIT + 1)) as r:
            assert r.status == 413


async def ws(
    http: aiohttp.ClientSession, proto: AppProcess, compress: int = 0
) -> aiohttp.ClientWebSocketResponse:
    """A socket to the frames app. With ``compress`` (permessage-deflate) a large frame of the
    repeating pattern is small on the wire, so it arrives whole before the server's close."""
    return await http.ws_connect(f"{proto.url}/ws/big/", max_msg_size=0, compress=compress)


async def test_frames_up_to_the_limit_both_ways(configured: AppProcess) -> None:
    async with aiohttp.ClientSession() as http:
        sock = await ws(http, configured)
        for size in (LIMIT - 1, LIMIT):
            await sock.send_bytes(pattern(size))
            got = await sock.receive(timeout=30)
            assert got.type == aiohttp.WSMsgType.BINARY and got.data == pattern(size), size
            text = "é" * (size // 2)  # UTF-8: size bytes (less one for an odd size)
            await sock.send_str(text)
            got = await sock.receive(timeout=30)
            assert got.type == aiohttp.WSMsgType.TEXT and got.data == text, size
            await sock.send_str(f"send {size}")
            got = await sock.receive(timeout=30)
            assert got.type == aiohttp.WSMsgType.BINARY and got.data == pattern(size), size
        await sock.send_str(f"send {LIMIT + 1}")  # the application's frame past the limit
        got = await sock.receive(timeout=30)
        assert (got.type, got.data) == (aiohttp.WSMsgType.CLOSE, 1009), got
        await sock.close()
        sock = await ws(http, configured, compress=15)
        await sock.send_bytes(pattern(LIMIT + 1))  # the client's frame past the limit
        got = await sock.receive(timeout=30)
        assert (got.type, got.data) == (aiohttp.WSMsgType.CLOSE, 1009), got
        await sock.close()


async def test_frames_just_under_1_mib_arrive_in_order_without_a_stall(
    defaults: AppProcess,
) -> None:
    """With the default max_frame_size (1 MiB): a frame a little smaller than it no longer
    outgrows the layer's item (it was lost, the socket closed with 1006 on the wire and the
    next frame waited 5 s for its lost predecessor)."""
    async with aiohttp.ClientSession() as http:
        sock = await ws(http, defaults)
        for size in (1_048_500, 1_048_575, MiB):
            t0 = time.monotonic()
            await sock.send_bytes(pattern(size))
            await sock.send_str(f"after {size}")
            got = await sock.receive(timeout=30)
            assert got.type == aiohttp.WSMsgType.BINARY and got.data == pattern(size), (size, got)
            got = await sock.receive(timeout=30)
            assert (got.type, got.data) == (aiohttp.WSMsgType.TEXT, f"after {size}"), got
            assert time.monotonic() - t0 < 3.0, size
        await sock.close()
        sock = await ws(http, defaults, compress=15)
        await sock.send_bytes(pattern(MiB + 1))
        got = await sock.receive(timeout=30)
        assert (got.type, got.data) == (aiohttp.WSMsgType.CLOSE, 1009), got
        await asyncio.wait_for(sock.close(), 10)
