"""Desired worker count from demand and queue wait: pure functions, no I/O, no clock.

The rule, in the order it is applied (``c`` = one worker's concurrency, ``u`` =
``target_utilization``, ``W`` = ``target_queue_wait``):

1. *Raw recommendation*, in busy consumer slots, then workers = ``ceil(slots / c)``:

   - demand, by Little's law: ``arrival_rate x handling_time / u`` (the messages
     being handled at once when workers keep up, with headroom);
   - backlog: ``arrival_rate x handling_time + depth x handling_time / W`` (enough
     slots beyond the demand to drain what waits within ``W``);
   - the larger of the two. Until a handling time has been measured (a new app, one
     woken from zero) the depth rule stands in: ``ceil(depth / target_depth)`` workers,
     plus the slots already busy.

   A guard on age: when the oldest waiting message has waited longer than ``W``,
   the recommendation is at least one more than the current count, so an estimate
   that is off still moves towards more workers. The result is clamped to
   ``min..max``. With ``min_replicas == 0`` the app sleeps when nothing waits
   (``depth <= activation_depth``), nothing runs and (with activation depth 0) nothing
   arrives; anything else keeps at least one worker.
2. *Scale up at once* to a recommendation above the current count, limited only by
   ``max_scale_up_step`` when one is set.
3. *Scale down only after the stabilization window*: the count falls to the
   highest recommendation seen during the last ``scale_down_window`` seconds
   (the HPA's rule), and ``max_scale_down_step`` bounds each step.

Sizing from demand is what holds a steady load steady: while workers keep up the
depth is about zero, yet the arrival rate and handling time still say how many
are busy. A depth-only rule sees the empty queue, scales in, lets the queue refill
and scales out again: a sawtooth. Scale-in is safe because workers drain on
SIGTERM: the pods removed finish the messages they hold before they exit.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from channelapp.autoscale.signals import Load

SCALE_IN_TOLERANCE = 0.05


@dataclass(frozen=True)
class ScalingPolicy:
    min_replicas: int = 1
    max_replicas: int = 10
    target_depth: int = 10
    activation_depth: int = 0
    scale_down_window: float = 30.0
    max_scale_up_step: int | None = None
    max_scale_down_step: int | None = None
    target_utilization: float = 0.9
    target_queue_wait: float = 0.5
    concurrency: int = 1
    """A worker's concurrency until the workers report their own."""
    backlog_hold: float = 5.0
    """Seconds workers added for a backlog stay after it is drained (at most the window)."""
    startup_grace: float = 60.0
    """Seconds after a scale-up during which workers not reporting yet count as starting."""

    def __post_init__(self) -> None:
        if self.min_replicas < 0:
            raise ValueError("min_replicas must be >= 0")
        if self.max_replicas < max(self.min_replicas, 1):
            raise ValueError("max_replicas must be >= min_replicas and >= 1")
        if self.target_depth < 1:
            raise ValueError("target_depth must be >= 1")
        if self.activation_depth < 0:
            raise ValueError("activation_depth must be >= 0")
        if self.scale_down_window < 0:
            raise ValueError("scale_down_window must be >= 0")
        if not 0.05 <= self.target_utilization <= 1.0:
            raise ValueError("target_utilization must be within 0.05..1")
        if self.target_queue_wait <= 0:
            raise ValueError("target_queue_wait must be > 0")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        for name in ("max_scale_up_step", "max_scale_down_step"):
            step = getattr(self, name)
            if step is not None and step < 1:
                raise ValueError(f"{name} must be >= 1 when set")


@dataclass
class ScalingState:
    """What the policy remembers between decisions: recent recommendations."""

    history: deque[tuple[float, int]] = field(default_factory=deque)
    """(when, workers the demand needed): scale-in waits for the window's highest."""
    backlog: deque[tuple[float, int]] = field(default_factory=deque)
    """(when, workers a backlog needed): held briefly, so a drained backlog lets go soon."""
    raised_at: float = float("-inf")
    """When a decision last raised the count (workers may still be starting)."""

    @classmethod
    def starting_at(cls, replicas: int, now: float) -> ScalingState:
        """State for a scaler that just started and finds ``replicas`` running.

        Counting the running replicas as a fresh recommendation means a
        restarted operator waits a full window before scaling in.
        """
        return cls(deque([(now, replicas)]), deque([(now, 0)]))


@dataclass(frozen=True)
class Decision:
    replicas: int
    raw: int
    reason: str

    def changes(self, current: int) -> bool:
        return self.replicas != current


@dataclass(frozen=True)
class Recommendation:
    demand: int
    """Workers the arrivals need (stabilized over the scale-down window before scale-in)."""
    backlog: int
    """Workers to drain what waits (held only ``backlog_hold`` seconds once it is drained)."""
    why: str

    @property
    def replicas(self) -> int:
        return max(self.demand, self.backlog)


