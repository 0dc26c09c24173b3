"""Channel semantics shared by both backends: FIFO, at-most-once, reply channels, groups, limits."""

from __future__ import annotations

import asyncio

import pytest
from channelapp.layer import (
    BaseChannelLayer,
    ChannelFull,
    InMemoryChannelLayer,
    InvalidChannelName,
    MessageTooLarge,
    RedisChannelLayer,
)


async def test_fifo_order(layer: BaseChannelLayer) -> None:
    for i in range(8):
        await layer.send("work.fifo", {"i": i})
    got = [(await layer.receive("work.fifo"))["i"] for _ in range(8)]
    assert got == list(range(8))


async def test_values_round_trip(layer: BaseChannelLayer) -> None:
    msg = {"text": "héllo", "bytes": b"\x00\xff", "n": 3, "f": 1.5, "l": [1, "a"], "d": {"k": None}}
    await layer.send("work.types", msg)
    assert await layer.receive("work.types") == msg


async def test_at_most_once_with_concurrent_receivers(layer: BaseChannelLayer) -> None:
    n = 10
    for i in range(n):
        await layer.send("work.once", {"i": i})
    received: list[int] = []

    async def consumer() -> None:
        while True:
            received.append((await layer.receive("work.once"))["i"])

    tasks = [asyncio.create_task(consumer()) for _ in range(4)]
    try:
        async with asyncio.timeout(5):
            while len(received) < n:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert sorted(received) == list(range(n))


async def test_receive_many_takes_a_batch_across_channels(layer: BaseChannelLayer) -> None:
    for i in range(3):
        await layer.send("batch.a", {"i": i})
        await layer.send("batch.b", {"i": i})
    got = await layer.receive_many(["batch.a", "batch.b"], max_messages=10, timeout=1)
    assert sorted(c for c, _ in got) == ["batch.a"] * 3 + ["batch.b"] * 3
    assert [m["i"] for c, m in got if c == "batch.a"] == [0, 1, 2]
    assert await layer.receive_many(["batch.a", "batch.b"], timeout=0.2) == []


async def test_receive_many_waits_for_a_message(layer: BaseChannelLayer) -> None:
    async def later() -> None:
        await asyncio.sleep(0.2)
        await layer.send("batch.late", {"x": 1})

    sender = asyncio.create_task(later())
    got = await layer.receive_many(["batch.late"], timeout=3)
    await sender
    assert got == [("batch.late", {"x": 1})]


async def test_reply_channels_reach_their_receiver(layer: BaseChannelLayer) -> None:
    a = await layer.new_channel("http.response")
    b = await layer.new_channel("http.response")
    assert a != b and "!" in a
    await layer.send(b, {"to": "b"})
    await layer.send(a, {"to": "a"})
    assert await layer.receive(a) == {"to": "a"}
    assert await layer.receive(b) == {"to": "b"}


async def test_channel_full(layer: BaseChannelLayer) -> None:
    for i in range(10):
        await layer.send("work.full", {"i": i})
    with pytest.raises(ChannelFull, match=r"work\.full"):
        await layer.send("work.full", {"i": 10})
    stats = await layer.channel_statistics("work.full")
    assert stats["channel_full_count"] == 1
    assert stats["messages_pending"] == 10
    # Nothing was lost: the first ten are all there.
    got = [(await layer.receive("work.full"))["i"] for _ in range(10)]
    assert got == list(range(10))


async def test_expired_messages_are_dropped(layer: BaseChannelLayer) -> None:
    await layer.send("work.expire", {"old": True})
    await asyncio.sleep(2.3)
    await layer.send("work.expire", {"old": False})
    assert await layer.receive("work.expire") == {"old": False}


async def test_groups_fan_out_and_discard(layer: BaseChannelLayer) -> None:
    chans = [await layer.new_channel("ws") for _ in range(3)]
    for c in chans:
        await layer.group_add("room.lobby", c)
    await layer.group_discard("room.lobby", chans[2])
    full = await layer.group_send("room.lobby", {"text": "hi"})
    assert full == 0
    for c in chans[:2]:
        assert await layer.receive(c) == {"text": "hi"}
    assert await layer.receive_many([chans[2]], timeout=0.2) == []


