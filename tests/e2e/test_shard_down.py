"""One of two Redis shards killed (SIGKILL), whichever: requests that need it are answered
503 with Retry-After at once and sockets are closed 1013 (never 500 or 504, never a wait
for the response timeout), and what lives on the other shard keeps working."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from channelapp.layer.sharding import HashRing
from channelapp.settings import HTTP_REQUEST, WEBSOCKET_CONNECT, WEBSOCKET_RECEIVE

from devtools.processes import AppProcess, running
from devtools.redis import RedisServer, redis_servers

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

ECHO = "channelapp.examples.echo:app"
RING = HashRing(2)


async def process_ids(shard: RedisServer) -> set[str]:
    """The layer processes of the protocol servers (each keeps a marker on every shard)."""
    client = aioredis.from_url(shard.url)
    try:
        keys = await client.keys("channelapp:alive:*")
    finally:
        await client.aclose()
    return {k.decode().rsplit(":", 1)[1] for k in keys}


async def protocol_on_each_shard(
    env: dict[str, str], shard: RedisServer, tmp_path: Path
) -> dict[int, AppProcess]:
    """Protocol servers started until one has its reply channels on each shard."""
    by_shard: dict[int, AppProcess] = {}
    extra: list[AppProcess] = []
    known: set[str] = set()
    for _ in range(12):
        proc = AppProcess("protocol", ECHO, env, tmp_path)
        await asyncio.to_thread(proc.start)
        deadline = time.monotonic() + 10
        while not (new := await process_ids(shard) - known) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(new) == 1, new
        known |= new
        index = RING.shard_for(f"http.response.{new.pop()}!")
        if index in by_shard:
            extra.append(proc)
        else:
            by_shard[index] = proc
        if len(by_shard) == 2:
            break
    for proc in extra:
        proc.stop()
    assert len(by_shard) == 2, "no protocol server got its replies on one of the shards"
    return by_shard


async def http_answer(http: aiohttp.ClientSession, url: str) -> tuple[int, str | None, float]:
    t0 = time.monotonic()
    async with http.get(f"{url}/work/7/", timeout=aiohttp.ClientTimeout(20)) as r:
        await r.read()
        return r.status, r.headers.get("Retry-After"), time.monotonic() - t0


async def ws_outcome(http: aiohttp.ClientSession, url: str) -> str:
    """ "echo", "close 1013", or "handshake <status>"."""
    try:
        ws = await http.ws_connect(f"{url}/ws/echo/", timeout=aiohttp.ClientWSTimeout(20))
    except aiohttp.WSServerHandshakeError as exc:
        return f"handshake {exc.status}"
    async with ws:
        await ws.send_str("hi")
        msg = await ws.receive(timeout=20)
        if msg.type == aiohttp.WSMsgType.TEXT:
            return "echo" if msg.data == "hi" else f"text {msg.data}"
        return f"close {msg.data}" if msg.type == aiohttp.WSMsgType.CLOSE else str(msg)


@pytest.mark.parametrize("killed", [0, 1])
async def test_one_shard_killed_whichever(killed: int, tmp_path: Path) -> None:
    assert RING.shard_for(HTTP_REQUEST) != RING.shard_for(WEBSOCKET_CONNECT)  # both cases met
    with redis_servers(2) as shards:
        env = {"CHANNELAPP_REDIS_URLS": ",".join(s.url for s in shards)}
        with running(AppProcess("worker", ECHO, env, tmp_path)):
            protocols = await protocol_on_each_shard(env, shards[0], tmp_path)
            try:
                async with aiohttp.ClientSession() as http:
                    for proto in protocols.values():
                        assert (await http_answer(http, proto.url))[0] == 200
                        assert await ws_outcome(http, proto.url) == "echo"
                    assert shards[killed].proc is not None
                    shards[killed].proc.kill()
                    shards[killed].proc.wait()
                    for reply_shard, proto in protocols.items():
                        for _ in range(3):
                            status, retry, took = await http_answer(http, proto.url)
                            if killed in (reply_shard, RING.shard_for(HTTP_REQUEST)):
                                assert (status, retry) == (503, "1"), (status, proto.log()[-2000:])
                                assert took < 1.0, took
                            else:
                                assert status == 200, (status, proto.log()[-2000:])
                        outcome = await ws_outcome(http, proto.url)
                        if killed == reply_shard or killed == RING.shard_for(WEBSOCKET_CONNECT):
                            assert outcome in ("close 1013", "handshake 503"), outcome
                        elif killed == RING.shard_for(WEBSOCKET_RECEIVE):
                            assert outcome == "close 1013", outcome
                        else:
                            assert outcome == "echo", outcome
            finally:
                for proto in protocols.values():
                    proto.stop()
