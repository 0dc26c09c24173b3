"""The Redis layer's admin plane: statistics and load, the server registry and its sweep,
lost-state markers, and the operator's read-only monitor."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

import pytest
import redis.asyncio as aioredis
from channelapp.layer import (
    BaseChannelLayer,
    InMemoryChannelLayer,
    RedisChannelLayer,
    RedisMonitor,
    ShardUnavailable,
)
from channelapp.layer.receiving import RedisReceiving

from devtools.redis import RedisServer
from tests.support.redis_fixtures import command_calls

pytestmark = pytest.mark.redis


async def test_statistics_cost_one_script_call_per_shard(
    sharded: RedisChannelLayer, redis_shards: list[RedisServer]
) -> None:
    """The autoscaler reads every app every poll: one command per shard (a script reading the
    lists and counters), not two per channel plus the counters, each packed and parsed."""
    names = [f"st.c{i}" for i in range(90)]
    for n in names[:30]:
        await sharded.send(n, {"x": 1})

    async def calls(command: str) -> list[int]:
        return [await command_calls(s, command) for s in redis_shards]

    hmget, evalsha = await calls("hmget"), await calls("evalsha")
    stats = await sharded.channels_statistics(names)
    assert sum(s["messages_pending"] for s in stats.values()) == 30
    # two HMGETs (sent, full) per shard, not per channel
    assert [a - b for a, b in zip(await calls("hmget"), hmget, strict=True)] == [2, 2, 2]
    assert [a - b for a, b in zip(await calls("evalsha"), evalsha, strict=True)] == [1, 1, 1]


async def test_a_protocol_server_swept_while_alive_is_told_and_a_restart_is_not_a_sweep(
    redis_server: RedisServer,
) -> None:
    server = RedisChannelLayer([redis_server.url])
    sweeper = RedisChannelLayer([redis_server.url])
    try:
        reply = await server.new_channel("websocket.send")
        await server.group_add("room", reply)
        await server.send(reply, {"text": "backlog"})
        assert await server.server_beat(0.05) is False
        deadline = time.monotonic() + 10
        while not (swept := await sweeper.sweep_dead_servers()):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert swept == [server.process]
        assert await sweeper.group_members("room") == []
        assert await server.channel_statistics(reply) == await sweeper.channel_statistics(reply)
        assert (await sweeper.channel_statistics(reply))["messages_pending"] == 0
        assert await sweeper.sweep_dead_servers() == []  # claimed once
        assert await server.server_beat(10) is True  # told: its sockets must reconnect
        assert await server.server_beat(10) is False
        redis_server.restart()  # the registry is gone with the data: not a sweep
        beats: list[bool] = []
        for _ in range(3):  # the first may meet the connection the restart broke
            with contextlib.suppress(ShardUnavailable):
                beats.append(await server.server_beat(10))
        assert beats and not any(beats), beats
    finally:
        await server.close()
        await sweeper.close()


async def test_a_stalled_registry_shard_does_not_sweep_live_servers(
    redis_server: RedisServer,
) -> None:
    """The registry's clock jumps (the shard stalled, failed over, restarted with old data):
    deadlines that passed meanwhile say nothing about the servers, none is swept."""
    server = RedisChannelLayer([redis_server.url])
    sweeper = RedisChannelLayer([redis_server.url])
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        reply = await server.new_channel("websocket.send")
        await server.group_add("room", reply)
        assert await server.server_beat(5.0) is False
        assert await sweeper.sweep_dead_servers() == []
        # Everything the registry holds dates from 6 s ago, as after a 6 s stall.
        servers, seen = server.keys.key("servers"), server.keys.key("servers", "seen")
        await client.zincrby(servers, -6000, server.process)
        await client.decrby(seen, 6000)
        assert await sweeper.sweep_dead_servers() == []
        assert await sweeper.sweep_dead_servers() == []  # its deadline moved on by the gap
        assert await sweeper.group_members("room") == [reply]
        assert await server.server_beat(5.0) is False
    finally:
        await client.aclose()
        await server.close()
        await sweeper.close()


async def test_a_server_swept_while_alive_keeps_the_sockets_it_opens_afterwards(
    redis_server: RedisServer,
) -> None:
    server = RedisChannelLayer([redis_server.url])
    sweeper = RedisChannelLayer([redis_server.url])
    try:
        old = await server.new_channel("websocket.send")
        await server.group_add("room", old)
        assert await server.server_beat(0.05) is False
        assert await sweeper.sweep_dead_servers() == []  # the first call only starts the clock
        original = sweeper._monitor._sweep_processes
        new: list[str] = []

        async def revived_meanwhile(processes: Sequence[str]) -> int:
            # The stalled server resumes while the sweep after it is under way.
            assert await server.server_beat(5.0) is True
            new.append(await server.new_channel("websocket.send"))
            await server.group_add("room", new[0])
            await server.send(new[0], {"type": "websocket.accept"})
            return await original(processes)

        sweeper._monitor._sweep_processes = revived_meanwhile  # type: ignore[method-assign]
        deadline = time.monotonic() + 10
        while not await sweeper.sweep_dead_servers():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert await sweeper.group_members("room") == new
        assert await server.receive(new[0]) == {"type": "websocket.accept"}
        await server.receive_many([old], timeout=0)  # its old sockets' names stay its own
        assert await server.server_beat(5.0) is False
    finally:
        await server.close()
        await sweeper.close()


async def test_a_sweep_that_fails_is_claimed_again_when_its_lease_runs_out(
    redis_server: RedisServer,
) -> None:
    server = RedisChannelLayer([redis_server.url])
    failing = RedisChannelLayer([redis_server.url])
    sweeper = RedisChannelLayer([redis_server.url])
    try:
        reply = await server.new_channel("websocket.send")
        await server.group_add("room", reply)
        assert await server.server_beat(0.05) is False
        assert await failing.sweep_dead_servers() == []  # the first call only starts the clock

        async def fail(processes: Sequence[str]) -> int:
            raise ShardUnavailable("a shard went away mid-sweep")

        failing._monitor._sweep_processes = fail  # type: ignore[method-assign]
        deadline = time.monotonic() + 10
        while True:
            assert time.monotonic() < deadline
            try:
                assert await failing.sweep_dead_servers(lease=60) == []
            except ShardUnavailable:
                break
            await asyncio.sleep(0.05)
        assert await sweeper.sweep_dead_servers() == []  # claimed: one sweeper at a time
        assert await sweeper.group_members("room") == [reply]
        # The lease runs out: the next sweeper takes the claim over and finishes it.
        claims = server.keys.key("servers", "sweeping")
        await sweeper.shards[0].execute("ZINCRBY", claims, -61_000, server.process)
        assert await sweeper.sweep_dead_servers() == [server.process]
        assert await sweeper.group_members("room") == []
        assert await sweeper.shards[0].execute("ZCARD", claims) == 0
        assert await sweeper.sweep_dead_servers() == []
    finally:
        await server.close()
        await failing.close()
        await sweeper.close()


async def test_shards_that_lost_state(
    sharded: RedisChannelLayer, redis_shards: list[RedisServer]
) -> None:
    assert await sharded.shards_that_lost_state() == []  # first look: markers set
    assert await sharded.shards_that_lost_state() == []
    redis_shards[1].command("FLUSHALL")
    assert await sharded.shards_that_lost_state() == [1]
    assert await sharded.shards_that_lost_state() == []  # reported once
    redis_shards[2].stop()
    assert await sharded.shards_that_lost_state() == []  # unreachable: checked again later
    redis_shards[2].start()
    assert await sharded.shards_that_lost_state() == [2]
    redis_shards[0].restart()
    assert await sharded.shards_that_lost_state() == [0]


async def test_the_read_only_monitor_reads_load_without_receiving(
    redis_shards: list[RedisServer],
) -> None:
    """What the operator builds: depth, age, counters and worker reports in one read, with no
    receive task, no pop and none of the layer's receive state."""
    urls = [s.url for s in redis_shards]
    layer = RedisChannelLayer(urls, prefix="shop.a")
    monitor = RedisMonitor(urls, prefix="shop.a")
    try:
        for n in range(3):
            await layer.send("work.a", {"n": n})
        await layer.send("work.b", {"n": 0})
        report = {"in_flight": 2, "handled": 7, "busy_seconds": 1.5, "concurrency": 4}
        await layer.report_worker("w1", report, ttl=30)  # type: ignore[arg-type]
        pops_before = [await command_calls(s, "blpop") for s in redis_shards]
        before = asyncio.all_tasks()
        reading = await monitor.load(["work.a", "work.b", "work.idle"])
        assert asyncio.all_tasks() == before  # nothing left running: no reader, no pop
        assert [await command_calls(s, "blpop") for s in redis_shards] == pops_before
        assert reading.failures == []
        assert reading.workers == {"w1": report}
        assert reading.channels["work.a"]["messages_pending"] == 3
        assert reading.channels["work.a"]["messages_count"] == 3
        assert reading.channels["work.b"]["messages_pending"] == 1
        assert reading.channels["work.idle"]["messages_pending"] == 0
        assert reading.channels["work.a"]["messages_max_age"] >= 0.0
        assert not isinstance(monitor, RedisReceiving)
        # The messages are still there for the workers.
        got = await layer.receive_many(["work.a"], 10, timeout=1)
        assert [m["n"] for _, m in got] == [0, 1, 2]
    finally:
        await monitor.close()
        await layer.close()


