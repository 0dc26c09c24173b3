"""Subscriptions: a channel's messages handed to a callback as they arrive (how a protocol
server feeds its sockets), on real redis-servers and on the in-memory layer."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from channelapp.layer import BaseChannelLayer, ChannelLayerError, RedisChannelLayer

from devtools.redis import RedisServer
from tests.support.redis_fixtures import command_calls


class Taken:
    """What a subscription delivered, and how it ended."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.ended: list[BaseException] = []
        self.arrived = asyncio.Event()

    def deliver(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        self.arrived.set()

    def end(self, exc: BaseException) -> None:
        self.ended.append(exc)

    async def until(self, count: int, timeout: float = 5.0) -> list[int]:
        async with asyncio.timeout(timeout):
            while len(self.messages) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return [m["n"] for m in self.messages]


async def test_what_waits_then_what_arrives_in_order(layer: BaseChannelLayer) -> None:
    reply = await layer.new_channel("websocket.send")
    for n in range(3):
        await layer.send(reply, {"n": n})
    taken = Taken()
    subscription = layer.subscribe(reply, taken.deliver, taken.end)
    try:
        for n in range(3, 6):
            await layer.send(reply, {"n": n})
        assert await taken.until(6) == list(range(6))
    finally:
        subscription.cancel()
    # Cancelled: what arrives next stays in the layer for whoever receives next.
    await layer.send(reply, {"n": 6})
    await asyncio.sleep(0.2)
    assert len(taken.messages) == 6
    assert await asyncio.wait_for(layer.receive(reply), 5) == {"n": 6}
    assert not taken.ended


async def test_a_large_message_keeps_its_place(redis_server: RedisServer) -> None:
    """A body stored out of line is read before the messages behind it are handed over."""
    layer = RedisChannelLayer([redis_server.url], inline_message_size=1000)
    try:
        reply = await layer.new_channel("websocket.send")
        taken = Taken()
        subscription = layer.subscribe(reply, taken.deliver, taken.end)
        await layer.send(reply, {"n": 0})
        await layer.send(reply, {"n": 1, "big": "x" * 50_000})
        await layer.send(reply, {"n": 2})
        assert await taken.until(3) == [0, 1, 2]
        assert taken.messages[1]["big"] == "x" * 50_000
        subscription.cancel()
    finally:
        await layer.close()


async def test_one_subscription_per_channel_and_no_receive_beside_it(
    redis_server: RedisServer,
) -> None:
    layer = RedisChannelLayer([redis_server.url])
    try:
        reply = await layer.new_channel("websocket.send")
        taken = Taken()
        subscription = layer.subscribe(reply, taken.deliver, taken.end)
        with pytest.raises(ValueError, match="already being received"):
            layer.subscribe(reply, taken.deliver, taken.end)
        with pytest.raises(ValueError, match="subscribed"):
            await layer.receive(reply)
        subscription.cancel()
    finally:
        await layer.close()


async def test_closing_the_layer_ends_its_subscriptions(redis_server: RedisServer) -> None:
    layer = RedisChannelLayer([redis_server.url])
    reply = await layer.new_channel("websocket.send")
    taken = Taken()
    layer.subscribe(reply, taken.deliver, taken.end)
    await asyncio.sleep(0.1)
    await layer.close()
    async with asyncio.timeout(5):
        while not taken.ended:
            await asyncio.sleep(0.01)
    assert isinstance(taken.ended[0], ChannelLayerError)


async def test_a_shard_outage_is_waited_out_and_said_once(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Thousands of sockets subscribe on one protocol server: an outage is one line per
    retry for all of them, and their replies flow again when the shard is back."""
    layer = RedisChannelLayer([redis_server.url])
    try:
        replies = [await layer.new_channel("websocket.send") for _ in range(50)]
        taken = [Taken() for _ in replies]
        for reply, t in zip(replies, taken, strict=True):
            layer.subscribe(reply, t.deliver, t.end)
        await layer.send(replies[0], {"n": 0})
        assert await taken[0].until(1) == [0]
        with caplog.at_level(logging.ERROR, logger="channelapp.layer"):
            redis_server.stop()
            await asyncio.sleep(1.5)
            redis_server.start()
            async with asyncio.timeout(10):
                while True:
                    try:
                        await layer.send(replies[-1], {"n": 1})
                        break
                    except ChannelLayerError:
                        await asyncio.sleep(0.2)
            assert await taken[-1].until(1) == [1]
        outage = [r for r in caplog.records if "receiving this process's replies" in r.message]
        assert 1 <= len(outage) <= 6, [r.message for r in caplog.records]
        assert not any(t.ended for t in taken)
    finally:
        await layer.close()


async def test_a_room_on_one_protocol_server_is_one_push_and_full_members_are_counted(
    redis_server: RedisServer,
) -> None:
    """Members whose reply channels share their process's list are queued with one RPUSH;
    past ``reply_capacity`` the rest are full, counted and noted as having lost a reply,
    as if queued one by one."""
    layer = RedisChannelLayer([redis_server.url], reply_capacity=150)
    sender = RedisChannelLayer([redis_server.url], reply_capacity=150)
    try:
        members = [await layer.new_channel("websocket.send") for _ in range(200)]
        for member in members:
            await sender.group_add("room", member)
        await sender.group_add("warm", "warm.channel")
        await sender.group_send("warm", {"warm": 1})  # loads the script (NOSCRIPT first)
        before = await command_calls(redis_server, "rpush")
        full = await sender.group_send("room", {"n": 1})
        assert await command_calls(redis_server, "rpush") - before == 1
        assert full == 50
        lost = await layer.take_lost_replies("websocket.send")
        assert sorted(lost) == sorted(members[150:])
        stats = await layer.channel_statistics(members[0])
        assert stats["messages_pending"] == 150
    finally:
        await sender.close()
        await layer.close()
