"""Keep a failing retry loop from flooding the app's Events."""

from __future__ import annotations

import time
from collections.abc import Callable


class EventLimiter:
    """An Event goes out when its message is new; the same message again only after a while."""

    def __init__(
        self, repeat_after: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.repeat_after = repeat_after
        self.clock = clock
        self._last: dict[tuple[str, ...], tuple[str, float]] = {}

    def allow(self, key: tuple[str, ...], message: str) -> bool:
        now = self.clock()
        previous = self._last.get(key)
        if (
            previous is not None
            and previous[0] == message
            and now - previous[1] < self.repeat_after
        ):
            return False
        self._last[key] = (message, now)
        return True

    def forget(self, prefix: tuple[str, ...]) -> None:
        """Drop every key starting with ``prefix`` (an app that went away)."""
        for key in [k for k in self._last if k[: len(prefix)] == prefix]:
            del self._last[key]