async def test_the_read_only_monitor_sees_only_its_app(redis_server: RedisServer) -> None:
    layer = RedisChannelLayer([redis_server.url], prefix="shop.a")
    other_app = RedisMonitor([redis_server.url], prefix="shop.b")
    try:
        await layer.send("work.a", {"n": 0})
        reading = await other_app.load(["work.a"])
        assert reading.channels["work.a"]["messages_pending"] == 0
    finally:
        await other_app.close()
        await layer.close()


async def test_the_read_only_monitor_reports_an_unreachable_shard_instead_of_raising(
    redis_shards: list[RedisServer],
) -> None:
    monitor = RedisMonitor([s.url for s in redis_shards], connect_timeout=0.5, socket_timeout=1.0)
    try:
        redis_shards[1].stop()
        reading = await asyncio.wait_for(monitor.load(["work.a"]), 10)
        assert len(reading.failures) == 1
        assert isinstance(reading.failures[0], ShardUnavailable)
        assert await monitor.unavailable() != []
        with pytest.raises(ShardUnavailable):
            await monitor.global_statistics()
    finally:
        await monitor.close()


async def test_a_redis_layer_is_the_monitor_of_its_own_shards(redis_server: RedisServer) -> None:
    layer = RedisChannelLayer([redis_server.url], process="p1")
    try:
        monitor = layer.monitor()
        assert monitor is layer
        assert list(monitor.every_shard()) == layer.shards
        assert monitor.keys is layer.keys
        assert monitor.connection_options() == [
            (s.pool.connection_class, dict(s.pool.connection_kwargs)) for s in layer.shards
        ]
        assert layer.process == "p1"
        assert (await layer.new_channel("r")).startswith("r.p1!")
        await layer.send("work.m", {"n": 0})
        assert (await monitor.channels_statistics(["work.m"]))["work.m"]["messages_pending"] == 1
    finally:
        await layer.close()


async def test_a_layer_without_state_outside_its_process_has_no_monitor() -> None:
    layer: BaseChannelLayer = InMemoryChannelLayer()
    assert layer.monitor() is None
    await layer.close()
