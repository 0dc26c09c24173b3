"""Changing the shard count of a live app on real pods: 2 -> 3 -> 2 managed shards while jobs
flow, every job counted, and nothing left on a shard where the final ring does not look.

The sender is this test, over the layer from the host (the pods' bridge): it sends with the
shard set the app's workers are given (following the worker Deployment's
``CHANNELAPP_REDIS_URLS``, as a protocol server replaced in the rollout would) and receives
replies with both the old and the new set (old workers answer where the old ring puts the
reply channel until they are replaced). The operator holds each change until the shards read
empty, applies it, and moves what pods on the old set wrote during the rollout.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import threading
import time
import uuid
from typing import Any

import pytest
from channelapp.layer import RedisChannelLayer
from channelapp.layer.keyspace import app_prefix
from channelapp_operator.reshard_sweep import misplaced

from devtools.kube import KubeCluster
from devtools.polling import wait_for
from devtools.realnode.bringup import RealCluster
from devtools.realnode.jobs import jobs_app
from devtools.realnode.workloads import apply_and_wait_ready, channelapp

pytestmark = [pytest.mark.realnode, pytest.mark.cluster, pytest.mark.redis]

NAMESPACE = "reshard"
NAME = "jobs"
PREFIX = app_prefix(NAMESPACE, NAME)
JOB_MS = 20
PER_SECOND = 40


def _app(cluster: RealCluster) -> dict[str, Any]:
    doc = copy.deepcopy(jobs_app(cluster))
    doc["spec"]["workers"].update({"minReplicas": 1, "maxReplicas": 2})
    return doc


class Shards:
    """The app's shard pods by IP (the host is on the pods' bridge), read in a thread."""

    def __init__(self, cluster: RealCluster) -> None:
        self.kube = cluster.kube
        secret = self.kube.kubectl_json("get", "secret", f"{NAME}-secrets", "-n", NAMESPACE)
        self.password = base64.b64decode(secret["data"]["redis-password"]).decode()
        self.count = 2  # the shard count the workers are given
        self.settled: int | None = None  # the shard count once a change is all done
        self.stop = threading.Event()
        self.ips: dict[int, str] = {}

    def urls(self, count: int) -> list[str]:
        return [f"redis://{self.ips[i]}:6379/0" for i in range(count)]

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self._look()
            except Exception:  # a read racing the rollout; the next look sees it
                pass
            time.sleep(0.3)

    def _look(self) -> None:
        pods = self.kube.kubectl_json(
            "get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=redis"
        )
        for pod in pods.get("items", []):
            ip = pod.get("status", {}).get("podIP")
            if ip:
                self.ips[int(pod["metadata"]["name"].rsplit("-", 1)[1])] = ip
        deploy = self.kube.kubectl_json("get", "deployment", f"{NAME}-worker", "-n", NAMESPACE)
        for container in deploy["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                if env["name"] == "CHANNELAPP_REDIS_URLS":
                    self.count = len(env["value"].split(","))
        self.settled = _settled(self.kube)


def _settled(kube: KubeCluster) -> int | None:
    """The shard count when no change is under way (held, moving or retiring), else None."""
    data = channelapp(kube, NAMESPACE, NAME).get("status", {}).get("dataShards", {})
    sts = kube.kubectl_json("get", "statefulset", f"{NAME}-redis", "-n", NAMESPACE)
    if data.get("waiting") or data.get("moving") or data.get("retiring"):
        return None
    count = data.get("shards")
    return int(count) if count == sts["spec"]["replicas"] else None


def _patch(cluster: RealCluster, shards: int) -> None:
    cluster.kube.kubectl(
        "patch", "channelapp", NAME, "-n", NAMESPACE, "--type=merge",
        "-p", f'{{"spec":{{"redis":{{"managed":{{"shards":{shards}}}}}}}}}',
    )  # fmt: skip


def _events(cluster: RealCluster, reason: str) -> list[str]:
    found = cluster.kube.kubectl_json(
        "get", "events", "-n", NAMESPACE, "--field-selector",
        f"involvedObject.name={NAME},reason={reason}",
    )  # fmt: skip
    return [str(e["message"]) for e in found["items"]]


def test_resharding_2_3_2_under_load_loses_and_strands_nothing(
    real_cluster: RealCluster, real_operator: Any
) -> None:
    cluster = real_cluster
    apply_and_wait_ready(cluster, NAMESPACE, _app(cluster))
    shards = Shards(cluster)
    watcher = threading.Thread(target=shards.run, daemon=True)
    watcher.start()
    wait_for(lambda: len(shards.ips) >= 2, 30, what="the shard pods' IPs")
    reply = f"done.{uuid.uuid4().hex[:8]}"
    got: dict[int, int] = {}
    sent_by: dict[int, int] = {}  # shard count each job was sent with
    phases: dict[str, float] = {}

    async def run() -> int:
        layers: dict[int, RedisChannelLayer] = {}

        def layer(count: int) -> RedisChannelLayer:
            if count not in layers:
                layers[count] = RedisChannelLayer(
                    shards.urls(count), prefix=PREFIX, password=shards.password
                )
                receivers.append(asyncio.create_task(receive(layers[count])))
            return layers[count]

        async def receive(on: RedisChannelLayer) -> None:
            while True:
                message = await on.receive(reply)
                got[message["n"]] = got.get(message["n"], 0) + 1

        receivers: list[asyncio.Task[None]] = []
        n = 0
        current = 2

        async def send_until(done: Any, timeout: float) -> None:
            nonlocal n, current
            deadline = time.monotonic() + timeout
            while not done():
                assert time.monotonic() < deadline, f"not done in {timeout}s"
                # Follow the workers' set once every shard of it has an address.
                if shards.count != current and all(i in shards.ips for i in range(shards.count)):
                    current = shards.count
                job = {"type": "job", "ms": JOB_MS, "sent": time.time(), "reply": reply, "n": n}
                await layer(current).send("jobs", job)
                sent_by[n] = current
                n += 1
                await asyncio.sleep(1 / PER_SECOND)

        try:
            layer(2)
            t0 = time.monotonic()
            await send_until(lambda: time.monotonic() - t0 > 5, 30)
            _patch(cluster, 3)
            t0 = time.monotonic()
            await send_until(lambda: shards.settled == 3, 240)
            phases["2 to 3"] = time.monotonic() - t0
            await send_until(lambda: time.monotonic() - t0 > phases["2 to 3"] + 5, 30)
            _patch(cluster, 2)
            t0 = time.monotonic()
            await send_until(lambda: shards.settled == 2, 240)
            phases["3 to 2"] = time.monotonic() - t0
            stop_at = time.monotonic() + 5
            await send_until(lambda: time.monotonic() > stop_at, 30)
            deadline = time.monotonic() + 60
            while len(got) < n and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            return n
        finally:
            for task in receivers:
                task.cancel()
            for each in layers.values():
                await each.close()

    try:
        sent = asyncio.run(run())
    finally:
        shards.stop.set()
        watcher.join(timeout=5)
    missing = sorted(set(range(sent)) - set(got))
    twice = sorted(k for k, v in got.items() if v > 1)
    final = shards.urls(2)
    stranded = asyncio.run(misplaced(final, final, PREFIX, shards.password))
    resharded = _events(cluster, "Resharded")
    waiting = _events(cluster, "ReshardWaiting")
    print(
        f"\nreshard under {PER_SECOND} jobs/s: 2->3 settled in {phases['2 to 3']:.1f}s, "
        f"3->2 in {phases['3 to 2']:.1f}s; {sent} jobs sent "
        f"({sum(1 for c in sent_by.values() if c == 3)} with 3 shards), {len(missing)} lost, "
        f"{len(twice)} handled twice, {len(stranded)} keys stranded; Resharded: {resharded}; "
        f"ReshardWaiting: {waiting}"
    )
    assert missing == [], f"{len(missing)} of {sent} jobs lost: {missing[:20]}"
    assert twice == [], f"handled twice: {twice[:20]}"
    assert stranded == [], stranded[:20]
    assert resharded, "no Resharded Event"
    sts = cluster.kube.kubectl_json("get", "statefulset", f"{NAME}-redis", "-n", NAMESPACE)
    assert sts["spec"]["replicas"] == 2
    cluster.kube.kubectl("delete", "namespace", NAMESPACE, "--wait=false")
