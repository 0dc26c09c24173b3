"""Everything the processes store in Redis goes through the layer's key space: with encryption
keys set, no value holds application data in the clear (a SCAN of every key after a chat)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from cryptography.fernet import Fernet

from devtools.processes import AppProcess, running
from devtools.redis import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

CHAT = "channelapp.examples.chat:app"
MARKER = "plaintext-marker-7f3a"


async def every_value(client: aioredis.Redis) -> dict[bytes, list[bytes]]:
    """Every key with the bytes of everything stored under it (members, fields, items)."""
    out: dict[bytes, list[bytes]] = {}
    async for key in client.scan_iter(count=1000):
        kind = (await client.type(key)).decode()
        if kind == "string":
            values = [await client.get(key)]
        elif kind == "list":
            values = await client.lrange(key, 0, -1)
        elif kind == "hash":
            values = [b for kv in (await client.hgetall(key)).items() for b in kv]
        elif kind == "zset":
            values = await client.zrange(key, 0, -1)
        elif kind == "set":
            values = list(await client.smembers(key))
        else:
            raise AssertionError(f"unexpected {kind} key {key!r}")
        out[key] = [v for v in values if v is not None]
    return out


async def test_no_plaintext_in_any_key_after_a_chat_with_encryption(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {
        "CHANNELAPP_REDIS_URLS": redis_server.url,
        "CHANNELAPP_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    }
    proto = AppProcess("protocol", CHAT, env, tmp_path)
    with running(proto, AppProcess("worker", CHAT, env, tmp_path)):
        async with aiohttp.ClientSession() as http:
            a = await http.ws_connect(f"{proto.url}/ws/chat/lobby/")
            b = await http.ws_connect(f"{proto.url}/ws/chat/lobby/")
            for i in range(5):
                await a.send_str(json.dumps({"user": MARKER, "message": f"{MARKER} {i}"}))
                for ws in (a, b):
                    got = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
                    assert got["message"] == f"{MARKER} {i}"
            client = aioredis.Redis.from_url(redis_server.url)
            try:
                stored = await every_value(client)
            finally:
                await client.aclose()
            await a.close()
            await b.close()
    assert any(b":session:" in k for k in stored), sorted(stored)  # sessions were written
    assert all(k.startswith(b"channelapp:") for k in stored), sorted(stored)
    for key, values in stored.items():
        for value in values:
            assert MARKER.encode() not in value, (key, value[:80])
            assert b"lobby" not in value and b"room" not in value, (key, value[:80])
