"""The Channels 4 tutorial's project (examples/channels4/mysite) run by channelapp, unchanged:
``channelapp asgi mysite.asgi:application`` serving its pages and sockets in-process, and
``channelapp runworker mysite.asgi:application thumbnails`` processes consuming its background
channel, over a real redis-server with ``CHANNELAPP_REDIS_URLS`` set (the project's settings
name channels_redis on localhost; channelapp points ``CHANNEL_LAYERS`` at the shard)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from channelapp.channels import RedisChannelLayer
from channelapp.layer.monitor import RedisMonitor

from devtools.redis import redis_servers
from tests.support.channels4 import APP, Site

pytestmark = [pytest.mark.e2e, pytest.mark.redis]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with redis_servers(1) as (redis,):
        prefix = f"mysite{secrets.token_hex(4)}"
        env = {
            "CHANNELAPP_REDIS_URLS": redis.url,
            "CHANNELAPP_KEY_PREFIX": prefix,
            "CHANNELAPP_WORKER_REPORT_INTERVAL": "0.2",
            "CHANNELAPP_DRAIN_SECONDS": "0",
            # The tutorial's CONFIG has channels_redis's default capacity (100 a channel).
            "CHANNELAPP_CHANNEL_CAPACITY": "1000",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "MYSITE_DATABASE": str(tmp_path / "db.sqlite3"),
        }
        s = Site(redis, prefix, env, tmp_path)
        try:
            yield s
        finally:
            s.stop()


def ws_url(http: str, path: str) -> str:
    return http.replace("http://", "ws://") + path


async def chat(url: str, path: str) -> None:
    """Two clients in one room: what one says, both read (through the room's group)."""
    origin = {"Origin": url}
    async with aiohttp.ClientSession() as http:
        a = await http.ws_connect(ws_url(url, path), headers=origin)
        b = await http.ws_connect(ws_url(url, path), headers=origin)
        await asyncio.sleep(0.2)  # both joined the group
        await a.send_str(json.dumps({"message": "hello from a"}))
        for ws in (a, b):
            reply = await ws.receive_json(timeout=10)
            assert reply == {"message": "hello from a"}
        await b.send_str(json.dumps({"message": "and b"}))
        for ws in (a, b):
            assert await ws.receive_json(timeout=10) == {"message": "and b"}
        await a.close()
        await b.close()


def test_tutorial_pages_and_chat_async_and_sync(site: Site) -> None:
    server = site.start("asgi", APP)

    async def go() -> None:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.url}/chat/") as r:
                assert r.status == 200
                assert "What chat room would you like to enter?" in await r.text()
            async with http.get(f"{server.url}/chat/lobby/") as r:
                assert r.status == 200
                assert '"lobby"' in await r.text()
            # Django's own Host check and the server's: a Host not allowed is refused.
            async with http.get(f"{server.url}/chat/", headers={"Host": "evil.example"}) as r:
                assert r.status == 400
            # A page of another site may not open the socket (the server's origin check).
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(
                    ws_url(server.url, "/ws/chat/lobby/"),
                    headers={"Origin": "http://evil.example"},
                )
            assert refused.value.status == 403
        await chat(server.url, "/ws/chat/lobby/")
        await chat(server.url, "/ws/syncchat/lobby/")

    asyncio.run(go())
    assert "CHANNEL_LAYERS['default']: channelapp.channels.RedisChannelLayer" in server.log()


def test_chat_across_two_asgi_servers(site: Site) -> None:
    """Two servers of the project share the room through the layer on the shard."""
    one, two = site.start("asgi", APP), site.start("asgi", APP)

    async def go() -> None:
        async with aiohttp.ClientSession() as http:
            a = await http.ws_connect(
                ws_url(one.url, "/ws/chat/room2/"), headers={"Origin": one.url}
            )
            b = await http.ws_connect(
                ws_url(two.url, "/ws/chat/room2/"), headers={"Origin": two.url}
            )
            await asyncio.sleep(0.2)
            await a.send_str(json.dumps({"message": "across"}))
            assert await b.receive_json(timeout=10) == {"message": "across"}
            assert await a.receive_json(timeout=10) == {"message": "across"}

    asyncio.run(go())


async def collect(layer: RedisChannelLayer, channel: str, want: int, timeout: float) -> list[str]:
    ids: list[str] = []
    async with asyncio.timeout(timeout):
        while len(ids) < want:
            message = await layer.receive(channel)
            ids.append(message["id"])
    return ids


def test_background_burst_over_two_runworkers_loses_nothing(site: Site) -> None:
    """A burst of jobs queued by the project's view is consumed by two runworker processes;
    one is stopped mid-burst (SIGTERM: it drains) and every job is done exactly once. Both
    publish their load where the operator's policy reads it."""
    server = site.start("asgi", APP)
    first = site.start("runworker", APP, "thumbnails", "--concurrency", "2")
    second = site.start("runworker", APP, "thumbnails", "--concurrency", "2")
    jobs = [f"job{i}" for i in range(120)]

    async def go() -> None:
        layer = site.layer()
        monitor = RedisMonitor([site.redis.url], prefix=site.prefix)
        try:
            async with aiohttp.ClientSession() as http:
                body = {"ids": jobs, "seconds": 0.05}
                async with http.post(f"{server.url}/chat/thumbnails/", json=body) as r:
                    assert r.status == 200
                    assert await r.json() == {"queued": len(jobs)}
            await asyncio.sleep(0.5)
            reading = await monitor.load(["thumbnails"])
            # What the policy reads: the arrivals counted, a backlog, both workers busy.
            stats = reading.channels["thumbnails"]
            assert stats["messages_count"] == len(jobs)
            assert stats["messages_pending"] > 0
            busy = [w for w in reading.workers.values() if w["concurrency"] == 2]
            assert len(busy) == 2 and sum(w["in_flight"] for w in busy) > 0
            first.terminate()  # mid-burst: it finishes what it took and gives back the rest
            done = await collect(layer, "thumbnails.done", len(jobs), timeout=60)
            assert sorted(done) == sorted(jobs)  # none lost, none twice
            await asyncio.sleep(0.5)
            reading = await monitor.load(["thumbnails"])
            assert reading.channels["thumbnails"]["messages_pending"] == 0
            assert len(reading.workers) == 1  # the stopped one left the registry
            assert sum(w["handled"] for w in reading.workers.values()) > 0
        finally:
            await layer.close_pools()
            await monitor.close()

    asyncio.run(go())
    assert first.proc is not None and first.proc.wait(30) == 0
    assert "every message taken was handled" in first.log()
    assert second.proc is not None and second.proc.poll() is None


def test_drain_closes_sockets_with_1012(site: Site) -> None:
    """SIGTERM: readiness fails, open sockets close with 1012, the consumer hears of it."""
    server = site.start("asgi", APP)

    async def go() -> None:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(
                ws_url(server.url, "/ws/chat/drain/"), headers={"Origin": server.url}
            )
            await asyncio.sleep(0.2)
            server.terminate()
            msg = await ws.receive(timeout=15)
            assert msg.type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 1012

    asyncio.run(go())
    assert server.proc is not None and server.proc.wait(30) == 0
    assert "closing 1 websocket(s) with 1012" in server.log()
