"""Pytest fixtures of real redis-server processes (devtools.redis), and INFO helpers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devtools.redis import RedisServer, redis_servers


async def redis_info(server: RedisServer, section: str) -> dict[str, Any]:
    """``INFO section`` of ``server``, read on a client of its own."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(server.url)
    try:
        return await client.info(section)
    finally:
        await client.aclose()


async def command_calls(server: RedisServer, command: str) -> int:
    """How many times ``server`` has run ``command`` (INFO commandstats)."""
    stats = await redis_info(server, "commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def client_count(server: RedisServer) -> int:
    """Clients connected to ``server``, not counting the one asking."""
    return int((await redis_info(server, "clients"))["connected_clients"]) - 1


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with redis_servers(1) as servers:
        yield servers[0]


@pytest.fixture
def redis_shards() -> Iterator[list[RedisServer]]:
    """Three independent redis-servers: the sharding tests' cluster."""
    with redis_servers(3) as servers:
        yield servers


@pytest.fixture(scope="session")
def redis_session_server() -> Iterator[RedisServer]:
    """One redis-server for the whole run; tests using it must use unique key prefixes."""
    with redis_servers(1) as servers:
        yield servers[0]
