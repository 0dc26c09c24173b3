"""Redis-only behaviour: sharding, outages, auth, encryption, connections and memory.

Tests named ``test_channels_redis_*`` each show that a failure reported by
channels_redis users does not happen here.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest
import redis.asyncio as aioredis
from channelapp.layer import ChannelFull, RedisChannelLayer, ShardUnavailable
from channelapp.layer.names import InvalidChannelName
from channelapp.layer.sharding import HashRing
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.redis import RedisServer, redis_servers
from tests.support.redis_fixtures import client_count, command_calls


async def redis_keys(server: RedisServer) -> list[bytes]:
    client = aioredis.from_url(server.url)
    try:
        return sorted(await client.keys("*"))
    finally:
        await client.aclose()


async def test_channels_spread_over_three_shards(
    sharded: RedisChannelLayer, redis_shards: list[RedisServer]
) -> None:
    names = [f"work.n{i}" for i in range(60)]
    for name in names:
        await sharded.send(name, {"n": name})
    per_shard = [len([k for k in await redis_keys(s) if b":ch:" in k]) for s in redis_shards]
    assert sum(per_shard) == 60
    assert min(per_shard) >= 8, per_shard  # each shard got a fair share
    got = await sharded.receive_many(names, max_messages=100, timeout=1)
    got += await sharded.receive_many(names, max_messages=100, timeout=0.2)
    assert sorted(m["n"] for _, m in got) == sorted(names)


async def test_reply_channels_of_one_process_share_one_shard(sharded: RedisChannelLayer) -> None:
    chans = [await sharded.new_channel("http.response") for _ in range(20)]
    assert len({sharded.ring.shard_for(c) for c in chans}) == 1


async def test_group_fan_out_across_shards(sharded: RedisChannelLayer) -> None:
    members = [f"member.m{i}" for i in range(30)]
    assert len({sharded.ring.shard_for(m) for m in members}) == 3
    for m in members:
        await sharded.group_add("room.all", m)
    assert await sharded.group_send("room.all", {"text": "everyone"}) == 0
    got = await sharded.receive_many(members, max_messages=100, timeout=1)
    got += await sharded.receive_many(members, max_messages=100, timeout=0.2)
    assert sorted(c for c, _ in got) == sorted(members)


async def test_reply_channel_reaches_the_right_process(redis_server: RedisServer) -> None:
    """Two layer instances stand for two processes; each receives only its own replies."""
    a = RedisChannelLayer([redis_server.url])
    b = RedisChannelLayer([redis_server.url])
    try:
        ca, cb = await a.new_channel("reply"), await b.new_channel("reply")
        await a.send(cb, {"for": "b"})
        await b.send(ca, {"for": "a"})
        assert await asyncio.wait_for(a.receive(ca), 2) == {"for": "a"}
        assert await asyncio.wait_for(b.receive(cb), 2) == {"for": "b"}
    finally:
        await a.close()
        await b.close()


async def test_only_the_instance_that_made_a_reply_channel_receives_on_it(
    redis_server: RedisServer,
) -> None:
    """As channels_redis asserts: another instance cannot take a process's replies."""
    a = RedisChannelLayer([redis_server.url])
    b = RedisChannelLayer([redis_server.url])
    try:
        ca = await a.new_channel("reply")
        await b.send(ca, {"for": "a"})
        with pytest.raises(InvalidChannelName, match="made them"):
            await asyncio.wait_for(b.receive(ca), 2)
        with pytest.raises(InvalidChannelName, match="made them"):
            await asyncio.wait_for(b.receive_many([ca], timeout=0.1), 2)
        foreign = "websocket.send.0123456789ab!x"  # another process's prefix, well formed
        with pytest.raises(InvalidChannelName):
            await asyncio.wait_for(a.receive(foreign), 2)
        assert await asyncio.wait_for(a.receive(ca), 2) == {"for": "a"}  # still there for a
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("name", ["reply!", "!x", "noprocess!x", "a.b!"])
async def test_receive_on_a_malformed_reply_name_raises_instead_of_waiting(
    redis_server: RedisServer, name: str
) -> None:
    layer = RedisChannelLayer([redis_server.url])
    try:
        own = f"reply.{(await layer.new_channel()).split('!')[0].rpartition('.')[2]}!"
        for bad in (name, own):  # this instance's own bare prefix too: no reply is sent there
            with pytest.raises(InvalidChannelName):
                await asyncio.wait_for(layer.receive(bad), 2)
    finally:
        await layer.close()


