"""The Redis ordering store parks messages in the layer's key space, sealed like messages."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from channelapp.layer import RedisChannelLayer
from channelapp.worker.ordering import RedisOrderingStore
from cryptography.fernet import Fernet

from tests.support.redis_fixtures import RedisServer

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
