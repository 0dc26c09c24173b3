"""A Redis shard restarted without its data mid-stream: sockets are closed with 1012, not left deaf.

A protocol server and a worker run as processes over three real redis-servers
(no persistence, as managed Redis runs); the shard holding a chat room's group is
restarted while messages flow through the room.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiohttp
import pytest

from devtools.processes import AppProcess, running
from devtools.redis import RedisServer
from tests.support.layer_state import keys_matching

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

CHAT = "channelapp.examples.chat:app"


async def wait_for_group(shards: list[RedisServer], group: str) -> RedisServer:
    for _ in range(100):
        for shard in shards:
            if keys_matching([shard], f"channelapp:group:{group}"):
                return shard
        await asyncio.sleep(0.1)
    raise AssertionError(f"group {group} never appeared")


async def test_sockets_are_closed_with_1012_when_their_shard_restarts_empty(
    redis_shards: list[RedisServer], tmp_path: Path
) -> None:
    env = {"CHANNELAPP_REDIS_URLS": ",".join(s.url for s in redis_shards)}
    with running(
        AppProcess("protocol", CHAT, env, tmp_path), AppProcess("worker", CHAT, env, tmp_path)
    ) as (proto, _worker):
        url = f"{proto.url}/ws/chat/restart/"
        async with aiohttp.ClientSession() as http:
            sender = await http.ws_connect(url)
            listeners = [await http.ws_connect(url) for _ in range(3)]
            shard = await wait_for_group(redis_shards, "chat.restart")

            async def stream() -> None:
                n = 0
                while not sender.closed:
                    with contextlib.suppress(ConnectionError):
                        await sender.send_json({"user": "s", "message": str(n)})
                    n += 1
                    await asyncio.sleep(0.05)

            async def listen(ws: aiohttp.ClientWebSocketResponse) -> tuple[int, object]:
                got = 0
                while True:
                    msg = await ws.receive()
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        return got, msg.data
                    got += 1

            streaming = asyncio.create_task(stream())
            listening = [asyncio.create_task(listen(ws)) for ws in listeners]
            await asyncio.sleep(1.0)
            shard.restart()  # empty: no persistence
            done, _ = await asyncio.wait(listening, timeout=15)
            streaming.cancel()
            assert len(done) == len(listening), "sockets stayed open, deaf, after the restart"
            results = [task.result() for task in listening]
            assert all(got > 0 for got, _ in results), results  # the stream was flowing
            assert all(code == 1012 for _, code in results), results
            assert "lost their data" in proto.log()

            # Clients that reconnect are in the room again.
            again = [await http.ws_connect(url) for _ in range(2)]
            await wait_for_group(redis_shards, "chat.restart")
            await asyncio.sleep(0.3)
            await again[0].send_json({"user": "a", "message": "back"})
            for ws in again:
                msg = await asyncio.wait_for(ws.receive(), 10)
                assert json.loads(msg.data)["message"] == "back"
                await ws.close()


async def test_sockets_opened_after_a_restart_are_not_closed_for_the_loss(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A client closed 1013 by a shard's outage reconnects as soon as it is back (empty) and
    talks: the loss is found before its new socket opens, so that socket is not closed (1012)
    for a loss that predates it, and loses nothing."""
    env = {"CHANNELAPP_REDIS_URLS": redis_server.url}
    with running(
        AppProcess("protocol", CHAT, env, tmp_path), AppProcess("worker", CHAT, env, tmp_path)
    ) as (proto, _worker):
        url = f"{proto.url}/ws/chat/again/"
        async with aiohttp.ClientSession() as http:
            old = await http.ws_connect(url)
            await wait_for_group([redis_server], "chat.again")
            redis_server.stop()
            await old.send_json({"user": "a", "message": "into the outage"})
            closed = await old.receive(timeout=15)
            assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, 1013), closed
            redis_server.start()  # same port, empty; the client reconnects at once
            new = [await http.ws_connect(url) for _ in range(3)]
            await wait_for_group([redis_server], "chat.again")
            for n, ws in enumerate(new):
                await ws.send_json({"user": "a", "message": f"back {n}"})
                for each in new:
                    msg = await each.receive(timeout=10)
                    assert msg.type == aiohttp.WSMsgType.TEXT, (n, msg)
                    assert json.loads(msg.data)["message"] == f"back {n}"
            # Past two lost-state checks (one a second): no second close.
            for ws in new:
                with pytest.raises(asyncio.TimeoutError):
                    await ws.receive(timeout=2.5)
                assert not ws.closed
                await ws.close()