async def test_reply_channel_across_real_processes(redis_server: RedisServer) -> None:
    layer = RedisChannelLayer([redis_server.url])
    try:
        reply = await layer.new_channel("reply")
        code = textwrap.dedent(
            f"""
            import asyncio
            from channelapp.layer import RedisChannelLayer
            async def main():
                layer = RedisChannelLayer([{redis_server.url!r}])
                msg = await layer.receive("rpc.request")
                await layer.send(msg["reply_channel"], {{"answer": msg["n"] * 2}})
                await layer.close()
            asyncio.run(main())
            """
        )
        proc = subprocess.Popen([sys.executable, "-c", code])
        try:
            await layer.send("rpc.request", {"n": 21, "reply_channel": reply})
            assert await asyncio.wait_for(layer.receive(reply), 10) == {"answer": 42}
        finally:
            assert proc.wait(10) == 0
    finally:
        await layer.close()


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8), st.text(alphabet="abcdefghij.-_", min_size=1, max_size=40))
def test_ring_is_stable_and_in_range(shards: int, name: str) -> None:
    ring = HashRing(shards)
    shard = ring.shard_for(name)
    assert 0 <= shard < shards
    assert HashRing(shards).shard_for(name) == shard
    assert ring.shard_for(name + "!abc") == ring.shard_for(name + "!xyz")


def test_ring_moves_few_names_when_a_shard_is_added() -> None:
    names = [f"chan.{i}" for i in range(3000)]
    before, after = HashRing(4), HashRing(5)
    moved = sum(before.shard_for(n) != after.shard_for(n) for n in names)
    assert moved < 3000 * 0.35  # about 1/5 move; modulo hashing would move 4/5
    spread = Counter(after.shard_for(n) for n in names)
    assert min(spread.values()) > 3000 / 5 * 0.6


async def test_channels_redis_20_reconnects_after_a_redis_restart(
    redis_server: RedisServer,
) -> None:
    """A shard restarted mid-test: clear errors while down, normal service after, same layer."""
    layer = RedisChannelLayer([redis_server.url], expiry=30)
    try:
        await layer.send("work.restart", {"before": 1})
        assert await layer.receive("work.restart") == {"before": 1}
        redis_server.stop()
        t0 = time.monotonic()
        with pytest.raises(ShardUnavailable, match="unavailable"):
            await layer.send("work.restart", {"during": 1})
        with pytest.raises(ShardUnavailable):
            await asyncio.wait_for(layer.receive_many(["work.restart"], timeout=0.5), 10)
        with pytest.raises(ShardUnavailable):
            await layer.channels_statistics(["work.restart"])
        assert time.monotonic() - t0 < 8, "errors while a shard is down must come promptly"
        redis_server.start()
        await layer.send("work.restart", {"after": 1})  # scripts reloaded after NOSCRIPT
        assert await asyncio.wait_for(layer.receive("work.restart"), 5) == {"after": 1}
        assert (await layer.global_statistics())["messages_count"] == 1
    finally:
        await layer.close()


async def test_password_protected_redis() -> None:
    with redis_servers(1, password="s3cret-pw") as (server,):
        bare = f"redis://127.0.0.1:{server.port}/0"
        layer = RedisChannelLayer([bare], password="s3cret-pw")
        wrong = RedisChannelLayer([bare], password="wrong")
        try:
            await layer.send("auth.x", {"ok": 1})
            assert await layer.receive("auth.x") == {"ok": 1}
            with pytest.raises(ShardUnavailable, match="auth"):
                await wrong.send("auth.x", {"ok": 2})
        finally:
            await layer.close()
            await wrong.close()


def test_password_is_not_shown_in_errors() -> None:
    layer = RedisChannelLayer(["redis://:hunter2@127.0.0.1:1/0"])
    assert "hunter2" not in layer.shards[0].name
    with pytest.raises(ValueError, match="redis://"):
        RedisChannelLayer(["http://127.0.0.1:6379"])


async def test_tls_redis_with_a_verified_certificate() -> None:
    """rediss:// against a TLS-only redis-server; both connection paths verify its certificate."""
    server = RedisServer(tls=True).start()
    layer = RedisChannelLayer([server.url], ssl_options={"ssl_ca_certs": str(server.ca_file)})
    untrusted = RedisChannelLayer([server.url], connect_timeout=2)
    try:
        await layer.send("tls.c", {"secret": 1})  # multiplexed connection (script call)
        assert await layer.receive_many(["tls.c"], timeout=1) == [("tls.c", {"secret": 1})]
        receive = asyncio.ensure_future(layer.receive("tls.c"))  # blocking pop: redis-py pool
        await asyncio.sleep(0.2)
        await layer.send("tls.c", {"secret": 2})
        assert await asyncio.wait_for(receive, 5) == {"secret": 2}
        with pytest.raises(ShardUnavailable, match="certificate"):
            await untrusted.send("tls.c", {"x": 1})  # the system CAs do not trust it
    finally:
        await layer.close()
        await untrusted.close()
        server.cleanup()


