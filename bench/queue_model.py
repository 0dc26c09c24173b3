"""A worker pool draining one queue, stepped in 2 ms ticks, for comparing scalers on the same load.

The load is Poisson arrivals at ``rate(t)`` messages/s (fixed seed), each needing
``handling`` seconds (+-10 %) of a consumer slot; a worker has ``concurrency`` slots,
becomes ready ``startup`` seconds after it is asked for and, when removed, finishes
what it holds (as a worker draining on SIGTERM does). A scaler is polled every
``poll`` seconds with what it could read from Redis at that moment: depth, oldest age,
the sent counter and every ready worker's report. The policy code under test is the
real one (``channelapp.autoscale``); only the queue and the workers are modelled.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from channelapp.autoscale.policy import ScalingPolicy, ScalingState, decide
from channelapp.autoscale.signals import Load, LoadTracker, Sample
from channelapp.layer.base import WorkerReport

TICK = 0.002


class Scaler(Protocol):
    poll: float

    def __call__(self, sample: Sample, current: int) -> int: ...


@dataclass
class PolicyScaler:
    """The channelapp policy, fed the full signals (``demand=True``) or the depth alone (today's)."""

    policy: ScalingPolicy
    poll: float = 0.5
    demand: bool = True
    tracker: LoadTracker = field(default_factory=LoadTracker)
    state: ScalingState | None = None

    def __call__(self, sample: Sample, current: int) -> int:
        if self.state is None:
            self.state = ScalingState.starting_at(current, sample.at)
        load = self.tracker.observe(sample) if self.demand else Load(depth=sample.depth)
        return decide(self.policy, self.state, load, current, sample.at).replicas


@dataclass
class KedaLike:
    """KEDA's queue-length scaler (30 s poll) behind the HPA's defaults, as in bench.hpa_model."""

    min_replicas: int
    max_replicas: int
    target: int
    poll: float = 15.0  # the HPA's sync period; KEDA's own poll is below
    keda_poll: float = 30.0
    window: float = 300.0
    _polled: int = 0
    _polled_at: float = -math.inf
    _history: list[tuple[float, int]] = field(default_factory=list)

    def __call__(self, sample: Sample, current: int) -> int:
        if sample.at - self._polled_at >= self.keda_poll:
            self._polled, self._polled_at = sample.depth, sample.at
        depth = self._polled
        usage = depth / (self.target * max(1, current))
        desired = current if abs(usage - 1) <= 0.1 else math.ceil(depth / self.target)
        desired = max(max(self.min_replicas, 1), min(self.max_replicas, desired))
        self._history.append((sample.at, desired))
        self._history = [(t, d) for t, d in self._history if t > sample.at - self.window]
        recommendation = min(max(current, desired), max(d for _, d in self._history))
        if recommendation > current:
            recommendation = min(recommendation, max(current + 4, current * 2))
        return recommendation


@dataclass
class _Worker:
    ready_at: float
    slots: list[tuple[float, float]] = field(default_factory=list)  # (finishes at, started at)
    handled: int = 0
    busy: float = 0.0
    draining: bool = False
    name: str = ""


@dataclass
class Run:
    times: list[float] = field(default_factory=list)
    workers: list[int] = field(default_factory=list)  # asked-for count at each tick
    changes: list[float] = field(default_factory=list)  # when the count changed
    waits: list[tuple[float, float]] = field(default_factory=list)  # (started at, waited)
    sent: int = 0
    handled: int = 0
    lost: int = 0


def simulate(
    rate: Callable[[float], float],
    handling: float,
    scaler: Scaler,
    *,
    concurrency: int = 1,
    duration: float = 180.0,
    start: int = 1,
    startup: float = 1.0,
    expiry: float = 60.0,
    surge: tuple[float, int] | None = None,
    seed: int = 7,
) -> Run:
    rng = random.Random(seed)
    queue: deque[float] = deque()
    workers: list[_Worker] = [_Worker(0.0, name=f"w{i}") for i in range(start)]
    retired: list[_Worker] = []
    run = Run()
    next_poll = 0.0
    serial = start
    arrivals_due = 0.0
    surged = False
    t = 0.0
    while t < duration:
        # Arrivals (Poisson within the tick) and the optional one-off surge.
        arrivals_due += rate(t) * TICK
        n = _poisson(rng, arrivals_due)
        arrivals_due = 0.0
        queue.extend([t] * n)
        run.sent += n
        if surge is not None and not surged and t >= surge[0]:
            queue.extend([t] * surge[1])
            run.sent += surge[1]
            surged = True
        while queue and t - queue[0] > expiry:
            queue.popleft()
            run.lost += 1
        # Workers finish, then take what waits. A slot freed at f inside the tick takes the
        # next message at max(f, its arrival), so service times are not rounded to ticks.
        for w in (*workers, *retired):
            taking = w in workers and w.ready_at <= t
            free: list[float] = []
            while True:
                done = [(f, began) for f, began in w.slots if f <= t]
                if not done:
                    break
                w.slots = [(f, began) for f, began in w.slots if f > t]
                w.handled += len(done)
                w.busy += sum(f - began for f, began in done)
                run.handled += len(done)
                free = [f for f, _ in done]
                if not taking:
                    break
                for f in free:
                    if not queue:
                        break
                    start = max(f, queue[0])
                    _take(w, queue, run, start, handling, rng)
            if taking:
                while queue and len(w.slots) < concurrency:
                    _take(w, queue, run, max(t - TICK, queue[0], w.ready_at), handling, rng)
        retired = [w for w in retired if w.slots]
        # The scaler reads what Redis would hold now.
        if t >= next_poll:
            next_poll += scaler.poll
            reports: dict[str, WorkerReport] = {
                w.name: {
                    "in_flight": len(w.slots),
                    "handled": w.handled,
                    "busy_seconds": w.busy,
                    "concurrency": concurrency,
                }
                for w in workers
                if w.ready_at <= t
            }
            sample = Sample(
                at=t,
                depth=len(queue),
                oldest_age=t - queue[0] if queue else 0.0,
                sent=run.sent,
                workers=reports,
            )
            want = scaler(sample, len(workers))
            if want != len(workers):
                run.changes.append(t)
            while len(workers) < want:
                workers.append(_Worker(t + startup, name=f"w{serial}"))
                serial += 1
            while len(workers) > want:
                retired.append(workers.pop())
        run.times.append(t)
        run.workers.append(len(workers))
        t = round(t + TICK, 3)
    return run


def _take(
    w: _Worker, queue: deque[float], run: Run, start: float, handling: float, rng: random.Random
) -> None:
    arrived = queue.popleft()
    run.waits.append((start, start - arrived))
    took = handling * rng.uniform(0.9, 1.1)
    w.slots.append((start + took, start))


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
