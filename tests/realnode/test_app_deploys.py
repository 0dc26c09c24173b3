"""App deploys keep every socket: while ~200 sockets chat in a handful of rooms through the chat
example, five deploys in a row (new tags of the app image, patched into spec.image) replace
every worker pod and leave the protocol pods alone - no socket closed, no message lost."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from devtools.kube import KubeCluster
from devtools.polling import wait_for
from devtools.realnode.bringup import RealCluster
from devtools.realnode.common import ctr
from devtools.realnode.workloads import CHAT_NAMESPACE, channelapp, condition
from tests.support.chat_load import pods, rolled_out, service_url, uids

pytestmark = [pytest.mark.realnode, pytest.mark.cluster, pytest.mark.timeout(1800)]

ROOMS = 8
PER_ROOM = 25  # 200 sockets
SEND_EVERY = 2.0  # seconds between one socket's messages (jittered): ~100 messages a second
DEPLOYS = 5
SETTLE_SECONDS = 60  # for the last messages to reach every member


@dataclass
class Client:
    index: int
    room: str
    ws: aiohttp.ClientWebSocketResponse
    sent: list[str] = field(default_factory=list)
    received: set[str] = field(default_factory=set)
    closed: str | None = None


async def read(client: Client) -> None:
    async for msg in client.ws:
        if msg.type == aiohttp.WSMsgType.TEXT:
            got = json.loads(msg.data)
            if "message" in got:
                client.received.add(got["message"])
        else:
            break
    client.closed = f"closed: {client.ws.close_code} {client.ws.exception()!r}"


async def chat(client: Client, stop: asyncio.Event) -> None:
    seq = 0
    await asyncio.sleep(random.uniform(0, SEND_EVERY))
    while not stop.is_set() and client.closed is None:
        text = f"{client.index}:{seq}"
        await client.ws.send_json({"user": f"s{client.index}", "message": text})
        client.sent.append(text)
        seq += 1
        await asyncio.sleep(SEND_EVERY * random.uniform(0.5, 1.5))


def deploy(kube: KubeCluster, image: str) -> float:
    started = time.monotonic()
    patch = json.dumps({"spec": {"image": image}})
    kube.kubectl("patch", "channelapp", "chat", "-n", CHAT_NAMESPACE, "--type=merge", "-p", patch)
    wait_for(lambda: rolled_out(kube, "worker", image), 300, 0.5, what=f"every worker on {image}")
    return time.monotonic() - started


async def test_app_deploys_keep_every_socket_and_message(
    real_cluster: RealCluster, chat_app: dict[str, Any]
) -> None:
    kube = real_cluster.kube
    original = chat_app["spec"]["image"]
    repo = original.rsplit(":", 1)[0]
    run = uuid.uuid4().hex[:6]
    tags = [f"{repo}:deploy-{run}-{n}" for n in range(1, DEPLOYS + 1)]
    for tag in tags:  # new tags of the same built image, on the node
        ctr("images", "tag", "--force", original, tag)
    protocol_before = uids(pods(kube, "protocol"))
    workers_before = uids(pods(kube, "worker"))
    assert len(protocol_before) == 2 and workers_before
    url = service_url(kube)
    stop = asyncio.Event()
    clients: list[Client] = []
    tasks: list[asyncio.Task[None]] = []
    durations: list[float] = []
    workers_seen: list[set[str]] = []
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)  # sockets live for minutes
    # No pool limit: each socket holds its connection (aiohttp's default limit is 100).
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        try:
            for i in range(ROOMS * PER_ROOM):
                room = f"deploys{i % ROOMS}"
                ws = await asyncio.wait_for(http.ws_connect(f"{url}/ws/chat/{room}/"), 60)
                clients.append(Client(i, room, ws))
            tasks += [asyncio.create_task(read(c)) for c in clients]
            tasks += [asyncio.create_task(chat(c, stop)) for c in clients]
            await asyncio.sleep(10)  # a steady chat before the first deploy
            for tag in tags:
                durations.append(await asyncio.to_thread(deploy, kube, tag))
                workers_seen.append(uids(pods(kube, "worker")))
                await asyncio.sleep(5)  # chatting on the new workers
            stop.set()
            sent_by_room: dict[str, set[str]] = {}
            for c in clients:
                sent_by_room.setdefault(c.room, set()).update(c.sent)

            def missing() -> int:
                return sum(len(sent_by_room[c.room] - c.received) for c in clients)

            deadline = time.monotonic() + SETTLE_SECONDS
            while missing() and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            closed = [(c.index, c.closed) for c in clients if c.closed is not None]
            lost = missing()
            messages = sum(len(c.sent) for c in clients)
            deliveries = sum(len(sent_by_room[c.room]) for c in clients)
        finally:
            stop.set()
            for c in clients:
                await c.ws.close()
            await asyncio.gather(*tasks, return_exceptions=True)

    protocol_after = uids(pods(kube, "protocol"))
    print(
        f"\napp deploys: {len(clients)} sockets in {ROOMS} rooms, {messages} messages sent, "
        f"{deliveries} deliveries expected, {lost} lost, {len(closed)} sockets closed; "
        f"{DEPLOYS} deploys took {', '.join(f'{d:.1f}s' for d in durations)} "
        f"(each until every worker pod ran the new tag); protocol pods kept: "
        f"{len(protocol_before & protocol_after)}/{len(protocol_before)}"
    )
    assert not closed, closed[:5]
    assert lost == 0
    assert protocol_after == protocol_before
    # Every deploy replaced every worker pod: no pod of one deploy's set survives the next.
    for older, newer in zip([workers_before, *workers_seen[:-1]], workers_seen, strict=True):
        assert not older & newer
    wait_for(
        lambda: condition(channelapp(kube, CHAT_NAMESPACE, "chat"), "Ready") == "True",
        120,
        1,
        what="the app Ready after the deploys",
    )

    # The app as the other tests of the tier expect it.
    await asyncio.to_thread(deploy, kube, original)
    for tag in tags:
        ctr("images", "rm", tag, check=False)
