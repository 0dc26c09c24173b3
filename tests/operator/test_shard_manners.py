"""The poll loop against peers that are not Redis servers: few dials, a short class in
status, never the peer's bytes (real TCP listeners on 127.0.0.1, no cluster)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channelapp_operator.depth_reading import DepthReading
from channelapp_operator.dial_manners import SharedDialBudget
from channelapp_operator.kube import Kube
from channelapp_operator.supervisor import AppSupervisor


class Peer:
    """A listener counting accepted connections; it answers like an HTTP server, or hangs up."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.accepts = 0
        self.received = b""
        self.server: asyncio.Server | None = None
        self.held: list[asyncio.StreamWriter] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepts += 1
        if self.reply == b"":  # silent: holds the connection until the client gives up
            self.held.append(writer)
            await reader.read()
            writer.close()
            return
        try:
            if self.reply is not None:
                self.received += await asyncio.wait_for(reader.read(4096), 2)
                writer.write(self.reply)
                await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self.server is not None
        for writer in self.held:
            writer.close()
        self.server.close()
        await self.server.wait_closed()


HTTP_REPLY = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nno\n"
)


async def peer(reply: bytes | None) -> AsyncIterator[tuple[Peer, int]]:
    p = Peer(reply)
    port = await p.start()
    try:
        yield p, port
    finally:
        await p.stop()


@pytest.fixture
async def http_peer() -> AsyncIterator[tuple[Peer, int]]:
    async for found in peer(HTTP_REPLY):
        yield found


@pytest.fixture
async def silent_peer() -> AsyncIterator[tuple[Peer, int]]:
    """Accepts and never answers, as a host that drops every packet after the handshake."""
    async for found in peer(b""):
        yield found


@pytest.fixture
async def closing_peer() -> AsyncIterator[tuple[Peer, int]]:
    async for found in peer(None):
        yield found


def supervisor(shared: SharedDialBudget | None = None) -> AppSupervisor:
    def post(*_: str) -> None:
        pass

    # External Redis without a password: the loop reads no Secret.
    return AppSupervisor("ns", "app", Kube.__new__(Kube), post, shared_dials=shared)


async def poll(sup: AppSupervisor, spec: dict[str, Any], seconds: float) -> DepthReading:
    """Tick as a spec with pollIntervalSeconds 0.1 would, for ``seconds``."""
    deadline = time.monotonic() + seconds
    reading = DepthReading()
    while time.monotonic() < deadline:
        reading = await sup.read_depth(spec)
        await asyncio.sleep(0.1)
    return reading


def external(*urls: str) -> dict[str, Any]:
    return {"redis": {"external": {"urls": list(urls)}}}


async def test_a_peer_that_hangs_up_is_dialled_with_backoff(
    closing_peer: tuple[Peer, int],
) -> None:
    listener, port = closing_peer
    sup = supervisor()
    try:
        reading = await poll(sup, external(f"redis://127.0.0.1:{port}/0"), 6.0)
    finally:
        await sup.close()
    # Backing off 1, 2, 4 s: four reads in six seconds, not sixty; a read may dial
    # twice (the client's own retry), so at most 8 connections.
    assert 1 <= listener.accepts <= 8, listener.accepts
    assert reading.unreachable == [f"redis://127.0.0.1:{port}/0: connection closed"]


async def test_an_http_peer_is_not_a_redis_server_and_its_bytes_stay_out(
    http_peer: tuple[Peer, int],
) -> None:
    listener, port = http_peer
    sup = supervisor()
    try:
        reading = await poll(sup, external(f"redis://127.0.0.1:{port}/0"), 3.0)
    finally:
        await sup.close()
    assert listener.accepts >= 1
    text = " ".join([reading.error or "", *reading.unreachable])
    assert "not a Redis server" in text, text
    assert "HTTP" not in text and "reply type byte" not in text and '"H"' not in text


async def test_many_dead_urls_cost_a_bounded_number_of_connections(
    closing_peer: tuple[Peer, int],
) -> None:
    listener, port = closing_peer
    # 64 shards on one listener: each user name makes another URL, another shard.
    urls = [f"redis://user{i}@127.0.0.1:{port}/0" for i in range(64)]
    sup = supervisor()
    try:
        await poll(sup, external(*urls), 5.0)
    finally:
        await sup.close()
    # One read of 64 shards, then the budget (8 a second) and the backoff; the
    # client may retry a dial once. Without either, 50 ticks would make 3200 or more.
    assert listener.accepts <= 2 * (64 + 8 * 5), listener.accepts


