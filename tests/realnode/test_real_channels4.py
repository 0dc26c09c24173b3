"""examples/channels4.yaml on real pods: the Channels 4 tutorial's project (its image built from
examples/channels4/Dockerfile) named as ``app: asgi:mysite.asgi:application``. The protocol pods
serve it in-process (``channelapp asgi``) with CHANNEL_LAYERS pointed at the managed shard; the
worker pods run ``channelapp runworker`` on its ``thumbnails`` channel. From the host, through
the protocol Service: the tutorial's pages, two WebSocket clients chatting in a room (async and
sync consumers); then a burst of background jobs scales the worker pods out and back in, with
every job done once."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import yaml
from channelapp.channels import RedisChannelLayer
from channelapp.layer.keyspace import app_prefix
from channelapp_operator import names as n

from devtools.realnode.bringup import RealCluster
from devtools.realnode.workloads import ROOT, apply_and_wait_ready, channelapp

# The first test starts the session's real node (images imported into containerd) when it runs alone.
pytestmark = [
    pytest.mark.realnode,
    pytest.mark.cluster,
    pytest.mark.redis,
    pytest.mark.timeout(1800),
]

NAMESPACE = "mysite"
NAME = "mysite"
MAX_WORKERS = 3
BURST = 480
JOB_SECONDS = 0.5
WINDOW = 15


def manifest(cluster: RealCluster) -> dict[str, Any]:
    """examples/channels4.yaml with the test images and a quick scaling window."""
    app: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "channels4.yaml").read_text())
    spec = app["spec"]
    spec["image"] = cluster.image("channels4")
    spec["imagePullPolicy"] = "Never"
    spec["redis"]["managed"]["image"] = cluster.image("redis")
    spec["env"] = [
        {"name": "DJANGO_ALLOWED_HOSTS", "value": "*"},  # the Service by its IP
        # Past the tutorial's CONFIG capacity (100 a channel): the burst's replies may wait.
        {"name": "CHANNELAPP_CHANNEL_CAPACITY", "value": "10000"},
    ]
    spec["protocol"]["replicas"] = 1
    spec["workers"].update(
        minReplicas=1,
        maxReplicas=MAX_WORKERS,
        targetQueueDepth=20,
        scaleDownStabilizationSeconds=WINDOW,
        pollIntervalSeconds=1,
    )
    return app


@pytest.fixture(scope="module")
def mysite(real_cluster: RealCluster, real_operator: Any) -> Iterator[str]:
    kube = real_cluster.kube
    try:
        seconds = apply_and_wait_ready(real_cluster, NAMESPACE, manifest(real_cluster))
        print(f"\nmysite (asgi:mysite.asgi:application) Ready on real pods in {seconds:.1f}s")
        svc = kube.kubectl_json("get", "service", NAME, "-n", NAMESPACE)
        yield f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"
    finally:
        kube.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def test_pods_run_the_project_in_asgi_mode(real_cluster: RealCluster, mysite: str) -> None:
    kube = real_cluster.kube
    proto = kube.kubectl_json("get", "deployment", n.protocol_name(NAME), "-n", NAMESPACE)
    container = proto["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == real_cluster.image("channels4")
    assert container["args"][:2] == ["asgi", "mysite.asgi:application"]
    worker = kube.kubectl_json("get", "deployment", f"{NAME}-worker", "-n", NAMESPACE)
    args = worker["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["runworker", "mysite.asgi:application", "thumbnails"]
    assert channelapp(kube, NAMESPACE, NAME)["spec"]["app"] == "asgi:mysite.asgi:application"


async def chat(url: str, path: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/chat/lobby/") as r:
            assert r.status == 200 and '"lobby"' in await r.text()
        a, b = [await http.ws_connect(f"{url}{path}", headers={"Origin": url}) for _ in "ab"]
        await asyncio.sleep(0.5)  # both joined the room's group
        await a.send_str(json.dumps({"message": "hello from a real pod"}))
        for ws in (a, b):
            got = await asyncio.wait_for(ws.receive_json(), 15)
            assert got == {"message": "hello from a real pod"}
        await b.send_str(json.dumps({"message": "and back"}))
        for ws in (a, b):
            assert await asyncio.wait_for(ws.receive_json(), 15) == {"message": "and back"}
        await a.close()
        await b.close()


def test_two_clients_chat_through_the_service(mysite: str) -> None:
    asyncio.run(chat(mysite, "/ws/chat/lobby/"))
    asyncio.run(chat(mysite, "/ws/syncchat/lobby/"))


def shard(cluster: RealCluster) -> tuple[str, str]:
    kube = cluster.kube
    pod = kube.kubectl_json("get", "pod", f"{NAME}-redis-0", "-n", NAMESPACE)
    secret = kube.kubectl_json("get", "secret", f"{NAME}-secrets", "-n", NAMESPACE)
    password = base64.b64decode(secret["data"]["redis-password"]).decode()
    return f"redis://:{password}@{pod['status']['podIP']}:6379/0", password


class Replicas:
    """The worker Deployment's replicas and ready pods over time, sampled in a thread."""

    def __init__(self, cluster: RealCluster) -> None:
        self.cluster = cluster
        self.samples: list[tuple[float, int, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

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


async def burst(url: str) -> dict[str, Any]:
    """BURST jobs on ``thumbnails`` as the project's view queues them; every reply counted."""
    layer = RedisChannelLayer(hosts=[url], prefix=app_prefix(NAMESPACE, NAME), capacity=100_000)
    got: dict[str, int] = {}
    try:
        surge_at = time.monotonic()
        for i in range(BURST):
            await layer.send(
                "thumbnails",
                {"type": "thumbnail.make", "id": f"j{i}", "seconds": JOB_SECONDS},
            )
        deadline = time.monotonic() + 300
        while len(got) < BURST and time.monotonic() < deadline:
            try:
                message = await asyncio.wait_for(layer.receive("thumbnails.done"), 5)
            except TimeoutError:
                continue
            got[message["id"]] = got.get(message["id"], 0) + 1
        drained_at = time.monotonic()
        try:  # anything handled twice arrives soon after
            while True:
                message = await asyncio.wait_for(layer.receive("thumbnails.done"), 3)
                got[message["id"]] = got.get(message["id"], 0) + 1
        except TimeoutError:
            pass
        return {"surge_at": surge_at, "drained_at": drained_at, "got": got}
    finally:
        await layer.close_pools()


def test_a_burst_of_background_jobs_scales_workers_out_and_back_losing_nothing(
    real_cluster: RealCluster, mysite: str
) -> None:
    url, _ = shard(real_cluster)
    replicas = Replicas(real_cluster)
    try:
        result = asyncio.run(burst(url))
        surge_at, drained_at = result["surge_at"], result["drained_at"]
        scaled_in = None
        deadline = time.monotonic() + WINDOW + 120
        while scaled_in is None and time.monotonic() < deadline:
            time.sleep(1)
            patched = replicas.first(lambda r, ok: r == MAX_WORKERS, surge_at)
            scaled_in = replicas.first(lambda r, ok: r < MAX_WORKERS, patched or surge_at)
    finally:
        replicas.stop.set()
        replicas.thread.join(timeout=10)
    got: dict[str, int] = result["got"]
    missing = sorted({f"j{i}" for i in range(BURST)} - set(got))
    twice = sorted(k for k, c in got.items() if c > 1)
    patched = replicas.first(lambda r, ok: r == MAX_WORKERS, surge_at)
    all_ready = replicas.first(lambda r, ok: ok == MAX_WORKERS, surge_at)
    assert missing == [], f"{len(missing)} of {BURST} jobs lost: {missing[:20]}"
    assert twice == [], twice[:20]
    assert patched is not None, replicas.samples[-20:]
    assert all_ready is not None, replicas.samples[-20:]
    assert scaled_in is not None, replicas.samples[-40:]
    print(
        f"\nburst of {BURST} x {JOB_SECONDS}s jobs on 'thumbnails': workers patched to "
        f"{MAX_WORKERS} after {patched - surge_at:.1f}s, all Ready after "
        f"{all_ready - surge_at:.1f}s, drained after {drained_at - surge_at:.1f}s, scaled in "
        f"{scaled_in - drained_at:.1f}s after the drain; 0 lost, 0 twice"
    )
