"""Surge-to-scale and scale-in timing of the operator, against the real test control plane,
side by side with a KEDA-like baseline (30 s polling + HPA defaults) fed the same trace.

Trace: the app idles at 1 worker; at t0 a surge of SURGE messages lands on three shards
(needs SURGE / target = 40 workers); it is consumed after HOLD seconds; the bench waits
until the workers are back at 1.

    python -m bench.autoscale
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from channelapp.layer import RedisChannelLayer
from channelapp.layer.keyspace import app_prefix

from bench.common import machine, table
from bench.hpa_model import simulate, sweep
from bench.results import save
from devtools.controlplane import start_for_tests
from devtools.kube import KubeCluster
from devtools.operator import CRD, OperatorProcess, load_example
from devtools.redis import redis_servers

SURGE = 400
TARGET = 10
MAX = 40
WINDOW = 30
HOLD = 90.0


def replicas(cluster: KubeCluster, ns: str) -> int:
    proc = cluster.kubectl(
        "get", "deployment", "chat-external-worker", "-n", ns, "-o", "json", check=False
    )
    if proc.returncode != 0:
        return -1  # not created yet
    return int(json.loads(proc.stdout)["spec"].get("replicas", 0))


def watch_until(cluster: KubeCluster, ns: str, want: int, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if replicas(cluster, ns) == want:
            return time.monotonic() - started
        time.sleep(0.05)
    raise RuntimeError(f"replicas did not reach {want} within {timeout}s")


class ReplicaTrace(threading.Thread):
    """The worker Deployment's replicas every ``every`` seconds from its start: (t, replicas)."""

    def __init__(self, cluster: KubeCluster, ns: str, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.cluster, self.ns, self.every = cluster, ns, every
        self.points: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.stop.is_set():
            self.points.append(
                (round(time.monotonic() - started, 2), replicas(self.cluster, self.ns))
            )
            self.stop.wait(self.every)


def model_trace(hold: float, until: float) -> dict[str, list[float]]:
    """The KEDA-like model's replicas over the same trace, the surge at t = 0, for one phase
    (the surge lands half a poll and half a sync before the next ones)."""
    lead = 30.0
    changes = simulate(
        lambda t: SURGE if lead <= t < lead + hold else 0,
        start=1,
        min_replicas=1,
        max_replicas=MAX,
        target=TARGET,
        until=lead + until,
        poll_phase=lead % 30 + 15,
        sync_phase=lead % 15 + 7.5,
    )
    return {"t": [t - lead for t, _ in changes], "workers": [r for _, r in changes]}


def main() -> None:
    print(
        f"# autoscaling: surge of {SURGE} messages, target {TARGET}/worker, max {MAX} "
        f"({machine()})",
        flush=True,
    )
    plane = start_for_tests()
    tmp = Path(tempfile.mkdtemp(prefix="bench-autoscale-"))
    try:
        cluster = KubeCluster.for_plane(plane)
        cluster.kubectl("apply", "--server-side", "-f", str(CRD))
        cluster.kubectl("wait", "--for=condition=Established", "crd/channelapps.channelapp.dev")
        ns = "bench"
        cluster.kubectl("create", "namespace", ns)
        with redis_servers(3, password="bench") as shards:
            urls = [f"redis://127.0.0.1:{s.port}/0" for s in shards]
            secret, app = load_example("chat-external-redis.yaml")
            secret["stringData"]["password"] = "bench"
            app["spec"]["redis"]["external"]["urls"] = urls
            app["spec"]["workers"].update(
                minReplicas=1,
                maxReplicas=MAX,
                targetQueueDepth=TARGET,
                scaleDownStabilizationSeconds=WINDOW,
            )
            operator = OperatorProcess(cluster, ns, tmp).start()
            try:
                cluster.kubectl(
                    "apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all([secret, app])
                )
                watch_until(cluster, ns, 1, 60)
                time.sleep(3)
                prefix = app_prefix(ns, app["metadata"]["name"])
                ours = asyncio.run(run_trace(cluster, ns, urls, prefix))
            finally:
                operator.stop()
    finally:
        plane.stop()

    # The baseline over every phase of its 30 s poll and 15 s sync relative to the surge.
    ups, downs = sweep(
        depth=SURGE,
        surge_at=30.0,
        drained_at=30.0 + HOLD,
        max_replicas=MAX,
        target=TARGET,
        until=800,
    )
    keda_up, keda_down = statistics.fmean(ups), statistics.fmean(downs)
    rows = [
        [
            "channelapp operator (measured, real API server)",
            f"{ours['up']:.2f}",
            f"{ours['down']:.1f}",
            f"{WINDOW} s window, 1 s poll",
        ],
        [
            "KEDA-like: 30 s poll + HPA defaults (model)",
            f"{keda_up:.1f} (max {max(ups):.0f})",
            f"{keda_down:.1f}",
            "15 s sync, +max(4,100%)/15 s, 300 s window",
        ],
        [
            "ratio",
            f"{keda_up / ours['up']:.0f}x faster",
            f"{keda_down / ours['down']:.1f}x sooner",
            "",
        ],
    ]
    print()
    print(
        table(
            ["autoscaler", f"surge -> {MAX} workers (s)", "drained -> 1 worker (s)", "settings"],
            rows,
        )
    )
    print(
        json.dumps(
            {
                "channelapp": {"up": ours["up"], "down": ours["down"]},
                "keda_like": {"up": keda_up, "down": keda_down},
            }
        )
    )
    until = HOLD + 360.0  # past the model's 300 s scale-down window
    drained = ours["drained_at"]
    save(
        "autoscale",
        {
            "surge": SURGE,
            "target": TARGET,
            "max": MAX,
            "window": WINDOW,
            "up": ours["up"],
            "down": ours["down"],
            "keda_up": keda_up,
            "keda_down": keda_down,
            "needed": {"t": [-10.0, 0.0, drained, until], "workers": [1, MAX, 1, 1]},
            "systems": {
                "channelapp operator (measured)": {
                    "t": [t for t, _ in ours["trace"]] + [until],
                    "workers": [r for _, r in ours["trace"]] + [ours["trace"][-1][1]],
                },
                "KEDA-like (model, one phase)": model_trace(drained, until),
            },
        },
    )


async def run_trace(cluster: KubeCluster, ns: str, urls: list[str], prefix: str) -> dict[str, Any]:
    # Expiry beyond the trace: queued messages must stay until the drain.
    layer = RedisChannelLayer(
        urls, prefix=prefix, password="bench", capacity=SURGE * 2, expiry=3600
    )
    channels = ["http.request", "websocket.receive", "websocket.connect"]
    trace = ReplicaTrace(cluster, ns)
    try:
        t0 = time.monotonic()
        trace.start()
        await asyncio.gather(
            *(layer.send(channels[i % 3], {"type": "x", "n": i}) for i in range(SURGE))
        )
        await asyncio.to_thread(watch_until, cluster, ns, MAX, 60)
        up = time.monotonic() - t0
        await asyncio.sleep(max(0.0, HOLD - up))
        await layer.flush()
        t1 = time.monotonic()
        await asyncio.to_thread(watch_until, cluster, ns, 1, WINDOW + 60)
        down = time.monotonic() - t1
        await asyncio.sleep(2.0)  # a few samples at the floor
    finally:
        trace.stop.set()
        await asyncio.to_thread(trace.join, 5)
        await layer.close()
    print(
        f"channelapp: surge -> {MAX} workers in {up:.2f}s; drained -> 1 worker in {down:.1f}s",
        flush=True,
    )
    return {"up": up, "down": down, "drained_at": t1 - t0, "trace": trace.points}


if __name__ == "__main__":
    import sys

    if "--real-node" in sys.argv[1:]:
        from bench.autoscale_realnode import main as real_node_main

        real_node_main()
    else:
        main()
