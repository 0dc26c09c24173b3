"""A steady load on real worker processes: demand sizing against the depth-only rule, same run.

100 jobs/s (Poisson) of 50 ms waiting work each, workers running one job at a time, so
5 workers are busy; a private redis-server; worker processes started and stopped
(SIGTERM, drained) by the pool of ``channelapp run --autoscale 1..10``, polled every
0.5 s with a 10 s scale-down window. Each policy gets a fresh pool for DURATION seconds.

Printed per policy: workers mean / max from 10 s on; workers needed, from the
handling time the workers measured (the sleep plus the consumer's own time); the share
of time within [needed, needed + 1]; scale events per minute from 20 s on; p50/p99
queue wait from 10 s on (job sent -> a worker starts it); jobs lost (never answered).

    python -m bench.autoscale_processes [--seconds 75] [--rate 100] [--ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import secrets
import time
from collections import defaultdict
from typing import Any

from channelapp.autoscale.local import WorkerPool, read_sample
from channelapp.autoscale.policy import ScalingPolicy, ScalingState, decide
from channelapp.autoscale.signals import Load, LoadTracker
from channelapp.layer import RedisChannelLayer

from bench.common import machine, pct, table
from bench.results import save
from devtools.redis import redis_servers

APP = "channelapp.examples.jobs:app"
POLL = 0.5
VERBOSE = bool(os.environ.get("BENCH_VERBOSE"))


async def run_policy(
    url: str, demand: bool, seconds: float, rate: float, ms: float, maximum: int
) -> dict[str, Any]:
    env = {
        **os.environ,
        "CHANNELAPP_REDIS_URLS": url,
        "CHANNELAPP_WORKER_CONCURRENCY": "1",
        "CHANNELAPP_SECRET_KEY": secrets.token_urlsafe(48),
        "CHANNELAPP_CHANNEL_CAPACITY": "100000",
        "CHANNELAPP_MESSAGE_EXPIRY": "600",
    }
    pool = WorkerPool(APP, env)
    pool.resize(1)
    layer = RedisChannelLayer([url], capacity=100_000, expiry=600)
    await layer.flush()
    policy = ScalingPolicy(1, maximum, scale_down_window=10.0, concurrency=1)
    state, tracker = ScalingState.starting_at(1, time.monotonic()), LoadTracker()
    reply = await layer.new_channel("bench")
    waits: list[tuple[float, float]] = []  # (answered at, waited)
    counts: list[tuple[float, int]] = []
    changes: list[float] = []
    started = time.monotonic()
    stop = asyncio.Event()

    async def scale() -> None:
        while not stop.is_set():
            pool.reap()
            now = time.monotonic()
            sample = await read_sample(layer, ["jobs"], now)
            measured = tracker.observe(sample)
            load = measured if demand else Load(depth=sample.depth)
            current = len(pool.running)
            decision = decide(policy, state, load, current, now)
            if decision.changes(current):
                changes.append(now - started)
                if VERBOSE:
                    print(
                        f"{now - started:6.1f}s {current} -> {decision.replicas}: {decision.reason}"
                    )
                pool.resize(decision.replicas)
            counts.append((now - started, len(pool.running)))
            await asyncio.sleep(POLL)

    async def receive(expected: list[int]) -> None:
        while True:
            message = await layer.receive(reply)
            waits.append((time.monotonic() - started, float(message["waited"])))
            expected[0] -= 1

    sent = [0]
    outstanding = [0]
    scaler = asyncio.create_task(scale())
    receiver = asyncio.create_task(receive(outstanding))
    rng = random.Random(7)
    try:
        next_at = started
        while time.monotonic() - started < seconds:
            next_at += rng.expovariate(rate)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            sent[0] += 1
            outstanding[0] += 1
            await layer.send(
                "jobs", {"type": "job", "n": sent[0], "ms": ms, "sent": time.time(), "reply": reply}
            )
        deadline = time.monotonic() + 30
        while outstanding[0] > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(scaler, return_exceptions=True)
        receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)
        await asyncio.to_thread(pool.stop, 30)
        await layer.close()
    # What the work really takes (sleep overshoot, the consumer's own time), as measured.
    handling = tracker.handling_time or ms / 1000
    needed = math.ceil(rate * handling)
    judged = [c for t, c in counts if 10 <= t <= seconds]
    steady_waits = [w for t, w in waits if t >= 10]
    return {
        "workers": f"{sum(judged) / len(judged):.1f} / {max(judged)}",
        "needed": f"{needed} ({handling * 1000:.1f} ms)",
        "inband": f"{sum(needed <= c <= needed + 1 for c in judged) / len(judged):.0%}",
        "events": f"{sum(1 for t in changes if 20 <= t <= seconds) / (seconds - 20) * 60:.1f}",
        "wait": f"{pct(steady_waits, 50) * 1000:.0f} / {pct(steady_waits, 99) * 1000:.0f}",
        "lost": str(outstanding[0]),
        "sent": sent[0],
        "series": series(counts, waits, needed),
    }


def series(
    counts: list[tuple[float, int]], waits: list[tuple[float, float]], needed: int
) -> dict[str, list[Any]]:
    """The run over time for the report, in bench.autoscale_steady's shape: workers running
    at each poll against the workers needed, and the p99 queue wait of each second's answers."""
    by_second: dict[int, list[float]] = defaultdict(list)
    for answered, waited in waits:
        by_second[int(answered)].append(waited)
    seconds = sorted(by_second)
    return {
        "t": [round(t, 3) for t, _ in counts],
        "workers": [c for _, c in counts],
        "needed": [needed] * len(counts),
        "wait_t": seconds,
        "wait_p99": [round(pct(by_second[t], 99), 4) for t in seconds],
    }


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--seconds", type=float, default=75.0)
    args.add_argument("--rate", type=float, default=100.0)
    args.add_argument("--ms", type=float, default=50.0)
    args.add_argument("--max", type=int, default=10)
    opts = args.parse_args()
    print(
        f"# steady load on real worker processes: {opts.rate:g} jobs/s x {opts.ms:g} ms, "
        f"concurrency 1, workers 1..{opts.max}, {opts.seconds:g} s per policy ({machine()})",
        flush=True,
    )
    rows = []
    runs: dict[str, Any] = {}
    with redis_servers(1) as (server,):
        for name, demand in (
            ("demand (arrival rate x handling time)", True),
            ("depth-only", False),
        ):
            result = asyncio.run(
                run_policy(server.url, demand, opts.seconds, opts.rate, opts.ms, opts.max)
            )
            runs[name.split(" (")[0]] = result.pop("series")
            print(f"{name}: {result}", flush=True)
            rows.append(
                [
                    name,
                    result["workers"],
                    result["needed"],
                    result["inband"],
                    result["events"],
                    result["wait"],
                    f"{result['lost']} of {result['sent']}",
                ]
            )
    print()
    print(
        table(
            [
                "policy",
                "workers mean / max",
                "needed (handling)",
                "in [need, need+1]",
                "events/min",
                "wait p50 / p99 ms",
                "lost",
            ],
            rows,
        )
    )
    load = f"{opts.rate:g} jobs/s x {opts.ms:g} ms on worker processes"
    save("autoscale_processes", {"max": opts.max, "loads": [{"load": load, "runs": runs}]})


if __name__ == "__main__":
    main()
