"""redis+sentinel:// URLs: what is accepted and refused, and how a shard built on one
reconnects (asking again where the master is) or refuses what may have run."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
from channelapp.channels import decode_hosts
from channelapp.layer.factory import layer_from_settings
from channelapp.layer.redis import RedisChannelLayer
from channelapp.layer.sentinel import (
    DEFAULT_FAILOVER_TIMEOUT,
    MayHaveRun,
    NoMasterFound,
    SentinelMultiplexedConnection,
    SentinelResolver,
    SentinelTarget,
    execute_through_failover,
    is_failover_reply,
    parse_sentinel_url,
)
from channelapp.layer.shard import Shard, redact
from channelapp.settings import Settings
from redis.asyncio.connection import Connection

from devtools.redis import RedisServer, redis_servers

pytestmark = pytest.mark.redis


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis+sentinel://h1:26379,h2:26380/mymaster",
            SentinelTarget(sentinels=(("h1", 26379), ("h2", 26380)), master_name="mymaster"),
        ),
        (
            "redis+sentinel://:pw@h1/mymaster/2",
            SentinelTarget(sentinels=(("h1", 26379),), master_name="mymaster", db=2, password="pw"),
        ),
        (
            "redis+sentinel://app:p%40ss@[::1]:5000,10.0.0.2/my%20master/0"
            "?sentinel_password=s%26p&failover_timeout=3.5",
            SentinelTarget(
                sentinels=(("::1", 5000), ("10.0.0.2", 26379)),
                master_name="my master",
                username="app",
                password="p@ss",
                sentinel_password="s&p",
                failover_timeout=3.5,
            ),
        ),
        (
            "REDIS+SENTINEL://h/m",
            SentinelTarget(sentinels=(("h", 26379),), master_name="m"),
        ),
    ],
)
def test_accepted_forms(url: str, expected: SentinelTarget) -> None:
    assert parse_sentinel_url(url) == expected
    Shard(0, url)  # a shard takes it too (nothing connects yet)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel:///m", "no sentinel address"),
        ("redis+sentinel://:pw@/m", "no sentinel address"),
        ("redis+sentinel://h1:26379", "path must be /<master-name>"),
        ("redis+sentinel://h1:26379/", "path must be /<master-name>"),
        ("redis+sentinel://h1/m/0/x", "path must be /<master-name>"),
        ("redis+sentinel://h1:abc/m", "bad port"),
        ("redis+sentinel://h1:70000/m", "bad port"),
        ("redis+sentinel://h1,,h2/m", "has no host"),
        ("redis+sentinel://[::1/m", "bad address"),
        ("redis+sentinel://h1/m/x", "db must be a number"),
        ("redis+sentinel://h1/m?foo=1", "unknown option 'foo'"),
        ("redis+sentinel://h1/m?failover_timeout=0", "failover_timeout must be"),
        ("redis+sentinel://h1/m?failover_timeout=soon", "failover_timeout must be"),
        ("redis+sentinel://h1/m?failover_timeout=1&failover_timeout=2", "given twice"),
        ("redis+sentinel://h1/m#x", "no #fragment"),
    ],
)
def test_refused_forms(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_sentinel_url(url)
    with pytest.raises(ValueError, match=why):
        Shard(0, url)


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("redis://h:6379/0", True),
        ("rediss://h:6380/0", True),
        ("unix:///tmp/redis.sock", True),
        ("redis+sentinel://h:26379/m", True),
        ("sentinel://h:26379/m", False),
        ("http://h:6379", False),
        ("rediss+sentinel://h:26379/m", False),
    ],
)
def test_shard_url_schemes(url: str, accepted: bool) -> None:
    if accepted:
        assert Shard(0, url).name == url
    else:
        with pytest.raises(ValueError, match=r"redis\+sentinel://"):
            Shard(0, url)


def test_passwords_never_show() -> None:
    url = "redis+sentinel://app:master-secret@h1,h2/m/0?sentinel_password=sentinel-secret"
    shown = redact(url)
    assert shown == "redis+sentinel://app:***@h1,h2/m/0?sentinel_password=***"
    with pytest.raises(ValueError) as refused:
        parse_sentinel_url(url + "&nope=1")
    assert "secret" not in str(refused.value)
    assert "secret" not in Shard(0, url).name


def test_the_layer_password_is_the_masters_when_the_url_has_none() -> None:
    layer = RedisChannelLayer(["redis+sentinel://h/m", "redis+sentinel://:own@h/m"], password="pw")
    first, second = (shard.resolver for shard in layer.shards)
    assert first is not None and second is not None
    assert (first.password, second.password) == ("pw", "own")
    assert first.target.sentinel_password is None
    assert layer.shards[0].failover_timeout == DEFAULT_FAILOVER_TIMEOUT
    assert Shard(0, "redis://h/0").failover_timeout == 0  # plain shards do not wait


class ScriptedResolver(SentinelResolver):
    """Answers from a list: an address, or an exception to raise (a failover going on)."""

    def __init__(self, answers: list[tuple[str, int] | Exception]) -> None:
        super().__init__(
            SentinelTarget(sentinels=(("127.0.0.1", 1),), master_name="m"),
            password=None,
            timeout=1.0,
        )
        self.answers = answers

    async def master(self) -> tuple[str, int]:
        self.resolutions += 1
        answer = self.answers[min(self.resolutions, len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


def wire_for(resolver: SentinelResolver) -> SentinelMultiplexedConnection:
    return SentinelMultiplexedConnection(
        resolver, {"host": "unused", "port": 1}, Connection, connect_timeout=1, command_timeout=5
    )


@pytest.fixture
def master_and_replica() -> Any:
    with redis_servers(2) as (master, replica):
        replica.command("REPLICAOF", "127.0.0.1", str(master.port))
        yield master, replica


def address(server: RedisServer) -> tuple[str, int]:
    return ("127.0.0.1", server.port)


async def test_a_readonly_answer_reconnects_where_sentinel_now_points(
    master_and_replica: tuple[RedisServer, RedisServer],
) -> None:
    master, replica = master_and_replica
    # A sentinel still names the demoted server first, then the new master.
    resolver = ScriptedResolver([address(replica), address(master)])
    wire = wire_for(resolver)
    try:
        replies = await execute_through_failover(wire, [("SET", "k", "v"), ("INCR", "n")], 5)
    finally:
        await wire.close()
    assert replies == [b"OK", 1]
    assert resolver.resolutions == 2
    with redis.Redis(host="127.0.0.1", port=master.port) as check:
        assert check.get("k") == b"v"


async def test_no_master_yet_is_waited_for_within_the_bound(
    master_and_replica: tuple[RedisServer, RedisServer],
) -> None:
    master, _ = master_and_replica
    resolver = ScriptedResolver(
        [NoMasterFound("electing"), NoMasterFound("electing"), address(master)]
    )
    wire = wire_for(resolver)
    try:
        assert await execute_through_failover(wire, [("PING",)], 5) == [b"PONG"]
    finally:
        await wire.close()
    assert resolver.resolutions == 3

    never = ScriptedResolver([NoMasterFound("no quorum")])
    started = time.monotonic()
    with pytest.raises(NoMasterFound, match="no quorum"):
        await execute_through_failover(wire_for(never), [("PING",)], 0.4)
    assert 0.2 <= time.monotonic() - started < 2
    assert never.resolutions > 2


async def test_a_command_written_before_the_connection_broke_is_not_sent_again(
    master_and_replica: tuple[RedisServer, RedisServer],
) -> None:
    master, _ = master_and_replica
    resolver = ScriptedResolver([address(master)])
    wire = wire_for(resolver)
    admin = redis.Redis(host="127.0.0.1", port=master.port)
    try:
        blocked = asyncio.ensure_future(
            execute_through_failover(wire, [("BLPOP", "nothing", 5)], 10)
        )
        while not admin.info("clients")["blocked_clients"]:
            await asyncio.sleep(0.01)
        admin.client_kill_filter(_type="normal", skipme=True)
        started = time.monotonic()
        with pytest.raises(MayHaveRun):
            await blocked
        assert time.monotonic() - started < 2
        assert resolver.resolutions == 1  # refused, not retried on a new connection
    finally:
        await wire.close()
        admin.close()


@pytest.mark.parametrize(
    ("env", "urls"),
    [
        ("redis://a:6379/0,redis://b:6379/0", ["redis://a:6379/0", "redis://b:6379/0"]),
        (
            "redis+sentinel://:pw@s1:26379,s2:26379,[::1]/mymaster/0?sentinel_password=x",
            ["redis+sentinel://:pw@s1:26379,s2:26379,[::1]/mymaster/0?sentinel_password=x"],
        ),
        (
            " redis://a/0 , redis+sentinel://s1,s2/m , rediss://c/1 ,",
            ["redis://a/0", "redis+sentinel://s1,s2/m", "rediss://c/1"],
        ),
    ],
)
def test_sentinel_urls_in_the_environment(
    env: str, urls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.from_env(environ={"CHANNELAPP_REDIS_URLS": env})
    assert settings.redis_urls == urls
    monkeypatch.setenv("CHANNELAPP_REDIS_URLS", env)
    assert decode_hosts(None) == (urls, {})
    layer = layer_from_settings(settings)
    assert isinstance(layer, RedisChannelLayer)
    assert [shard.name for shard in layer.shards] == [redact(url) for url in urls]


@pytest.mark.parametrize(
    ("reply", "failover"),
    [
        (redis.ResponseError("READONLY You can't write against a read only replica."), True),
        (redis.ResponseError("NOREPLICAS Not enough good replicas to write. script: x"), True),
        (redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"), True),
        (redis.exceptions.ReadOnlyError("You can't write against a read only replica."), True),
        (
            redis.ResponseError(
                "Command # 1 (ZADD k 1 m) of pipeline caused error: NOREPLICAS Not enough"
            ),
            True,
        ),
        (redis.ResponseError("ERR wrong number of arguments"), False),
        (redis.ResponseError("WRONGTYPE Operation against a key"), False),
        (b"READONLY", False),
        (None, False),
    ],
)
def test_failover_replies(reply: object, failover: bool) -> None:
    """The error replies after which a command certainly did not run and goes to the new master."""
    assert is_failover_reply(reply) is failover


def test_the_sentinels_password_comes_from_the_environment_when_the_url_has_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHANNELAPP_REDIS_SENTINEL_PASSWORD", "s3ntinel")
    assert parse_sentinel_url("redis+sentinel://h1/m").sentinel_password == "s3ntinel"
    given = parse_sentinel_url("redis+sentinel://h1/m?sentinel_password=inurl")
    assert given.sentinel_password == "inurl"
    monkeypatch.delenv("CHANNELAPP_REDIS_SENTINEL_PASSWORD")
    assert parse_sentinel_url("redis+sentinel://h1/m").sentinel_password is None


async def test_a_refusal_leaves_the_other_callers_commands_their_answers(
    master_and_replica: tuple[RedisServer, RedisServer],
) -> None:
    """One caller's write answered ``NOREPLICAS`` (a master handing over) reconnects: the
    commands other callers wrote on the same connection still get their answers, instead
    of being cut (and refused as "may have run")."""
    master, _ = master_and_replica
    admin = redis.Redis(host="127.0.0.1", port=master.port)
    admin.config_set("min-replicas-to-write", 1_000_000)
    wire = wire_for(ScriptedResolver([address(master)]))
    try:
        await wire.connect()
        # Both leave in one write: the SET is refused at once; the WAIT (not a write) blocks
        # its connection for 300 ms, for more replicas than there are, then answers a count.
        refused = asyncio.ensure_future(execute_through_failover(wire, [("SET", "k", "v")], 0.1))
        slow = asyncio.ensure_future(execute_through_failover(wire, [("WAIT", 5, 300)], 5))
        (waited,) = await slow
        assert isinstance(waited, int), waited
        (answer,) = await refused
        assert "NOREPLICAS" in str(answer)
    finally:
        admin.config_set("min-replicas-to-write", 0)
        admin.close()
        await wire.close()
