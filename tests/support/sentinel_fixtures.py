"""Pytest fixture of a Redis Sentinel group (devtools.sentinel): master, replica, 3 sentinels."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.sentinel import SentinelGroup, sentinel_group


@pytest.fixture
def sentinels() -> Iterator[SentinelGroup]:
    """A master, its replica and three sentinels (down-after 1 s, failover-timeout 5 s)."""
    with sentinel_group() as group:
        yield group


@pytest.fixture
def proxied_sentinels() -> Iterator[SentinelGroup]:
    """The same group with the master reached through a TCP proxy (``group.proxy``) that can
    lose a command or its answer on purpose."""
    with sentinel_group(proxied=True) as group:
        yield group
