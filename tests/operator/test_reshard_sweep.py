"""After a change of shard set, what pods still on the old set wrote meanwhile moves to the new
set's places (real redis-servers; the old set's pods are a layer over the old URLs)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from channelapp.layer import RedisChannelLayer
from channelapp.layer.sharding import HashRing
from channelapp_operator import reshard_sweep
from channelapp_operator.reshard_sweep import misplaced, routing_name, sweep

from devtools.redis import RedisServer, redis_servers

pytestmark = [pytest.mark.redis]

PREFIX = "channelapp.ns.chat"
CHANNELS = [f"jobs.{i}" for i in range(40)]
GROUPS = [f"room{i}" for i in range(20)]


@pytest.fixture
def servers() -> Iterator[list[RedisServer]]:
    with redis_servers(3) as found:
        yield found


def _urls(servers: list[RedisServer]) -> list[str]:
    return [s.url for s in servers]


@pytest.mark.parametrize(("old_count", "new_count"), [(2, 3), (3, 2), (1, 3)])
def test_what_old_pods_wrote_is_found_by_the_new_set(
    servers: list[RedisServer], old_count: int, new_count: int
) -> None:
    urls = _urls(servers)
    old, new = urls[:old_count], urls[:new_count]

    async def go() -> None:
        before = RedisChannelLayer(old, prefix=PREFIX)
        try:
            for channel in CHANNELS:
                for n in range(3):
                    await before.send(channel, {"type": "job", "n": n})
            for group in GROUPS:
                await before.group_add(group, f"specific.p{group}!a")
                await before.group_add(group, f"specific.p{group}!b")
            for i in range(10):
                await before.keys.shard(f"s{i}").execute("SET", before.keys.session(f"s{i}"), "v")
        finally:
            await before.close()
        stranded = await misplaced(urls, new, PREFIX, None)
        # Without the sweep the new set would never see these (the defect).
        assert stranded, "the ring moved nothing: the test would prove nothing"

        swept = await sweep(old, new, PREFIX, None)
        moved_channels = {k for _, k in stranded if ":ch:" in k}
        assert swept.messages == 3 * len(moved_channels)
        assert swept.sessions == len({k for _, k in stranded if ":session:" in k})
        assert not swept.failed and swept.superseded == 0
        assert await misplaced(urls, new, PREFIX, None) == []

        after = RedisChannelLayer(new, prefix=PREFIX)
        try:
            for channel in CHANNELS:
                got = [(await asyncio.wait_for(after.receive(channel), 5))["n"] for _ in range(3)]
                assert got == [0, 1, 2], channel
            for group in GROUPS:
                members = await after.keys.shard(group).client.zrange(
                    after.keys.group(group), 0, -1
                )
                assert sorted(m.decode() for m in members) == [
                    f"specific.p{group}!a",
                    f"specific.p{group}!b",
                ]
            for i in range(10):
                value = await after.keys.shard(f"s{i}").execute("GET", after.keys.session(f"s{i}"))
                assert value == b"v"
        finally:
            await after.close()

    asyncio.run(go())


def test_moved_messages_go_ahead_of_what_the_new_pods_queued(servers: list[RedisServer]) -> None:
    urls = _urls(servers)
    old, new = urls[:2], urls[:3]
    ring2, ring3 = HashRing(2), HashRing(3)
    channel = next(c for c in CHANNELS if ring2.shard_for(c) != ring3.shard_for(c))

    async def go() -> None:
        before = RedisChannelLayer(old, prefix=PREFIX)
        after = RedisChannelLayer(new, prefix=PREFIX)
        try:
            await before.send(channel, {"type": "job", "n": 1})
            await before.send(channel, {"type": "job", "n": 2})
            await after.send(channel, {"type": "job", "n": 3})
            old_session = before.keys.session("s")
            await before.keys.shard("s").execute("SET", old_session, "old")
            await after.keys.shard("s").execute("SET", after.keys.session("s"), "new")
            swept = await sweep(old, new, PREFIX, None)
            got = [(await asyncio.wait_for(after.receive(channel), 5))["n"] for _ in range(3)]
            assert got == [1, 2, 3]
            assert swept.messages == 2
            if ring2.shard_for("s") != ring3.shard_for("s"):
                # Both places held a session: the new pods' is the newer one and stays.
                assert swept.superseded == 1
                assert await after.keys.shard("s").execute("GET", after.keys.session("s")) == b"new"
        finally:
            await before.close()
            await after.close()

    asyncio.run(go())


def test_expiry_moves_with_the_key_and_bookkeeping_stays(servers: list[RedisServer]) -> None:
    urls = _urls(servers)
    old, new = urls[:1], urls[:3]
    ring3 = HashRing(3)
    channel = next(c for c in CHANNELS if ring3.shard_for(c) != 0)

    async def go() -> None:
        before = RedisChannelLayer(old, prefix=PREFIX)
        after = RedisChannelLayer(new, prefix=PREFIX)
        try:
            await before.send(channel, {"type": "job"})
            shard0 = before.keys.shards[0].client
            await shard0.pexpire(before.keys.channel(channel), 30_000)
            stats = before.keys.key("sent")
            await shard0.hset(stats, channel, 1)
            await sweep(old, new, PREFIX, None)
            target = after.keys.shard(channel).client
            ttl = await target.pttl(after.keys.channel(channel))
            assert 0 < ttl <= 30_000
            assert await shard0.hget(stats, channel) == b"1"  # statistics stay per shard
        finally:
            await before.close()
            await after.close()

    asyncio.run(go())


@pytest.mark.parametrize(
    ("key", "want"),
    [
        (f"{PREFIX}:ch:jobs", ("ch", "jobs")),
        (f"{PREFIX}:ch:specific.abc!", ("ch", "specific.abc!")),
        (f"{PREFIX}:group:room", ("group", "room")),
        (f"{PREFIX}:session:k1", ("session", "k1")),
        (f"{PREFIX}:parked:specific.abc!1", ("parked", "specific.abc!1")),
        (f"{PREFIX}:sent", None),
        (f"{PREFIX}:workers", None),
        ("channelapp.ns.other:ch:jobs", None),
    ],
)
def test_routing_name(key: str, want: tuple[str, str] | None) -> None:
    assert routing_name(PREFIX, key) == want


def test_describe_names_what_moved_and_what_was_lost() -> None:
    swept = reshard_sweep.Swept(messages=4, members=2, sessions=1, superseded=1, failed=["k"])
    text = swept.describe()
    assert text.startswith("moved 4 queued message(s), 2 group member(s), 1 session(s)")
    assert "1 older record(s) dropped" in text and "1 key(s) lost moving: k" in text