async def test_encrypted_bodies_are_not_plaintext_at_rest(redis_server: RedisServer) -> None:
    key = Fernet.generate_key()
    layer = RedisChannelLayer([redis_server.url], encryption_keys=[key])
    try:
        await layer.send("secret.ch", {"card": "4111-1111-1111-1111"})
        raw = aioredis.from_url(redis_server.url)
        items = await raw.lrange("channelapp:ch:secret.ch", 0, -1)
        await raw.aclose()
        assert items and b"4111" not in items[0]
        assert await layer.receive("secret.ch") == {"card": "4111-1111-1111-1111"}
    finally:
        await layer.close()
    with pytest.raises(ValueError, match="Fernet"):
        RedisChannelLayer([redis_server.url], encryption_keys=["not-a-key"])


async def test_channels_redis_279_no_leaked_connections(redis_server: RedisServer) -> None:
    baseline = await client_count(redis_server)
    for _ in range(20):
        layer = RedisChannelLayer([redis_server.url])
        await layer.send("leak.x", {"i": 1})
        await layer.receive("leak.x")
        await layer.group_add("leak.g", "leak.x")
        await layer.group_send("leak.g", {"i": 2})
        await layer.receive("leak.x")
        await layer.close()
    await asyncio.sleep(0.2)
    assert await client_count(redis_server) == baseline
    layer = RedisChannelLayer([redis_server.url])
    try:
        await asyncio.gather(*(layer.send("leak.y", {"i": i}) for i in range(100)))
        await layer.receive_many(["leak.y"], max_messages=100, timeout=1)
        for _ in range(200):
            await layer.send("leak.y", {"i": 0})
            await layer.receive("leak.y")
        assert await client_count(redis_server) <= baseline + 64
    finally:
        await layer.close()


async def test_channels_redis_212_276_no_keys_left_behind(redis_server: RedisServer) -> None:
    """Memory: received channels leave no list, dead reply lists are forgotten by statistics."""
    layer = RedisChannelLayer([redis_server.url])
    try:
        for i in range(50):
            reply = await layer.new_channel("r")
            await layer.send(f"mem.c{i}", {"i": i})
            await layer.send(reply, {"i": i})
            await layer.receive(f"mem.c{i}")
            await layer.receive(reply)
        await layer.global_statistics()
        keys = await redis_keys(redis_server)
        assert keys == [b"channelapp:channels", b"channelapp:sent"], keys
        raw = aioredis.from_url(redis_server.url)
        assert await raw.scard("channelapp:channels") == 50  # the 50 named channels, no reply lists
        await raw.aclose()
    finally:
        await layer.close()


async def test_channels_redis_1683_1244_group_send_drops_nothing(
    sharded: RedisChannelLayer,
) -> None:
    """Many concurrent group sends to many members across shards: every message arrives, in order."""
    members = [f"peer.p{i}" for i in range(20)]
    for m in members:
        await sharded.group_add("room.busy", m)
    await asyncio.gather(*(sharded.group_send("room.busy", {"seq": s}) for s in range(40)))
    per_member: dict[str, list[int]] = {m: [] for m in members}
    while True:
        got = await sharded.receive_many(members, max_messages=500, timeout=0.3)
        if not got:
            break
        for channel, msg in got:
            per_member[channel].append(msg["seq"])
    assert all(sorted(v) == list(range(40)) for v in per_member.values())


async def test_channels_redis_83_group_send_is_one_call_per_shard(
    sharded: RedisChannelLayer, redis_shards: list[RedisServer]
) -> None:
    members = [f"fan.m{i}" for i in range(300)]
    for m in members:
        await sharded.group_add("room.big", m)
    await sharded.group_send("room.big", {"warm": 1})  # first use loads the scripts (NOSCRIPT)
    before = [await command_calls(s, "evalsha") for s in redis_shards]
    await sharded.group_send("room.big", {"x": 1})
    after = [await command_calls(s, "evalsha") for s in redis_shards]
    # One send_many per shard, plus the group_members read on the group's shard.
    assert sum(after) - sum(before) == 4


def test_one_url_as_a_string_is_refused_not_split_into_characters() -> None:
    with pytest.raises(TypeError, match="list of URLs"):
        RedisChannelLayer("redis://127.0.0.1:6379/0")  # type: ignore[arg-type]


