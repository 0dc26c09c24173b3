"""Shutdown in its stages: stop accepting, close the sockets with 1012 spread over
``drain_seconds``, wait for them and (within the HTTP grace) for HTTP in flight, then
aiohttp's own shutdown. Sockets, site and runner are stand-ins that note when they are used."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest
from aiohttp import web
from channelapp.layer import InMemoryChannelLayer
from channelapp.server.protocol_server import ProtocolServer
from channelapp.server.shutdown import shutdown
from channelapp.settings import Settings


class Events:
    def __init__(self) -> None:
        self.log: list[tuple[str, float]] = []

    def note(self, what: str) -> None:
        self.log.append((what, asyncio.get_running_loop().time()))

    def times(self, what: str) -> list[float]:
        return [t for w, t in self.log if w == what]


class Session:
    def __init__(self, events: Events) -> None:
        self.events = events
        self.closed_with: tuple[int, str] | None = None

    async def close(self, code: int, why: str) -> None:
        self.closed_with = (code, why)
        self.events.note("close")


class Site:
    def __init__(self, events: Events) -> None:
        self.events = events

    async def stop(self) -> None:
        self.events.note("stop")


class Runner:
    def __init__(self, events: Events) -> None:
        self.events = events

    async def cleanup(self) -> None:
        self.events.note("cleanup")


def server_with(events: Events, sockets: int, **settings: Any) -> ProtocolServer:
    server = ProtocolServer(Settings(), InMemoryChannelLayer())
    for _ in range(sockets):
        server.sockets[web.WebSocketResponse()] = Session(events)  # type: ignore[assignment]
    # Settings replaced while serving are those the shutdown follows.
    server.settings = dataclasses.replace(server.settings, **settings)
    return server


async def stop(server: ProtocolServer, events: Events) -> None:
    await shutdown(server, Site(events), Runner(events))  # type: ignore[arg-type]


async def test_the_stages_run_in_order_and_the_closes_are_spread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "channelapp.server")
    events = Events()
    server = server_with(events, 3, drain_seconds=0.6)
    start = asyncio.get_running_loop().time()
    await stop(server, events)
    said = [r.getMessage() for r in caplog.records if r.name == "channelapp.server"]
    stages = ["Shutting down", "draining: closing 3", "Waiting for connections to close"]
    stages.append("protocol server stopped")
    said_at = [next(i for i, m in enumerate(said) if m.startswith(s)) for s in stages]
    assert said_at == sorted(said_at), said
    assert server.draining
    assert [w for w, _ in events.log] == ["stop", "close", "close", "close", "cleanup"]
    offsets = [t - start for t in events.times("close")]
    for offset, expected in zip(offsets, [0.0, 0.2, 0.4], strict=True):
        assert expected - 0.02 <= offset <= expected + 0.15, offsets
    assert all(s.closed_with == (1012, "server restarting") for s in server.sockets.values())  # type: ignore[attr-defined]


async def test_http_in_flight_is_waited_for_within_the_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = Events()
    server = server_with(events, 0, shutdown_timeout=0.3)
    loop = asyncio.get_running_loop()
    with server.http_request():
        start = loop.time()
        await stop(server, events)
        waited = loop.time() - start
        assert server.http_in_flight == 1
    assert 0.28 <= waited < 2.0
    assert "1 HTTP request(s) still in flight" in caplog.text


async def test_the_wait_ends_when_the_last_http_request_is_answered() -> None:
    events = Events()
    server = server_with(events, 0, shutdown_timeout=20.0)

    async def answered_soon() -> None:
        with server.http_request():
            await asyncio.sleep(0.2)

    loop = asyncio.get_running_loop()
    start = loop.time()
    answering = asyncio.create_task(answered_soon())
    await asyncio.sleep(0)
    await stop(server, events)
    await answering
    assert 0.18 <= loop.time() - start < 2.0
    assert events.times("cleanup")[0] >= start + 0.18


async def test_a_sockets_spread_is_not_cut_by_the_http_grace() -> None:
    events = Events()
    server = server_with(events, 2, drain_seconds=0.4, shutdown_timeout=0.0)
    start = asyncio.get_running_loop().time()
    await stop(server, events)
    assert events.times("close")[1] - start >= 0.18
    assert events.times("cleanup")[0] >= events.times("close")[1]
