"""A protocol server killed with SIGKILL: within a bound (a few heartbeats) its sockets leave
their groups, its reply backlog is deleted and its sockets' keys expire soon, while the
live server's sockets keep getting every broadcast."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from channelapp.layer.sharding import HashRing

from devtools.processes import AppProcess, running
from devtools.redis import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

CHAT = "channelapp.examples.chat:app"
SWEPT_WITHIN = 12.0  # seconds: dead 5 s after its last heartbeat, swept within a beat after


async def members(clients: list[aioredis.Redis], group: str) -> list[str]:
    key = f"channelapp:group:{group}"
    client = clients[HashRing(len(clients)).shard_for(group)]
    return sorted(m.decode() for m in await client.zrange(key, 0, -1))


async def keys_of(clients: list[aioredis.Redis], prefix: str) -> dict[str, int]:
    """Every key naming a channel of ``prefix`` on every shard, with its time to live."""
    out: dict[str, int] = {}
    for client in clients:
        for key in await client.keys(f"channelapp:*{prefix}*"):
            out[key.decode()] = await client.ttl(key)
    return out


async def receive_all(socks: list[aiohttp.ClientWebSocketResponse], n: int) -> list[str]:
    async def one(ws: aiohttp.ClientWebSocketResponse) -> str:
        msg = await ws.receive_json(timeout=20)
        return str(msg["message"])

    got = await asyncio.gather(*(one(ws) for ws in socks))
    assert len(got) == n
    return got


async def test_a_killed_protocol_server_is_swept_from_its_groups(
    redis_shards: list[RedisServer], tmp_path: Path
) -> None:
    env = {"CHANNELAPP_REDIS_URLS": ",".join(s.url for s in redis_shards)}
    live = AppProcess("protocol", CHAT, env, tmp_path)
    doomed = AppProcess("protocol", CHAT, env, tmp_path)
    clients = [aioredis.from_url(s.url) for s in redis_shards]
    with running(live, doomed, AppProcess("worker", CHAT, env, tmp_path)):
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            doomed_socks = [await http.ws_connect(f"{doomed.url}/ws/chat/big/") for _ in range(100)]
            deadline = time.monotonic() + 20
            while len(joined := await members(clients, "chat.big")) < 100:
                assert time.monotonic() < deadline, len(joined)
                await asyncio.sleep(0.05)
            doomed_prefix = joined[0].split("!")[0] + "!"
            assert all(m.startswith(doomed_prefix) for m in joined)
            live_socks = [await http.ws_connect(f"{live.url}/ws/chat/big/") for _ in range(100)]
            while len(await members(clients, "chat.big")) < 200:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            await live_socks[0].send_json({"user": "a", "message": "before"})
            assert set(await receive_all(live_socks + doomed_socks, 200)) == {"before"}

            assert doomed.proc is not None
            os.killpg(doomed.proc.pid, signal.SIGKILL)
            doomed.proc.wait()
            killed_at = time.monotonic()
            # Lands in the dead server's reply list: nobody will ever read it.
            await live_socks[1].send_json({"user": "a", "message": "during"})
            assert set(await receive_all(live_socks, 100)) == {"during"}

            while True:
                now = await members(clients, "chat.big")
                left = {k: t for k, t in (await keys_of(clients, doomed_prefix)).items()}
                if len(now) == 100 and not any(":ch:" in k for k in left):
                    break
                assert time.monotonic() - killed_at < SWEPT_WITHIN, (len(now), left)
                await asyncio.sleep(0.1)
            assert not any(m.startswith(doomed_prefix) for m in now)
            # What is left of its sockets (sessions, ordering) expires within a minute.
            assert all(0 < ttl <= 60 for ttl in left.values()), left

            await live_socks[2].send_json({"user": "a", "message": "after"})
            assert set(await receive_all(live_socks, 100)) == {"after"}
            assert not any(":ch:" in k for k in await keys_of(clients, doomed_prefix))
            for ws in live_socks:
                await ws.close()
    for client in clients:
        await client.aclose()
