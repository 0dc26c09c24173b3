"""Desired worker count from queue depth: pure functions, no I/O, no clock.

The rule, in the order it is applied:

1. *Raw recommendation*: ``ceil(depth / target_depth)`` clamped to ``min..max``.
   With ``min_replicas == 0`` the app may sleep: a depth at or below
   ``activation_depth`` recommends zero, anything above recommends at least one,
   so a sleeping app wakes as soon as one message waits (with the default
   activation depth of 0).
2. *Scale up at once*: a recommendation above the current count is taken now,
   limited only by ``max_scale_up_step`` when one is set. No 30-second poll and no
   HPA hop in between: the operator reads depth every poll interval and writes
   the replica count directly.
3. *Scale down only after the stabilization window*: the count falls to the
   highest recommendation seen during the last ``scale_down_window`` seconds
   (the HPA's rule), so a noisy constant depth never flaps, and
   ``max_scale_down_step`` bounds each step.

Scale-in is safe because workers drain on SIGTERM: the pods removed finish the
messages they hold before they exit.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ScalingPolicy:
    min_replicas: int = 1
    max_replicas: int = 10
    target_depth: int = 10
    activation_depth: int = 0
    scale_down_window: float = 30.0
    max_scale_up_step: int | None = None
    max_scale_down_step: int | None = None

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
        for name in ("max_scale_up_step", "max_scale_down_step"):
            step = getattr(self, name)
            if step is not None and step < 1:
                raise ValueError(f"{name} must be >= 1 when set")


@dataclass
class ScalingState:
    """What the policy remembers between decisions: recent recommendations."""

    history: deque[tuple[float, int]] = field(default_factory=deque)

    @classmethod
    def starting_at(cls, replicas: int, now: float) -> ScalingState:
        """State for a scaler that just started and finds ``replicas`` running.

        Counting the running replicas as a fresh recommendation means a
        restarted operator waits a full window before scaling in.
        """
        return cls(deque([(now, replicas)]))


@dataclass(frozen=True)
class Decision:
    replicas: int
    raw: int
    reason: str

    def changes(self, current: int) -> bool:
        return self.replicas != current


def raw_desired(policy: ScalingPolicy, depth: int) -> int:
    if policy.min_replicas == 0 and depth <= policy.activation_depth:
        return 0
    wanted = math.ceil(depth / policy.target_depth)
    return max(policy.min_replicas, 1 if depth > 0 else 0, min(policy.max_replicas, wanted))


def decide(
    policy: ScalingPolicy, state: ScalingState, depth: int, current: int, now: float
) -> Decision:
    """Replicas to run now, given the queue ``depth`` and ``current`` replicas.

    Records this decision's recommendation in ``state``.
    """
    depth = max(0, depth)
    raw = raw_desired(policy, depth)
    history = state.history
    history.append((now, raw))
    horizon = now - policy.scale_down_window
    while len(history) > 1 and history[0][0] < horizon:
        history.popleft()

    floor = _clamp(policy, current)
    if raw > floor:
        target = raw
        if policy.max_scale_up_step is not None:
            target = min(target, floor + policy.max_scale_up_step)
        reason = f"queue depth {depth} needs {raw} (target {policy.target_depth} per worker)"
        if target < raw:
            reason += f", limited to +{policy.max_scale_up_step} per step"
        return Decision(target, raw, reason)

    stabilized = max(r for _, r in history)
    target = max(raw, min(floor, stabilized))
    if policy.max_scale_down_step is not None:
        target = max(target, floor - policy.max_scale_down_step)
    if target < floor:
        if target == 0:
            reason = (
                f"queue depth {depth} at or below activation {policy.activation_depth} "
                f"for {policy.scale_down_window:g}s: scale to zero"
            )
        else:
            reason = (
                f"queue depth {depth} needs {raw}; highest need in the last "
                f"{policy.scale_down_window:g}s is {stabilized}"
            )
        return Decision(target, raw, reason)
    if floor != current:
        return Decision(
            floor, raw, f"replicas {current} outside {policy.min_replicas}..{policy.max_replicas}"
        )
    return Decision(current, raw, "steady")


def _clamp(policy: ScalingPolicy, replicas: int) -> int:
    return max(policy.min_replicas, min(policy.max_replicas, replicas))
