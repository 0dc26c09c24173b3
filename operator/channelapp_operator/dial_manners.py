"""How often the operator may dial an app's shards (pure logic, the clock injected).

Each unreachable shard backs off exponentially (BASE_DELAY doubling up to
MAX_DELAY) before it is dialled again, and every app has a budget of connection
attempts per second: a spec listing many URLs of hosts that do not answer
costs the operator, and those hosts, a bounded trickle of connections.

A shard that answered keeps its pooled connection, so only shards that failed
(or were never reached) count against the budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

BASE_DELAY = 1.0
MAX_DELAY = 30.0
DIALS_PER_SECOND = 8.0


def backoff_delay(failures: int, base: float = BASE_DELAY, cap: float = MAX_DELAY) -> float:
    """Seconds to wait after ``failures`` consecutive failures (0 after none)."""
    if failures <= 0:
        return 0.0
    return min(cap, base * 2.0 ** min(failures - 1, 30))


@dataclass
class ShardState:
    failures: int = 0
    retry_at: float = float("-inf")


@dataclass
class DialManners:
    """Per-shard backoff plus a per-app token bucket of connection attempts."""

    clock: Callable[[], float] = time.monotonic
    rate: float = DIALS_PER_SECOND
    base: float = BASE_DELAY
    cap: float = MAX_DELAY
    _shards: dict[str, ShardState] = field(default_factory=dict)
    _tokens: float | None = None
    _filled_at: float = 0.0

    def forget_others(self, urls: Iterable[str]) -> None:
        """Drop the state of shards no longer in the spec."""
        keep = set(urls)
        for url in [u for u in self._shards if u not in keep]:
            del self._shards[url]

    def waiting(self, urls: Iterable[str]) -> list[str]:
        """Shards still backing off now."""
        now = self.clock()
        return [u for u in urls if u in self._shards and self._shards[u].retry_at > now]

    def dials(self, urls: Iterable[str]) -> int:
        """Connection attempts a read of ``urls`` costs: shards without a healthy connection."""
        return sum(1 for u in urls if self._shards.get(u, ShardState(failures=1)).failures > 0)

    def _refill(self, capacity: float) -> float:
        now = self.clock()
        if self._tokens is None:
            self._tokens = capacity
        else:
            self._tokens = min(capacity, self._tokens + (now - self._filled_at) * self.rate)
        self._filled_at = now
        return self._tokens

    def may_read(self, urls: list[str]) -> bool:
        """Whether a read may go out now; takes its dials from the budget when it may.

        No shard may be backing off, and the budget must hold its dials. The
        bucket holds at least one read's dials, so a large app can start, but
        its dials per second stay at ``rate`` over time.
        """
        if self.waiting(urls):
            return False
        cost = self.dials(urls)
        if cost == 0:
            return True
        tokens = self._refill(max(self.rate, float(cost)))
        if tokens < cost:
            return False
        self._tokens = tokens - cost
        return True

    def record(self, urls: list[str], failed: Iterable[str]) -> None:
        """The outcome of a read: failed shards back off further, the others are healthy."""
        now = self.clock()
        down = set(failed)
        for url in urls:
            state = self._shards.setdefault(url, ShardState())
            if url in down:
                state.failures += 1
                state.retry_at = now + backoff_delay(state.failures, self.base, self.cap)
            else:
                state.failures = 0
                state.retry_at = float("-inf")

    def record_all_failed(self, urls: list[str]) -> None:
        self.record(urls, urls)
