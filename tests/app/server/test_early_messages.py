"""Messages that reach a socket while its connect is still running (a group broadcast to a
member that joined before accepting) are delivered after the accept, in order; the
handshake is not mistaken for refused."""

from __future__ import annotations

import asyncio
import threading

import aiohttp
import pytest
from channelapp.application import App
from channelapp.consumers import SyncWebsocketConsumer
from channelapp.routing import path

from devtools.redis import RedisServer
from tests.support.inprocess import serving

joined = threading.Event()


class JoinThenAccept(SyncWebsocketConsumer):
    def connect(self) -> None:
        self.group_add("early")
        joined.set()
        self.send(text="own first")  # the consumer's own message before its accept
        threading.Event().wait(0.4)  # meanwhile another socket broadcasts to the group
        self.accept()
        self.send(text="after accept")


class Talker(SyncWebsocketConsumer):
    def receive(self, text: str | None = None, bytes: bytes | None = None) -> None:
        self.group_send("early", text=f"broadcast {text}")


class JoinThenRefuse(JoinThenAccept):
    def connect(self) -> None:
        self.group_add("early")
        joined.set()
        threading.Event().wait(0.4)
        self.close()


class JoinBigThenAccept(SyncWebsocketConsumer):
    def connect(self) -> None:
        self.group_add("early-big")
        joined.set()
        threading.Event().wait(0.4)
        self.accept()


class BigTalker(SyncWebsocketConsumer):
    def receive(self, text: str | None = None, bytes: bytes | None = None) -> None:
        self.group_send("early-big", text=str(text) * 40_000)


APP = App(
    [
        path("/join/", JoinThenAccept, protocol="websocket"),
        path("/refuse/", JoinThenRefuse, protocol="websocket"),
        path("/talk/", Talker, protocol="websocket"),
        path("/join-big/", JoinBigThenAccept, protocol="websocket"),
        path("/talk-big/", BigTalker, protocol="websocket"),
    ]
)


async def early_broadcast(url: str) -> list[str]:
    joined.clear()
    async with aiohttp.ClientSession() as client:
        talker = await client.ws_connect(url + "/talk/")
        joining = asyncio.ensure_future(client.ws_connect(url + "/join/"))
        await asyncio.to_thread(joined.wait, 10)
        await talker.send_str("1")
        await talker.send_str("2")
        ws = await asyncio.wait_for(joining, 10)
        got = [await asyncio.wait_for(ws.receive_str(), 10) for _ in range(4)]
        await ws.close()
        await talker.close()
    return got


async def test_broadcast_during_the_handshake_arrives_after_the_accept() -> None:
    async with serving(APP) as served:
        assert await early_broadcast(served.url) == [
            "own first",
            "broadcast 1",
            "broadcast 2",
            "after accept",
        ]


@pytest.mark.redis
async def test_broadcast_during_the_handshake_over_redis(redis_server: RedisServer) -> None:
    async with serving(APP, redis_urls=[redis_server.url]) as served:
        assert await early_broadcast(served.url) == [
            "own first",
            "broadcast 1",
            "broadcast 2",
            "after accept",
        ]


async def test_a_refused_connect_stays_refused_with_early_messages() -> None:
    joined.clear()
    async with serving(APP) as served, aiohttp.ClientSession() as client:
        talker = await client.ws_connect(served.url + "/talk/")
        refusing = asyncio.ensure_future(client.ws_connect(served.url + "/refuse/"))
        await asyncio.to_thread(joined.wait, 10)
        await talker.send_str("1")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await asyncio.wait_for(refusing, 10)
        assert refused.value.status == 403
        await talker.close()


async def test_early_messages_are_held_no_further_than_the_sockets_send_buffer() -> None:
    """Before its accept a socket holds what its outbox would (``send_buffer_size`` bytes),
    not ``channel_capacity`` messages of any size: past that the handshake fails."""
    joined.clear()
    async with (
        serving(APP, send_buffer_size=64 * 1024) as served,
        aiohttp.ClientSession() as client,
    ):
        talker = await client.ws_connect(served.url + "/talk-big/")
        joining = asyncio.ensure_future(client.ws_connect(served.url + "/join-big/"))
        await asyncio.to_thread(joined.wait, 10)
        for n in "123":  # 40 kB each
            await talker.send_str(n)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await asyncio.wait_for(joining, 10)
        assert refused.value.status == 500
        await talker.close()
