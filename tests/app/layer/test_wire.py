"""The multiplexed connection against a real redis-server: pipelining, errors, auth, outages."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
import redis.asyncio as aioredis
from channelapp.layer import RedisChannelLayer, ShardUnavailable
from channelapp.layer.shard import Shard
from channelapp.layer.wire import MultiplexedConnection, NotSent
from redis import exceptions as redis_errors

from devtools.redis import RedisServer, redis_servers
from tests.support.redis_fixtures import client_count, redis_info


def connection(url: str, *, command_timeout: float = 5.0) -> MultiplexedConnection:
    pool = aioredis.ConnectionPool.from_url(url)
    return MultiplexedConnection(
        dict(pool.connection_kwargs),
        pool.connection_class,
        connect_timeout=2.0,
        command_timeout=command_timeout,
    )


async def test_concurrent_commands_share_one_connection_and_keep_their_order(
    redis_server: RedisServer,
) -> None:
    conn = connection(redis_server.url)
    try:
        before = int((await redis_info(redis_server, "stats"))["total_connections_received"])
        results = await asyncio.gather(*(conn.execute("INCR", "wire.counter") for _ in range(500)))
        # Each caller sees its own reply: 500 INCRs answered 1..500 in submission order.
        assert results == list(range(1, 501))
        assert (
            int((await redis_info(redis_server, "stats"))["total_connections_received"]) - before
            == 2
        )  # ours + INFO
    finally:
        await conn.close()


async def test_error_replies_come_back_in_place_as_redis_py_errors(
    redis_server: RedisServer,
) -> None:
    conn = connection(redis_server.url)
    try:
        replies = await conn.execute_many(
            [
                ("SET", "wire.k", "v"),
                ("EVALSHA", "0" * 40, 0),
                ("INCR", "wire.k"),
                ("GET", "wire.k"),
            ]
        )
        assert replies[0] == b"OK"
        assert isinstance(replies[1], redis_errors.NoScriptError)
        assert isinstance(replies[2], redis_errors.ResponseError)
        assert "not an integer" in str(replies[2])
        assert replies[3] == b"v"
        with pytest.raises(redis_errors.ResponseError):
            await conn.execute("NOSUCHCOMMAND")
        assert await conn.execute("PING") == b"PONG"  # the connection survived the errors
    finally:
        await conn.close()


async def test_password_and_database_come_from_the_url() -> None:
    with redis_servers(1, password="wire-pw") as (server,):
        conn = connection(f"redis://:wire-pw@127.0.0.1:{server.port}/3")
        try:
            await conn.execute("SET", "wire.db", "three")
            assert await conn.execute("CLIENT", "INFO") is not None
        finally:
            await conn.close()
        raw = aioredis.from_url(f"redis://:wire-pw@127.0.0.1:{server.port}/3")
        try:
            assert await raw.get("wire.db") == b"three"
        finally:
            await raw.aclose()
        wrong = connection(f"redis://:nope@127.0.0.1:{server.port}/0")
        with pytest.raises(redis_errors.AuthenticationError):
            await wrong.execute("PING")
        await wrong.close()


async def test_restart_fails_commands_in_flight_then_reconnects(redis_server: RedisServer) -> None:
    conn = connection(redis_server.url)
    try:
        assert await conn.execute("PING") == b"PONG"
        # A command that is still waiting for its reply when the server goes away.
        blocked = asyncio.ensure_future(conn.execute("BLPOP", "wire.never", 5))
        await asyncio.sleep(0.2)
        redis_server.stop()
        with pytest.raises(redis_errors.ConnectionError) as lost:
            await asyncio.wait_for(blocked, 5)
        assert not isinstance(lost.value, NotSent)  # it was written: it may have run, no retry
        with pytest.raises((redis_errors.ConnectionError, OSError)):
            await conn.execute("PING")  # down: a clear error, not a hang
        redis_server.start()
        assert await conn.execute("PING") == b"PONG"  # the next command reconnects
    finally:
        await conn.close()


async def test_a_server_that_stops_answering_times_out(redis_server: RedisServer) -> None:
    conn = connection(redis_server.url, command_timeout=0.5)
    assert redis_server.proc is not None
    try:
        assert await conn.execute("PING") == b"PONG"
        os.kill(redis_server.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(redis_errors.TimeoutError):
                await asyncio.wait_for(conn.execute("PING"), 5)
        finally:
            os.kill(redis_server.proc.pid, signal.SIGCONT)
        assert await conn.execute("PING") == b"PONG"
    finally:
        await conn.close()


async def test_shard_maps_wire_failures_to_shard_unavailable(redis_server: RedisServer) -> None:
    shard = Shard(0, redis_server.url, socket_timeout=0.5)
    try:
        assert await shard.execute("PING") == b"PONG"
        redis_server.stop()
        with pytest.raises(ShardUnavailable, match="unavailable"):
            await shard.execute("PING")
        with pytest.raises(ShardUnavailable):
            await shard.eval("pop_many", ("wire.k",), (1,))
    finally:
        await shard.close()


async def test_closing_the_layer_closes_its_connections(redis_server: RedisServer) -> None:
    layer = RedisChannelLayer([redis_server.url])
    await layer.send("wire.c", {"x": 1})
    assert await layer.receive("wire.c") == {"x": 1}
    assert await client_count(redis_server) >= 1
    await layer.close()
    await asyncio.sleep(0.1)
    assert await client_count(redis_server) == 0


async def test_a_cancelled_connect_hands_over_to_the_next_caller() -> None:
    """The caller that connects is cancelled mid-AUTH; a caller waiting on it connects itself."""
    with redis_servers(1, password="wire-pw") as (server,):
        assert server.proc is not None
        conn = connection(f"redis://:wire-pw@127.0.0.1:{server.port}/0", command_timeout=3)
        os.kill(server.proc.pid, signal.SIGSTOP)  # TCP connects, AUTH is never answered
        try:
            first = asyncio.ensure_future(conn.execute("PING"))
            await asyncio.sleep(0.2)
            second = asyncio.ensure_future(conn.execute("PING"))
            await asyncio.sleep(0.2)
            first.cancel()
            await asyncio.sleep(0.2)
            assert not second.done()  # not cancelled with the first: it connects again
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert await asyncio.wait_for(second, 5) == b"PONG"
        assert first.cancelled()
        await conn.close()


def test_a_connection_outlives_its_event_loop(redis_server: RedisServer) -> None:
    """Used from a new loop after the first ended without close(): reconnects, no wedge."""
    conn = connection(redis_server.url, command_timeout=2)

    async def round_trip() -> list[object]:
        return await asyncio.wait_for(
            conn.execute_many([("SET", "wire.l", "1"), ("GET", "wire.l")]), 5
        )

    assert asyncio.run(round_trip()) == [b"OK", b"1"]
    assert asyncio.run(round_trip()) == [b"OK", b"1"]
    assert asyncio.run(round_trip()) == [b"OK", b"1"]
    asyncio.run(conn.close())


async def test_idempotent_commands_are_retried_once_on_a_dead_connection(
    redis_server: RedisServer,
) -> None:
    """The server dropped the connection and the loop has not noticed yet: GET retries once."""
    shard = Shard(0, redis_server.url)
    try:
        await shard.execute("SET", "wire.r", "v")
        assert redis_server.command("CLIENT", "KILL", "TYPE", "normal").startswith(":")
        # No await in between: the next command is written to the killed connection.
        assert await shard.execute("GET", "wire.r") == b"v"
    finally:
        await shard.close()
