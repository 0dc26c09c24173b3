"""A runtime upgrade sends every socket away gently: while ~200 sockets chat in a handful of
rooms through the chat example, the protocol pods get a new runtime image (a new tag of the
built image, patched into ``spec.protocol.image``). Every socket is closed with 1012 (service
restart) and nothing else; its client, reconnecting as ``reconnect.js`` does (full-jitter
backoff, the first delay up to 0.5 s), is back in its room within ``drainSeconds`` + 5 s of the
close; the reconnects are spread; every message the server accepted reaches every member of
its room that was connected; the protocol pods are all replaced and the worker pods kept.

**Accepted** means sent on an open socket and echoed back to its sender (the chat broadcasts
to the whole room, sender included): the worker handled it and sent it to the room. A member
**was connected** for it when one socket of that member's was open from ``MARGIN`` seconds
before the message was sent until ``MARGIN`` seconds after its echo (a new socket joins its
room just after the handshake, and a socket closed just after the echo may lose what was on
its way to it).

**The peak reconnect rate** is the most reconnects (sockets opened again) in any one second
(a sliding window). Its bound: the Deployment rolls with ``maxUnavailable: 0``, so only old
pods stop, at most ``REPLICAS`` at once; a stopping pod closes its sockets (at most all
``SOCKETS``) evenly over ``drainSeconds``, i.e. at most ``SOCKETS / DRAIN_SECONDS`` a second;
the reconnect delays only spread those further. Hence at most
``REPLICAS * SOCKETS / DRAIN_SECONDS`` (40 here) a second, a fifth of the sockets; closed all
at once (``drainSeconds: 0``) a pod's ``SOCKETS / REPLICAS`` sockets would come back within
the first 0.5 s, 200 a second.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
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

pytestmark = [pytest.mark.realnode, pytest.mark.cluster]

ROOMS = 8
PER_ROOM = 25
SOCKETS = ROOMS * PER_ROOM  # 200
SEND_EVERY = 2.0  # seconds between one socket's messages (jittered): ~100 messages a second
REPLICAS = 2  # protocol servers, as in examples/chat.yaml
DRAIN_SECONDS = 10
RECONNECT_WITHIN = DRAIN_SECONDS + 5
PEAK_BOUND = REPLICAS * SOCKETS // DRAIN_SECONDS
RETRY_CODES = {1001, 1006, 1012, 1013}  # what reconnect.js reconnects on
BASE_DELAY, MAX_DELAY, STABLE = 0.5, 30.0, 10.0  # reconnect.js's defaults, in seconds
MARGIN = 1.0
SETTLE_SECONDS = 60  # for the last messages to reach every member


@dataclass
class Conn:
    opened: float
    closed: float | None = None
    code: int | None = None


@dataclass
class Member:
    index: int
    room: str
    conns: list[Conn] = field(default_factory=list)
    ws: aiohttp.ClientWebSocketResponse | None = None
    sent: dict[str, float] = field(default_factory=dict)  # text -> when sent
    echoed: dict[str, float] = field(default_factory=dict)  # text -> when echoed to its sender
    received: set[str] = field(default_factory=set)
    reconnects: list[float] = field(default_factory=list)  # seconds from a close to the reopen
    failed_attempts: list[str] = field(default_factory=list)
    stopping: bool = False
    seq: int = 0

    def connected(self, sent: float, echoed: float) -> bool:
        return any(
            c.opened <= sent - MARGIN and (c.closed is None or c.closed >= echoed + MARGIN)
            for c in self.conns
        )


async def chat(member: Member, ws: aiohttp.ClientWebSocketResponse, stop: asyncio.Event) -> None:
    await asyncio.sleep(random.uniform(0, SEND_EVERY))
    while not stop.is_set() and not ws.closed:
        text = f"{member.index}:{member.seq}"
        member.seq += 1
        member.sent[text] = time.monotonic()
        try:
            await ws.send_json({"user": f"s{member.index}", "message": text})
        except (aiohttp.ClientError, ConnectionError, RuntimeError):
            return  # closing: never echoed, so not accepted
        await asyncio.sleep(SEND_EVERY * random.uniform(0.5, 1.5))


async def run(
    member: Member,
    http: aiohttp.ClientSession,
    url: str,
    stop: asyncio.Event,
    first: aiohttp.ClientWebSocketResponse,
) -> None:
    """One client, on its first socket: chat, and on a retryable close come back (joining the
    room in the URL again) after a full-jitter delay, as reconnect.js does."""
    attempt = 0
    last_close: float | None = None
    ws: aiohttp.ClientWebSocketResponse | None = first
    while not member.stopping:
        if ws is None:
            try:
                ws = await http.ws_connect(f"{url}/ws/chat/{member.room}/", heartbeat=None)
            except (aiohttp.ClientError, OSError) as exc:
                member.failed_attempts.append(repr(exc))
                await asyncio.sleep(random.uniform(0, min(MAX_DELAY, BASE_DELAY * 2**attempt)))
                attempt += 1
                continue
        conn = Conn(time.monotonic())
        member.conns.append(conn)
        member.ws = ws
        if last_close is not None:
            member.reconnects.append(conn.opened - last_close)
        sender = asyncio.create_task(chat(member, ws, stop))
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                got = json.loads(msg.data)
                text = got.get("message")
                if isinstance(text, str):
                    member.received.add(text)
                    if text in member.sent:
                        member.echoed.setdefault(text, time.monotonic())
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        if member.stopping:
            return  # closed by the test
        conn.closed = last_close = time.monotonic()
        conn.code = ws.close_code
        ws = None
        if conn.code not in RETRY_CODES:
            return
        if conn.closed - conn.opened >= STABLE:
            attempt = 0
        await asyncio.sleep(random.uniform(0, min(MAX_DELAY, BASE_DELAY * 2**attempt)))
        attempt += 1


def peak_per_second(times: list[float]) -> int:
    """The most of ``times`` in any one-second window."""
    times = sorted(times)
    peak, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - 1.0:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


def patch_protocol(kube: KubeCluster, protocol: dict[str, Any]) -> None:
    patch = json.dumps({"spec": {"protocol": protocol}})
    kube.kubectl("patch", "channelapp", "chat", "-n", CHAT_NAMESPACE, "--type=merge", "-p", patch)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def test_runtime_upgrade_closes_with_1012_and_every_socket_comes_back(
    real_cluster: RealCluster, chat_app: dict[str, Any]
) -> None:
    kube = real_cluster.kube
    original = dict(channelapp(kube, CHAT_NAMESPACE, "chat")["spec"].get("protocol") or {})
    runtime = pods(kube, "protocol")[0]["spec"]["containers"][0]["image"]
    upgrade = f"{runtime.rsplit(':', 1)[0]}:runtime-{uuid.uuid4().hex[:6]}"
    ctr("images", "tag", "--force", runtime, upgrade)  # a new tag of the same built image
    restore = {k: original.get(k) for k in {*original, "image", "imagePullPolicy", "drainSeconds"}}
    try:
        # The drain window CI can wait for; setting it rolls the (idle) protocol pods.
        patch_protocol(kube, {"replicas": REPLICAS, "drainSeconds": DRAIN_SECONDS})
        wait_for(
            lambda: (
                rolled_out(kube, "protocol", runtime)
                and all(
                    {"name": "CHANNELAPP_DRAIN_SECONDS", "value": str(DRAIN_SECONDS)}
                    in p["spec"]["containers"][0]["env"]
                    for p in pods(kube, "protocol")
                )
            ),
            300,
            0.5,
            what=f"the protocol pods on drainSeconds {DRAIN_SECONDS}",
        )
        await upgrade_under_load(kube, runtime, upgrade)
    finally:
        # The app as the other tests of the tier expect it.
        patch_protocol(kube, restore)
        wait_for(
            lambda: rolled_out(kube, "protocol", runtime),
            300,
            0.5,
            what=f"the protocol pods back on {runtime}",
        )
        ctr("images", "rm", upgrade, check=False)
    wait_for(
        lambda: condition(channelapp(kube, CHAT_NAMESPACE, "chat"), "Ready") == "True",
        120,
        1,
        what="the app Ready after the upgrade",
    )


async def upgrade_under_load(kube: KubeCluster, runtime: str, upgrade: str) -> None:
    protocol_before = uids(pods(kube, "protocol"))
    workers_before = uids(pods(kube, "worker"))
    assert len(protocol_before) == REPLICAS and workers_before
    url = service_url(kube)
    stop = asyncio.Event()
    members = [Member(i, f"upgrade{i % ROOMS}") for i in range(SOCKETS)]
    tasks: list[asyncio.Task[None]] = []
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
    ) as http:
        try:
            for m in members:
                ws = await http.ws_connect(f"{url}/ws/chat/{m.room}/", heartbeat=None)
                tasks.append(asyncio.create_task(run(m, http, url, stop, ws)))
            await asyncio.sleep(10)  # a steady chat before the upgrade
            started = time.monotonic()
            await asyncio.to_thread(
                patch_protocol, kube, {"image": upgrade, "imagePullPolicy": "Never"}
            )
            deadline = started + 300
            while not await asyncio.to_thread(rolled_out, kube, "protocol", upgrade):
                assert time.monotonic() < deadline, "the protocol rollout did not end in 300s"
                await asyncio.sleep(0.5)
            rollout = time.monotonic() - started
            # Every socket back (the last ones closed at the end of the last drain).
            deadline = time.monotonic() + RECONNECT_WITHIN + 5
            while time.monotonic() < deadline and not all(
                len(m.conns) >= 2 and m.conns[-1].closed is None for m in members
            ):
                await asyncio.sleep(0.2)
            await asyncio.sleep(5)  # chatting on the new protocol pods
            stop.set()
            duration = time.monotonic() - started

            by_room: dict[str, list[Member]] = {}
            for m in members:
                by_room.setdefault(m.room, []).append(m)
            expected: dict[int, set[str]] = {m.index: set() for m in members}
            for m in members:
                for text, echoed in m.echoed.items():
                    sent = m.sent[text]
                    for other in by_room[m.room]:
                        if other is m or other.connected(sent, echoed):
                            expected[other.index].add(text)

            def missing() -> int:
                return sum(len(expected[m.index] - m.received) for m in members)

            deadline = time.monotonic() + SETTLE_SECONDS
            while missing() and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            lost = missing()
        finally:
            stop.set()
            for m in members:
                m.stopping = True
                if m.ws is not None:
                    await m.ws.close()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    protocol_after = uids(pods(kube, "protocol"))
    workers_after = uids(pods(kube, "worker"))
    closes = [c for m in members for c in m.conns if c.closed is not None]
    codes = Counter(c.code for c in closes)
    reconnects = [d for m in members for d in m.reconnects]
    reopened = [c.opened for m in members for c in m.conns[1:]]
    peak = peak_per_second(reopened)
    sent = sum(len(m.sent) for m in members)
    accepted = sum(len(m.echoed) for m in members)
    deliveries = sum(len(e) for e in expected.values())
    failed = [f for m in members for f in m.failed_attempts]
    print(
        f"\nruntime upgrade: {SOCKETS} sockets in {ROOMS} rooms, {REPLICAS} protocol pods, "
        f"drainSeconds {DRAIN_SECONDS}; rollout {rollout:.1f}s, run {duration:.1f}s; "
        f"closes {len(closes)} (codes {dict(codes)}; sockets closed twice: "
        f"{sum(1 for m in members if len(m.conns) > 2)}), reconnect failed attempts "
        f"{len(failed)}; reconnect after close p50 {percentile(reconnects, 0.5):.2f}s "
        f"p99 {percentile(reconnects, 0.99):.2f}s max {max(reconnects):.2f}s; peak reconnects "
        f"{peak}/s (bound {PEAK_BOUND}); messages sent {sent}, accepted {accepted}, "
        f"deliveries expected {deliveries}, lost {lost}; protocol pods replaced "
        f"{len(protocol_before - protocol_after)}/{len(protocol_before)}, worker pods kept "
        f"{len(workers_before & workers_after)}/{len(workers_before)}"
    )
    assert set(codes) == {1012}, codes
    assert all(len(m.conns) >= 2 and m.conns[0].code == 1012 for m in members)
    assert all(m.conns[-1].closed is None for m in members)  # every one back and open
    assert len(reconnects) == len(closes)
    assert max(reconnects) <= RECONNECT_WITHIN, sorted(reconnects)[-5:]
    assert peak <= PEAK_BOUND
    assert accepted > 0 and lost == 0
    assert not protocol_before & protocol_after and len(protocol_after) == REPLICAS
    assert workers_after == workers_before