def test_every_key_name_starts_with_the_layer_prefix() -> None:
    layer = RedisChannelLayer(["redis://127.0.0.1:1/0"], prefix="shop.a")
    keys = layer.keys
    names = [
        keys.channel("http.request"),
        keys.channel("websocket.send.p!x"),
        keys.group("chat.lobby"),
        *keys.counters(),
        keys.session("websocket.send.p!x"),
        *keys.ordering("websocket.send.p!x"),
        keys.key("worker", "w1"),
    ]
    assert all(n.startswith("shop.a:") for n in names), names
    assert keys.channel("websocket.send.p!x") == "shop.a:ch:websocket.send.p!"
    assert keys.channel_name(keys.channel("http.request")) == "http.request"


async def test_large_messages_are_stored_out_of_line_and_cleaned_up(
    redis_shards: list[RedisServer],
) -> None:
    """Past 1 MiB a message's body is a key of its own on its channel's shard; the list holds
    a small reference. A message to one channel is deleted once read; a group's copies expire.
    Encrypted like every stored message."""
    layer = RedisChannelLayer(
        [s.url for s in redis_shards], expiry=5, encryption_keys=[Fernet.generate_key()]
    )
    big = {"type": "websocket.send", "bytes": bytes(range(256)) * (12 << 12)}  # 3 MiB
    try:
        await layer.send("work.large", big)
        await layer.send("work.large", {"after": 1})
        shard = redis_shards[layer.ring.shard_for("work.large")]
        client = aioredis.from_url(shard.url)
        try:
            items = await client.lrange(layer.keys.channel("work.large"), 0, -1)
            assert len(items) == 2 and max(len(i) for i in items) < 1024
            (blob,) = await client.keys(layer.keys.key("blob", "*"))
            assert bytes(range(256)) * 16 not in await client.get(blob)  # sealed
            assert await layer.receive("work.large") == big
            assert await layer.receive("work.large") == {"after": 1}
            assert await client.keys(layer.keys.key("blob", "*")) == []
        finally:
            await client.aclose()
        members = [f"work.m{i}" for i in range(12)]
        assert len({layer.ring.shard_for(m) for m in members}) == 3
        for member in members:
            await layer.group_add("large", member)
        await layer.group_send("large", big)
        got = await layer.receive_many(members, max_messages=100, timeout=2)
        while len(got) < len(members):
            more = await layer.receive_many(members, max_messages=100, timeout=2)
            assert more, len(got)
            got += more
        assert sorted(c for c, _ in got) == sorted(members)
        assert all(m == big for _, m in got)
    finally:
        await layer.close()


async def test_a_refused_large_message_leaves_no_body_behind(
    redis_server: RedisServer,
) -> None:
    layer = RedisChannelLayer([redis_server.url], capacity=1, inline_message_size=100)
    big = {"type": "x", "bytes": b"\0" * 1000}
    client = aioredis.from_url(redis_server.url)
    try:
        await layer.send("work.full", {"type": "x"})
        with pytest.raises(ChannelFull):
            await layer.send("work.full", big)
        await layer.group_add("room", "work.full")
        assert await layer.group_send("room", big) == 1  # its one member is full
        assert await client.keys(layer.keys.key("blob", "*")) == []
        calls = await command_calls(redis_server, "evalsha")
        await layer.send("work.free", big)  # one round trip: the body goes with the send
        assert await command_calls(redis_server, "evalsha") == calls + 1
        assert await layer.receive("work.free") == big
        assert await command_calls(redis_server, "getdel") == 1  # read and deleted at once
        assert await client.keys(layer.keys.key("blob", "*")) == []
    finally:
        await client.aclose()
        await layer.close()


async def test_a_large_group_message_reaches_the_members_on_live_shards(
    redis_shards: list[RedisServer],
) -> None:
    layer = RedisChannelLayer([s.url for s in redis_shards], inline_message_size=100)
    big = {"type": "x", "bytes": b"\1" * 1000}
    try:
        members = [f"work.m{i}" for i in range(12)]
        assert len({layer.ring.shard_for(m) for m in members}) == 3
        for member in members:
            await layer.group_add("room", member)
        group_shard = layer.ring.shard_for("room")
        down = (group_shard + 1) % 3
        redis_shards[down].stop()
        with pytest.raises(ShardUnavailable):
            await layer.group_send("room", big)
        live = [m for m in members if layer.ring.shard_for(m) != down]
        got = await layer.receive_many(live, max_messages=100, timeout=2)
        while len(got) < len(live):
            more = await layer.receive_many(live, max_messages=100, timeout=2)
            assert more, len(got)
            got += more
        assert sorted(c for c, _ in got) == sorted(live)
        assert all(m == big for _, m in got)
    finally:
        await layer.close()
