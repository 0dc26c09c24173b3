"""Replicated managed shards fail over under a live chat: one room of 200 sockets chats while
the master of the shard holding the room's group is (a) deleted, (b) SIGKILLed in place.
Sentinel promotes its replica; the layer finds the new master through Sentinel. Every socket
stays open and in the room, and every message sent around the failover is delivered to the
whole room or refused with a close code (counted either way)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from channelapp.layer.sharding import HashRing
from channelapp.spec import TRY_AGAIN_LATER
from channelapp_operator import builders

from devtools.kube import KubeCluster
from devtools.paths import REPO
from devtools.polling import wait_for
from devtools.realnode.bringup import RealCluster
from devtools.realnode.common import ctr
from devtools.realnode.workloads import (
    channelapp,
    condition,
    default_service_account,
    example_with_test_images,
    pod_ready,
)

pytestmark = [pytest.mark.realnode, pytest.mark.cluster, pytest.mark.timeout(900)]

NAMESPACE = "failover"
APP = "chat"
SHARDS = 2
SOCKETS = 200
SEND_EVERY = 10.0  # seconds between one socket's messages (jittered): ~20 a second, to 200
FAILOVER_SECONDS = 10.0  # from the disruption to Sentinel's +switch-master
AFTER_SECONDS = 20.0  # chatting after the disruption
SETTLE_SECONDS = 60.0  # for the last messages to reach every member


def room_on_shard(shard: int) -> str:
    """A room whose group (``chat.<room>``) the app's hash ring puts on ``shard``."""
    ring = HashRing(SHARDS)
    rooms = (f"failover{i}" for i in range(1000))
    return next(room for room in rooms if ring.shard_for(f"chat.{room}") == shard)


@dataclass
class Client:
    index: int
    ws: aiohttp.ClientWebSocketResponse
    sent: list[tuple[str, float]] = field(default_factory=list)  # (text, time sent)
    received: set[str] = field(default_factory=set)
    close_code: int | None = None
    closed_at: float | None = None


async def read(client: Client) -> None:
    async for msg in client.ws:
        if msg.type == aiohttp.WSMsgType.TEXT:
            got = json.loads(msg.data)
            if "message" in got:
                client.received.add(got["message"])
        else:
            break
    client.close_code = client.ws.close_code
    client.closed_at = time.time()


async def chat(client: Client, stop: asyncio.Event) -> None:
    seq = 0
    await asyncio.sleep(random.uniform(0, SEND_EVERY))
    while not stop.is_set() and client.close_code is None and not client.ws.closed:
        text = f"{client.index}:{seq}"
        try:
            await client.ws.send_json({"user": f"s{client.index}", "message": text})
        except ConnectionError:
            break
        client.sent.append((text, time.time()))
        seq += 1
        await asyncio.sleep(SEND_EVERY * random.uniform(0.5, 1.5))


def pods(kube: KubeCluster, component: str) -> list[dict[str, Any]]:
    return list(
        kube.kubectl_json(
            "get", "pods", "-n", NAMESPACE,
            "-l", f"app.kubernetes.io/instance={APP},app.kubernetes.io/component={component}",
        )["items"]
    )  # fmt: skip


def sentinel_exec(kube: KubeCluster, *command: str, pod: str = f"{APP}-redis-sentinel-0") -> str:
    return kube.kubectl(
        "exec", "-n", NAMESPACE, pod, "-c", "sentinel", "--",
        "redis-cli", "--no-auth-warning", "-p", "26379", *command,
    ).stdout  # fmt: skip


def master_pod(kube: KubeCluster, shard: int) -> str:
    """The pod every Sentinel names as the shard's master (they agree, or this waits)."""
    names = set()
    for m in range(3):
        host = sentinel_exec(
            kube, "--raw", "sentinel", "get-master-addr-by-name", f"shard-{shard}",
            pod=f"{APP}-redis-sentinel-{m}",
        ).split()[0]  # fmt: skip
        names.add(host.split(".")[0])
    assert len(names) == 1, names
    return names.pop()


def replication(kube: KubeCluster, pod: str) -> str:
    return kube.kubectl(
        "exec", "-n", NAMESPACE, pod, "-c", "redis", "--",
        "sh", "-c", "redis-cli --no-auth-warning info replication",
    ).stdout  # fmt: skip


