"""The Redis layer's receive machinery: batches, shared readers, the stash, teardown."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest
from channelapp.layer import ChannelLayerError, RedisChannelLayer, ShardUnavailable
from channelapp.layer.receiving import BLOCK_SECONDS
from channelapp.layer.sharding import HashRing

from devtools.redis import RedisServer, redis_servers


async def test_receive_blocked_during_restart_recovers(redis_server: RedisServer) -> None:
    """A blocking receive outlives a restart (one retry, fresh connection); down is an error."""
    layer = RedisChannelLayer([redis_server.url])
    try:
        waiting = asyncio.create_task(layer.receive_many(["work.wait"], timeout=20))
        await asyncio.sleep(0.3)
        redis_server.restart()
        await layer.send("work.wait", {"ok": 1})
        assert await asyncio.wait_for(waiting, 10) == [("work.wait", {"ok": 1})]
        waiting = asyncio.create_task(layer.receive_many(["work.wait"], timeout=20))
        await asyncio.sleep(0.3)
        redis_server.stop()
        with pytest.raises(ShardUnavailable):
            await asyncio.wait_for(waiting, 10)
        redis_server.start()
        await layer.send("work.wait", {"ok": 2})
        assert await layer.receive_many(["work.wait"], timeout=2) == [("work.wait", {"ok": 2})]
    finally:
        await layer.close()


async def test_closing_returns_unreceived_messages(redis_server: RedisServer) -> None:
    """A worker that stops while a blocking pop is in flight loses nothing."""
    a = RedisChannelLayer([redis_server.url])
    b = RedisChannelLayer([redis_server.url])
    try:
        waiter = asyncio.create_task(a.receive_many(["handoff.q"], timeout=5))
        await asyncio.sleep(0.2)
        waiter.cancel()  # the caller stops waiting; the pop is still in flight
        await b.send("handoff.q", {"n": 1})
        await a.close()  # pushes back what its pop took
        assert await b.receive_many(["handoff.q"], timeout=2) == [("handoff.q", {"n": 1})]
    finally:
        await b.close()


async def test_a_receive_cancelled_while_topping_up_takes_nothing(
    redis_server: RedisServer,
) -> None:
    """A worker told to stop cancels its receive wherever it waits. Messages already in the
    stash (fetched by an earlier pop) must not be taken out of it before that wait: they
    went back to Redis on close only if the receive had not taken them (one lost
    ``websocket.receive`` per worker replaced, under load)."""
    a = RedisChannelLayer([redis_server.url])
    b = RedisChannelLayer([redis_server.url])
    try:
        for n in range(3):
            await b.send("topup.q", {"n": n})
        # An earlier pop brought the three into a's stash; nobody has taken them yet.
        await a._pop_now(a._reachable(a._keys_by_shard(["topup.q"])), 3)
        assert len(a._stash["topup.q"]) == 3
        receiving = asyncio.create_task(a.receive_many(["topup.q"], 10, timeout=5))
        await asyncio.sleep(0)  # it runs to its first wait: the pop topping up the stash
        receiving.cancel()
        await asyncio.gather(receiving, return_exceptions=True)
        await a.close()  # the stash goes back to Redis
        got = await b.receive_many(["topup.q"], 10, timeout=2)
        assert [m["n"] for _, m in got] == [0, 1, 2]
    finally:
        await b.close()


async def test_many_concurrent_reply_receivers_in_one_process(redis_server: RedisServer) -> None:
    server_side = RedisChannelLayer([redis_server.url])
    worker_side = RedisChannelLayer([redis_server.url])
    try:
        chans = [await server_side.new_channel("http.response") for _ in range(200)]
        waiting = [asyncio.create_task(server_side.receive(c)) for c in chans]
        await asyncio.sleep(0.1)
        for i, c in reversed(list(enumerate(chans))):
            await worker_side.send(c, {"i": i})
        got = await asyncio.wait_for(asyncio.gather(*waiting), 10)
        assert [m["i"] for m in got] == list(range(200))
    finally:
        await server_side.close()
        await worker_side.close()


async def test_close_with_receivers_waiting_returns_what_it_popped(
    redis_server: RedisServer,
) -> None:
    """Waiting receivers hear that the layer closes; a message popped meanwhile goes back."""
    layer = RedisChannelLayer([redis_server.url])
    other = RedisChannelLayer([redis_server.url])
    try:
        waiting = [asyncio.ensure_future(layer.receive("close.c")) for _ in range(3)]
        reply = asyncio.ensure_future(layer.receive(await layer.new_channel("r")))
        await asyncio.sleep(0.3)  # their readers now block in Redis
        closing = asyncio.ensure_future(layer.close())
        await asyncio.sleep(0.1)
        await other.send("close.c", {"n": 0})  # may land in a blocking pop of the closing layer
        await asyncio.wait_for(closing, 10)
        for task in [*waiting, reply]:
            with pytest.raises(ChannelLayerError, match="closing"):
                await task
        await asyncio.sleep(BLOCK_SECONDS + 0.5)  # no reader of the closed layer is left popping
        await other.send("close.c", {"n": 1})
        got = await other.receive_many(["close.c"], 10, timeout=2)
        assert [m["n"] for _, m in got] == [0, 1]
    finally:
        await other.close()


async def test_cancelling_a_receive_mid_pop_loses_nothing(redis_server: RedisServer) -> None:
    """The worker cancels its receive on SIGTERM; what Redis already handed over goes back."""
    assert redis_server.proc is not None
    layer = RedisChannelLayer([redis_server.url])
    for i in range(5):
        await layer.send("cancel.c", {"i": i})
    os.kill(redis_server.proc.pid, signal.SIGSTOP)  # the pop waits in the socket
    try:
        receive = asyncio.ensure_future(layer.receive_many(["cancel.c"], 5, timeout=1))
        await asyncio.sleep(0.2)
        receive.cancel()
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
    with pytest.raises(asyncio.CancelledError):
        await receive
    await layer.close()
    other = RedisChannelLayer([redis_server.url])
    try:
        got = await other.receive_many(["cancel.c"], 10, timeout=1)
        assert [m["i"] for _, m in got] == [0, 1, 2, 3, 4]
    finally:
        await other.close()


async def test_blocking_receive_after_a_restart_drops_dead_pooled_connections(
    redis_server: RedisServer,
) -> None:
    """The first blocking pop after a restart must not fail on a connection the pool kept."""
    layer = RedisChannelLayer([redis_server.url])
    try:
        assert await layer.receive_many(["restart.b"], timeout=0.2) == []  # pools a connection
        await asyncio.sleep(BLOCK_SECONDS + 0.2)  # its blocking pop has returned to the pool
        redis_server.restart()
        await layer.send("restart.other", {"x": 0})  # the hot path reconnects on its own
        receive = asyncio.ensure_future(layer.receive("restart.b"))
        await asyncio.sleep(0.3)  # blocks in Redis, on a fresh connection
        await layer.send("restart.b", {"x": 1})
        assert await asyncio.wait_for(receive, 5) == {"x": 1}
    finally:
        await layer.close()


@pytest.mark.parametrize("killed", [0, 1])
async def test_receive_many_serves_on_while_one_shard_is_down(killed: int) -> None:
    """A worker consuming channels of two shards keeps taking the live shard's messages when
    the other is killed; only with every shard down is ShardUnavailable raised."""
    ring = HashRing(2)
    names = [f"work.k{i}" for i in range(20)]
    on = {s: next(n for n in names if ring.shard_for(n) == s) for s in (0, 1)}
    with redis_servers(2) as servers:
        layer = RedisChannelLayer([s.url for s in servers])
        try:
            assert await layer.receive_many(list(on.values()), timeout=0.1) == []
            proc = servers[killed].proc
            assert proc is not None
            proc.kill()
            proc.wait()
            live = on[1 - killed]
            for n in range(3):
                await layer.send(live, {"n": n})
                t0 = time.monotonic()
                got = await layer.receive_many(list(on.values()), timeout=5)
                assert got == [(live, {"n": n})]
                assert time.monotonic() - t0 < 1.0
            servers[1 - killed].stop()
            with pytest.raises(ShardUnavailable):
                await asyncio.wait_for(layer.receive_many(list(on.values()), timeout=5), 10)
        finally:
            await layer.close()


async def test_a_large_message_whose_body_cannot_be_read_is_dropped_alone(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer = RedisChannelLayer([redis_server.url], inline_message_size=100)
    in_line = layer._in_line

    async def failing(channel: str, ref: Any) -> Any:
        if channel == "work.b":
            raise ShardUnavailable("the body's shard went away")
        return await in_line(channel, ref)

    monkeypatch.setattr(layer, "_in_line", failing)
    try:
        for channel in ("work.a", "work.b", "work.c"):
            await layer.send(channel, {"type": "x", "bytes": channel.encode() * 100})
        got = await layer.receive_many(["work.a", "work.b", "work.c"], timeout=2)
        assert sorted(c for c, _ in got) == ["work.a", "work.c"]
    finally:
        await layer.close()