async def test_a_password_in_a_url_never_reaches_the_reading(
    closing_peer: tuple[Peer, int],
) -> None:
    _, port = closing_peer
    sup = supervisor()
    try:
        reading = await sup.read_depth(external(f"redis://:hunter2@127.0.0.1:{port}/0?password=x2"))
    finally:
        await sup.close()
    text = " ".join([reading.error or "", *reading.unreachable])
    assert "hunter2" not in text and "x2" not in text, text
    assert f"redis://:***@127.0.0.1:{port}/0" in text


async def poll_all(sups: list[AppSupervisor], specs: list[dict[str, Any]], seconds: float) -> None:
    """Every app's loop at once, ticking every 0.1 s for ``seconds``."""
    await asyncio.gather(*(poll(s, spec, seconds) for s, spec in zip(sups, specs, strict=True)))


async def test_many_apps_dial_within_the_operator_wide_budget(
    closing_peer: tuple[Peer, int],
) -> None:
    listener, port = closing_peer
    shared = SharedDialBudget(rate=20.0, per_destination=10_000.0)
    sups = [supervisor(shared) for _ in range(10)]
    # Ten apps of 32 dead shards each: 320 dials for one read of every app.
    specs = [
        external(*(f"redis://a{a}u{i}@127.0.0.1:{port}/0" for i in range(32))) for a in range(10)
    ]
    seconds = 4.0
    try:
        await poll_all(sups, specs, seconds)
    finally:
        await asyncio.gather(*(s.close() for s in sups))
    # The shared bucket: one read's worth (64) at once, then 20 a second, whatever the
    # number of apps; the client may retry a dial once.
    assert listener.accepts <= 2 * (64 + 20 * seconds), listener.accepts
    assert listener.accepts >= 1


async def test_apps_dialling_one_destination_share_its_budget(
    closing_peer: tuple[Peer, int],
) -> None:
    listener, port = closing_peer
    shared = SharedDialBudget(rate=10_000.0, per_destination=2.0)
    sups = [supervisor(shared) for _ in range(5)]
    specs = [
        external(*(f"redis://a{a}u{i}@127.0.0.1:{port}/{i % 16}" for i in range(24)))
        for a in range(5)
    ]
    seconds = 4.0
    try:
        await poll_all(sups, specs, seconds)
    finally:
        await asyncio.gather(*(s.close() for s in sups))
    assert listener.accepts <= 2 * (64 + 2 * seconds), listener.accepts


async def test_the_shards_of_a_refused_spec_are_not_dialled(
    closing_peer: tuple[Peer, int],
) -> None:
    listener, port = closing_peer
    sup = supervisor()
    refused = ("PasswordInURL", "redis.external.urls carry a password")
    sup.apps.get("ns", "app").apply_failure = refused
    try:
        reading = await poll(sup, external(f"redis://:pw@127.0.0.1:{port}/0"), 1.0)
    finally:
        await sup.close()
    assert listener.accepts == 0
    assert reading.pending and "PasswordInURL" in (reading.error or "")


async def test_a_silent_peer_is_a_timeout_and_every_unreachable_shard_has_a_class(
    silent_peer: tuple[Peer, int], http_peer: tuple[Peer, int]
) -> None:
    _, silent = silent_peer
    _, http = http_peer
    sup = supervisor()
    try:
        reading = await sup.read_depth(external(f"redis://127.0.0.1:{silent}/0"))
        assert "timeout" in " ".join([reading.error or "", *reading.unreachable]), reading
    finally:
        await sup.close()
    spec = external(f"redis://127.0.0.1:{silent}/0", f"redis://127.0.0.1:{http}/0")
    sup = supervisor()
    try:
        reading = await sup.read_depth(spec)
        per_shard = sup.status(spec, {"generation": 1}, {}, {}, reading, None)
        # A read that failed as a whole lists every shard, each with the class.
        whole = DepthReading(error="2 shards: timeout", error_class="timeout")
        as_whole = sup.status(spec, {"generation": 1}, {}, {}, whole, None)
    finally:
        await sup.close()
    classes = {"timeout", "not a Redis server", "connection closed", "connection refused"}
    for status in (per_shard, as_whole):
        entries = status["shards"]["unreachable"]
        assert len(entries) == 2, entries
        assert all(e.rsplit(": ", 1)[-1] in classes for e in entries), entries
    assert as_whole["shards"]["unreachable"] == [
        f"{u}: timeout" for u in spec["redis"]["external"]["urls"]
    ]
