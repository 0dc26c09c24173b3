"""Surge to scale on a real node: the operator in-cluster, real worker pods draining real jobs,
beside the KEDA-like model (bench.hpa_model) fed the same surge. Needs root and containerd:
it builds what is missing (cached) and starts and removes a control plane with a real node.

    python -m bench.autoscale --real-node     # or: python -m bench.autoscale_realnode

Prints the time from the surge to the replicas patched, to the pods Ready and to the queue
drained, then the jobs lost (always counted: every job asks for a reply).
"""

from __future__ import annotations

import json
import math
import statistics

from bench.common import table
from bench.hpa_model import sweep
from devtools.realnode.bringup import started_real_cluster
from devtools.realnode.jobs import JOB_MS, MAX_WORKERS, SURGE, run_surge
from devtools.realnode.workloads import install_operator

TARGET = 20
# How long the surge stays queued with the one worker a KEDA-like loop starts with
# (64 consumer slots, the worker's default concurrency).
ONE_WORKER_DRAIN = SURGE * JOB_MS / 1000 / 64


def keda_like(drained_after: float) -> tuple[float, int, int]:
    """Mean time to MAX_WORKERS over the phases of its 30 s poll and 15 s sync, with how many
    of those phases never see the queue at all."""
    ups, _ = sweep(
        depth=SURGE,
        surge_at=30.0,
        drained_at=30.0 + drained_after,
        max_replicas=MAX_WORKERS,
        target=TARGET,
        until=600,
    )
    seen = [u for u in ups if math.isfinite(u)]
    return (statistics.fmean(seen) if seen else math.inf), len(ups) - len(seen), len(ups)


def main() -> None:
    with started_real_cluster() as cluster:
        install_operator(cluster)
        run = run_surge(cluster)
    surge_at, patched, ready = run.surge_at, run.patched, run.all_ready
    drained = run.drained_at - surge_at
    lost = len(run.missing)
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
            f"{lost} of {run.sent}",
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
        f"\nreal node: jobs app Ready in {run.ready_in:.1f}s; surge of {SURGE} jobs of {JOB_MS} ms, "
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
