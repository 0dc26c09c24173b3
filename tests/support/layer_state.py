"""What the channel layer left in real Redis servers (keys, group members), read directly."""

from __future__ import annotations

import redis

from devtools.redis import RedisServer


def keys_matching(servers: list[RedisServer], pattern: str) -> list[str]:
    """Every key matching ``pattern`` on every server."""
    found: list[str] = []
    for server in servers:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            found += list(client.scan_iter(match=pattern, count=1000))
        finally:
            client.close()
    return found


def group_size(servers: list[RedisServer], group: str, prefix: str = "channelapp") -> int:
    """Members of ``group``, summed over the servers (it lives on one)."""
    total = 0
    for server in servers:
        client = redis.Redis.from_url(server.url)
        try:
            total += int(client.zcard(f"{prefix}:group:{group}"))
        finally:
            client.close()
    return total


def group_members(servers: list[RedisServer], group: str, prefix: str = "channelapp") -> list[str]:
    members: list[str] = []
    for server in servers:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            members += client.zrange(f"{prefix}:group:{group}", 0, -1)
        finally:
            client.close()
    return members
