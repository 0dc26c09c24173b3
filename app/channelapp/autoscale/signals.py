"""From successive reads of the layer to the load the policy sizes workers for: pure, no I/O.

Each read is a :class:`Sample` of totals that only grow: the messages ever queued on
the app's channels (the send scripts count them) and, per live worker, the messages
it handled and the seconds its consumers spent on them. Rates are the difference
between the newest sample and one about ``window`` seconds older:

- *arrival rate* = queued messages / elapsed time, over the stable ``window``; when
  the rate over the last ``recent`` seconds is more than ``surge_ratio`` times that,
  the recent one, and for one ``window`` after that the higher of the two (Knative's
  panic mode: a step up shows within a second or two and is not forgotten while the
  stable window catches up; random arrivals do not move the count);
- *handling time* = busy seconds / messages handled, each worker against its own
  oldest report in the window (a restarted worker is a new one: its counters start
  from zero, so nothing is subtracted across a restart).

A worker's report expires on the Redis server's clock, so a killed worker drops
out of the next sample: its in-flight messages and capacity stop counting.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from channelapp.layer.base import WorkerReport


@dataclass(frozen=True)
class Sample:
    at: float
    """When it was read (seconds, monotonic)."""
    depth: int
    """Messages waiting in the app's channels."""
    oldest_age: float
    """Seconds the oldest waiting message has waited."""
    sent: int
    """Messages ever offered to the app's channels: queued, or refused as full."""
    workers: Mapping[str, WorkerReport] = field(default_factory=dict)


@dataclass(frozen=True)
class Load:
    """What the policy sees. Unknown rates are ``None`` (nothing to compare yet)."""

    depth: int = 0
    oldest_age: float = 0.0
    arrival_rate: float | None = None
    """Messages queued per second."""
    handling_time: float | None = None
    """Seconds a consumer spends on one message."""
    in_flight: int = 0
    """Messages the live workers are running now."""
    concurrency: int | None = None
    """Messages one worker runs at once, as the live workers report it."""
    workers: int = 0
    """Workers whose reports have not expired."""


@dataclass
class LoadTracker:
    """Keeps the samples a rate needs and the last handling time measured."""

    window: float = 30.0
    recent: float = 2.0
    surge_ratio: float = 1.5
    samples: deque[Sample] = field(default_factory=deque)
    handling_time: float | None = None
    surge_until: float = float("-inf")

    def observe(self, sample: Sample) -> Load:
        if self.samples and (
            sample.sent < self.samples[-1].sent or sample.at <= self.samples[-1].at
        ):
            self.samples.clear()  # counters restarted (a Redis restart, a flush): start over
        self.samples.append(sample)
        # Keep the newest sample at least `window` old as the base, and nothing older.
        while len(self.samples) > 2 and self.samples[1].at <= sample.at - self.window:
            self.samples.popleft()
        base = self.samples[0]
        elapsed = sample.at - base.at
        rate = (sample.sent - base.sent) / elapsed if elapsed > 0 else None
        if rate is not None and self._surging(sample, rate):
            self.surge_until = sample.at + self.window
        if rate is not None and sample.at < self.surge_until:
            rate = max(rate, self._rate_since(sample, sample.at - self.recent))
        handled, busy = 0, 0.0
        for worker, now in sample.workers.items():
            # Each worker against its own oldest report in the window (it may have started
            # after the base sample was read).
            then = next((s.workers[worker] for s in self.samples if worker in s.workers), now)
            done = now["handled"] - then["handled"]
            spent = now["busy_seconds"] - then["busy_seconds"]
            if done > 0 and spent >= 0:
                handled += done
                busy += spent
        if handled:
            self.handling_time = busy / handled
        elif not sample.workers:
            self.handling_time = None  # none live (asleep, or not started): nothing measured
        reports = list(sample.workers.values())
        concurrency = None
        if reports:
            concurrency = max(1, round(sum(r["concurrency"] for r in reports) / len(reports)))
        return Load(
            depth=sample.depth,
            oldest_age=sample.oldest_age,
            arrival_rate=rate,
            handling_time=self.handling_time,
            in_flight=sum(r["in_flight"] for r in reports),
            concurrency=concurrency,
            workers=len(reports),
        )

    def _first_since(self, since: float) -> Sample | None:
        """The oldest sample taken at or after ``since``: searched from the newest end, as
        ``since`` is a few polls back in a window of many."""
        found = None
        for s in reversed(self.samples):
            if s.at < since:
                break
            found = s
        return found

    def _rate_since(self, sample: Sample, since: float) -> float:
        start = self._first_since(since) or self.samples[0]
        if start.at >= sample.at:
            start = self.samples[-2] if len(self.samples) > 1 else self.samples[0]
        span = sample.at - start.at
        return (sample.sent - start.sent) / span if span > 0 else 0.0

    def _surging(self, sample: Sample, rate: float) -> bool:
        """Both halves of the recent window run above ``surge_ratio`` x the stable rate, and
        the excess is more than four standard deviations of Poisson arrivals.

        Both halves, so a one-off burst (all in one poll) is left to the backlog term instead
        of inflating the rate for a whole window; four sigmas, so chance does not trigger it.
        """
        half = self.recent / 2
        older = self._first_since(sample.at - self.recent)
        middle = self._first_since(sample.at - half)
        if older is None or middle is None or not older.at < middle.at < sample.at:
            return False
        first = (middle.sent - older.sent) / (middle.at - older.at)
        second = (sample.sent - middle.sent) / (sample.at - middle.at)
        count, span = sample.sent - older.sent, sample.at - older.at
        expected = rate * span
        return min(first, second) > self.surge_ratio * rate and count - expected > 4 * math.sqrt(
            expected
        )
