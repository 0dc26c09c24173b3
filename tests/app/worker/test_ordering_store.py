"""The Redis ordering store parks messages in the layer's key space, sealed like messages."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from channelapp.layer import RedisChannelLayer
from channelapp.worker.ordering import MAX_ORDER_TTL, RedisOrderingStore, ordering_store_for
from cryptography.fernet import Fernet

from devtools.redis import RedisServer

pytestmark = pytest.mark.redis

SOCKET = "websocket.send.p!abc"


@pytest.fixture
async def encrypted_layer(redis_server: RedisServer) -> AsyncIterator[RedisChannelLayer]:
    layer = RedisChannelLayer(
        [redis_server.url], prefix="orders", encryption_keys=[Fernet.generate_key()]
    )
    yield layer
    await layer.close()


async def test_parked_messages_are_encrypted_and_come_back_whole(
    encrypted_layer: RedisChannelLayer, redis_server: RedisServer
) -> None:
    store = RedisOrderingStore(encrypted_layer, "w1", ttl=60)
    message = {"type": "websocket.receive", "text": "secret words", "order": 1}
    assert await store.claim(SOCKET, 0, {"type": "websocket.connect", "order": 0})
    assert not await store.claim(SOCKET, 1, message)  # 0 has not finished: parked
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        keys = sorted(await client.keys("*"))
        assert f"orders:parked:{SOCKET}".encode() in keys, keys
        assert all(k.startswith(b"orders:") for k in keys), keys  # under the layer's prefix
        parked = await client.zrange(f"orders:parked:{SOCKET}", 0, -1)
        assert parked and all(b"secret words" not in v for v in parked), parked
    finally:
        await client.aclose()
    assert await store.advance(SOCKET, 0) == message


@pytest.fixture
async def layer(redis_server: RedisServer) -> AsyncIterator[RedisChannelLayer]:
    layer = RedisChannelLayer([redis_server.url], prefix="orders")
    yield layer
    await layer.close()


async def test_order_keys_outlive_their_socket_a_day_at_most(
    layer: RedisChannelLayer, redis_server: RedisServer
) -> None:
    """A socket whose disconnect is never handled (a fault) leaves its keys for MAX_ORDER_TTL
    (a day); an idle socket keeps its order that long (a shorter TTL lets a resumed socket's
    messages run out of order)."""
    assert MAX_ORDER_TTL == 86400
    store = ordering_store_for(layer, "w1", 10 * 86400)
    assert await store.claim(SOCKET, 0, {"type": "websocket.connect", "order": 0})
    assert not await store.claim(SOCKET, 2, {"type": "websocket.receive", "order": 2})
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        order_key, parked_key = layer.keys.ordering(SOCKET)
        for key in (order_key, parked_key):
            assert 3600 < await client.ttl(key) <= MAX_ORDER_TTL, key
    finally:
        await client.aclose()


async def test_an_idle_socket_whose_order_keys_expired_resumes_at_once(
    layer: RedisChannelLayer, redis_server: RedisServer
) -> None:
    store = RedisOrderingStore(layer, "w1", ttl=60)
    assert await store.claim(SOCKET, 0, {"type": "websocket.connect", "order": 0})
    await store.advance(SOCKET, 0)
    assert await store.claim(SOCKET, 1, {"type": "websocket.receive", "order": 1})
    await store.advance(SOCKET, 1)
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.delete(*layer.keys.ordering(SOCKET))  # as the TTL does
    finally:
        await client.aclose()
    assert await store.claim(SOCKET, 7, {"type": "websocket.receive", "order": 7})
    # ...and order holds from there: 8 waits for 7.
    assert not await store.claim(SOCKET, 8, {"type": "websocket.receive", "order": 8})
    assert await store.advance(SOCKET, 7) == {"type": "websocket.receive", "order": 8}


async def test_a_first_message_still_waits_for_its_connect(layer: RedisChannelLayer) -> None:
    """Order 1 with no state may be the disconnect of a connect still queued: it waits."""
    store = RedisOrderingStore(layer, "w1", ttl=60)
    disconnect = {"type": "websocket.disconnect", "order": 1}
    assert not await store.claim(SOCKET, 1, disconnect)
    assert await store.claim(SOCKET, 0, {"type": "websocket.connect", "order": 0})
    assert await store.advance(SOCKET, 0) == disconnect