def switches_since(kube: KubeCluster, since: float, shard: int) -> list[tuple[str, float]]:
    """Sentinel events about ``shard-<shard>`` at or after ``since`` (epoch seconds), from every
    Sentinel's log: (event, time)."""
    out = []
    # "+sdown master shard-0 ...", "+switch-master shard-0 ...": events about the master only.
    stamp = re.compile(r"^\d+:X (\d+ \w+ \d+ [\d:.]+) [#*-] (\S+) (?:master )?shard-(\d+) ")
    for pod in pods(kube, "redis-sentinel"):
        log = kube.kubectl("logs", "-n", NAMESPACE, pod["metadata"]["name"]).stdout
        for line in log.splitlines():
            found = stamp.match(line)
            if not found or int(found.group(3)) != shard:
                continue
            at = datetime.strptime(found.group(1), "%d %b %Y %H:%M:%S.%f").replace(tzinfo=UTC)
            if at.timestamp() >= since - 0.5:
                out.append((found.group(2), at.timestamp()))
    return sorted(out, key=lambda e: e[1])


def all_ready(kube: KubeCluster) -> bool:
    found = pods(kube, "redis") + pods(kube, "redis-sentinel")
    return len(found) == SHARDS * 2 + 3 and all(pod_ready(p) for p in found)


def test_the_pod_scripts_fail_over_on_loopback() -> None:
    """The shard and Sentinel scripts as local processes (devtools/redis_pods.py: root, private
    namespaces, no cluster): a restart in place, a deleted pod re-created at another address
    and a crash each end with the other pod the master, the data on it, the old one its
    replica."""
    proc = subprocess.run(
        [sys.executable, "-m", "devtools.redis_pods"], capture_output=True, text=True,
        timeout=240, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\nscripts on loopback: {got}")
    assert got["first_master"] == "chat-redis-0"
    for scenario in ("restart_in_place", "delete", "crash"):
        assert got[scenario]["kept"], got
        assert got[scenario]["to"] != got[scenario]["from"], got
    assert got["restart_in_place"]["old_synced"]
    # The handover fences writes: refused (NOREPLICAS, then READONLY), none cut while it may
    # have run, and exactly the acknowledged ones on the new master.
    writes = got["delete"]["writes"]
    assert writes["ok"] > 0 and writes.get("NOREPLICAS", 0) > 0, got
    assert writes["cut"] == 0, got
    assert got["delete"]["writes_on_new"] == writes["ok"], got
    # Handed over before it stops / asked for at restart: no down-after wait.
    assert got["delete"]["seconds"] < 5 and got["restart_in_place"]["seconds"] < 5, got
    assert got["crash"]["seconds"] <= FAILOVER_SECONDS, got
    assert got["crash"]["rejoined"]


@pytest.fixture(scope="module")
def replicated_app(real_cluster: RealCluster, real_operator: KubeCluster) -> Iterator[None]:
    kube = real_cluster.kube
    doc = example_with_test_images(real_cluster)
    doc["metadata"] = {"name": APP}
    doc["spec"]["redis"]["managed"].update({"shards": SHARDS, "replicas": 1, "sentinels": 3})
    # The protocol servers from the image built here (it holds the runtime too).
    doc["spec"]["protocol"].update({"image": doc["spec"]["image"], "imagePullPolicy": "Never"})
    kube.kubectl("create", "namespace", NAMESPACE)
    default_service_account(kube, NAMESPACE)
    started = time.monotonic()
    kube.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(doc))
    wait_for(lambda: all_ready(kube), 300, 1, what="every Redis and Sentinel pod ready")
    print(f"\nreplicated shards and Sentinels ready in {time.monotonic() - started:.1f}s")
    try:
        yield
    finally:
        kube.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def test_replicated_shards_are_built_and_watched(
    real_cluster: RealCluster, replicated_app: None
) -> None:
    """Two pods per shard (ordinals 2s and 2s+1), three Sentinels agreeing on each master,
    each master with its replica attached, and the app's pods given Sentinel URLs."""
    kube = real_cluster.kube
    wait_for(lambda: all_ready(kube), 120, 1, what="every Redis and Sentinel pod ready")
    for shard in range(SHARDS):
        master = master_pod(kube, shard)
        assert master in {f"{APP}-redis-{2 * shard}", f"{APP}-redis-{2 * shard + 1}"}
        info = replication(kube, master)
        assert "role:master" in info and "connected_slaves:1" in info, info
        (replica,) = {f"{APP}-redis-{2 * shard}", f"{APP}-redis-{2 * shard + 1}"} - {master}
        info = replication(kube, replica)
        assert "role:slave" in info and "master_link_status:up" in info, info
    quorum = sentinel_exec(kube, "--user", "channelapp", "sentinel", "ckquorum", "shard-0")
    assert quorum.startswith("OK 3 usable Sentinels"), quorum
    # Without the admin password a Sentinel answers where a master is and nothing else.
    refused = kube.kubectl(
        "exec", "-n", NAMESPACE, f"{APP}-redis-sentinel-0", "-c", "sentinel", "--",
        "sh", "-c", "REDISCLI_AUTH= redis-cli -p 26379 sentinel failover shard-0 2>&1",
        check=False,
    ).stdout  # fmt: skip
    assert "NOPERM" in refused, refused
    worker = pods(kube, "worker")[0]
    env = {e["name"]: e.get("value") for e in worker["spec"]["containers"][0]["env"]}
    assert (
        env["CHANNELAPP_REDIS_URLS"]
        .split(",redis+sentinel://")[0]
        .startswith("redis+sentinel://chat-redis-sentinel-0.chat-redis.failover.svc:26379,")
    )
    app = wait_for(
        lambda: (a := channelapp(kube, NAMESPACE, APP)).get("status", {}).get("shards", {})
        .get("summary") == f"{SHARDS}/{SHARDS}" and a,
        120, 1, what="the operator reading every shard through Sentinel",
    )  # fmt: skip
    assert builders.shard_urls(APP, NAMESPACE, app["spec"])[0].endswith("/shard-0/0")