async def test_group_send_over_capacity_is_reported_and_others_delivered(
    layer: BaseChannelLayer,
) -> None:
    """channels_redis only logged over-capacity group sends; here they are counted and returned."""
    busy, idle = "ws.busy", "ws.idle"
    await layer.group_add("room.cap", busy)
    await layer.group_add("room.cap", idle)
    for i in range(10):
        await layer.send(busy, {"fill": i})
    assert await layer.group_send("room.cap", {"text": "x"}) == 1
    assert await layer.receive(idle) == {"text": "x"}


@pytest.mark.parametrize(
    "name",
    ["", "a" * 100, "bad name", "ünicode", "two!!bangs", "a!b?c", "slash/no", None, 42],
)
async def test_invalid_channel_names_are_refused(layer: BaseChannelLayer, name: object) -> None:
    with pytest.raises(InvalidChannelName):
        await layer.send(name, {"x": 1})  # type: ignore[arg-type]


async def test_invalid_group_name(layer: BaseChannelLayer) -> None:
    with pytest.raises(InvalidChannelName, match="group"):
        await layer.group_add("bad!group", "chan")


@pytest.mark.parametrize("message", [["not", "a", "dict"], "text", {"obj": object()}])
async def test_malformed_messages_are_refused(layer: BaseChannelLayer, message: object) -> None:
    with pytest.raises(TypeError):
        await layer.send("work.bad", message)  # type: ignore[arg-type]
    assert (await layer.channel_statistics("work.bad"))["messages_pending"] == 0


async def test_a_message_larger_than_a_redis_item_travels_whole(layer: BaseChannelLayer) -> None:
    big = {"blob": bytes(range(256)) * (12 << 12), "text": "é" * (1 << 20)}  # 3 MiB + 2 MiB
    await layer.send("work.big", big)
    await layer.send("work.big", {"after": 1})
    assert await layer.receive("work.big") == big
    assert await layer.receive("work.big") == {"after": 1}


async def test_message_past_the_layer_limit_is_refused(layer: BaseChannelLayer) -> None:
    limited: BaseChannelLayer = (
        RedisChannelLayer([s.url for s in layer.shards], max_message_size=3 << 20)
        if isinstance(layer, RedisChannelLayer)
        else InMemoryChannelLayer(max_message_size=3 << 20)
    )
    try:
        with pytest.raises(MessageTooLarge):
            await limited.send("work.big", {"blob": b"x" * (4 << 20)})
        assert (await limited.channel_statistics("work.big"))["messages_pending"] == 0
    finally:
        await limited.close()


async def test_statistics(layer: BaseChannelLayer) -> None:
    await layer.send("stats.a", {"i": 1})
    await asyncio.sleep(0.3)
    await layer.send("stats.a", {"i": 2})
    await layer.send("stats.b", {"i": 1})
    many = await layer.channels_statistics(["stats.a", "stats.b", "stats.none"])
    assert many["stats.a"]["messages_pending"] == 2
    assert many["stats.a"]["messages_count"] == 2
    assert 0.25 <= many["stats.a"]["messages_max_age"] < 2
    assert many["stats.b"]["messages_pending"] == 1
    assert many["stats.none"] == {
        "messages_pending": 0,
        "messages_max_age": 0.0,
        "messages_count": 0,
        "channel_full_count": 0,
    }
    await layer.receive("stats.a")
    glob = await layer.global_statistics()
    assert glob["messages_pending"] == 2
    assert glob["messages_count"] == 3


async def test_flush(layer: BaseChannelLayer) -> None:
    await layer.send("work.flush", {"x": 1})
    await layer.group_add("g.flush", "work.flush")
    await layer.flush()
    assert (await layer.global_statistics())["messages_pending"] == 0
    assert await layer.receive_many(["work.flush"], timeout=0.1) == []
