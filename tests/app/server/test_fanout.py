"""A big room on one protocol server gets every broadcast: capacity is per socket, not per server.

A protocol server and a worker run as processes over real redis-servers; 1,000 aiohttp
sockets join one chat room, and one of them sends bursts of 10 messages.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from devtools.processes import AppProcess, running
from devtools.redis import RedisServer
from tests.support.layer_state import group_size

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

CHAT = "channelapp.examples.chat:app"
SOCKETS = 1000
BURST = 10
ROUNDS = 3


async def open_sockets(
    http: aiohttp.ClientSession, url: str, count: int
) -> list[aiohttp.ClientWebSocketResponse]:
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    for start in range(0, count, 100):
        sockets += await asyncio.gather(
            *(http.ws_connect(url, heartbeat=None) for _ in range(start, min(count, start + 100)))
        )
    return sockets


async def receive_texts(ws: aiohttp.ClientWebSocketResponse, want: int) -> list[str]:
    """The first ``want`` broadcasts ``ws`` gets, or fewer if it is closed or goes quiet."""
    got: list[str] = []
    while len(got) < want:
        try:
            msg = await asyncio.wait_for(ws.receive(), 30)
        except TimeoutError:
            break
        if msg.type != aiohttp.WSMsgType.TEXT:
            got.append(f"closed {msg.type.name} {msg.data}")
            break
        got.append(json.loads(msg.data)["message"])
    return got


async def test_room_of_1000_sockets_gets_every_message_of_each_burst(
    redis_shards: list[RedisServer], tmp_path: Path
) -> None:
    env = {"CHANNELAPP_REDIS_URLS": ",".join(s.url for s in redis_shards)}
    with running(
        AppProcess("protocol", CHAT, env, tmp_path), AppProcess("worker", CHAT, env, tmp_path)
    ) as (proto, worker):
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            sockets = await open_sockets(http, f"{proto.url}/ws/chat/big/", SOCKETS)
            for _ in range(300):
                if group_size(redis_shards, "chat.big") == SOCKETS:
                    break
                await asyncio.sleep(0.1)
            assert group_size(redis_shards, "chat.big") == SOCKETS
            readers = [asyncio.create_task(receive_texts(ws, BURST * ROUNDS)) for ws in sockets]
            sender = sockets[0]
            for r in range(ROUNDS):
                for i in range(BURST):  # back to back, no waiting for the echo
                    await sender.send_json({"user": "u", "message": f"{r}.{i}"})
                await asyncio.sleep(1.0)
            results = await asyncio.gather(*readers)
            expected = [f"{r}.{i}" for r in range(ROUNDS) for i in range(BURST)]
            short = [got for got in results if got != expected]
            delivered = sum(len([m for m in got if not m.startswith("closed")]) for got in results)
            assert delivered == SOCKETS * BURST * ROUNDS, (
                f"{delivered} of {SOCKETS * BURST * ROUNDS} delivered; "
                f"{len(short)} socket(s) short, e.g. {short[:1]}"
            )
            assert not short
            await asyncio.gather(*(ws.close() for ws in sockets))
        assert "full" not in worker.log()
