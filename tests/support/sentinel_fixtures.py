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
