"""The jobs example as a load on real worker pods: the surge experiment that
tests/realnode/test_real_autoscaling.py and bench/autoscale_realnode.py both run (:func:`run_surge`).

The jobs example (each job holds a consumer slot for ``JOB_MS``) on managed Redis: a surge that
one worker would take long to drain, then a steady trickle that keeps jobs in flight while the
operator scales back in. Every job asks for a reply, so every one is counted.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from channelapp.layer import RedisChannelLayer
from channelapp.layer.keyspace import app_prefix

from devtools.realnode.bringup import RealCluster
from devtools.realnode.workloads import apply_and_wait_ready

NAMESPACE = "jobs"
NAME = "jobs"
MAX_WORKERS = 3
SURGE = 900
JOB_MS = 1500
TRICKLE_PER_SECOND = 10
WINDOW = 15
SHARDS = 2


def jobs_app(cluster: RealCluster) -> dict[str, Any]:
    return {
        "apiVersion": "channelapp.dev/v1alpha1",
        "kind": "ChannelApp",
        "metadata": {"name": NAME},
        "spec": {
            "image": cluster.image("app"),
            "imagePullPolicy": "Never",
            "app": "channelapp.examples.jobs:app",
            "protocol": {"replicas": 1},
            "workers": {
                "minReplicas": 1,
                "maxReplicas": MAX_WORKERS,
                "targetQueueDepth": 20,
                "scaleDownStabilizationSeconds": WINDOW,
                "pollIntervalSeconds": 1,
                "channels": ["jobs"],
            },
            # One pod per shard: the experiment is about workers; failover has its own tests.
            "redis": {
                "managed": {"shards": SHARDS, "replicas": 0, "image": cluster.image("redis")}
            },
        },
    }


@dataclass
class Replicas:
    """Worker Deployment replicas and ready pods over time, sampled in a thread."""

    cluster: RealCluster
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            proc = self.cluster.kube.kubectl(
                "get", "deployment", f"{NAME}-worker", "-n", NAMESPACE,
                "-o", "jsonpath={.spec.replicas} {.status.readyReplicas}", check=False,
            )  # fmt: skip
            parts = proc.stdout.split()
            if proc.returncode == 0 and parts:
                ready = int(parts[1]) if len(parts) > 1 else 0
                self.samples.append((time.monotonic(), int(parts[0]), ready))
            time.sleep(0.5)

    def first(self, pred: Any, after: float = 0.0) -> float | None:
        return next((t for t, r, ok in self.samples if t >= after and pred(r, ok)), None)


def sampler(cluster: RealCluster) -> tuple[Replicas, threading.Thread]:
    replicas = Replicas(cluster)
    thread = threading.Thread(target=replicas.run, daemon=True)
    thread.start()
    return replicas, thread


def shard_urls(cluster: RealCluster) -> tuple[list[str], str]:
    """The shards in the operator's order, by pod IP (the host is on the pods' bridge): with no
    replicas, pod ``NAME-redis-<i>`` is shard ``i``."""
    kube = cluster.kube
    urls = []
    for i in range(SHARDS):
        pod = kube.kubectl_json("get", "pod", f"{NAME}-redis-{i}", "-n", NAMESPACE)
        urls.append(f"redis://{pod['status']['podIP']}:6379/0")
    secret = kube.kubectl_json("get", "secret", f"{NAME}-secrets", "-n", NAMESPACE)
    password = base64.b64decode(secret["data"]["redis-password"]).decode()
    return urls, password


async def load(urls: list[str], password: str) -> dict[str, Any]:
    layer = RedisChannelLayer(
        urls, prefix=app_prefix(NAMESPACE, NAME), password=password, capacity=100_000
    )
    reply = await layer.new_channel("jobs.done")
    got: dict[int, int] = {}
    sent = 0

    async def send(n: int) -> None:
        await layer.send(
            "jobs", {"type": "job", "ms": JOB_MS, "sent": time.time(), "reply": reply, "n": n}
        )

    async def receive() -> None:
        while True:
            message = await layer.receive(reply)
            got[message["n"]] = got.get(message["n"], 0) + 1

    async def settle(timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(got) < sent and time.monotonic() < deadline:
            await asyncio.sleep(0.2)

    try:
        surge_at = time.monotonic()
        await asyncio.gather(*(send(n) for n in range(SURGE)))
        sent = SURGE
        receiver = asyncio.create_task(receive())
        await settle(240)
        drained_at = time.monotonic()
        # The trickle: jobs in flight all along, while the operator scales back in.
        trickle_until = drained_at + WINDOW + 30
        while time.monotonic() < trickle_until:
            await asyncio.gather(*(send(sent + i) for i in range(TRICKLE_PER_SECOND)))
            sent += TRICKLE_PER_SECOND
            await asyncio.sleep(1)
        await settle(120)
        receiver.cancel()
        return {
            "surge_at": surge_at,
            "drained_at": drained_at,
            "trickle_until": trickle_until,
            "sent": sent,
            "got": got,
        }
    finally:
        await layer.close()


@dataclass
class Surge:
    """One run of the experiment: times are ``time.monotonic()`` values, ``None`` if never."""

    ready_in: float  # seconds from applying the jobs app to Ready
    surge_at: float
    drained_at: float
    trickle_until: float
    sent: int
    got: dict[int, int]
    patched: float | None  # replicas first at MAX_WORKERS
    all_ready: float | None  # MAX_WORKERS pods first Ready
    scaled_in: float | None  # replicas first below MAX_WORKERS after the scale-out
    samples: list[tuple[float, int, int]]

    @property
    def missing(self) -> list[int]:
        return sorted(set(range(self.sent)) - set(self.got))

    @property
    def duplicates(self) -> list[int]:
        return sorted(n for n, c in self.got.items() if c > 1)


def run_surge(cluster: RealCluster) -> Surge:
    """Apply the jobs app (the operator must be installed), send the surge and the trickle while
    sampling the worker Deployment, and count every reply."""
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
    return Surge(
        ready_in=ready_in,
        surge_at=surge_at,
        drained_at=result["drained_at"],
        trickle_until=result["trickle_until"],
        sent=result["sent"],
        got=result["got"],
        patched=patched,
        all_ready=replicas.first(lambda r, ok: ok == MAX_WORKERS, surge_at),
        scaled_in=replicas.first(lambda r, ok: r < MAX_WORKERS, patched or surge_at),
        samples=list(replicas.samples),
    )
