"""Per-channel capacity: a default plus glob-pattern (or compiled regex) overrides (first match wins)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping

# Channel name pattern (glob string, or compiled regex matched from the start) -> capacity.
CapacityOverrides = Mapping[str, int] | Mapping[str | re.Pattern[str], int]


class CapacityPolicy:
    def __init__(self, default: int, overrides: CapacityOverrides | None = None) -> None:
        if default < 1:
            raise ValueError(f"capacity must be at least 1, got {default}")
        self.default = default
        self._patterns = [
            (
                re.compile(fnmatch.translate(pattern)) if isinstance(pattern, str) else pattern,
                int(cap),
            )
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