def recommend(
    policy: ScalingPolicy, load: Load | int, current: int = 0, *, starting: bool = False
) -> Recommendation:
    """Workers the load needs right now (before stabilization), and why.

    ``starting``: some workers asked for have not reported yet (see :func:`decide`).
    """
    load = _as_load(load)
    depth = max(0, load.depth)
    arrival = max(0.0, load.arrival_rate or 0.0)
    if (
        policy.min_replicas == 0
        and depth <= policy.activation_depth
        and load.in_flight == 0
        and (policy.activation_depth > 0 or arrival == 0.0)
    ):
        why = f"queue depth {depth} at or below activation {policy.activation_depth}, idle"
        return Recommendation(0, 0, why)
    c = load.concurrency or policy.concurrency
    s = load.handling_time
    floor = 1 if (depth > 0 or load.in_flight > 0 or arrival > 0) else 0
    if s is None:
        wanted = math.ceil(depth / policy.target_depth) + math.ceil(load.in_flight / c)
        why = f"queue depth {depth} needs {wanted} (target {policy.target_depth} per worker"
        why += f", {load.in_flight} in flight)" if load.in_flight else ")"
        return Recommendation(_bound(policy, max(floor, wanted)), 0, why)

    busy = arrival * s
    slots = busy / policy.target_utilization
    demand = math.ceil(slots / c - 1e-9)
    if demand < current:
        # Hysteresis: fewer workers only if they would still fit a little more demand, so
        # an estimate hovering at a boundary does not flip the count up and down.
        demand = min(current, math.ceil(slots * (1 + SCALE_IN_TOLERANCE) / c - 1e-9))
    why = (
        f"arrivals {arrival:.1f}/s x {s * 1000:.0f} ms = {busy:.2f} busy: {demand} worker(s)"
        f" of {c} at {policy.target_utilization:.0%}"
    )
    backlog = 0
    running = math.ceil(load.in_flight / c)
    if running > demand + 1:
        # Messages still running beyond what the arrivals explain (long ones, arrivals that
        # stopped) hold their workers while they run, and only then: scale-in would cut them.
        # One worker of slack, so a pool that happens to be all busy at a poll is not held.
        backlog = running
        why += f"; {load.in_flight} in flight hold {running}"
    # Queueing that clears on its own (bursts of a random arrival stream) is left to the
    # utilization headroom: the backlog counts once the oldest message waited longer than
    # two handling times plus half the target wait.
    if depth > 0 and load.oldest_age > 2 * s + policy.target_queue_wait / 2:
        why += f"; {depth} waiting (oldest {load.oldest_age:.1f}s)"
        if starting:
            # Workers asked for but not reporting yet will drain it: keep them, ask no more.
            backlog = current
            why += f", {current - load.workers} worker(s) still starting"
        else:
            drain = busy + depth * s / policy.target_queue_wait
            backlog = max(backlog, math.ceil(drain / c - 1e-9))
            if backlog <= max(demand, current) and load.oldest_age > policy.target_queue_wait:
                # The estimates say the pool suffices, yet messages wait too long: one more.
                backlog = max(demand, current) + 1
                why += f" longer than {policy.target_queue_wait:g}s: one more, {backlog}"
            else:
                why += f" drained within {policy.target_queue_wait:g}s by {backlog}"
    return Recommendation(
        _bound(policy, max(floor, demand)), min(backlog, policy.max_replicas), why
    )


def raw_desired(policy: ScalingPolicy, load: Load | int) -> int:
    return recommend(policy, load).replicas


def decide(
    policy: ScalingPolicy, state: ScalingState, load: Load | int, current: int, now: float
) -> Decision:
    """Replicas to run now, given the ``load`` (or a bare queue depth) and ``current`` replicas.

    Records this decision's recommendation in ``state``.
    """
    load = _as_load(load)
    starting = (
        load.handling_time is not None
        and load.workers < current
        and now - state.raised_at < policy.startup_grace
    )
    rec = recommend(policy, load, current, starting=starting)
    raw, why = rec.replicas, rec.why
    _remember(state.history, now, rec.demand, policy.scale_down_window)
    _remember(state.backlog, now, rec.backlog, min(policy.scale_down_window, policy.backlog_hold))

    floor = _clamp(policy, current)
    if raw > floor:
        target = raw
        if policy.max_scale_up_step is not None:
            target = min(target, floor + policy.max_scale_up_step)
        reason = why
        if target < raw:
            reason += f", limited to +{policy.max_scale_up_step} per step"
        state.raised_at = now
        return Decision(target, raw, reason)

    stabilized = max(max(r for _, r in state.history), max(r for _, r in state.backlog))
    target = max(raw, min(floor, stabilized))
    if policy.max_scale_down_step is not None:
        target = max(target, floor - policy.max_scale_down_step)
    if target < floor:
        if target == 0:
            reason = (
                f"queue depth {load.depth} at or below activation {policy.activation_depth} "
                f"for {policy.scale_down_window:g}s: scale to zero"
            )
        else:
            reason = (
                f"{why}; highest need in the last {policy.scale_down_window:g}s is {stabilized}"
            )
        return Decision(target, raw, reason)
    if floor != current:
        return Decision(
            floor, raw, f"replicas {current} outside {policy.min_replicas}..{policy.max_replicas}"
        )
    return Decision(current, raw, f"steady: {why}")


def _remember(history: deque[tuple[float, int]], now: float, value: int, window: float) -> None:
    history.append((now, value))
    horizon = now - window
    while len(history) > 1 and history[0][0] < horizon:
        history.popleft()


def _bound(policy: ScalingPolicy, replicas: int) -> int:
    return max(policy.min_replicas, min(policy.max_replicas, replicas))


def _as_load(load: Load | int) -> Load:
    return Load(depth=load) if isinstance(load, int) else load


def _clamp(policy: ScalingPolicy, replicas: int) -> int:
    return max(policy.min_replicas, min(policy.max_replicas, replicas))