# Run in a worker pod (its image, its env: the Sentinel URLs and the password): MEMBERS
# channels join one group, a message goes to the group every 1/RATE s for DURATION s; every
# channel counts what it receives. Prints one JSON line.
LAYER_PROBE = r"""
import asyncio, json, sys, time
from channelapp.layer import ShardUnavailable
from channelapp.layer.factory import layer_from_settings
from channelapp.settings import Settings

group, members, rate, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])


async def main():
    layer = layer_from_settings(Settings.from_env())
    channels = [await layer.new_channel("probe") for _ in range(members)]
    for channel in channels:
        await layer.group_add(group, channel)
    got = {c: set() for c in channels}
    sent, refused = [], []

    async def receive(channel):
        while True:
            try:
                message = await layer.receive(channel)
            except ShardUnavailable:
                await asyncio.sleep(0.05)
                continue
            got[channel].add(message["n"])

    readers = [asyncio.create_task(receive(c)) for c in channels]
    began, n = time.time(), 0
    while time.time() - began < duration:
        at = time.time()
        try:
            await layer.group_send(group, {"type": "probe", "n": n})
            sent.append((n, at, time.time()))
        except ShardUnavailable as exc:
            refused.append((n, at, type(exc).__name__))
        n += 1
        await asyncio.sleep(max(0.0, 1 / rate - (time.time() - at)))
    await asyncio.sleep(5)
    for r in readers:
        r.cancel()
    missing = {i: sum(1 for c in channels if i not in got[c]) for i, _, _ in sent}
    print(json.dumps({
        "sent": sent, "refused": refused,
        "missing": {str(k): v for k, v in missing.items() if v},
        "members_receiving_at_end": sum(1 for c in channels if sent and sent[-1][0] in got[c]),
    }))
    await layer.close()


asyncio.run(main())
"""


def layer_probe(kube: KubeCluster, group: str, members: int, rate: float, seconds: float) -> Any:
    worker = pods(kube, "worker")[0]["metadata"]["name"]
    out = kube.kubectl(
        "exec", "-n", NAMESPACE, worker, "-c", "worker", "--",
        "python", "-c", LAYER_PROBE, group, str(members), str(rate), str(seconds),
        timeout=seconds + 120,
    ).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("disruption", ["delete", "sigkill"])
