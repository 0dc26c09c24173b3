"""A model of the KEDA + HPA pipeline with their documented defaults, for bench.autoscale.

No KEDA or metrics pipeline runs here, so the baseline is this simulation, fed the
same depth trace as the real operator:

- KEDA polls the queue every 30 s (``pollingInterval``) and activates 0 -> 1 from it;
- the HPA syncs every 15 s (``--horizontal-pod-autoscaler-sync-period``), computes
  ``ceil(depth / target)`` (10 % tolerance), adds at most max(4 pods, 100 %) per 15 s
  (default scale-up policy) and removes pods only to the highest recommendation of
  the last 300 s (default scale-down stabilization).
"""

from __future__ import annotations

import math
from collections.abc import Callable


def simulate(
    depth_at: Callable[[float], int],
    *,
    start: int,
    min_replicas: int,
    max_replicas: int,
    target: int,
    until: float,
    poll_phase: float = 0.0,
    sync_phase: float = 0.0,
    poll_interval: float = 30.0,
    sync_period: float = 15.0,
    scale_down_window: float = 300.0,
) -> list[tuple[float, int]]:
    """Replica count over time as (time, replicas) changes."""
    replicas = start
    history: list[tuple[float, int]] = []
    changes = [(0.0, replicas)]
    polled = depth_at(0.0)
    next_poll = poll_phase
    next_sync = sync_phase
    t = 0.0
    while t <= until:
        if t >= next_poll:
            polled = depth_at(t)
            next_poll += poll_interval
            if replicas == 0 and polled > 0:  # KEDA's own activation
                replicas = 1
                changes.append((t, replicas))
            elif replicas > 0 and polled == 0 and min_replicas == 0:
                pass  # KEDA deactivates after its cooldown (300 s); not reached here
        if t >= next_sync and replicas > 0:
            next_sync += sync_period
            depth = depth_at(t)  # the HPA asks the metrics adapter, which queries the scaler
            usage = depth / (target * replicas)
            desired = replicas if abs(usage - 1) <= 0.1 else math.ceil(depth / target)
            desired = max(max(min_replicas, 1), min(max_replicas, desired))
            history.append((t, desired))
            history = [(ht, d) for ht, d in history if ht > t - scale_down_window]
            # The HPA's normalization: up to the latest recommendation at once (no
            # scale-up window), down only to the highest of the scale-down window.
            recommendation = max(replicas, desired)
            recommendation = min(recommendation, max(d for _, d in history))
            if recommendation > replicas:
                recommendation = min(recommendation, max(replicas + 4, replicas * 2))
            desired = recommendation
            if desired != replicas:
                replicas = desired
                changes.append((t, replicas))
        t = round(t + 0.1, 1)
    return changes


def first_time(
    changes: list[tuple[float, int]], after: float, test: Callable[[int], bool]
) -> float:
    for t, r in changes:
        if t >= after and test(r):
            return t - after
    return math.inf


def sweep(
    *,
    depth: int,
    surge_at: float,
    drained_at: float,
    max_replicas: int,
    target: int,
    until: float,
) -> tuple[list[float], list[float]]:
    """The model fed a surge of ``depth`` queued from ``surge_at`` to ``drained_at``, starting
    at 1 replica, over every phase (3 s steps) of its 30 s poll and 15 s sync relative to the
    surge: the times from the surge to ``max_replicas`` and from the drain back to 1, one per
    phase pair (``math.inf`` where it never gets there)."""
    ups, downs = [], []
    for poll_phase in range(0, 30, 3):
        for sync_phase in range(0, 15, 3):
            changes = simulate(
                lambda t: depth if surge_at <= t < drained_at else 0,
                start=1,
                min_replicas=1,
                max_replicas=max_replicas,
                target=target,
                until=until,
                poll_phase=poll_phase,
                sync_phase=sync_phase,
            )
            ups.append(first_time(changes, surge_at, lambda r: r >= max_replicas))
            downs.append(first_time(changes, drained_at, lambda r: r <= 1))
    return ups, downs
