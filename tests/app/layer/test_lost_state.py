"""The layer tells which shards lost their data (restart without persistence, flush)."""

from __future__ import annotations

import pytest
from channelapp.layer import RedisChannelLayer

from tests.support.redis_fixtures import RedisServer

pytestmark = pytest.mark.redis


async def test_shards_that_lost_state(
    sharded: RedisChannelLayer, redis_shards: list[RedisServer]
) -> None:
    assert await sharded.shards_that_lost_state() == []  # first look: markers set
    assert await sharded.shards_that_lost_state() == []
    redis_shards[1].command("FLUSHALL")
    assert await sharded.shards_that_lost_state() == [1]
    assert await sharded.shards_that_lost_state() == []  # reported once
    redis_shards[2].stop()
    assert await sharded.shards_that_lost_state() == []  # unreachable: checked again later
    redis_shards[2].start()
    assert await sharded.shards_that_lost_state() == [2]
    redis_shards[0].restart()
    assert await sharded.shards_that_lost_state() == [0]
