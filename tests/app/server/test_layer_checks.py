"""The protocol server's checks of the channel layer: heartbeats, sweeps, lost-state checks."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any, cast

import pytest
from aiohttp import web
from channelapp.layer import RedisChannelLayer
from channelapp.server import lost_state
from channelapp.server.host import SocketHost

from devtools.redis import RedisServer

pytestmark = pytest.mark.redis


class Host:
    def __init__(self, layer: RedisChannelLayer) -> None:
        self.layer = layer
        self.sockets: dict[web.WebSocketResponse, Any] = {}
        self.closed: list[int] = []

    async def close_socket(self, ws: web.WebSocketResponse, code: int, why: str) -> None:
        self.closed.append(code)


async def test_a_long_sweep_does_not_delay_the_heartbeats(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer = RedisChannelLayer([redis_server.url])
    monkeypatch.setattr(lost_state, "HEARTBEAT", 0.01)
    sweep_started = asyncio.Event()
    sweep_may_end = asyncio.Event()
    beats = 0
    three_beats = asyncio.Event()
    beat = layer.server_beat

    async def counted_beat(ttl: float) -> bool:
        nonlocal beats
        beats += 1
        if beats >= 3:
            three_beats.set()
        return await beat(ttl)

    async def long_sweep(**_: Any) -> list[str]:
        sweep_started.set()
        await sweep_may_end.wait()
        return []

    monkeypatch.setattr(layer, "server_beat", counted_beat)
    monkeypatch.setattr(layer, "sweep_dead_servers", long_sweep)
    task = asyncio.create_task(lost_state.heartbeats(cast(SocketHost, Host(layer))))
    try:
        await asyncio.wait_for(sweep_started.wait(), 5)
        await asyncio.wait_for(three_beats.wait(), 5)  # the sweep still runs
        assert not sweep_may_end.is_set()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await layer.close()


async def test_a_stalled_shard_does_not_hold_up_handshakes(
    redis_shards: list[RedisServer],
) -> None:
    layer = RedisChannelLayer([s.url for s in redis_shards])
    host = Host(layer)
    stalled = redis_shards[1]
    assert stalled.proc is not None
    try:
        await layer.shards_that_lost_state()
        layer.shards[1].suspect = True  # it dropped a connection: it may have restarted empty
        os.kill(stalled.proc.pid, signal.SIGSTOP)
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            await asyncio.wait_for(lost_state.settle(cast(SocketHost, host)), 2)
            assert loop.time() - started < 1
            # The next handshakes do not wait longer for the same check.
            await asyncio.wait_for(lost_state.settle(cast(SocketHost, host)), 1)
        finally:
            os.kill(stalled.proc.pid, signal.SIGCONT)
        assert host.closed == []
    finally:
        await layer.close()


async def test_the_periodic_watch_shares_the_handshakes_check(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two checks at once would each find a loss; the one the watch ran could close a socket
    that opened after the handshake's check had settled it."""
    layer = RedisChannelLayer([redis_server.url])
    host = Host(layer)
    calls = 0
    check_may_end = asyncio.Event()
    replies_checked = asyncio.Event()
    lost_replies = layer.take_lost_replies

    async def slow_check(ttl: int = 3600) -> list[int]:
        nonlocal calls
        calls += 1
        await check_may_end.wait()
        return []

    async def taking(prefix: str) -> list[str]:
        replies_checked.set()
        return await lost_replies(prefix)

    monkeypatch.setattr(layer, "shards_that_lost_state", slow_check)
    monkeypatch.setattr(layer, "take_lost_replies", taking)
    monkeypatch.setattr(layer, "state_unchecked", lambda: True)
    try:
        await lost_state.settle(cast(SocketHost, host))  # starts the check, does not wait it out
        watch = asyncio.create_task(lost_state.watch_layer(cast(SocketHost, host), 60))
        try:
            check_may_end.set()
            await asyncio.wait_for(replies_checked.wait(), 5)
            assert calls == 1
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
    finally:
        await layer.close()
