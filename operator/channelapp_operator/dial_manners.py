"""How often the operator may dial an app's shards (pure logic, the clock injected).

Each unreachable shard backs off exponentially (BASE_DELAY doubling up to
MAX_DELAY) before it is dialled again, and every app has a budget of connection
attempts per second: a spec listing many URLs of hosts that do not answer
costs the operator, and those hosts, a bounded trickle of connections.

A shard that answered keeps its pooled connection, so only shards that failed
(or were never reached) count against the budget.

Every app's dials also come out of budgets shared by all apps (:class:`SharedDialBudget`):
one for the whole operator (``--dials-per-second``) and one per destination
(host:port), so many apps, or many URLs naming one server, add up to a bounded
number of connections too.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

BASE_DELAY = 1.0
MAX_DELAY = 30.0
DIALS_PER_SECOND = 8.0
# Shared by every app: the operator's dials per second, and one destination's.
GLOBAL_DIALS_PER_SECOND = 50.0
DESTINATION_DIALS_PER_SECOND = 2.0
# A shared budget holds at least one read's dials (an app has at most 64 shards).
MAX_READ_DIALS = 64.0


def backoff_delay(failures: int, base: float = BASE_DELAY, cap: float = MAX_DELAY) -> float:
    """Seconds to wait after ``failures`` consecutive failures (0 after none)."""
    if failures <= 0:
        return 0.0
    return min(cap, base * 2.0 ** min(failures - 1, 30))


def destination(url: str) -> str:
    """``host:port`` a Redis URL dials (port 6379 when unset)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or 6379
    except ValueError:
        return url
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class _Bucket:
    rate: float
    capacity: float
    tokens: float
    filled_at: float

    def level(self, now: float) -> float:
        return min(self.capacity, self.tokens + (now - self.filled_at) * self.rate)

    def take(self, now: float, count: float) -> None:
        self.tokens = self.level(now) - count
        self.filled_at = now


@dataclass
class SharedDialBudget:
    """Connection attempts of all apps together: ``rate`` a second in all, and
    ``per_destination`` a second to any one host:port. Each bucket holds ``burst``
    dials, so that any one read (at most 64 shards) can go out."""

    rate: float = GLOBAL_DIALS_PER_SECOND
    per_destination: float = DESTINATION_DIALS_PER_SECOND
    burst: float = MAX_READ_DIALS
    clock: Callable[[], float] = time.monotonic
    _total: _Bucket | None = None
    _destinations: dict[str, _Bucket] = field(default_factory=dict)

    def _bucket(self, rate: float, now: float) -> _Bucket:
        capacity = max(rate, self.burst)
        return _Bucket(rate=rate, capacity=capacity, tokens=capacity, filled_at=now)

    def take(self, urls: list[str]) -> bool:
        """Take one dial for each of ``urls`` from every budget, or none when any is short."""
        if not urls:
            return True
        now = self.clock()
        if self._total is None:
            self._total = self._bucket(self.rate, now)
        if self._total.level(now) < len(urls):
            return False
        wanted = Counter(destination(u) for u in urls)
        buckets = {
            d: self._destinations.get(d) or self._bucket(self.per_destination, now) for d in wanted
        }
        if any(buckets[d].level(now) < count for d, count in wanted.items()):
            return False
        self._total.take(now, len(urls))
        for d, count in wanted.items():
            buckets[d].take(now, count)
            self._destinations[d] = buckets[d]
        # A destination whose bucket refilled is the same as one never dialled.
        for d in [d for d, b in self._destinations.items() if b.level(now) >= b.capacity]:
            del self._destinations[d]
        return True


@dataclass
class ShardState:
    failures: int = 0
    retry_at: float = float("-inf")


@dataclass
class DialManners:
    """Per-shard backoff plus a per-app token bucket of connection attempts, and
    (when given) the budgets all apps share."""

    clock: Callable[[], float] = time.monotonic
    rate: float = DIALS_PER_SECOND
    base: float = BASE_DELAY
    cap: float = MAX_DELAY
    shared: SharedDialBudget | None = None
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

    def dialled(self, urls: Iterable[str]) -> list[str]:
        """Shards a read of ``urls`` dials: those without a healthy connection."""
        return [u for u in urls if self._shards.get(u, ShardState(failures=1)).failures > 0]

    def dials(self, urls: Iterable[str]) -> int:
        """Connection attempts a read of ``urls`` costs."""
        return len(self.dialled(urls))

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

        No shard may be backing off, and the app's budget and the shared ones
        must hold its dials. The bucket holds at least one read's dials, so a large
        app can start, but its dials per second stay at ``rate`` over time.
        """
        if self.waiting(urls):
            return False
        dialled = self.dialled(urls)
        cost = len(dialled)
        if cost == 0:
            return True
        tokens = self._refill(max(self.rate, float(cost)))
        if tokens < cost:
            return False
        if self.shared is not None and not self.shared.take(dialled):
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
