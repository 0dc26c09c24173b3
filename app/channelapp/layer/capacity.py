"""Per-channel capacity: a default plus glob-pattern overrides (first match wins)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping


class CapacityPolicy:
    def __init__(self, default: int, overrides: Mapping[str, int] | None = None) -> None:
        if default < 1:
            raise ValueError(f"capacity must be at least 1, got {default}")
        self.default = default
        self._patterns = [
            (re.compile(fnmatch.translate(pattern)), int(cap))
            for pattern, cap in (overrides or {}).items()
        ]
        self._cache: dict[str, int] = {}

    def __call__(self, channel: str) -> int:
        hit = self._cache.get(channel)
        if hit is not None:
            return hit
        cap = next((c for rx, c in self._patterns if rx.match(channel)), self.default)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[channel] = cap
        return cap
