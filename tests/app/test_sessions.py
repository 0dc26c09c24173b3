"""Sessions: change tracking, per-socket stores (in memory and in the layer's Redis) and cookies."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import AsyncIterator

import msgpack
import pytest
import redis.asyncio as aioredis
from channelapp.consumers.context import Context
from channelapp.layer import InMemoryChannelLayer, RedisChannelLayer, ShardUnavailable
from channelapp.security import sign, unsign
from channelapp.sessions import (
    COOKIE_NAME,
    MemorySessionStore,
    RedisSessionStore,
    Session,
    SessionStore,
    dump_cookie_session,
    load_cookie_session,
    session_store_for,
)
from channelapp.settings import WEBSOCKET_CONNECT, WEBSOCKET_RECEIVE, Settings

from devtools.redis import RedisServer

_prefixes = itertools.count()


def unique_prefix() -> str:
    return f"sessiontest{next(_prefixes)}-{time.monotonic_ns()}"


@pytest.fixture
async def redis_layer(redis_session_server: RedisServer) -> AsyncIterator[RedisChannelLayer]:
    layer = RedisChannelLayer([redis_session_server.url], prefix=unique_prefix())
    yield layer
    await layer.close()


@pytest.fixture
async def redis_client(redis_session_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_session_server.url)
    yield client
    await client.aclose()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> SessionStore:
    """The behaviour every session store shares, run against both."""
    if request.param == "memory":
        return MemorySessionStore(ttl=60)
    layer: RedisChannelLayer = request.getfixturevalue("redis_layer")
    return RedisSessionStore(layer, ttl=60)


# --- Session: a dict that tracks changes -------------------------------------------------------


def test_new_session_is_empty_and_unmodified() -> None:
    session = Session("websocket.send.p!abc")
    assert session == {}
    assert session.key == "websocket.send.p!abc"
    assert session.modified is False
    assert isinstance(session, dict)


def test_session_with_data_starts_unmodified_and_copies_the_data() -> None:
    data = {"room": "lobby", "sent": 3}
    session = Session("k", data)
    assert session == {"room": "lobby", "sent": 3}
    assert session.modified is False
    data["room"] = "other"
    assert session["room"] == "lobby"


def test_reading_does_not_mark_modified() -> None:
    session = Session("k", {"a": 1, "b": [1, 2]})
    assert session["a"] == 1
    assert session.get("missing", 5) == 5
    assert "b" in session
    assert sorted(session.items()) == [("a", 1), ("b", [1, 2])]
    assert session.copy() == {"a": 1, "b": [1, 2]}
    assert len(session) == 2
    assert session.modified is False


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s.__setitem__("a", 2), {"a": 2, "b": 2}),
        (lambda s: s.__setitem__("new", 0), {"a": 1, "b": 2, "new": 0}),
        (lambda s: s.__delitem__("a"), {"b": 2}),
        (lambda s: s.clear(), {}),
        (lambda s: s.pop("a"), {"b": 2}),
        (lambda s: s.update({"c": 3}), {"a": 1, "b": 2, "c": 3}),
        (lambda s: s.update(c=3), {"a": 1, "b": 2, "c": 3}),
        (lambda s: s.update([("a", 9)]), {"a": 9, "b": 2}),
    ],
    ids=[
        "setitem",
        "setitem-new",
        "delitem",
        "clear",
        "pop",
        "update-dict",
        "update-kwargs",
        "update-pairs",
    ],
)
def test_every_change_marks_modified(change, expected: dict[str, int]) -> None:
    session = Session("k", {"a": 1, "b": 2})
    change(session)
    assert session.modified is True
    assert dict(session) == expected


def test_pop_returns_the_value() -> None:
    session = Session("k", {"a": 1})
    assert session.pop("a") == 1
    assert session.pop("a", "gone") == "gone"
    with pytest.raises(KeyError):
        session.pop("a")


def test_failed_delete_still_raises_key_error() -> None:
    session = Session("k")
    with pytest.raises(KeyError):
        del session["missing"]


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.setdefault("count", 0),
        lambda s: s.popitem(),
        lambda s: s.__ior__({"count": 1}),
    ],
    ids=["setdefault", "popitem", "ior"],
)
def test_in_place_dict_methods_mark_modified(change) -> None:
    session = Session("k", {"a": 1})
    change(session)
    assert session.modified is True


# --- what every store does ---------------------------------------------------------------------


async def test_unknown_key_loads_an_empty_unmodified_session(store: SessionStore) -> None:
    session = await store.load("websocket.send.p!new")
    assert isinstance(session, Session)
    assert session == {}
    assert session.key == "websocket.send.p!new"
    assert session.modified is False


async def test_save_and_load_round_trip(store: SessionStore) -> None:
    session = await store.load("sock-1")
    session["room"] = "lobby"
    session["sent"] = 3
    session["ratio"] = 0.25
    session["flags"] = {"admin": False, "muted": None}
    session["history"] = ["a", "b"]
    session["raw"] = b"\x00\xff"
    session["ünï"] = "cödé ✓"
    await store.save(session)
    assert session.modified is False

    loaded = await store.load("sock-1")
    assert loaded == {
        "room": "lobby",
        "sent": 3,
        "ratio": 0.25,
        "flags": {"admin": False, "muted": None},
        "history": ["a", "b"],
        "raw": b"\x00\xff",
        "ünï": "cödé ✓",
    }
    assert type(loaded["raw"]) is bytes
    assert loaded.key == "sock-1"
    assert loaded.modified is False
    assert loaded is not session


async def test_tuples_come_back_as_lists(store: SessionStore) -> None:
    session = Session("sock", {"pair": (1, 2)})
    await store.save(session)
    assert (await store.load("sock"))["pair"] == [1, 2]


async def test_store_keeps_a_snapshot_not_the_object(store: SessionStore) -> None:
    session = Session("sock", {"n": 1, "items": [1]})
    await store.save(session)
    session["n"] = 2
    session["items"].append(2)
    loaded = await store.load("sock")
    assert loaded == {"n": 1, "items": [1]}
    loaded["n"] = 3
    assert (await store.load("sock"))["n"] == 1


async def test_save_replaces_the_whole_session(store: SessionStore) -> None:
    await store.save(Session("sock", {"a": 1, "b": 2}))
    session = await store.load("sock")
    del session["a"]
    session["c"] = 3
    await store.save(session)
    assert await store.load("sock") == {"b": 2, "c": 3}


async def test_saving_an_emptied_session_empties_it(store: SessionStore) -> None:
    await store.save(Session("sock", {"a": 1}))
    session = await store.load("sock")
    session.clear()
    await store.save(session)
    assert await store.load("sock") == {}


async def test_sessions_are_per_key(store: SessionStore) -> None:
    await store.save(Session("websocket.send.p!one", {"who": "one"}))
    await store.save(Session("websocket.send.p!two", {"who": "two"}))
    assert await store.load("websocket.send.p!one") == {"who": "one"}
    assert await store.load("websocket.send.p!two") == {"who": "two"}
    assert await store.load("websocket.send.p!three") == {}


async def test_delete(store: SessionStore) -> None:
    await store.save(Session("gone", {"a": 1}))
    await store.save(Session("kept", {"b": 2}))
    await store.delete("gone")
    assert await store.load("gone") == {}
    assert await store.load("kept") == {"b": 2}
    await store.delete("gone")  # deleting again, or an unknown key, is not an error
    await store.delete("never-existed")


# --- MemorySessionStore ---------------------------------------------------------------------


async def test_memory_session_expires_after_ttl() -> None:
    store = MemorySessionStore(ttl=0.05)
    await store.save(Session("sock", {"a": 1}))
    assert await store.load("sock") == {"a": 1}
    await asyncio.sleep(0.1)
    assert await store.load("sock") == {}


async def test_memory_ttl_is_set_by_each_save() -> None:
    store = MemorySessionStore(ttl=60)
    store.ttl = -1  # every save from now on is already expired
    await store.save(Session("sock", {"a": 1}))
    assert await store.load("sock") == {}
    await store.save(Session("sock", {"a": 2}))
    store.ttl = 60
    await store.save(Session("sock", {"a": 3}))
    assert await store.load("sock") == {"a": 3}


async def test_memory_store_purges_expired_sessions_past_10000() -> None:
    store = MemorySessionStore(ttl=-1)
    for i in range(10_000):
        await store.save(Session(f"old-{i}", {"i": i}))
    assert len(store._data) == 10_000
    store.ttl = 60
    await store.save(Session("fresh", {"x": 1}))
    assert list(store._data) == ["fresh"]
    assert await store.load("fresh") == {"x": 1}


async def test_memory_stores_are_independent() -> None:
    a, b = MemorySessionStore(60), MemorySessionStore(60)
    await a.save(Session("sock", {"in": "a"}))
    assert await b.load("sock") == {}


# --- RedisSessionStore: storage in the layer's Redis --------------------------------------


def session_key(layer: RedisChannelLayer, key: str) -> str:
    return f"{layer.prefix}:session:{key}"


@pytest.mark.redis
async def test_redis_session_is_msgpack_under_the_layer_prefix(
    redis_layer: RedisChannelLayer, redis_client: aioredis.Redis
) -> None:
    store = RedisSessionStore(redis_layer, ttl=60)
    await store.save(Session("websocket.send.p!abc", {"room": "lobby", "n": 2}))
    raw = await redis_client.get(session_key(redis_layer, "websocket.send.p!abc"))
    assert raw is not None
    assert msgpack.unpackb(raw, raw=False) == {"room": "lobby", "n": 2}
    keys = await redis_client.keys(f"{redis_layer.prefix}:*")
    assert keys == [session_key(redis_layer, "websocket.send.p!abc").encode()]


@pytest.mark.redis
async def test_redis_load_of_a_new_socket_writes_nothing(
    redis_layer: RedisChannelLayer, redis_client: aioredis.Redis
) -> None:
    store = RedisSessionStore(redis_layer, ttl=60)
    assert await store.load("websocket.send.p!fresh") == {}
    assert await redis_client.keys(f"{redis_layer.prefix}:*") == []


@pytest.mark.redis
async def test_redis_session_has_the_ttl(
    redis_layer: RedisChannelLayer, redis_client: aioredis.Redis
) -> None:
    store = RedisSessionStore(redis_layer, ttl=100)
    await store.save(Session("sock", {"a": 1}))
    assert 99 <= await redis_client.ttl(session_key(redis_layer, "sock")) <= 100


@pytest.mark.parametrize(("ttl", "stored"), [(0.2, 1), (0, 1), (-5, 1), (2.9, 2), (86400.0, 86400)])
async def test_redis_ttl_is_whole_seconds_at_least_one(ttl: float, stored: int) -> None:
    layer = RedisChannelLayer(["redis://127.0.0.1:1/0"])  # never connected
    try:
        assert RedisSessionStore(layer, ttl=ttl).ttl == stored
    finally:
        await layer.close()


@pytest.mark.redis
async def test_redis_ttl_is_refreshed_on_save_not_on_load(
    redis_layer: RedisChannelLayer, redis_client: aioredis.Redis
) -> None:
    store = RedisSessionStore(redis_layer, ttl=100)
    rkey = session_key(redis_layer, "sock")
    await store.save(Session("sock", {"a": 1}))
    await redis_client.expire(rkey, 5)
    session = await store.load("sock")
    assert session == {"a": 1}
    assert await redis_client.ttl(rkey) <= 5
    session["a"] = 2
    await store.save(session)
    assert 99 <= await redis_client.ttl(rkey) <= 100


@pytest.mark.redis
async def test_redis_expired_session_loads_empty(
    redis_layer: RedisChannelLayer, redis_client: aioredis.Redis
) -> None:
    store = RedisSessionStore(redis_layer, ttl=100)
    await store.save(Session("sock", {"a": 1}))
    await redis_client.pexpire(session_key(redis_layer, "sock"), 20)
    await asyncio.sleep(0.1)
    session = await store.load("sock")
    assert session == {}
    assert session.key == "sock"


@pytest.mark.redis
async def test_redis_delete_removes_the_key(
    redis_layer: RedisChannelLayer, redis_client: aioredis.Redis
) -> None:
    store = RedisSessionStore(redis_layer, ttl=60)
    await store.save(Session("sock", {"a": 1}))
    await store.delete("sock")
    assert await redis_client.exists(session_key(redis_layer, "sock")) == 0


@pytest.mark.redis
async def test_redis_sessions_are_separated_by_layer_prefix(
    redis_session_server: RedisServer,
) -> None:
    one = RedisChannelLayer([redis_session_server.url], prefix=unique_prefix())
    two = RedisChannelLayer([redis_session_server.url], prefix=unique_prefix())
    try:
        await RedisSessionStore(one, 60).save(Session("sock", {"layer": 1}))
        assert await RedisSessionStore(two, 60).load("sock") == {}
        assert await RedisSessionStore(one, 60).load("sock") == {"layer": 1}
    finally:
        await one.close()
        await two.close()


@pytest.mark.redis
async def test_redis_stores_over_one_layer_share_sessions(redis_layer: RedisChannelLayer) -> None:
    # Two workers' stores: what one saves in connect, the other loads in receive.
    await RedisSessionStore(redis_layer, 60).save(Session("sock", {"step": "connect"}))
    assert await RedisSessionStore(redis_layer, 60).load("sock") == {"step": "connect"}


@pytest.mark.redis
async def test_redis_session_lives_on_its_reply_channels_shard(
    redis_shards: list[RedisServer],
) -> None:
    layer = RedisChannelLayer([s.url for s in redis_shards], prefix=unique_prefix())
    store = RedisSessionStore(layer, ttl=60)
    try:
        # Reply channels of many processes, two sockets each.
        names = [f"websocket.send.proc{p}!sock{s}" for p in range(12) for s in range(2)]
        for name in names:
            await store.save(Session(name, {"name": name}))
        used = set()
        for name in names:
            holders = [
                i
                for i, server in enumerate(redis_shards)
                if server.command("EXISTS", session_key(layer, name)) == ":1"
            ]
            assert holders == [layer.ring.shard_for(name)]
            used.add(holders[0])
            assert await store.load(name) == {"name": name}
        assert len(used) > 1  # the sessions really are spread over the shards
        for p in range(12):
            assert layer.ring.shard_for(f"websocket.send.proc{p}!sock0") == layer.ring.shard_for(
                f"websocket.send.proc{p}!sock1"
            )
    finally:
        await layer.close()


@pytest.mark.redis
async def test_redis_store_raises_shard_unavailable_when_redis_is_down(
    redis_server: RedisServer,
) -> None:
    layer = RedisChannelLayer([redis_server.url], prefix=unique_prefix(), connect_timeout=0.5)
    store = RedisSessionStore(layer, ttl=60)
    try:
        await store.save(Session("sock", {"a": 1}))
        redis_server.stop()
        with pytest.raises(ShardUnavailable, match="unavailable"):
            await store.load("sock")
        session = Session("sock", {"a": 2})
        session.modified = True
        with pytest.raises(ShardUnavailable, match="unavailable"):
            await store.save(session)
        assert session.modified is True  # not written, so still to be written
        with pytest.raises(ShardUnavailable, match="unavailable"):
            await store.delete("sock")
    finally:
        await layer.close()


# --- session_store_for ------------------------------------------------------------------------


async def test_store_for_redis_layer_is_a_redis_store(redis_layer: RedisChannelLayer) -> None:
    store = session_store_for(redis_layer, 30.7)
    assert isinstance(store, RedisSessionStore)
    assert store.keys is redis_layer.keys
    assert store.ttl == 30


async def test_store_for_memory_layer_is_a_memory_store() -> None:
    layer = InMemoryChannelLayer()
    try:
        store = session_store_for(layer, 12.5)
        assert isinstance(store, MemorySessionStore)
        assert store.ttl == 12.5
    finally:
        await layer.close()


# --- the session of a socket, as consumers see it ----------------------------------------------


@pytest.fixture
async def memory_layer() -> AsyncIterator[InMemoryChannelLayer]:
    layer = InMemoryChannelLayer()
    yield layer
    await layer.close()


@pytest.fixture(params=["memory", "redis"])
def layer_and_store(
    request: pytest.FixtureRequest,
) -> tuple[InMemoryChannelLayer | RedisChannelLayer, SessionStore]:
    layer = request.getfixturevalue(f"{request.param}_layer")
    return layer, session_store_for(layer, 60)


def context(layer, store: SessionStore, channel: str, reply: str | None) -> Context:
    message = {"type": channel, "path": "/ws/"}
    if reply is not None:
        message["reply_channel"] = reply
    return Context(layer, Settings(), channel, message, store)


async def test_session_carries_state_from_connect_to_receive(layer_and_store) -> None:
    layer, store = layer_and_store
    reply = await layer.new_channel("websocket.send")

    connect = context(layer, store, WEBSOCKET_CONNECT, reply)
    session = await connect.session()
    assert session == {}
    assert session.key == reply
    session["room"] = "lobby"
    await connect.save_session()
    assert session.modified is False

    receive = context(layer, store, WEBSOCKET_RECEIVE, reply)
    assert await receive.session() == {"room": "lobby"}


async def test_a_new_socket_gets_its_own_empty_session(layer_and_store) -> None:
    layer, store = layer_and_store
    first, second = (
        await layer.new_channel("websocket.send"),
        await layer.new_channel("websocket.send"),
    )
    assert first != second
    ctx = context(layer, store, WEBSOCKET_CONNECT, first)
    (await ctx.session())["user"] = "ann"
    await ctx.save_session()
    other = await context(layer, store, WEBSOCKET_CONNECT, second).session()
    assert other == {}
    assert other.key == second


async def test_context_loads_the_session_once(layer_and_store) -> None:
    layer, store = layer_and_store
    ctx = context(layer, store, WEBSOCKET_CONNECT, await layer.new_channel("websocket.send"))
    assert await ctx.session() is await ctx.session()


async def test_unchanged_session_is_not_written_back(
    redis_layer: RedisChannelLayer, redis_client: aioredis.Redis
) -> None:
    store = session_store_for(redis_layer, 60)
    reply = await redis_layer.new_channel("websocket.send")
    ctx = context(redis_layer, store, WEBSOCKET_RECEIVE, reply)
    session = await ctx.session()
    assert session.get("room") is None
    await ctx.save_session()
    assert await redis_client.exists(session_key(redis_layer, reply)) == 0


async def test_message_without_reply_channel_has_no_session() -> None:
    ctx = context(InMemoryChannelLayer(), MemorySessionStore(60), "thumbnails.make", None)
    with pytest.raises(RuntimeError, match="no reply_channel"):
        await ctx.session()
    await ctx.save_session()  # nothing loaded, nothing to save


# --- signed-cookie sessions ------------------------------------------------------------------

SECRET = "cookie-secret"


def test_cookie_name() -> None:
    assert COOKIE_NAME == "channelapp_session"


def test_cookie_round_trip() -> None:
    data = {"user": 7, "name": "Zoë", "cart": [1, 2], "prefs": {"dark": True}, "none": None}
    cookie = dump_cookie_session(data, SECRET)
    assert load_cookie_session(cookie, SECRET, max_age=60) == data


def test_cookie_is_compact_signed_json_of_cookie_safe_characters() -> None:
    cookie = dump_cookie_session({"a": 1, "b": [1, 2], "s": "x y;z"}, SECRET)
    assert re.fullmatch(r"[A-Za-z0-9_\-]*\.[0-9]+\.[A-Za-z0-9_\-]{43}", cookie)
    assert unsign(cookie, SECRET) == b'{"a":1,"b":[1,2],"s":"x y;z"}'
    assert abs(int(cookie.split(".")[1]) - time.time()) <= 2


def test_cookie_with_non_json_data_cannot_be_dumped() -> None:
    with pytest.raises(TypeError):
        dump_cookie_session({"when": object()}, SECRET)


@pytest.mark.parametrize("cookie", [None, ""])
def test_no_cookie_is_an_empty_session(cookie: str | None) -> None:
    assert load_cookie_session(cookie, SECRET, max_age=60) == {}


def test_cookie_signed_with_another_secret_is_refused() -> None:
    cookie = dump_cookie_session({"user": 7}, "other-secret")
    assert load_cookie_session(cookie, SECRET, max_age=60) == {}
    assert load_cookie_session(cookie, "other-secret", max_age=60) == {"user": 7}


def test_tampered_cookie_is_refused() -> None:
    cookie = dump_cookie_session({"user": 7}, SECRET)
    _data, stamp, mac = cookie.split(".")
    forged = sign(b'{"user":1}', "attacker").split(".")[0]
    assert load_cookie_session(f"{forged}.{stamp}.{mac}", SECRET, max_age=60) == {}


@pytest.mark.parametrize("cookie", ["garbage", "a.b", "a.b.c", "..", "é.1.x", "a.b.c.d"])
def test_malformed_cookie_is_an_empty_session(cookie: str) -> None:
    assert load_cookie_session(cookie, SECRET, max_age=60) == {}


def test_expired_cookie_is_refused() -> None:
    cookie = sign(json.dumps({"user": 7}).encode(), SECRET, now=time.time() - 3600)
    assert load_cookie_session(cookie, SECRET, max_age=60) == {}
    assert load_cookie_session(cookie, SECRET, max_age=7200) == {"user": 7}


@pytest.mark.parametrize(
    "payload",
    [b"[1, 2]", b'"text"', b"42", b"null", b"true", b"not json", b"", b"\xff\xfe{}"],
    ids=["list", "string", "number", "null", "bool", "not-json", "empty", "not-utf8"],
)
def test_validly_signed_non_dict_cookie_is_an_empty_session(payload: bytes) -> None:
    cookie = sign(payload, SECRET)
    assert load_cookie_session(cookie, SECRET, max_age=60) == {}


def test_empty_dict_round_trip() -> None:
    cookie = dump_cookie_session({}, SECRET)
    assert cookie  # still a signed value
    assert load_cookie_session(cookie, SECRET, max_age=60) == {}


async def test_the_session_cookie_expires_with_the_session_ttl(
    memory_layer: InMemoryChannelLayer,
) -> None:
    """A browser drops the cookie when its signature would be refused anyway."""
    from channelapp.consumers.http import Request, Response, send_response

    reply = await memory_layer.new_channel("http.response")
    settings = Settings(secret_key="cookie-secret", session_ttl=600)
    message = {"type": "http.request", "reply_channel": reply, "headers": [], "body": b""}
    ctx = Context(memory_layer, settings, "http.request", message, MemorySessionStore(60))
    request = Request(message, ctx)
    request.session["user"] = 7
    await send_response(ctx, Response.text("ok"), request)
    start = await memory_layer.receive(reply)
    cookies = [v.decode() for k, v in start["headers"] if k == b"set-cookie"]
    assert len(cookies) == 1 and "; Max-Age=600;" in cookies[0], cookies
    value = cookies[0].split(";")[0].split("=", 1)[1]
    assert load_cookie_session(value, "cookie-secret", max_age=600) == {"user": 7}


@pytest.mark.parametrize(
    ("secure", "samesite", "attributes"),
    [
        (False, "Lax", "; HttpOnly; SameSite=Lax"),
        (True, "Lax", "; HttpOnly; SameSite=Lax; Secure"),
        (True, "Strict", "; HttpOnly; SameSite=Strict; Secure"),
        (True, "None", "; HttpOnly; SameSite=None; Secure"),
    ],
)
async def test_the_session_cookie_is_secure_and_samesite_as_set(
    memory_layer: InMemoryChannelLayer, secure: bool, samesite: str, attributes: str
) -> None:
    from channelapp.consumers.http import Request, Response, send_response

    reply = await memory_layer.new_channel("http.response")
    settings = Settings(
        secret_key="cookie-secret", session_cookie_secure=secure, session_cookie_samesite=samesite
    )
    message = {"type": "http.request", "reply_channel": reply, "headers": [], "body": b""}
    ctx = Context(memory_layer, settings, "http.request", message, MemorySessionStore(60))
    request = Request(message, ctx)
    request.session["user"] = 7
    await send_response(ctx, Response.text("ok"), request)
    start = await memory_layer.receive(reply)
    cookies = [v.decode() for k, v in start["headers"] if k == b"set-cookie"]
    assert len(cookies) == 1 and cookies[0].endswith(attributes), cookies


def test_a_cookie_stamped_in_the_future_is_refused() -> None:
    cookie = sign(
        json.dumps({"user": "admin"}).encode(), SECRET, now=time.time() + 10 * 365 * 86400
    )
    assert load_cookie_session(cookie, SECRET, max_age=86400) == {}
    soon = sign(json.dumps({"user": 7}).encode(), SECRET, now=time.time() + 5)  # clock skew
    assert load_cookie_session(soon, SECRET, max_age=86400) == {"user": 7}


def test_session_cookie_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        environ={
            "CHANNELAPP_SESSION_COOKIE_SECURE": "true",
            "CHANNELAPP_SESSION_COOKIE_SAMESITE": "Strict",
        }
    )
    assert settings.session_cookie_secure is True
    assert settings.session_cookie_samesite == "Strict"
