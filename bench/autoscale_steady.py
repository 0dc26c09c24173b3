"""How autoscalers hold a load, not only how fast they jump: steady, step, sine and surge loads.

Each scenario runs the same seeded load through the queue model (bench.queue_model) under
three scalers, in the same run:

- **demand**: the channelapp policy with every signal (arrival rate, handling time,
  in flight, depth, oldest age), polled every 0.5 s as ``channelapp run`` does;
- **depth-only**: the same policy fed the queue depth alone (the rule before demand sizing);
- **KEDA-like**: a 30 s queue-length poll behind the HPA's defaults.

Printed per scenario and scaler, over the judged phases (from 10 s after the load
starts or steps up, while the need is constant; the whole run after 10 s for the sine):
workers asked for against workers needed (``ceil(rate x handling / concurrency)``,
mean and max), the share of the time within [needed, needed + 1], scale events per
minute, p50/p99 queue wait; then messages lost (expired after 60 s) over the whole run,
the seconds from a step up or surge until the count covered the new need, and from
a step down until the count was back within needed + 1.

    python -m bench.autoscale_steady
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from channelapp.autoscale.policy import ScalingPolicy

from bench.common import pct, table
from bench.queue_model import KedaLike, PolicyScaler, Run, Scaler, simulate
from bench.results import save

WINDOW = 10.0  # scale-down stabilization, as `channelapp run`'s default
MAX = 20


@dataclass(frozen=True)
class Scenario:
    name: str
    rate: Callable[[float], float]
    handling: float
    concurrency: int = 1
    duration: float = 180.0
    change_at: float | None = None  # step or surge time, for the time-to-need column
    drop_at: float | None = None  # step down, for the time-to-settle column
    surge: tuple[float, int] | None = None
    judged: tuple[tuple[float, float], ...] = ((10.0, 1e9),)  # phases of a constant need
    startup: float = 1.0  # seconds from asked for to ready (a process; a pod takes longer)

    def needed(self, t: float) -> int:
        return max(1, math.ceil(self.rate(t) * self.handling / self.concurrency - 1e-9))


def scenarios() -> list[Scenario]:
    out: list[Scenario] = []
    for rate, handling, conc in ((100, 0.05, 1), (20, 0.2, 1), (400, 0.01, 1), (50, 1.0, 8)):
        out.append(
            Scenario(
                f"steady {rate}/s x {handling * 1000:.0f} ms, c={conc}",
                lambda t, r=rate: r,
                handling,
                conc,
            )
        )
    out.append(
        Scenario(
            "steady 100/s x 50 ms, c=1, workers ready in 10 s",
            lambda t: 100.0,
            0.05,
            startup=10.0,
            judged=((20.0, 1e9),),
        )
    )
    for rate, handling in ((30, 0.05), (40, 0.1)):
        out.append(
            Scenario(
                f"step {rate}/s x3 at 60 s, /6 at 120 s, {handling * 1000:.0f} ms",
                lambda t, r=rate: r if t < 60 else (3 * r if t < 120 else r / 2),
                handling,
                change_at=60.0,
                drop_at=120.0,
                judged=((10.0, 60.0), (70.0, 120.0)),
            )
        )
    for rate, handling in ((60, 0.05), (20, 0.25)):
        out.append(
            Scenario(
                f"sine {rate}/s +-50 % over 120 s, {handling * 1000:.0f} ms",
                lambda t, r=rate: r * (1 + 0.5 * math.sin(2 * math.pi * t / 120)),
                handling,
                duration=240.0,
            )
        )
    out.append(
        Scenario(
            "surge: 400 at once on 5/s, 50 ms",
            lambda t: 5.0,
            0.05,
            surge=(30.0, 400),
            change_at=30.0,
        )
    )
    return out


def scalers() -> dict[str, Callable[[], Scaler]]:
    policy = ScalingPolicy(min_replicas=1, max_replicas=MAX, scale_down_window=WINDOW)
    return {
        "demand": lambda: PolicyScaler(policy),
        "depth-only": lambda: PolicyScaler(policy, demand=False),
        "KEDA-like": lambda: KedaLike(1, MAX, 10),
    }


def judge(s: Scenario, run: Run) -> list[str]:
    def inside(t: float) -> bool:
        return any(a <= t < b for a, b in s.judged)

    judged = [(t, w) for t, w in zip(run.times, run.workers, strict=True) if inside(t)]
    workers = [w for _, w in judged]
    needed = [s.needed(t) for t, _ in judged]
    inband = sum(n <= w <= n + 1 for (_, w), n in zip(judged, needed, strict=True))
    waits = [w for t, w in run.waits if inside(t)]
    judged_seconds = sum(min(b, s.duration) - a for a, b in s.judged)
    events = sum(1 for t in run.changes if inside(t)) / judged_seconds * 60
    reach = settle = "-"
    if s.change_at is not None:
        need = max(s.needed(s.change_at + 1), 400 * s.handling / 0.5 if s.surge else 0)
        need = min(MAX, math.ceil(need))
        reach = _first(run, s.change_at, lambda w: w >= need)
    if s.drop_at is not None:
        low = s.needed(s.drop_at + 1) + 1
        settle = _first(run, s.drop_at, lambda w: w <= low)
    return [
        f"{sum(workers) / len(workers):.1f} / {max(workers)}",
        f"{sum(needed) / len(needed):.1f} / {max(needed)}",
        f"{inband / len(judged):.0%}",
        f"{events:.1f}",
        f"{pct(waits, 50) * 1000:.0f} / {pct(waits, 99) * 1000:.0f}",
        str(run.lost),
        reach,
        settle,
    ]


def _first(run: Run, after: float, test: Callable[[int], bool]) -> str:
    return next(
        (
            f"{t - after:.1f}"
            for t, w in zip(run.times, run.workers, strict=True)
            if t >= after and test(w)
        ),
        "never",
    )


def series(s: Scenario, run: Run) -> dict[str, list[float]]:
    """The run over time for the report: workers asked for and needed at each tick, and the
    p99 queue wait of the messages taken in each second."""
    by_second: dict[int, list[float]] = defaultdict(list)
    for started, waited in run.waits:
        by_second[int(started)].append(waited)
    seconds = sorted(by_second)
    # Every tick is too many points to draw: one every 0.25 s, and each change of the count.
    ticks = [
        i
        for i, t in enumerate(run.times)
        if i == 0 or run.workers[i] != run.workers[i - 1] or int(t * 4) != int(run.times[i - 1] * 4)
    ]
    return {
        "t": [round(run.times[i], 3) for i in ticks],
        "workers": [run.workers[i] for i in ticks],
        "needed": [s.needed(run.times[i]) for i in ticks],
        "wait_t": seconds,
        "wait_p99": [round(pct(by_second[t], 99), 4) for t in seconds],
    }


def main() -> None:
    print(
        f"# autoscaling under steady and changing loads (queue model, Poisson arrivals, "
        f"workers ready 1 s after asked unless stated, {WINDOW:g} s scale-down window, max {MAX})",
        flush=True,
    )
    rows = []
    kept: list[dict[str, Any]] = []
    for s in scenarios():
        runs: dict[str, Any] = {}
        for name, make in scalers().items():
            run = simulate(
                s.rate,
                s.handling,
                make(),
                concurrency=s.concurrency,
                duration=s.duration,
                surge=s.surge,
                startup=s.startup,
            )
            rows.append([s.name, name, *judge(s, run)])
            runs[name] = series(s, run)
        kept.append({"load": s.name, "runs": runs})
    print()
    print(
        table(
            [
                "load",
                "scaler",
                "workers mean / max",
                "needed mean / max",
                "in [need, need+1]",
                "events/min",
                "wait p50 / p99 ms",
                "lost",
                "s to need",
                "s to need+1 after drop",
            ],
            rows,
        )
    )
    save("autoscale_steady", {"max": MAX, "window": WINDOW, "loads": kept})


if __name__ == "__main__":
    main()