async def test_a_group_on_a_failed_over_shard_keeps_every_member(
    real_cluster: RealCluster, replicated_app: None, disruption: str
) -> None:
    """The layer itself through a failover, from a worker pod (no protocol server involved):
    200 channels in one group on shard 0, 20 group sends a second; the shard's master is
    deleted or SIGKILLed. Every send is delivered to all 200 or refused; none half-done."""
    kube = real_cluster.kube
    wait_for(lambda: all_ready(kube), 180, 1, what="every Redis and Sentinel pod ready")
    shard = 0
    group = f"chat.{room_on_shard(shard)}"
    victim = master_pod(kube, shard)
    probe = asyncio.create_task(asyncio.to_thread(layer_probe, kube, group, SOCKETS, 20.0, 35.0))
    await asyncio.sleep(12)  # joined and sending
    disrupted = time.time()
    if disruption == "delete":
        await asyncio.to_thread(delete_pod, kube, victim)
    else:
        await asyncio.to_thread(kill_redis_server, kube, victim)
    got = await probe
    events = await asyncio.to_thread(switches_since, kube, disrupted, shard)
    switched = [at for event, at in events if event == "+switch-master"]
    assert switched, events
    detected = min(at for _event, at in events)
    # Sends around the failover: how long the longest took, and how many were refused.
    sent, refused = got["sent"], got["refused"]
    window = [(n, at, done) for n, at, done in sent if disrupted - 1 <= at <= switched[0] + 5]
    slowest = max((done - at for _n, at, done in window), default=0.0)
    print(
        f"\nlayer through a {disruption} of {victim}: detected after {detected - disrupted:.2f}s, "
        f"+switch-master {switched[0] - detected:.2f}s after detection "
        f"({switched[0] - disrupted:.2f}s after the disruption); {len(sent)} group sends "
        f"delivered to all {SOCKETS} members, {len(refused)} refused "
        f"({sorted({r[2] for r in refused})}), {len(got['missing'])} half-delivered; "
        f"{len(window)} sends in the failover window, the slowest took {slowest:.2f}s"
    )
    assert switched[0] - detected <= FAILOVER_SECONDS
    assert not got["missing"], list(got["missing"].items())[:5]
    assert got["members_receiving_at_end"] == SOCKETS
    assert len(sent) > 0.5 * 20 * 35  # it kept sending (paced, less the pause)
    wait_for(lambda: all_ready(kube), 180, 1, what="the shard's pods ready again")
    assert "role:slave" in replication(kube, victim)


def delete_pod(kube: KubeCluster, pod: str) -> None:
    kube.kubectl("delete", "pod", pod, "-n", NAMESPACE, "--wait=false")


def kill_redis_server(kube: KubeCluster, pod: str) -> None:
    """SIGKILL the pod's redis-server from the node (containerd), leaving the pod in place."""
    found = kube.kubectl_json("get", "pod", pod, "-n", NAMESPACE)
    (status,) = [s for s in found["status"]["containerStatuses"] if s["name"] == "redis"]
    container = status["containerID"].split("://", 1)[1]
    ctr("task", "kill", "--signal", "SIGKILL", container)


@contextlib.asynccontextmanager
async def room_of(url: str, room: str) -> Any:
    # No connection cap: aiohttp's default (100 per session) would hold socket 101 forever.
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None)
    ) as http:
        clients: list[Client] = []
        try:
            for i in range(SOCKETS):
                ws = await http.ws_connect(f"{url}/ws/chat/{room}/", heartbeat=None)
                clients.append(Client(i, ws))
            yield clients
        finally:
            for c in clients:
                await c.ws.close()


