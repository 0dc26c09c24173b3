"""Handshakes that do not complete leave nothing behind: no group member, session or order key.

A protocol server and a worker run as processes over real redis-servers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from devtools.processes import AppProcess, running
from devtools.redis import RedisServer
from tests.support.layer_state import group_size, keys_matching

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

CHAT = "channelapp.examples.chat:app"


@pytest.fixture
def processes(
    redis_shards: list[RedisServer], tmp_path: Path
) -> Iterator[tuple[AppProcess, AppProcess]]:
    env = {"CHANNELAPP_REDIS_URLS": ",".join(s.url for s in redis_shards)}
    with running(
        AppProcess("protocol", CHAT, env, tmp_path), AppProcess("worker", CHAT, env, tmp_path)
    ) as (proto, worker):
        yield proto, worker


@pytest.fixture
def chat(processes: tuple[AppProcess, AppProcess]) -> AppProcess:
    return processes[0]


async def raw_get(port: int, path: str, headers: dict[str, str]) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(head.encode())
    status = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    return status


async def settled(check: object, timeout: float = 15.0) -> None:
    """Wait until ``check()`` is true (the worker handles disconnects asynchronously)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("state in Redis did not settle")
        await asyncio.sleep(0.2)


async def test_handshake_without_key_is_400_and_never_connects(
    chat: AppProcess, redis_shards: list[RedisServer]
) -> None:
    no_key = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}
    statuses = await asyncio.gather(
        *(raw_get(chat.port, "/ws/chat/lobby/", no_key) for _ in range(30))
    )
    assert all(s.startswith(b"HTTP/1.1 400") for s in statuses), statuses[:3]
    async with aiohttp.ClientSession() as http:  # a real socket still works afterwards
        ws = await http.ws_connect(f"{chat.url}/ws/chat/lobby/")
        await settled(lambda: group_size(redis_shards, "chat.lobby") == 1)
        await ws.close()
    await settled(lambda: group_size(redis_shards, "chat.lobby") == 0)
    await asyncio.sleep(1.0)  # a connect that ran late would show up now
    assert group_size(redis_shards, "chat.lobby") == 0
    assert keys_matching(redis_shards, "channelapp:session:*") == []
    assert keys_matching(redis_shards, "channelapp:order:*") == []


async def test_rejected_handshake_leaves_no_order_key(
    processes: tuple[AppProcess, AppProcess], redis_shards: list[RedisServer]
) -> None:
    chat, worker = processes
    async with aiohttp.ClientSession() as http:
        for _ in range(5):
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await http.ws_connect(f"{chat.url}/ws/chat/no%20spaces/")
            assert err.value.status == 403
    await settled(lambda: keys_matching(redis_shards, "channelapp:order:*") == [])
    assert keys_matching(redis_shards, "channelapp:session:*") == []
    # The disconnect of a rejected socket runs cleanly (its room name was never a group).
    assert "Traceback" not in worker.log()
