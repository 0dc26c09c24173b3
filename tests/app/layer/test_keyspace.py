"""Where an app's data lives: key prefixes, key names, the shard of each name, and stored
values sealed with the layer's serializer, checked on three real redis-servers."""

from __future__ import annotations

import asyncio
import fnmatch
from typing import Any

import pytest
import redis.asyncio as aioredis
from channelapp.layer import RedisChannelLayer
from channelapp.layer.keyspace import DEFAULT_PREFIX, KeySpace, app_prefix, validate_prefix
from channelapp.layer.serializers import MessageCorrupt, Serializer, unframe
from channelapp.layer.sharding import HashRing
from cryptography.fernet import Fernet

from devtools.redis import RedisServer


@pytest.mark.parametrize(
    "prefix",
    ["channelapp", "a", "A9", "app_1.prod-eu", "x" * 100, "0.ns.name", DEFAULT_PREFIX],
)
def test_good_prefixes(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize(
    "prefix",
    [
        "",
        "x" * 101,
        "a:b",  # ':' separates the prefix from the rest
        ".leading-dot",
        "-leading-dash",
        "_leading",
        "sp ace",
        "star*",  # a SCAN pattern character
        "q?",
        "br[a]",
        "caf\u00e9",
        "tab\t",
        "new\nline",
        "app\n",
        None,
        42,
        b"bytes",
    ],
)
def test_bad_prefixes(prefix: Any) -> None:
    with pytest.raises(ValueError, match="key prefix must be"):
        validate_prefix(prefix)


@pytest.mark.parametrize(
    ("namespace", "name", "want"),
    [
        ("default", "chat", "channelapp.default.chat"),
        ("team-a", "my-app", "channelapp.team-a.my-app"),
    ],
)
def test_app_prefix(namespace: str, name: str, want: str) -> None:
    assert app_prefix(namespace, name) == want


def test_app_prefix_refuses_what_no_kubernetes_name_has() -> None:
    with pytest.raises(ValueError):
        app_prefix("ns", "a:b")


class Named:
    """A shard stand-in: the key space only picks among the shards it is given."""

    def __init__(self, i: int) -> None:
        self.i = i


def space(prefix: str = "p", shards: int = 3) -> KeySpace:
    return KeySpace(prefix, [Named(i) for i in range(shards)], Serializer())  # type: ignore[misc]


@pytest.mark.parametrize(
    ("made", "want"),
    [
        (lambda k: k.channel("http.request"), "p:ch:http.request"),
        (lambda k: k.channel("http.response!abc123"), "p:ch:http.response!"),
        (lambda k: k.channel_name(k.channel("websocket.receive")), "websocket.receive"),
        (lambda k: k.group("chat.lobby"), "p:group:chat.lobby"),
        (lambda k: k.session("s1"), "p:session:s1"),
        (lambda k: k.ordering("sock!x"), ["p:order:sock!x", "p:parked:sock!x"]),
        (lambda k: k.counters(), ("p:sent", "p:full", "p:channels")),
        (lambda k: k.key("a", "b"), "p:a:b"),
        (lambda k: k.pattern(), "p:*"),
        (lambda k: k.channel_key_start, "p:ch:"),
    ],
)
def test_key_names(made: Any, want: Any) -> None:
    assert made(space()) == want


def test_a_prefix_never_matches_another_apps_keys() -> None:
    """``p:*`` must not match ``p.other:...`` nor ``pp:...``."""
    mine, others = space("p"), [space("p.other"), space("pp"), space("p-1")]
    for other in others:
        for key in (other.channel("c"), other.group("g"), other.session("s")):
            assert not fnmatch.fnmatchcase(key, mine.pattern()), key
    assert fnmatch.fnmatchcase(mine.channel("c"), mine.pattern())


def test_shards_follow_the_hash_ring() -> None:
    ks = space(shards=3)
    ring = HashRing(3)
    names = [f"chat.room{i}" for i in range(200)]
    for name in names:
        assert ks.shard_index(name) == ring.shard_for(name)
        assert ks.shard(name) is ks.shards[ring.shard_for(name)]
    assert {ks.shard_index(n) for n in names} == {0, 1, 2}


def test_seal_and_unseal_use_the_serializer() -> None:
    key = Fernet.generate_key()
    sealed_space = KeySpace("p", [Named(0)], Serializer([key]))  # type: ignore[list-item]
    stored = sealed_space.seal({"user": "ann"})
    assert b"ann" not in stored
    assert sealed_space.unseal(stored) == {"user": "ann"}
    with pytest.raises(MessageCorrupt):
        space().unseal(stored)


async def keys_by_shard(shards: list[RedisServer]) -> list[dict[str, str]]:
    """Every key on each server, with its type."""
    found = []
    for server in shards:
        client = aioredis.from_url(server.url)
        try:
            found.append(
                {
                    key.decode(): (await client.type(key)).decode()
                    async for key in client.scan_iter(count=1000)
                }
            )
        finally:
            await client.aclose()
    return found


@pytest.mark.redis
async def test_the_layer_stores_where_the_key_space_says(redis_shards: list[RedisServer]) -> None:
    key = Fernet.generate_key()
    layer = RedisChannelLayer(
        [s.url for s in redis_shards], prefix="app-one", encryption_keys=[key]
    )
    other = RedisChannelLayer([s.url for s in redis_shards], prefix="app-two")
    channels = [f"jobs.c{i}" for i in range(12)]
    groups = [f"room.g{i}" for i in range(12)]
    try:
        for i, channel in enumerate(channels):
            await layer.send(channel, {"type": "job", "secret": f"plaintext-marker-{i}"})
        reply = await layer.new_channel()
        for group in groups:
            await layer.group_add(group, reply)
        await other.send("jobs.c0", {"type": "job", "n": 2})

        on_shard = await keys_by_shard(redis_shards)
        ks = layer.keys
        for channel in channels:
            want = ks.shard_index(channel)
            assert ks.channel(channel) in on_shard[want], channel
            assert all(ks.channel(channel) not in keys
                       for i, keys in enumerate(on_shard) if i != want)  # fmt: skip
        for group in groups:
            want = ks.shard_index(group)
            assert on_shard[want].get(ks.group(group)) == "zset", group
        mine = [k for keys in on_shard for k in keys if k.startswith("app-one:")]
        theirs = [k for keys in on_shard for k in keys if k.startswith("app-two:")]
        assert mine and theirs
        assert not [k for keys in on_shard for k in keys
                    if not k.startswith(("app-one:", "app-two:"))]  # fmt: skip

        # Stored items are framed and sealed: no plaintext, and they read back with the key.
        seen = 0
        for server, keys in zip(redis_shards, on_shard, strict=True):
            client = aioredis.from_url(server.url)
            try:
                for k, kind in keys.items():
                    if not k.startswith(ks.channel_key_start) or kind != "list":
                        continue
                    for item in await client.lrange(k, 0, -1):
                        assert b"plaintext-marker" not in item
                        _, _, body = unframe(item)
                        assert ks.unseal(body)["secret"].startswith("plaintext-marker-")
                        with pytest.raises(MessageCorrupt):
                            Serializer([Fernet.generate_key()]).loads(body)
                        seen += 1
            finally:
                await client.aclose()
        assert seen == len(channels)

        # The other app's layer does not see this app's channel of the same name.
        got = await asyncio.wait_for(other.receive("jobs.c0"), 5)
        assert got == {"type": "job", "n": 2}
        assert (await layer.receive("jobs.c0"))["secret"] == "plaintext-marker-0"
    finally:
        await layer.close()
        await other.close()