@pytest.mark.parametrize("disruption", ["delete", "sigkill"])
async def test_a_shard_master_fails_over_under_a_live_room(
    real_cluster: RealCluster, replicated_app: None, disruption: str
) -> None:
    kube = real_cluster.kube
    wait_for(lambda: all_ready(kube), 180, 1, what="every Redis and Sentinel pod ready")
    wait_for(
        lambda: condition(channelapp(kube, NAMESPACE, APP), "Ready") == "True",
        120,
        1,
        what="the app Ready",
    )
    shard = 0
    room = room_on_shard(shard)
    victim = master_pod(kube, shard)
    svc = kube.kubectl_json("get", "service", APP, "-n", NAMESPACE)
    url = f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"
    stop = asyncio.Event()
    async with room_of(url, room) as clients:
        tasks = [asyncio.create_task(read(c)) for c in clients]
        tasks += [asyncio.create_task(chat(c, stop)) for c in clients]
        await asyncio.sleep(SEND_EVERY + 5)  # every socket has chatted before the disruption
        disrupted = time.time()
        if disruption == "delete":
            await asyncio.to_thread(delete_pod, kube, victim)
        else:
            await asyncio.to_thread(kill_redis_server, kube, victim)
        await asyncio.sleep(AFTER_SECONDS)
        stop.set()
        sent = {text: at for c in clients for text, at in c.sent}

        def missing() -> int:
            """Deliveries missing from open sockets, but for the refused sends (the last of
            each socket closed with a code: it may or may not have run)."""
            refused_now = {c.sent[-1][0] for c in clients if c.close_code is not None and c.sent}
            expected = set(sent) - refused_now
            return sum(len(expected - c.received) for c in clients if c.close_code is None)

        deadline = time.monotonic() + SETTLE_SECONDS
        while missing() and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        await asyncio.gather(*tasks[SOCKETS:], return_exceptions=True)
        for t in tasks[:SOCKETS]:
            t.cancel()
        await asyncio.gather(*tasks[:SOCKETS], return_exceptions=True)

    events = await asyncio.to_thread(switches_since, kube, disrupted, shard)
    switched = [at for event, at in events if event == "+switch-master"]
    assert switched, events
    detected = min(at for _event, at in events)
    new_master = await asyncio.to_thread(master_pod, kube, shard)
    # Each message sent around the failover: delivered to every open socket of the room, or
    # refused (its socket closed with a code right after sending it), or lost.
    closed = [c for c in clients if c.close_code is not None]
    open_clients = [c for c in clients if c.close_code is None]
    refused_codes = [c.close_code for c in closed]
    gap = [(t, at) for t, at in sent.items() if disrupted - 1 <= at <= switched[0] + 2]
    delivered = [t for t, _ in gap if all(t in c.received for c in open_clients)]
    refused = [
        t
        for c in closed
        for t, at in c.sent[-1:]
        if c.closed_at is not None and at <= c.closed_at and t not in delivered
    ]
    lost_total = missing()
    print(
        f"\n{disruption} of {victim} (master of shard-{shard}, room {room}, {len(clients)} "
        f"sockets): detected after {detected - disrupted:.1f}s, +switch-master "
        f"{switched[0] - detected:.1f}s after detection ({switched[0] - disrupted:.1f}s after "
        f"the disruption), new master {new_master}; {len(sent)} messages sent, {len(gap)} in "
        f"the failover window: {len(delivered)} delivered to the whole room, {len(refused)} "
        f"refused with a code ({sorted(set(refused_codes))}); {len(closed)} sockets closed; "
        f"{lost_total} deliveries missing after {SETTLE_SECONDS:.0f}s"
    )
    print("sentinel events:", [(e, round(at - disrupted, 2)) for e, at in events][:20])
    assert new_master != victim
    assert switched[0] - detected <= FAILOVER_SECONDS
    assert switched[0] - disrupted <= FAILOVER_SECONDS + 5
    # Sockets stay open. A handover refuses nothing for good (its fenced writes certainly did
    # not run and go to the new master); a SIGKILL may catch a send already written to the
    # dead master, and its receipt (which replicates with it) lets it be sent again to the
    # new master without running twice.
    assert not closed, [(c.index, c.close_code) for c in closed][:5]
    assert all(code == TRY_AGAIN_LATER for code in refused_codes)
    # Membership intact and nothing lost: every open socket got every message of the room.
    assert lost_total == 0
    assert len(delivered) + len(refused) == len(gap)
    # The shard is whole again: the old master came back as the new one's replica.
    wait_for(lambda: all_ready(kube), 180, 1, what="the shard's pods ready again")
    wait_for(
        lambda: "connected_slaves:1" in replication(kube, new_master),
        120,
        1,
        what="the new master with its replica",
    )
    assert "role:slave" in replication(kube, victim)
