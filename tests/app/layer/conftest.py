"""Layer fixtures: each test gets a layer over real redis-server(s), or the in-memory one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from channelapp.layer import BaseChannelLayer, InMemoryChannelLayer, RedisChannelLayer

from devtools.redis import RedisServer


@pytest.fixture(params=["redis", "memory"])
async def layer(request: pytest.FixtureRequest) -> AsyncIterator[BaseChannelLayer]:
    """The same semantic tests run against both backends."""
    if request.param == "memory":
        mem = InMemoryChannelLayer(capacity=10, expiry=2)
        yield mem
        await mem.close()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    redis_layer = RedisChannelLayer([server.url], capacity=10, expiry=2)
    yield redis_layer
    await redis_layer.close()


@pytest.fixture
async def sharded(redis_shards: list[RedisServer]) -> AsyncIterator[RedisChannelLayer]:
    layer = RedisChannelLayer([s.url for s in redis_shards], capacity=50, expiry=5)
    yield layer
    await layer.close()
