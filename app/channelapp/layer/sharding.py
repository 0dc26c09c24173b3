"""Consistent hashing of channel and group names onto shards.

A ring of virtual nodes (``replicas`` per shard) keeps the mapping stable:
adding a shard moves about 1/N of the names. Process-specific channels
(``prefix!suffix``) hash by ``prefix!`` so every reply channel of one process
lives on one shard, in one list.
"""

from __future__ import annotations

import bisect
import hashlib

from channelapp.layer.names import non_local_name


def _hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


class HashRing:
    def __init__(self, shard_count: int, replicas: int = 128) -> None:
        if shard_count < 1:
            raise ValueError("a hash ring needs at least one shard")
        self.shard_count = shard_count
        points = sorted(
            (_hash(f"shard-{shard}-{replica}"), shard)
            for shard in range(shard_count)
            for replica in range(replicas)
        )
        self._keys = [p for p, _ in points]
        self._shards = [s for _, s in points]
        self._cache: dict[str, int] = {}

    def shard_for(self, name: str) -> int:
        """Index of the shard holding channel or group ``name``."""
        if self.shard_count == 1:
            return 0
        hit = self._cache.get(name)
        if hit is not None:
            return hit
        pos = bisect.bisect(self._keys, _hash(non_local_name(name))) % len(self._keys)
        shard = self._shards[pos]
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[name] = shard
        return shard
