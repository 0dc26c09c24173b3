"""Queue-depth autoscaling end to end: real redis-servers as external shards, the real operator
process, the real control plane, and a real local worker draining the queue."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from channelapp.autoscale.local import WorkerPool
from channelapp.layer import RedisChannelLayer
from channelapp.layer.keyspace import app_prefix
from channelapp.layer.sharding import HashRing

from devtools.kube import KubeCluster
from devtools.operator import OperatorProcess, load_example
from devtools.polling import wait_for
from devtools.redis import RedisServer, redis_servers

pytestmark = [pytest.mark.cluster, pytest.mark.redis]

PASSWORD = "s3cret-shard-password"
APP = "channelapp.examples.chat:app"


@pytest.fixture
def shards() -> Iterator[list[RedisServer]]:
    with redis_servers(3, password=PASSWORD) as servers:
        yield servers


def urls(shards: list[RedisServer]) -> list[str]:
    return [f"redis://127.0.0.1:{s.port}/0" for s in shards]


def channel_on_other_shard(count: int, avoid: str) -> str:
    ring = HashRing(count)
    return next(
        f"surge{i}" for i in range(100) if ring.shard_for(f"surge{i}") != ring.shard_for(avoid)
    )


def apply_app(cluster: KubeCluster, ns: str, shards: list[RedisServer], **workers: Any) -> str:
    secret, app = load_example("chat-external-redis.yaml")
    secret["stringData"]["password"] = PASSWORD
    app["spec"]["redis"]["external"]["urls"] = urls(shards)
    app["spec"]["workers"].update(workers)
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all([secret, app]))
    return str(app["metadata"]["name"])


def chapp(cluster: KubeCluster, ns: str, name: str) -> dict[str, Any]:
    return cluster.kubectl_json("get", "channelapp", name, "-n", ns)


def condition(app: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in app["status"].get("conditions", []) if c["type"] == type_)


def worker_replicas(cluster: KubeCluster, ns: str, name: str) -> int:
    """The worker Deployment's replicas; -1 while the operator has not created it yet."""
    proc = cluster.kubectl(
        "get", "deployment", f"{name}-worker", "-n", ns, "-o", "json", check=False
    )
    if proc.returncode != 0:
        return -1
    return int(json.loads(proc.stdout)["spec"]["replicas"])


def push(shards: list[RedisServer], prefix: str, channel: str, count: int) -> None:
    async def go() -> None:
        layer = RedisChannelLayer(urls(shards), prefix=prefix, password=PASSWORD, capacity=10_000)
        messages: list[dict[str, Any]] = []
        try:
            for i in range(count):
                message: dict[str, Any] = {"type": "http.request", "n": i}
                if channel == "http.request":
                    reply = await layer.new_channel("http.response")
                    message.update(
                        reply_channel=reply,
                        method="GET",
                        path="/api/rooms/lobby/",
                        query_string=b"",
                        headers=[],
                        body=b"",
                        http_version="1.1",
                        scheme="http",
                        root_path="",
                        client=["127.0.0.1", 1],
                        server=["127.0.0.1", 2],
                    )
                messages.append(message)
            # Concurrent sends fold into one script call: the operator sees all or none of them.
            await asyncio.gather(*(layer.send(channel, m) for m in messages))
        finally:
            await layer.close()

    asyncio.run(go())


def drain(shards: list[RedisServer], prefix: str, channel: str, count: int) -> None:
    async def go() -> None:
        layer = RedisChannelLayer(urls(shards), prefix=prefix, password=PASSWORD)
        try:
            for _ in range(count):
                await asyncio.wait_for(layer.receive(channel), 10)
        finally:
            await layer.close()

    asyncio.run(go())


def events(cluster: KubeCluster, ns: str) -> str:
    return cluster.kubectl(
        "get",
        "events",
        "-n",
        ns,
        "--field-selector",
        "involvedObject.kind=ChannelApp",
        "-o",
        "custom-columns=R:.reason,M:.message",
    ).stdout


