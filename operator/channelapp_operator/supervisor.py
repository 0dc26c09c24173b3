"""One ChannelApp's loop: observe its shards and children, decide the workers, write.

A kopf daemon runs :meth:`AppSupervisor.tick` every ``pollIntervalSeconds`` through
:func:`paced`: on a fixed cadence (a tick starts an interval after the previous one
started, not after it ended), each app at its own phase within the interval. Each
tick reads the load from every shard (:mod:`observe`), decides the worker replicas
(:mod:`decide`), computes the status (:mod:`status`) and writes what changed
(:mod:`actuate`): one apply of ``spec.replicas`` when the decision changes
the count, and one status patch when the status changed. A failed read never
scales: the app is marked ``Degraded`` and its replicas are left alone (only the
spec's bounds are enforced).
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from channelapp_operator import metrics
from channelapp_operator import names as n
from channelapp_operator.actuate import VOLATILE_STATUS_INTERVAL, Actuator, EventPoster
from channelapp_operator.api_threads import ApiThreads
from channelapp_operator.app_state import AppRegistry
from channelapp_operator.children_status import Workload
from channelapp_operator.decide import Decider, clamp, current_replicas
from channelapp_operator.depth_reading import DepthReading
from channelapp_operator.dial_manners import SharedDialBudget
from channelapp_operator.kube import Kube
from channelapp_operator.observe import RedisRefusals, ShardReader
from channelapp_operator.reshard import effective_spec
from channelapp_operator.status import StatusInputs, compute_status


@dataclass
class AppSupervisor:
    namespace: str
    name: str
    kube: Kube
    post_event: EventPoster
    clock: Callable[[], float] = time.monotonic
    # The connection attempts all apps share.
    shared_dials: SharedDialBudget | None = None
    # Where the reconcile handler records a failed apply of this app.
    apps: AppRegistry = field(default_factory=AppRegistry)
    # The threads the status and scale writes run on (None: the loop's default executor).
    api: ApiThreads | None = None
    # Seconds between status writes whose only change is a volatile figure.
    status_interval: float = VOLATILE_STATUS_INTERVAL
    reader: ShardReader = field(init=False)
    redis_refusals: RedisRefusals = field(init=False)
    decider: Decider = field(default_factory=Decider)
    actuator: Actuator = field(init=False)

    def __post_init__(self) -> None:
        self.reader = ShardReader(
            self.namespace, self.name, self.kube, self.clock, shared_dials=self.shared_dials
        )
        self.redis_refusals = RedisRefusals(self.namespace, self.name, self.kube)
        self.actuator = Actuator(
            self.namespace, self.name, self.kube, self.post_event, self.clock,
            api=self.api, status_interval=self.status_interval,
        )  # fmt: skip

    def _apply_failure(self) -> tuple[str, str] | None:
        return self.apps.get(self.namespace, self.name).apply_failure

    async def read_depth(self, spec: Mapping[str, Any], uid: str | None = None) -> DepthReading:
        return await self.reader.read_depth(spec, uid, self._apply_failure())

    async def tick(self, body: Mapping[str, Any], workloads: Mapping[str, Workload]) -> None:
        spec = body.get("spec") or {}
        meta = body.get("metadata") or {}
        status = dict(body.get("status") or {})
        # While a change of shard count waits, the shards read are those the data lives on.
        reading = await self.read_depth(effective_spec(spec, status), meta.get("uid"))
        labels = (self.namespace, self.name)
        worker = workloads.get(n.WORKER)
        desired = current_replicas(worker, self.actuator.written, self.clock())
        if reading.ok:
            metrics.QUEUE_DEPTH.labels(*labels).set(reading.depth)
        else:
            metrics.DEPTH_READ_FAILURES.labels(*labels).inc()
        if desired is not None:
            desired = await self._decide_and_scale(spec, reading, desired)
            metrics.DESIRED_WORKERS.labels(*labels).set(desired)
        if worker is not None:
            metrics.READY_WORKERS.labels(*labels).set(worker.ready)
        workloads = await self.redis_refusals.with_redis_refusal(workloads)
        new_status = self.status(spec, meta, status, workloads, reading, desired)
        self.actuator.report_unreachable(reading)
        await self.actuator.write_status(new_status)

    async def _decide_and_scale(
        self, spec: Mapping[str, Any], reading: DepthReading, current: int
    ) -> int:
        """The replicas wanted, written when they differ; without a reading, the spec's
        bounds only."""
        if reading.ok:
            decision = self.decider.decide(spec, reading, current, self.clock())
            replicas, why = decision.replicas, decision.reason
            if not decision.changes(current):
                return current
        else:
            replicas, why = clamp(spec, current)
            if replicas == current:
                return current
        await self.actuator.scale(current, replicas, why)
        return replicas

    def status(
        self,
        spec: Mapping[str, Any],
        meta: Mapping[str, Any],
        previous: Mapping[str, Any],
        workloads: Mapping[str, Workload],
        reading: DepthReading,
        desired: int | None,
    ) -> dict[str, Any]:
        """The status this tick would write."""
        return compute_status(
            StatusInputs(
                name=self.name,
                namespace=self.namespace,
                spec=spec,
                generation=int(meta.get("generation") or 0),
                previous=previous,
                workloads=workloads,
                reading=reading,
                desired=desired,
                apply_failure=self._apply_failure(),
                load=self.actuator.shown_load(self.decider.load, self.decider.reason),
                last_scale=self.actuator.last_scale,
            )
        )

    async def close(self) -> None:
        await self.reader.close()


# The slots of an interval that apps' ticks are spread over. Apps in one slot tick
# together, so the event loop serves their reads in shared turns (spread apart, each tick
# costs about twice the CPU); ten slots keep a thousand apps from ticking as one.
PHASE_SLOTS = 10


def app_phase(namespace: str, name: str) -> float:
    """Where in its poll interval an app ticks, in [0, 1): one of PHASE_SLOTS slots, the
    same for an app across restarts, spread evenly over many apps."""
    return (zlib.crc32(f"{namespace}/{name}".encode()) % PHASE_SLOTS) / PHASE_SLOTS


@dataclass
class Cadence:
    """When an app's loop ticks next: every ``interval`` seconds on a fixed grid.

    The next tick is due an interval after the previous one was due, not an interval
    after it ended: a tick that takes 30 % of the interval still leaves one tick per
    interval. A tick that overruns skips the grid points it missed instead of firing
    them back to back. The grid is offset by the app's ``phase`` (a fraction of the
    interval), so apps whose loops start together (an operator restart resumes every
    daemon at once) do not tick in lockstep.
    """

    phase: float = 0.0
    clock: Callable[[], float] = time.monotonic
    missed: int = 0  # grid points skipped because a tick overran
    _anchor: float | None = None
    _interval: float = 0.0
    _due: float | None = None  # when the next tick was last scheduled

    def delay(self, interval: float, started: float | None = None) -> float:
        """Seconds from now until the next tick (called when a tick ends; ``started``: when
        it started, now if left out)."""
        now = self.clock()
        if self._anchor is None or interval != self._interval:
            # The first tick, or a new interval: a new grid from the tick's start, at the
            # app's phase into it.
            start = now if started is None else started
            self._anchor, self._interval, self._due = start + self.phase * interval, interval, None
        steps = math.floor((now - self._anchor) / interval) + 1
        due = self._anchor + steps * interval
        if due - now < interval * 1e-6:  # rounding put "now" just before a grid point
            due += interval
        if self._due is not None:
            self.missed += max(0, round((due - self._due) / interval) - 1)
        self._due = due
        return due - now


async def paced(
    step: Callable[[], Awaitable[bool]],
    interval: Callable[[], float],
    wait: Callable[[float], Awaitable[object]],
    stopped: Callable[[], bool],
    cadence: Cadence,
) -> None:
    """Run ``step`` on ``cadence`` until it returns False or ``stopped()``; ``wait(seconds)``
    sleeps, returning early when the loop is stopped."""
    while not stopped():
        started = cadence.clock()
        if not await step():
            return
        await wait(cadence.delay(interval(), started))
