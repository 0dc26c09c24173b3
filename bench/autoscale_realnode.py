"""Surge to scale on a real node: the operator in-cluster, real worker pods draining real jobs,
beside the KEDA-like model (bench.hpa_model) fed the same surge. Needs root and containerd:
it builds what is missing (cached) and starts and removes a control plane with a real node.

    python -m bench.autoscale --real-node     # or: python -m bench.autoscale_realnode

Prints the time from the surge to the replicas patched, to the pods Ready and to the queue
drained, then the jobs lost (always counted: every job asks for a reply).
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics

from bench.common import table
from bench.hpa_model import first_time, simulate
from tests.support.realnode_fixtures import (
    apply_and_wait_ready,
    install_operator,
    started_real_cluster,
)
from tests.support.realnode_jobs import (
    JOB_MS,
    MAX_WORKERS,
    NAMESPACE,
    SURGE,
    jobs_app,
    load,
    sampler,
    shard_urls,
)

TARGET = 20
# How long the surge stays queued with the one worker a KEDA-like loop starts with
# (64 consumer slots, the worker's default concurrency).
ONE_WORKER_DRAIN = SURGE * JOB_MS / 1000 / 64


def keda_like(drained_after: float) -> tuple[float, int, int]:
    """Mean time to MAX_WORKERS over the phases of its 30 s poll and 15 s sync, with how many
    of those phases never see the queue at all."""
    ups = []
    surge_at = 30.0
    for poll_phase in range(0, 30, 3):
        for sync_phase in range(0, 15, 3):
            changes = simulate(
                lambda t: SURGE if surge_at <= t < surge_at + drained_after else 0,
                start=1,
                min_replicas=1,
                max_replicas=MAX_WORKERS,
                target=TARGET,
                until=600,
                poll_phase=poll_phase,
                sync_phase=sync_phase,
            )
            ups.append(first_time(changes, surge_at, lambda r: r >= MAX_WORKERS))
    seen = [u for u in ups if math.isfinite(u)]
    return (statistics.fmean(seen) if seen else math.inf), len(ups) - len(seen), len(ups)


def main() -> None:
    with started_real_cluster() as cluster:
        install_operator(cluster)
        ready_in = apply_and_wait_ready(cluster, NAMESPACE, jobs_app(cluster))
        urls, password = shard_urls(cluster)
        replicas, thread = sampler(cluster)
        try:
            result = asyncio.run(load(urls, password))
        finally:
            replicas.stop.set()
            thread.join(timeout=10)
    surge_at = result["surge_at"]
    patched = replicas.first(lambda r, ok: r == MAX_WORKERS, surge_at)
    ready = replicas.first(lambda r, ok: ok == MAX_WORKERS, surge_at)
    drained = result["drained_at"] - surge_at
    lost = len(set(range(result["sent"])) - set(result["got"]))
    keda, missed, phases = keda_like(ONE_WORKER_DRAIN)
    # The model has no pods: it gets ours' start-up time (patched -> Ready) on top.
    start_up = (ready - patched) if ready is not None and patched is not None else float("nan")

    def since(t: float | None) -> str:
        return f"{t - surge_at:.1f}" if t is not None else "never"

    rows = [
        [
            "channelapp operator (measured, real pods)",
            since(patched),
            since(ready),
            f"{drained:.1f}",
            f"{lost} of {result['sent']}",
        ],
        [
            "KEDA-like: 30 s poll + HPA defaults (model)",
            f"{keda:.1f} ({missed} of {phases} phases never see it)",
            f"{keda + start_up:.1f}",
            f"(queued {ONE_WORKER_DRAIN:.0f} s with 1 worker)",
            "-",
        ],
    ]
    print(
        f"\nreal node: jobs app Ready in {ready_in:.1f}s; surge of {SURGE} jobs of {JOB_MS} ms, "
        f"1 -> {MAX_WORKERS} workers"
    )
    print(
        table(
            ["autoscaler", "surge -> patched (s)", "-> pods Ready (s)", "-> drained (s)", "lost"],
            rows,
        )
    )
    print(json.dumps({"patched": since(patched), "ready": since(ready), "drained": drained,
                      "lost": lost, "keda_like_patched": keda}))  # fmt: skip


if __name__ == "__main__":
    main()
