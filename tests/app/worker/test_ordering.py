"""Parked messages: run at once when their predecessor's worker is dead, else after the timeout.

The Redis store runs on a real redis-server; the in-memory store follows the same rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from channelapp.layer import RedisChannelLayer
from channelapp.worker.liveness import Liveness
from channelapp.worker.ordering import MemoryOrderingStore, RedisOrderingStore

from devtools.redis import RedisServer

pytestmark = pytest.mark.redis

SOCKET = "websocket.send.abc!def"


def msg(order: int) -> dict[str, object]:
    return {"type": "websocket.receive", "order": order, "text": str(order)}


@pytest.fixture
async def layer(redis_shards: list[RedisServer]) -> AsyncIterator[RedisChannelLayer]:
    layer = RedisChannelLayer([s.url for s in redis_shards])
    yield layer
    await layer.close()


async def test_a_dead_predecessor_releases_the_lowest_parked_message_at_once(
    layer: RedisChannelLayer,
) -> None:
    dead = RedisOrderingStore(layer, "deadworker")  # never had a liveness key
    alive = RedisOrderingStore(layer, "liveworker")
    beat = Liveness(layer, alive.liveness_prefix + "liveworker")
    await asyncio.to_thread(beat.start)
    try:
        assert await dead.claim(SOCKET, 0, msg(0))  # running on the dead worker
        assert not await alive.claim(SOCKET, 2, msg(2))
        assert not await alive.claim(SOCKET, 1, msg(1))
        swept = await alive.sweep(park_timeout=60)
        assert swept == [(SOCKET, msg(1), "dead")]  # the lowest first, not the timeout
        assert await alive.claim(SOCKET, 1, msg(1))  # it is expected now
        assert await alive.advance(SOCKET, 1) == msg(2)  # and the rest follow in order
        assert await alive.sweep(park_timeout=60) == []  # running on a live worker: wait
        assert await alive.advance(SOCKET, 2) is None
        assert await alive.sweep(park_timeout=0) == []  # nothing parked any more
    finally:
        await asyncio.to_thread(beat.stop)


async def test_a_lost_predecessor_is_waited_for_the_park_timeout(layer: RedisChannelLayer) -> None:
    store = RedisOrderingStore(layer, "w")
    beat = Liveness(layer, store.liveness_prefix + "w")
    await asyncio.to_thread(beat.start)
    try:
        assert await store.claim(SOCKET, 0, msg(0))
        assert await store.advance(SOCKET, 0) is None  # done; 1 is lost on the way
        assert not await store.claim(SOCKET, 2, msg(2))
        assert await store.sweep(park_timeout=0.5) == []
        await asyncio.sleep(0.6)
        assert await store.sweep(park_timeout=0.5) == [(SOCKET, msg(2), "timeout")]
        await store.forget(SOCKET)
        for shard in layer.shards:
            assert await shard.execute("EXISTS", f"{layer.prefix}:parking") == 0
    finally:
        await asyncio.to_thread(beat.stop)


async def test_memory_store_timeout() -> None:
    store = MemoryOrderingStore()
    assert await store.claim(SOCKET, 0, msg(0))
    assert not await store.claim(SOCKET, 3, msg(3))
    assert not await store.claim(SOCKET, 2, msg(2))
    assert await store.sweep(park_timeout=0.2) == []
    await asyncio.sleep(0.25)
    assert await store.sweep(park_timeout=0.2) == [(SOCKET, msg(2), "timeout")]
    assert await store.claim(SOCKET, 2, msg(2))
    assert await store.advance(SOCKET, 2) == msg(3)