def test_surge_scales_out_at_once_and_back_to_zero_after_the_window(
    kube_cluster: KubeCluster,
    namespace: str,
    operator: OperatorProcess,
    shards: list[RedisServer],
    record_property: Any,
) -> None:
    window = 3
    name = apply_app(
        kube_cluster,
        namespace,
        shards,
        minReplicas=0,
        maxReplicas=8,
        targetQueueDepth=10,
        scaleDownStabilizationSeconds=window,
        pollIntervalSeconds=0.25,
        channels=[],
    )
    other = channel_on_other_shard(3, "http.request")
    kube_cluster.kubectl(
        "patch",
        "channelapp",
        name,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"workers": {"channels": [other]}}}),
    )
    wait_for(
        lambda: (
            chapp(kube_cluster, namespace, name).get("status", {}).get("shards", {}).get("summary")
            == "3/3"
        ),
        30,
        what="all three shards reachable",
    )
    wait_for(
        lambda: worker_replicas(kube_cluster, namespace, name) == 0,
        30,
        what="worker Deployment created at minReplicas 0",
    )
    assert condition(chapp(kube_cluster, namespace, name), "Degraded")["status"] == "False"

    # The surge: 60 requests on one shard and 35 messages on another; 95 / 10 -> 10, capped at 8.
    started = time.monotonic()
    push(shards, app_prefix(namespace, name), "http.request", 60)
    push(shards, app_prefix(namespace, name), other, 35)
    wait_for(
        lambda: worker_replicas(kube_cluster, namespace, name) == 8,
        30,
        interval=0.05,
        what="workers scaled to 8",
    )
    surge_to_scale = time.monotonic() - started
    record_property("surge_to_scale_seconds", round(surge_to_scale, 2))
    print(f"\nsurge to patched replicas: {surge_to_scale:.2f}s (poll interval 0.25s)")
    wait_for(
        lambda: (
            "queue depth 95 needs 8" in events(kube_cluster, namespace)
            or "queue depth 95 needs 10" in events(kube_cluster, namespace)
        ),
        10,
        what="ScaledUp event naming the depth",
    )
    app = wait_for(
        lambda: (a := chapp(kube_cluster, namespace, name))["status"].get("queueDepth") == 95 and a,
        10,
        what="status.queueDepth 95",
    )
    # The two pushes are two round trips: a poll between them may scale 0 -> 6 first.
    assert re.match(r"workers [06] -> 8: queue depth 95 needs", app["status"]["lastScaleReason"])
    # Scaling is True until kwok reports the 8 pods ready, which may already have happened.
    assert condition(app, "Scaling")["reason"] in ("ReplicasChanging", "Stable")

    # A restarted operator finds the count, keeps it through a full window, then keeps scaling.
    operator.restart()
    assert worker_replicas(kube_cluster, namespace, name) == 8

    env = {
        **os.environ,
        "CHANNELAPP_REDIS_URLS": ",".join(urls(shards)),
        "CHANNELAPP_REDIS_PASSWORD": PASSWORD,
        "CHANNELAPP_SECRET_KEY": "autoscaling-worker-key-Hq7Zt2Lm9XvR4kWc",
        "CHANNELAPP_KEY_PREFIX": app_prefix(namespace, name),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "channelapp", "worker", APP], env=env, start_new_session=True
    )
    try:
        drain(shards, app_prefix(namespace, name), other, 35)
        # The depth the operator read (its gauge, set every tick): status.queueDepth may show
        # the 0 only a status interval later, after the window has passed.
        wait_for(
            lambda: queue_depth(operator, namespace, name) == 0,
            30,
            interval=0.05,
            what="queue drained by the local worker",
        )
        drained = time.monotonic()
        wait_for(
            lambda: worker_replicas(kube_cluster, namespace, name) == 0,
            30,
            interval=0.1,
            what="workers scaled to zero",
        )
        to_zero = time.monotonic() - drained
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        assert worker.wait(30) == 0
    record_property("drained_to_zero_seconds", round(to_zero, 2))
    print(f"queue empty to zero workers: {to_zero:.2f}s (window {window}s)")
    assert to_zero >= window - 1.0, "scaled in before the stabilization window"
    assert "ScaledToZero" in events(kube_cluster, namespace)


def queue_depth(operator: OperatorProcess, ns: str, name: str) -> float | None:
    """The depth the app's poll loop last read (None before its first reading)."""
    labels = f'app="{name}",namespace="{ns}"'
    pattern = rf"^channelapp_operator_queue_depth\{{{re.escape(labels)}\}} (\S+)$"
    found = re.search(pattern, operator.metrics(), re.M)
    return float(found.group(1)) if found else None


def depth_read_failures(operator: OperatorProcess, ns: str, name: str) -> float:
    """Ticks of an app's poll loop whose depth read failed (no scaling on those)."""
    labels = f'app="{name}",namespace="{ns}"'
    pattern = rf"^channelapp_operator_depth_read_failures_total\{{{re.escape(labels)}\}} (\S+)$"
    found = re.search(pattern, operator.metrics(), re.M)
    return float(found.group(1)) if found else 0.0


