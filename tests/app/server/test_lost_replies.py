"""A socket that lost messages because its server's reply list was full is told: close 1013.

Two protocol servers and a worker as processes over real redis-servers, one room with a
socket on each server. One server is stopped (SIGSTOP) while the room gets more messages
than its reply list holds (``REPLY_CAPACITY``); once it runs again, its socket gets
what was kept and then a close 1013, never a silent gap.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import aiohttp
import pytest

from devtools.processes import AppProcess, running
from devtools.redis import RedisServer
from tests.support.layer_state import group_size

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

CHAT = "channelapp.examples.chat:app"
CAPACITY = 20
SENT = 60


async def test_socket_that_lost_messages_is_closed_with_1013(
    redis_shards: list[RedisServer], tmp_path: Path
) -> None:
    env = {
        "CHANNELAPP_REDIS_URLS": ",".join(s.url for s in redis_shards),
        "CHANNELAPP_REPLY_CAPACITY": str(CAPACITY),
    }
    with running(
        AppProcess("protocol", CHAT, env, tmp_path),
        AppProcess("protocol", CHAT, env, tmp_path),
        AppProcess("worker", CHAT, env, tmp_path),
    ) as (stopped, live, _worker):
        async with aiohttp.ClientSession() as http:
            behind = await http.ws_connect(f"{stopped.url}/ws/chat/full/")
            sender = await http.ws_connect(f"{live.url}/ws/chat/full/")
            for _ in range(100):
                if group_size(redis_shards, "chat.full") == 2:
                    break
                await asyncio.sleep(0.1)
            pid = stopped.proc.pid  # type: ignore[union-attr]
            os.kill(pid, signal.SIGSTOP)
            try:
                for i in range(SENT):
                    await sender.send_json({"user": "u", "message": str(i)})
                for i in range(SENT):  # the live server's socket gets every one
                    got = json.loads((await asyncio.wait_for(sender.receive(), 10)).data)
                    assert got["message"] == str(i)
            finally:
                os.kill(pid, signal.SIGCONT)
            received: list[str] = []
            while True:
                msg = await asyncio.wait_for(behind.receive(), 10)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                received.append(json.loads(msg.data)["message"])
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1013, (msg, received)
            assert received == [str(i) for i in range(len(received))]
            assert len(received) < SENT
            assert "lost messages" in stopped.log()
            await sender.close()