def test_unreachable_shard_degrades_and_leaves_replicas_alone(
    kube_cluster: KubeCluster,
    namespace: str,
    operator: OperatorProcess,
    shards: list[RedisServer],
) -> None:
    name = apply_app(
        kube_cluster,
        namespace,
        shards,
        minReplicas=1,
        maxReplicas=6,
        targetQueueDepth=10,
        scaleDownStabilizationSeconds=60,
        pollIntervalSeconds=0.25,
    )
    wait_for(lambda: worker_replicas(kube_cluster, namespace, name) == 1, 30)
    ring = HashRing(3)
    home = ring.shard_for("http.request")
    down = next(i for i in range(3) if i != home)
    push(shards, app_prefix(namespace, name), "http.request", 25)
    wait_for(lambda: worker_replicas(kube_cluster, namespace, name) == 3, 30, what="scaled to 3")

    shards[down].stop()
    app = wait_for(
        lambda: (
            (a := chapp(kube_cluster, namespace, name))
            and condition(a, "Degraded")["status"] == "True"
            and a
        ),
        30,
        what="Degraded=True",
    )
    assert condition(app, "Degraded")["reason"] == "ShardUnreachable"
    assert f"127.0.0.1:{shards[down].port}" in condition(app, "Degraded")["message"]
    assert app["status"]["shards"]["summary"] == "2/3"
    assert condition(app, "Scaling")["reason"] == "DepthUnreadable"
    push(
        shards, app_prefix(namespace, name), "http.request", 30
    )  # 55 waiting would need 6, but the read is incomplete
    # Every tick after the push had the chance to scale: 8 of them (2 s at 4 ticks/s).
    ticks = depth_read_failures(operator, namespace, name)
    wait_for(
        lambda: depth_read_failures(operator, namespace, name) >= ticks + 8,
        30,
        what="8 more ticks with the shard down",
    )
    assert worker_replicas(kube_cluster, namespace, name) == 3

    shards[down].start()
    wait_for(
        lambda: condition(chapp(kube_cluster, namespace, name), "Degraded")["status"] == "False",
        30,
        what="Degraded cleared",
    )
    wait_for(lambda: worker_replicas(kube_cluster, namespace, name) == 6, 30, what="scaled to 6")
    metrics = operator.metrics()
    assert (
        f'channelapp_operator_queue_depth{{app="{name}",namespace="{namespace}"}} 55.0' in metrics
    )


def test_a_steady_load_holds_a_steady_worker_count(
    kube_cluster: KubeCluster,
    namespace: str,
    operator: OperatorProcess,
    shards: list[RedisServer],
) -> None:
    """40 jobs/s of 100 ms, one at a time per worker: 4 busy, 5 workers at 90 %.

    The simulated node runs nothing, so real worker processes on this machine stand in
    for the worker pods: as many as the Deployment's ``spec.replicas`` says, started and
    stopped (SIGTERM, drained) as it changes. The operator's decisions therefore change
    the capacity that drains the queue, as on a real node. Sized from depth alone this
    load sawtoothed; sized from demand the count settles and stays.
    """
    name = apply_app(
        kube_cluster,
        namespace,
        shards,
        minReplicas=1,
        maxReplicas=10,
        scaleDownStabilizationSeconds=5,
        pollIntervalSeconds=0.5,
        channels=["jobs"],
        concurrency=1,
    )
    wait_for(lambda: worker_replicas(kube_cluster, namespace, name) == 1, 30)
    env = {
        **os.environ,
        "CHANNELAPP_REDIS_URLS": ",".join(urls(shards)),
        "CHANNELAPP_REDIS_PASSWORD": PASSWORD,
        "CHANNELAPP_WORKER_CONCURRENCY": "1",
        "CHANNELAPP_KEY_PREFIX": app_prefix(namespace, name),
        "CHANNELAPP_SECRET_KEY": "autoscaling-worker-key-Hq7Zt2Lm9XvR4kWc",
    }
    pool = WorkerPool("channelapp.examples.jobs:app", env)
    counts: list[tuple[float, int]] = []
    reasons: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def stand_in_for_pods() -> None:
        while not stop.is_set():
            replicas = worker_replicas(kube_cluster, namespace, name)
            pool.reap()
            if replicas >= 0 and replicas != len(pool.running):
                pool.resize(replicas)
            if counts and replicas != counts[-1][1]:
                reason = chapp(kube_cluster, namespace, name).get("status", {})
                reasons.append((replicas, reason.get("lastScaleReason")))
            counts.append((time.monotonic(), replicas))
            stop.wait(0.2)

    pods = threading.Thread(target=stand_in_for_pods, daemon=True)
    pods.start()
    try:
        answered, waits = asyncio.run(
            steady_jobs(shards, app_prefix(namespace, name), rate=40, ms=100, seconds=45)
        )
        # Read while the workers still run: once they stop, the next poll says so.
        status = chapp(kube_cluster, namespace, name)["status"]
    finally:
        stop.set()
        pods.join(10)
        pool.stop(30)
    sent = 40 * 45
    assert answered == sent, f"{sent - answered} of {sent} jobs never answered"
    started = counts[0][0]
    steady = [c for t, c in counts if t - started >= 20]
    changes = sum(1 for a, b in itertools.pairwise(steady) if a != b)
    assert changes <= 2, (steady, reasons)  # the depth rule: 5 and more in the same time
    assert all(4 <= c <= 6 for c in steady), (steady, reasons)
    late = sorted(w for t, w in waits if t >= 20)
    assert late[int(0.99 * (len(late) - 1))] < 1.5, late[-20:]

    load = status["load"]
    assert 30 <= load["arrivalRate"] <= 50, load
    assert 0.09 <= load["handlingTimeSeconds"] <= 0.2, load
    assert load["liveWorkers"] >= 1 and "busy" in load["reason"], load
    assert "arrivals" in status["lastScaleReason"], status


async def steady_jobs(
    shards: list[RedisServer], prefix: str, rate: float, ms: float, seconds: float
) -> tuple[int, list[tuple[float, float]]]:
    """Send ``rate`` jobs/s for ``seconds``; return how many were answered and (at, wait)."""
    layer = RedisChannelLayer(urls(shards), prefix=prefix, password=PASSWORD, capacity=100_000)
    reply = await layer.new_channel("jobs.done")
    waits: list[tuple[float, float]] = []
    started = time.monotonic()

    async def collect() -> None:
        while True:
            message = await layer.receive(reply)
            waits.append((time.monotonic() - started, float(message["waited"])))

    collector = asyncio.create_task(collect())
    try:
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            job = {"type": "job", "n": n, "ms": ms, "sent": time.time(), "reply": reply}
            await layer.send("jobs", job)
        deadline = time.monotonic() + 30
        while len(waits) < int(rate * seconds) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
        await layer.close()
    return len(waits), waits


def metric_total(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def test_polling_leaves_no_garbage_cycles_for_the_collector(
    kube_cluster: KubeCluster,
    namespace: str,
    operator: OperatorProcess,
    shards: list[RedisServer],
) -> None:
    """Every app ticks every poll, so a reference cycle made per tick is the collector's
    work times the apps: with a thousand apps, full collections over the operator's heap
    took a tenth of its CPU. Counted from the operator's own gc metrics, per tick."""
    secret, app = load_example("chat-external-redis.yaml")
    secret["stringData"]["password"] = PASSWORD
    apps = []
    for i in range(10):
        one = json.loads(json.dumps(app))
        one["metadata"]["name"] = f"poll-{i}"
        one["spec"]["redis"]["external"]["urls"] = urls(shards)
        one["spec"]["workers"].update(pollIntervalSeconds=0.1, minReplicas=0)
        apps.append(one)
    kube_cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all([secret, *apps])
    )

    def ticks() -> float:
        return metric_total(operator.metrics(), "channelapp_operator_depth_read_seconds_count")

    started = ticks()
    wait_for(lambda: ticks() - started >= 200, 60)  # every app polling
    time.sleep(2)
    before = operator.metrics()
    time.sleep(10)
    after = operator.metrics()
    polled = metric_total(after, "channelapp_operator_depth_read_seconds_count") - metric_total(
        before, "channelapp_operator_depth_read_seconds_count"
    )
    collected = metric_total(after, "python_gc_objects_collected_total") - metric_total(
        before, "python_gc_objects_collected_total"
    )
    assert polled >= 500, polled
    assert collected / polled < 5, (collected, polled)
    # And a stop still ends every loop's pause: each daemon exits, none is cancelled.
    operator.stop()
    assert operator.proc is not None and operator.proc.returncode == 0
    assert "is cancelled" not in operator.log(), operator.log()[-2000:]
